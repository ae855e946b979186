//! Connections to the cluster: endpoints, TLS, timeouts.
//!
//! hubctl is an ordinary etcd v3 gRPC client; it needs nothing from hub that
//! etcd does not offer. Like etcdctl (whose clientv3 dials without blocking),
//! a command keeps trying its endpoints until `--command-timeout` runs out and
//! then fails with `context deadline exceeded`. Commands etcdctl runs without a
//! timeout (`txn`, `watch`, `lease keep-alive|timetolive|list`) give up
//! connecting after `--dial-timeout` instead of retrying forever.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use std::path::Path;
use std::sync::Arc;

use hub_proto::etcdserverpb::{auth_client::AuthClient, AuthenticateRequest};
use hub_tls::net::Url;
use tokio::time::Instant;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::{InterceptedService, Interceptor};
use tonic::transport::{Channel, Endpoint};

use crate::error::CtlError;
use crate::flags::GlobalOptions;

/// How to reach the cluster; makes one gRPC channel per call site.
#[derive(Clone, Debug)]
pub struct Connector {
    endpoints: Vec<String>,
    /// TLS settings for `https://` and `unixs://` endpoints and, when TLS
    /// flags are given, for endpoints written without a scheme.
    tls: Arc<rustls::ClientConfig>,
    tls_for_bare_endpoints: bool,
    dial_timeout: Duration,
    keepalive_time: Duration,
    keepalive_timeout: Duration,
    pub command_timeout: Duration,
    /// `--user`/`--password`: authenticate once connected.
    credentials: Option<(String, String)>,
    /// The user's token, once authenticated (shared by the connector's
    /// clones, so a command authenticates once whatever it connects to).
    token: Arc<OnceLock<AsciiMetadataValue>>,
}

/// A connection to the cluster whose every request carries the user's token.
pub type Conn = InterceptedService<Channel, WithToken>;

/// Adds the user's token to each request, as clientv3 does with its `token`
/// metadata (none without `--user`, or when auth is not enabled).
#[derive(Clone, Debug)]
pub struct WithToken(Option<AsciiMetadataValue>);

