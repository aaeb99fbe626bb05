//! Request body limits: the Gateway-wide default
//! ([`crate::limits::Limits::max_request_body_bytes`]) and the data-plane
//! half of gwcore's `BodyLimitPolicy` ([`gwcore::policies::body_limit`]),
//! a [`PolicyPlugin`] registered in [`crate::first_party::plugins`].
//!
//! Over the limit, the client gets 413 (RFC 9110 §15.5.14) before the
//! backend has seen more than the limit:
//!
//! - a `Content-Length` over the limit is answered at once; no backend is
//!   contacted;
//! - a streamed body (HTTP/1.1 chunked, HTTP/2 without `Content-Length`)
//!   fails with [`TooLarge`] before the frame that would pass the limit is
//!   sent on: the backend has received at most the limit, and never a
//!   complete request (an HTTP/1.1 backend's connection is closed without
//!   the body's last chunk, an HTTP/2 backend's stream is reset). The
//!   client gets 413 unless the backend answered first: then the client
//!   has the backend's answer, cut short if the backend still streams it
//!   (an HTTP/2 backend's stream is reset).
//!
//! A `BodyLimitPolicy` that applies to a request replaces the Gateway-wide
//! default (larger or smaller); where none applies, the default does.
//! Another plug-in that wraps the body with its own limit can do the same
//! by marking the request with [`Limited`] ([`limit`] does).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use gwcore::extension::ExtensionKind;
use gwcore::policies::body_limit::{BodyLimit, KIND};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

use crate::body::{Body, BoxError};
use crate::plugin::{BoxFuture, PolicyPlugin, PolicyRequest, Verdict};

/// The error of a request body that passed its limit. Its client gets
/// 413 ([`crate::client_body::status_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body is larger than {limit} bytes")]
#[non_exhaustive]
pub struct TooLarge {
    /// The limit, in bytes.
    pub limit: u64,
}

/// Marks a request whose body has a limit of its own (in
/// [`http::request::Parts::extensions`]): the Gateway-wide default is not
/// applied on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limited {
    /// The limit applied, in bytes.
    pub max_bytes: u64,
}

/// The answer to a body over its limit: 413, and the connection closed
/// (HTTP/1.1), as the rest of the body is not read.
pub fn too_large() -> Response<Body> {
    let mut r = Response::new(crate::body::full("the request body is too large\n"));
    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

/// Holds a request to `max_bytes` of body: `Err` when its
/// `Content-Length` says more (answer [`too_large`]); otherwise `body` is wrapped to fail
/// with [`TooLarge`] before it passes the limit, and the request is marked
/// [`Limited`].
pub fn limit(
    parts: &mut http::request::Parts,
    body: &mut Body,
    max_bytes: u64,
) -> Result<(), TooLarge> {
    let declared = hyper::body::Body::size_hint(body)
        .exact()
        .or_else(|| content_length(&parts.headers));
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(TooLarge { limit: max_bytes });
    }
    parts.extensions.insert(Limited { max_bytes });
    if !hyper::body::Body::is_end_stream(body) {
        let inner = std::mem::replace(body, crate::body::empty());
        *body = Capped {
            inner,
            left: max_bytes,
            limit: max_bytes,
        }
        .boxed();
    }
    Ok(())
}

/// The Gateway-wide default: [`limit`] to `max_bytes` unless it is zero
/// (no limit) or the request has a limit already ([`Limited`]).
pub(crate) fn limit_by_default(
    parts: &mut http::request::Parts,
    body: &mut Body,
    max_bytes: u64,
) -> Result<(), TooLarge> {
    if max_bytes == 0 || parts.extensions.get::<Limited>().is_some() {
        return Ok(());
    }
    limit(parts, body, max_bytes)
}

/// A request's `Content-Length`, when it is one number (hyper has refused
/// the others).
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A body that fails with [`TooLarge`] instead of yielding the frame that
/// would pass its limit.
struct Capped {
    inner: Body,
    left: u64,
    limit: u64,
}

impl hyper::body::Body for Capped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(d) = f.data_ref()
        {
            let n = d.len() as u64;
            if n > self.left {
                self.left = 0;
                // Nothing more comes from this body.
                self.inner = crate::body::empty();
                return Poll::Ready(Some(Err(Box::new(TooLarge { limit: self.limit }))));
            }
            self.left -= n;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The data-plane half of `BodyLimitPolicy`: holds each request its
/// policy applies to to the policy's `maxBytes`.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct BodyLimiter;

impl BodyLimiter {
    /// The plug-in.
    pub fn new() -> BodyLimiter {
        BodyLimiter
    }
}

impl PolicyPlugin for BodyLimiter {
    fn kind(&self) -> ExtensionKind {
        KIND
    }

    fn on_request<'a>(&'a self, request: PolicyRequest<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let Some(value) = request.policy.value.get::<BodyLimit>() else {
                // The engine hands this kind only what its parse made.
                return Verdict::Continue;
            };
            match limit(request.head, request.body, value.max_bytes) {
                Ok(()) => Verdict::Continue,
                Err(_) => Verdict::Respond(too_large()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(cl: Option<&str>) -> http::request::Parts {
        let mut b = http::Request::post("/");
        if let Some(cl) = cl {
            b = b.header("content-length", cl);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    #[test]
    fn a_declared_length_over_the_limit_is_413_at_once() {
        let mut p = parts(Some("11"));
        let mut body = chunks(&[b"0123456789a"]);
        assert_eq!(limit(&mut p, &mut body, 10), Err(TooLarge { limit: 10 }));
        let mut p = parts(Some("10"));
        assert!(limit(&mut p, &mut chunks(&[b"0123456789"]), 10).is_ok());
        assert_eq!(
            p.extensions.get::<Limited>(),
            Some(&Limited { max_bytes: 10 })
        );
    }

    #[tokio::test]
    async fn a_streamed_body_stops_before_the_frame_that_passes_the_limit() {
        let mut p = parts(None);
        let mut body = chunks(&[b"abcd", b"efgh", b"ijkl"]);
        limit(&mut p, &mut body, 10).unwrap();
        let mut got = Vec::new();
        let err = loop {
            match body.frame().await {
                Some(Ok(f)) => got.extend_from_slice(&f.into_data().unwrap()),
                Some(Err(e)) => break e,
                None => panic!("the body ended within its limit"),
            }
        };
        assert_eq!(got, b"abcdefgh", "never more than the limit");
        assert_eq!(
            crate::client_body::status_of(&*err),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Exactly the limit passes.
        let mut body = chunks(&[b"abcde", b"fghij"]);
        limit(&mut parts(None), &mut body, 10).unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 10);
    }

    #[test]
    fn the_default_steps_aside_for_a_limit_of_the_request() {
        let mut p = parts(Some("100"));
        p.extensions.insert(Limited { max_bytes: 1000 });
        assert!(limit_by_default(&mut p, &mut chunks(&[]), 10).is_ok());
        let mut p = parts(Some("100"));
        assert!(limit_by_default(&mut p, &mut chunks(&[]), 10).is_err());
        let mut p = parts(Some("100"));
        assert!(
            limit_by_default(&mut p, &mut chunks(&[]), 0).is_ok(),
            "0: none"
        );
    }
}
