//! Who a client is by its TLS certificate.
//!
//! With `--client-cert-auth`, etcd takes the common name of a verified client
//! certificate as the user when a request carries no token. Client TLS lives
//! in the transport (hubd's listeners); until it reaches here no request has a
//! verified certificate, so there is no name to find.

/// The common name of the request's verified client certificate, if any.
pub fn client_common_name<T>(_request: &tonic::Request<T>) -> Option<String> {
    None
}