impl Interceptor for WithToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// Reads a password without echo (etcdctl's `speakeasy.Ask`): from the
/// terminal when there is one, else a line of standard input.
pub fn ask_password(prompt: &str) -> Result<String, CtlError> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).map_err(|e| CtlError::error(e.to_string()));
    }
    print!("{prompt}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    println!();
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// etcdctl's `authCfgFromCmd`: `--user name[:password]`, `--password`, or a prompt.
fn credentials(opts: &GlobalOptions) -> Result<Option<(String, String)>, CtlError> {
    let user = match opts.user.as_deref() {
        None | Some("") => return Ok(None),
        Some(user) => user,
    };
    Ok(Some(match opts.password.as_deref() {
        Some(password) if !password.is_empty() => (user.to_string(), password.to_string()),
        _ => match user.split_once(':') {
            Some((name, password)) => (name.to_string(), password.to_string()),
            None => (user.to_string(), ask_password("Password: ")?),
        },
    }))
}

impl Connector {
    /// Checks the TLS and auth flags and reads the certificate files.
    pub fn new(opts: &GlobalOptions) -> Result<Self, CtlError> {
        if opts.discovery_srv.is_some() {
            return Err(CtlError::error("DNS discovery (--discovery-srv) is not supported by hubctl yet"));
        }
        for (flag, value) in [("cert", &opts.cert), ("key", &opts.key), ("cacert", &opts.cacert)] {
            if value.as_deref() == Some("") {
                return Err(CtlError::bad_args(format!("empty string is passed to --{flag} option")));
            }
        }
        let identity = match (&opts.cert, &opts.key) {
            (Some(cert), Some(key)) => Some((Path::new(cert), Path::new(key))),
            (None, None) => None,
            (cert, key) => {
                return Err(CtlError::bad_args(format!(
                    "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                    key.as_deref().unwrap_or(""),
                    cert.as_deref().unwrap_or("")
                )))
            }
        };
        // etcdctl has a TLS setup only with a TLS file flag or
        // --insecure-transport=false; without one, an https endpoint gets
        // Go's defaults and --insecure-skip-tls-verify has no effect.
        let tls_for_bare_endpoints =
            opts.cert.is_some() || opts.key.is_some() || opts.cacert.is_some() || !opts.insecure_transport;
        let skip_verify = opts.insecure_skip_tls_verify && tls_for_bare_endpoints;
        let tls = hub_tls::client_config(opts.cacert.as_deref().map(Path::new), identity, skip_verify)
            .map_err(|e| CtlError::bad_args(e.to_string()))?;
        Ok(Connector {
            endpoints: opts.endpoints.clone(),
            tls: Arc::new(tls),
            tls_for_bare_endpoints,
            dial_timeout: opts.dial_timeout,
            keepalive_time: opts.keepalive_time,
            keepalive_timeout: opts.keepalive_timeout,
            command_timeout: opts.command_timeout,
            credentials: credentials(opts)?,
            token: Arc::default(),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The deadline of a command bounded by `--command-timeout`.
    pub fn command_deadline(&self) -> Instant {
        Instant::now() + self.command_timeout
    }

    /// The connection deadline of a command etcdctl runs without a timeout.
    pub fn dial_deadline(&self) -> Instant {
        Instant::now() + self.dial_timeout
    }

    /// A channel to the first endpoint that answers, retrying until `deadline`.
    pub async fn connect(&self, deadline: Instant) -> Result<Conn, CtlError> {
        let endpoints: Vec<Target> = self.endpoints.iter().map(|e| self.target(e)).collect::<Result<_, _>>()?;
        self.connect_any(&endpoints, deadline).await
    }

    /// A channel to exactly `endpoint` (for per-endpoint commands such as `endpoint status`).
    pub async fn connect_to(&self, endpoint: &str, deadline: Instant) -> Result<Conn, CtlError> {
        let target = self.target(endpoint)?;
        self.connect_any(std::slice::from_ref(&target), deadline).await
    }

    async fn connect_any(&self, endpoints: &[Target], deadline: Instant) -> Result<Conn, CtlError> {
        if endpoints.is_empty() {
            return Err(CtlError::error("no endpoints available"));
        }
        let mut pause = Duration::from_millis(25);
        loop {
            for endpoint in endpoints {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(CtlError::deadline_exceeded());
                }
                if let Ok(Ok(channel)) = tokio::time::timeout(remaining, endpoint.connect(&self.tls)).await {
                    self.authenticate(&channel, deadline).await?;
                    let token = WithToken(self.token.get().cloned());
                    return Ok(InterceptedService::new(channel, token));
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CtlError::deadline_exceeded());
            }
            tokio::time::sleep(pause.min(remaining)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Gets the user's token once (clientv3's `getToken`); a cluster without
    /// auth answers "not enabled", and then requests go without one.
    async fn authenticate(&self, channel: &Channel, deadline: Instant) -> Result<(), CtlError> {
        let Some((name, password)) = &self.credentials else { return Ok(()) };
        if self.token.get().is_some() {
            return Ok(());
        }
        let req = AuthenticateRequest { name: name.clone(), password: password.clone() };
        let mut client = AuthClient::new(channel.clone());
        match tokio::time::timeout_at(deadline, client.authenticate(request(req, deadline))).await {
            Ok(Ok(resp)) => {
                let token = AsciiMetadataValue::try_from(resp.into_inner().token)
                    .map_err(|e| CtlError::error(format!("invalid auth token from the server: {e}")))?;
                let _ = self.token.set(token);
                Ok(())
            }
            Ok(Err(status)) if status.message() == "etcdserver: authentication is not enabled" => Ok(()),
            // etcdctl cannot make its client: ExitBadConnection.
            Ok(Err(status)) => Err(CtlError::from_status_with(crate::error::ExitCode::BadConnection, &status)),
            Err(_) => Err(CtlError::deadline_exceeded()),
        }
    }

    /// Where `address` is: TCP or a Unix socket, TLS or not, as its scheme
    /// (or, without one, the TLS flags) say.
    fn target(&self, address: &str) -> Result<Target, CtlError> {
        let (url, endpoint) =
            hub_tls::net::client_endpoint(address, self.tls_for_bare_endpoints).map_err(CtlError::error)?;
        let endpoint = endpoint
            .connect_timeout(self.dial_timeout)
            // grpc-go raises keepalive times below 10s to 10s, and etcd's server
            // hangs up on clients that ping more often than every 5s.
            .http2_keep_alive_interval(self.keepalive_time.max(Duration::from_secs(10)))
            .keep_alive_timeout(self.keepalive_timeout)
            .keep_alive_while_idle(false);
        Ok(Target { endpoint, url })
    }
}

/// One endpoint and how to dial it.
struct Target {
    endpoint: Endpoint,
    url: Url,
}

impl Target {
    async fn connect(&self, tls: &Arc<rustls::ClientConfig>) -> Result<Channel, tonic::transport::Error> {
        hub_tls::net::connect(&self.endpoint, &self.url, tls).await
    }
}

/// A unary request carrying the time left until `deadline` (gRPC's `grpc-timeout`).
pub fn request<T>(message: T, deadline: Instant) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
    request
}

/// Awaits an RPC until `deadline`; errors come back worded as etcdctl's.
/// An RPC that fails once the deadline has passed (tonic's own timer for the
/// request's `grpc-timeout` may fire first) failed by it, as clientv3's
/// `ContextError` reports the context's error.
pub async fn call<T>(
    deadline: Instant,
    rpc: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CtlError> {
    match tokio::time::timeout_at(deadline, rpc).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) if Instant::now() < deadline => Err(CtlError::from_status(&status)),
        Ok(Err(_)) | Err(_) => Err(CtlError::deadline_exceeded()),
    }
}

/// Awaits an RPC etcdctl runs without a deadline.
pub async fn call_unbounded<T>(
    rpc: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    rpc.await.map(tonic::Response::into_inner)
}
