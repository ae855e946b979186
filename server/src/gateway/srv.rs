//! The gateway's endpoints from DNS SRV records (`--discovery-srv`), as etcd's
//! `pkg/srv.GetClient` and `etcdmain.discoverEndpoints` find them:
//! `_etcd-client-ssl._tcp.<domain>` gives `https` endpoints and
//! `_etcd-client._tcp.<domain>` `http` ones (`--discovery-srv-name` adds a
//! `-<name>` suffix to both services). Unless `--insecure-discovery`, only the
//! `https` endpoints that complete a TLS handshake verified against
//! `--trusted-ca-file` (server name: the domain) are kept.

use std::sync::Arc;

use anyhow::anyhow;
use hickory_resolver::TokioResolver;
use hub_tls::net::{Address, Url};

/// One place to send connections: an SRV record, or an endpoint of the flag
/// (priority and weight 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub target: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

impl Srv {
    /// An endpoint `host:port` of `--endpoints` (Go's `net.SplitHostPort`;
    /// the port is read as `fmt.Sscanf("%d")` would, 0 when it is no number).
    pub fn from_host_port(endpoint: &str) -> Option<Srv> {
        let (host, port) = super::split_host_port(endpoint)?;
        let digits: String = port.chars().take_while(|c| c.is_ascii_digit()).collect();
        Some(Srv { target: host.to_string(), port: digits.parse().unwrap_or(0), priority: 0, weight: 0 })
    }

    pub fn address(&self) -> String {
        if self.target.contains(':') {
            format!("[{}]:{}", self.target, self.port)
        } else {
            format!("{}:{}", self.target, self.port)
        }
    }
}

/// What discovery found: endpoint URLs and their records, index by index.
#[derive(Debug, Default)]
pub struct Discovered {
    pub endpoints: Vec<String>,
    pub srvs: Vec<Srv>,
}

/// etcd's `GetSRVService`: `etcd-client[-ssl][-<name>]`.
fn service(scheme: &str, name: &str) -> String {
    let mut service = String::from("etcd-client");
    if scheme == "https" {
        service.push_str("-ssl");
    }
    if !name.is_empty() {
        service.push('-');
        service.push_str(name);
    }
    service
}

/// Looks up the client SRV records of `domain` and keeps the endpoints etcd
/// would use.
pub async fn discover(domain: &str, service_name: &str, ca_file: Option<&str>, insecure: bool) -> anyhow::Result<Discovered> {
    let resolver = TokioResolver::builder_tokio()
        .map_err(|e| anyhow!("read the system's DNS configuration: {e}"))?
        .build();
    let mut found = Discovered::default();
    let mut errors = Vec::new();
    for scheme in ["https", "http"] {
        let name = format!("_{}._tcp.{domain}", service(scheme, service_name));
        match resolver.srv_lookup(name.as_str()).await {
            Ok(lookup) => {
                for record in lookup.iter() {
                    let srv = Srv {
                        target: record.target().to_utf8(),
                        port: record.port(),
                        priority: record.priority(),
                        weight: record.weight(),
                    };
                    found.endpoints.push(format!("{scheme}://{}", srv.address()));
                    found.srvs.push(srv);
                }
            }
            Err(e) => errors.push(format!("lookup {name}: {e}")),
        }
    }
    if errors.len() == 2 {
        return Err(anyhow!("dns lookup errors: {} and {}", errors[0], errors[1]));
    }
    tracing::info!(srv_server = domain, endpoints = ?found.endpoints, "discovered cluster from SRV");
    if insecure {
        return Ok(found);
    }
    tracing::info!(srv_server = domain, endpoints = ?found.endpoints, "validating discovered SRV endpoints");
    let (valid, errors) = validate_secure(domain, ca_file, &found).await;
    if errors.is_empty() {
        tracing::info!(srv_server = domain, endpoints = ?valid, "using validated discovered SRV endpoints");
    } else {
        tracing::warn!(srv_server = domain, endpoints = ?valid, error = %errors.join(","), "failed to validate discovered endpoints");
    }
    Ok(keep(found, &valid))
}

/// etcd's `transport.ValidateSecureEndpoints`: the `https` endpoints that
/// complete a verified TLS handshake, and what was wrong with the others.
async fn validate_secure(domain: &str, ca_file: Option<&str>, found: &Discovered) -> (Vec<String>, Vec<String>) {
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    let config = match hub_tls::client_config(ca_file.map(std::path::Path::new), None, false) {
        Ok(c) => Arc::new(c),
        Err(e) => return (valid, vec![e.to_string()]),
    };
    for (endpoint, srv) in found.endpoints.iter().zip(&found.srvs) {
        if !endpoint.starts_with("https://") {
            errors.push(format!("{endpoint:?} is insecure"));
            continue;
        }
        let url = Url { address: Address::Tcp(srv.address()), secure: true, host: domain.to_string() };
        let dialed = tokio::time::timeout(std::time::Duration::from_secs(5), hub_tls::net::dial(&url, Some(&config))).await;
        match dialed {
            Ok(Ok(_)) => valid.push(endpoint.clone()),
            Ok(Err(e)) => errors.push(format!("{endpoint:?} failed to dial ({e})")),
            Err(_) => errors.push(format!("{endpoint:?} failed to dial (i/o timeout)")),
        }
    }
    (valid, errors)
}

/// The discovered endpoints (and their records) that are in `valid`.
fn keep(found: Discovered, valid: &[String]) -> Discovered {
    let mut kept = Discovered::default();
    for (endpoint, srv) in found.endpoints.into_iter().zip(found.srvs) {
        if valid.contains(&endpoint) {
            kept.endpoints.push(endpoint);
            kept.srvs.push(srv);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_etcds() {
        assert_eq!(service("https", ""), "etcd-client-ssl");
        assert_eq!(service("http", ""), "etcd-client");
        assert_eq!(service("https", "prod"), "etcd-client-ssl-prod");
        assert_eq!(service("http", "prod"), "etcd-client-prod");
    }

    #[test]
    fn endpoints_of_the_flag_are_records_without_priority() {
        let srv = Srv::from_host_port("127.0.0.1:2379").unwrap();
        assert_eq!(srv, Srv { target: "127.0.0.1".into(), port: 2379, priority: 0, weight: 0 });
        assert_eq!(Srv::from_host_port("[::1]:12").unwrap().address(), "[::1]:12");
        assert_eq!(Srv::from_host_port("h:x").unwrap().port, 0);
        assert!(Srv::from_host_port("no-port").is_none());
    }

    #[tokio::test]
    async fn only_https_endpoints_that_verify_are_kept() {
        let found = Discovered {
            endpoints: vec!["http://127.0.0.1:1".into(), "https://127.0.0.1:1".into()],
            srvs: vec![Srv::from_host_port("127.0.0.1:1").unwrap(); 2],
        };
        let (valid, errors) = validate_secure("example.com", None, &found).await;
        assert!(valid.is_empty());
        assert_eq!(errors[0], r#""http://127.0.0.1:1" is insecure"#);
        assert!(errors[1].starts_with(r#""https://127.0.0.1:1" failed to dial"#), "{errors:?}");
        let kept = keep(found, &["https://127.0.0.1:1".to_string()]);
        assert_eq!(kept.endpoints, ["https://127.0.0.1:1"]);
        assert_eq!(kept.srvs.len(), 1);
    }
}
