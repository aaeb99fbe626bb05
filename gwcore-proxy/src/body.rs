//! The body type every response of the proxy carries.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed HTTP body: what the proxy answers with and forwards.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// Boxes a body received by hyper (from a client or a backend).
pub fn incoming(body: hyper::body::Incoming) -> Body {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed()
}
