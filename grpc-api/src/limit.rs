//! gRPC's limit on a received message, answered as etcd's Go server answers it:
//! `ResourceExhausted` "grpc: received message larger than max (N vs. M)".
//!
//! The limit is `--max-request-bytes` plus gRPC's overhead allowance (etcd's
//! `grpcOverheadBytes`). tonic enforces the same limit in its decoder but words
//! it as `OutOfRange` "Error, decoded message length too large: …"; so the
//! request body of every gRPC call passes through [`LimitedBody`], which reads
//! each message's 5-byte prefix as it streams by and fails the body with Go's
//! status before tonic sees a message over the limit (tonic answers a body
//! error that carries a `Status` with that status).

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;

use crate::framing::Framing;

/// A gRPC request body that fails once a message's prefix announces more than
/// `limit` bytes.
pub struct LimitedBody {
    inner: Body,
    limit: usize,
    framing: Framing,
}

impl LimitedBody {
    pub fn new(inner: Body, limit: usize) -> Self {
        LimitedBody { inner, limit, framing: Framing::default() }
    }

    /// Follows the framing through `data`; the status if a message is too large.
    fn scan(&mut self, data: &[u8]) -> Result<(), Status> {
        let limit = self.limit;
        self.framing.feed(data, |len| {
            if len > limit {
                return Err(Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {limit})")));
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// Middleware: every request body under `limit` (see the module doc).
pub async fn layer(limit: usize, req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    next.run(axum::extract::Request::from_parts(parts, Body::new(LimitedBody::new(body, limit)))).await
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                if let Err(status) = self.scan(data) {
                    return Poll::Ready(Some(Err(axum::Error::new(status))));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{message, PREFIX_LEN};

    #[test]
    fn refuses_the_first_message_over_the_limit_whatever_the_chunking() {
        let stream: Vec<u8> = [message(10), message(100), message(101), message(3)].concat();
        for chunk in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut body = LimitedBody::new(Body::empty(), 100);
            let mut passed = 0;
            let err = stream.chunks(chunk).find_map(|c| {
                let r = body.scan(c).err();
                if r.is_none() {
                    passed += c.len();
                }
                r
            });
            let err = err.expect("the 101-byte message is refused");
            assert_eq!(err.code(), tonic::Code::ResourceExhausted);
            assert_eq!(err.message(), "grpc: received message larger than max (101 vs. 100)");
            // Refused at its prefix, before any of its bytes passed.
            assert!(passed < 15 + 105 + PREFIX_LEN, "chunk {chunk}: {passed}");
        }
    }
}
