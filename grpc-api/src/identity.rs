//! Who is on the other end of a request, as far as the connection tells:
//! with `--client-cert-auth`, the verified client certificate's common name
//! is the user when the request carries no token (etcd's `AuthInfoFromTLS`).
//!
//! The TLS listener (`hub_tls::net`) records the name once per connection,
//! after its handshake verified the certificate; tonic copies it into every
//! request's extensions. Deciding what the name may do is the auth layer's.

/// The common name of the verified client certificate of `req`'s connection:
/// `None` without `--client-cert-auth`, on a connection in the clear or
/// without a certificate, and (as etcd) for requests relayed by the JSON
/// gateway, which connects with the server's own certificate; `Some("")` for
/// a certificate without a common name.
pub fn client_common_name<T>(req: &tonic::Request<T>) -> Option<String> {
    if req.metadata().contains_key("grpcgateway-accept") {
        return None;
    }
    req.extensions().get::<hub_tls::net::ConnInfo>().and_then(|info| info.common_name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_tls::net::ConnInfo;

    fn request(common_name: Option<&str>) -> tonic::Request<()> {
        let mut req = tonic::Request::new(());
        req.extensions_mut().insert(ConnInfo { remote_addr: None, common_name: common_name.map(str::to_string) });
        req
    }

    #[test]
    fn the_connection_s_common_name_is_the_request_s() {
        assert_eq!(client_common_name(&request(Some("alice"))), Some("alice".to_string()));
        assert_eq!(client_common_name(&request(None)), None);
        assert_eq!(client_common_name(&tonic::Request::new(())), None);
    }

    #[test]
    fn gateway_requests_carry_no_certificate_identity() {
        let mut req = request(Some("server"));
        req.metadata_mut().insert("grpcgateway-accept", "application/json".parse().unwrap());
        assert_eq!(client_common_name(&req), None);
    }
}
