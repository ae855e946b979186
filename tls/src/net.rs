//! etcd's listen and dial URLs: `http`/`https` on TCP, `unix`/`unixs` on Unix
//! sockets, and the connections tonic serves and dials over them.
//!
//! As etcd does, an `http` and an `https` URL on the same address share one
//! listener: a connection whose first byte opens a TLS handshake gets TLS,
//! any other is served in the clear. Handshakes run in their own tasks, so a
//! client that stalls in one never holds up the others. Each [`Conn`] carries
//! a [`ConnInfo`] that tonic puts in every request's extensions.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;

use crate::Tls;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`dial`] waits for a TLS 1.3 server's first bytes.
const FIRST_READ_TIMEOUT: Duration = Duration::from_millis(500);
/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A byte stream tonic can serve or dial over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Where a URL points.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    /// `host:port`.
    Tcp(String),
    /// A socket path: etcd takes the URL's host and path (`unix://etcd.unix:1`
    /// is the file `etcd.unix:1` in the working directory).
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => f.write_str(a),
            Address::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A parsed `http`, `https`, `unix` or `unixs` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub address: Address,
    pub secure: bool,
    /// The host, for TLS server names and auto-TLS certificates.
    pub host: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("URL {url} has no scheme"))?;
        let (host_port, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h).trim_matches(['[', ']']).to_string();
        let (address, secure) = match scheme {
            "http" | "https" => (Address::Tcp(host_port.to_string()), scheme == "https"),
            "unix" | "unixs" => {
                let path = if path.is_empty() { host_port.to_string() } else { format!("{host_port}/{path}") };
                (Address::Unix(PathBuf::from(path)), scheme == "unixs")
            }
            _ => return Err(format!("URL scheme must be http, https, unix, or unixs: {url}")),
        };
        if host_port.is_empty() && matches!(address, Address::Tcp(_)) {
            return Err(format!("URL {url} has no host"));
        }
        Ok(Url { address, secure, host })
    }
}

/// One address to listen on and the schemes served there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    pub address: Address,
    pub plain: bool,
    pub secure: bool,
}

/// The listen URLs grouped by address, in order (etcd serves `http` and
/// `https` on the same address from one listener).
pub fn listen_specs(urls: &[String]) -> Result<Vec<ListenSpec>, String> {
    let mut specs: Vec<ListenSpec> = Vec::new();
    for url in urls {
        let u = Url::parse(url)?;
        match specs.iter_mut().find(|s| s.address == u.address) {
            Some(s) => {
                s.plain |= !u.secure;
                s.secure |= u.secure;
            }
            None => specs.push(ListenSpec { address: u.address, plain: !u.secure, secure: u.secure }),
        }
    }
    Ok(specs)
}

/// A bound TCP or Unix listener.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub async fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            Address::Unix(path) => {
                // A socket file left by an earlier run would fail the bind (etcd removes it too).
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
        }
    }

    async fn accept(&self) -> io::Result<(Box<dyn Io>, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (conn, addr) = l.accept().await?;
                // gRPC answers are small writes; Nagle against delayed ACKs adds ~40 ms.
                conn.set_nodelay(true)?;
                Ok((Box::new(conn), Some(addr)))
            }
            Listener::Unix(l, _) => Ok((Box::new(l.accept().await?.0), None)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a request knows of its connection (tonic's `Connected` info).
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The common name of the client certificate the listener verified, on a
    /// listener with `--client-cert-auth` ("" for a certificate without one).
    pub common_name: Option<String>,
}

/// An accepted connection, in the clear or TLS.
pub struct Conn {
    io: Box<dyn Io>,
    info: ConnInfo,
}

impl Conn {
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

/// The connections of `listener`, ready for tonic's `serve_with_incoming`:
/// TLS ones handshaken with `tls` when `spec.secure`, clear ones when
/// `spec.plain`. The accept loop stops when the stream is dropped.
pub fn incoming(
    listener: Listener,
    spec: &ListenSpec,
    tls: Option<&Tls>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let plain = spec.plain;
    let tls = if spec.secure {
        tls.map(|t| Accept {
            acceptor: TlsAcceptor::from(t.server.clone()),
            record_cn: t.client_cert_auth,
            check_san: t.check_san,
            side: t.side,
        })
    } else {
        None
    };
    let address = spec.address.to_string();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (io, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(address = %address, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let info = ConnInfo { remote_addr, common_name: None };
                let conn = match tls {
                    Some(accept) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(io, info, plain, &accept)).await {
                            Ok(Ok(conn)) => conn,
                            Ok(Err(e)) => {
                                log_rejected(&accept, remote_addr, &e);
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    None => Conn { io, info },
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// How a listener's TLS connections are accepted.
#[derive(Clone)]
struct Accept {
    acceptor: TlsAcceptor,
    /// Record the client certificate's common name (`--client-cert-auth`).
    record_cn: bool,
    /// etcd's `checkSAN` (peer listeners).
    check_san: bool,
    /// `client` or `peer`, for the log.
    side: &'static str,
}

/// etcd's log of a refused handshake; a client that hung up (a probe that
/// only connects) at debug level, as etcd, not to flood the log.
fn log_rejected(accept: &Accept, remote_addr: Option<SocketAddr>, e: &io::Error) {
    let remote = remote_addr.map_or_else(String::new, |a| a.to_string());
    let error = crate::alert::describe(e);
    let side = accept.side;
    if e.kind() == io::ErrorKind::UnexpectedEof {
        tracing::debug!(remote_addr = %remote, error = %error, "rejected connection on {side} endpoint");
    } else {
        tracing::warn!(remote_addr = %remote, error = %error, "rejected connection on {side} endpoint");
    }
}

/// TLS on `io` (or, when the listener also serves in the clear and the
/// client did not open a handshake, the connection as it is).
async fn handshake(mut io: Box<dyn Io>, mut info: ConnInfo, plain: bool, accept: &Accept) -> io::Result<Conn> {
    if plain {
        let first = io.read_u8().await?;
        let io: Box<dyn Io> = Box::new(Prefixed { first: vec![first], inner: io });
        if first != TLS_HANDSHAKE_RECORD {
            return Ok(Conn { io, info });
        }
        return Box::pin(handshake(io, info, false, accept)).await;
    }
    let stream = accept.acceptor.accept(io).await?;
    let certificate = stream.get_ref().1.peer_certificates().and_then(|certs| certs.first());
    if let (true, Some(cert), Some(remote)) = (accept.check_san, certificate, info.remote_addr) {
        crate::verify::check_san(cert, remote.ip()).await.map_err(io::Error::other)?;
    }
    if accept.record_cn {
        info.common_name = certificate.and_then(crate::verify::common_name);
    }
    Ok(Conn { io: Box::new(stream), info })
}

/// A stream whose first bytes were already read (to tell TLS from clear
/// text, or to see whether a TLS 1.3 server accepted our certificate).
struct Prefixed {
    first: Vec<u8>,
    inner: Box<dyn Io>,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            buf.put_slice(&self.first[..n]);
            self.first.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// An etcd client endpoint as clientv3 reads one: a URL, or a bare
/// `host:port` (TLS when `tls_for_bare`, as a client with TLS flags dials
/// it). The tonic endpoint only names the server in requests (`:authority`);
/// [`connect`] dials the URL. Callers add their timeouts.
pub fn client_endpoint(address: &str, tls_for_bare: bool) -> Result<(Url, tonic::transport::Endpoint), String> {
    let invalid = |e: &dyn std::fmt::Display| format!("invalid endpoint {address}: {e}");
    let url = match address.split_once("://") {
        Some(_) => address.to_string(),
        None if tls_for_bare => format!("https://{address}"),
        None => format!("http://{address}"),
    };
    let url = Url::parse(&url).map_err(|e| invalid(&e))?;
    let authority = match &url.address {
        Address::Tcp(host_port) => host_port.clone(),
        Address::Unix(_) => url.host.clone(),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{authority}")).map_err(|e| invalid(&e))?;
    Ok((url, endpoint))
}

/// A tonic channel over `endpoint`'s settings, dialed by [`dial`] to `url`
/// (its TLS, or none, as the URL's scheme says).
pub async fn connect(
    endpoint: &tonic::transport::Endpoint,
    url: &Url,
    tls: &Arc<ClientConfig>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let (url, tls) = (url.clone(), tls.clone());
    endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let (url, tls) = (url.clone(), tls.clone());
            async move { dial(&url, Some(&tls)).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
}

/// Dials `url` (TCP or Unix), with TLS when it is `https`/`unixs`. TLS
/// failures come back worded as Go's (`remote error: tls: bad certificate`).
pub async fn dial(url: &Url, tls: Option<&Arc<ClientConfig>>) -> io::Result<Box<dyn Io>> {
    let io: Box<dyn Io> = match &url.address {
        Address::Tcp(addr) => {
            let conn = TcpStream::connect(addr).await?;
            conn.set_nodelay(true)?;
            Box::new(conn)
        }
        Address::Unix(path) => Box::new(UnixStream::connect(path).await?),
    };
    if !url.secure {
        return Ok(io);
    }
    let config = tls.ok_or_else(|| io::Error::other(format!("{} needs TLS settings", url.address)))?;
    let name = ServerName::try_from(url.host.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let handshake_error = |e: io::Error| io::Error::new(e.kind(), HandshakeError(crate::alert::describe(&e)));
    let mut stream = TlsConnector::from(config.clone()).connect(name, io).await.map_err(handshake_error)?;
    if stream.get_ref().1.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return Ok(Box::new(stream));
    }
    // In TLS 1.3 the server checks our certificate after our side of the
    // handshake is done: a refusal arrives as an alert on the first read.
    // HTTP/2 servers speak first (their SETTINGS), so wait briefly for that
    // and keep what arrives for the caller.
    let mut first = vec![0; 4096];
    match tokio::time::timeout(FIRST_READ_TIMEOUT, stream.read(&mut first)).await {
        Ok(Ok(n)) => first.truncate(n),
        Ok(Err(e)) => return Err(handshake_error(e)),
        Err(_) => first.clear(),
    }
    Ok(Box::new(Prefixed { first, inner: Box::new(stream) }))
}

/// The error inside a [`dial`] failure that the TLS handshake caused (as
/// opposed to an unreachable address).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeError(pub String);

impl HandshakeError {
    /// Whether `error` is a failed handshake.
    pub fn is(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|e| e.is::<HandshakeError>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_etcd_reads_them() {
        let u = Url::parse("unix://etcd.unix:1").unwrap();
        assert_eq!((u.address, u.secure, u.host.as_str()), (Address::Unix("etcd.unix:1".into()), false, "etcd.unix"));
        let u = Url::parse("unixs:///tmp/hub.sock").unwrap();
        assert_eq!((u.address, u.secure), (Address::Unix("/tmp/hub.sock".into()), true));
        let u = Url::parse("https://[::1]:2379/").unwrap();
        assert_eq!((u.address, u.secure, u.host.as_str()), (Address::Tcp("[::1]:2379".into()), true, "::1"));
        assert!(Url::parse("ftp://x:1").is_err());
    }

    #[test]
    fn http_and_https_on_one_address_share_a_listener() {
        let urls = ["http://localhost:1".to_string(), "https://localhost:1".into(), "unixs://s".into()];
        let specs = listen_specs(&urls).unwrap();
        assert_eq!(
            specs,
            [
                ListenSpec { address: Address::Tcp("localhost:1".into()), plain: true, secure: true },
                ListenSpec { address: Address::Unix("s".into()), plain: false, secure: true },
            ]
        );
    }
}
