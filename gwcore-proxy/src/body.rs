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

/// Reads `body` up to `limit` bytes (or to its end, if shorter) and returns
/// what it read, leaving in `body` a body that yields the same bytes again,
/// then the rest: a plug-in can look at the start of a request body (to
/// send it to an authorization service, say) and still forward all of it.
///
/// The bytes returned are complete when [`Buffered::complete`] says so;
/// otherwise they are the first `limit` bytes or a little more (whole
/// frames are kept). An error of the body is returned as is; `body` is
/// then empty.
pub async fn buffer_prefix(body: &mut Body, limit: usize) -> Result<Buffered, BoxError> {
    let mut inner = std::mem::replace(body, empty());
    let mut read = bytes::BytesMut::new();
    let mut trailers = None;
    let mut complete = false;
    while read.len() < limit {
        match inner.frame().await {
            None => {
                complete = true;
                break;
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => read.extend_from_slice(&data),
                Err(frame) => {
                    // Trailers end the body.
                    trailers = frame.into_trailers().ok();
                    complete = true;
                    break;
                }
            },
        }
    }
    if !complete && hyper::body::Body::is_end_stream(&inner) {
        complete = true;
    }
    let read = read.freeze();
    *body = Replayed {
        prefix: (!read.is_empty()).then(|| read.clone()),
        trailers: trailers.take(),
        rest: (!complete).then_some(inner),
    }
    .boxed();
    Ok(Buffered {
        bytes: read,
        complete,
    })
}

/// What [`buffer_prefix`] read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Buffered {
    /// The bytes read from the start of the body.
    pub bytes: Bytes,
    /// Whether they are the whole body.
    pub complete: bool,
}

/// A body whose start was read: the bytes read, then the trailers that
/// ended it or the rest of it.
struct Replayed {
    prefix: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
    rest: Option<Body>,
}

impl hyper::body::Body for Replayed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(prefix))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(hyper::body::Frame::trailers(trailers))));
        }
        match self.rest.as_mut() {
            Some(rest) => std::pin::Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && self.trailers.is_none()
            && self
                .rest
                .as_ref()
                .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |b| b.len() as u64);
        let mut hint = self.rest.as_ref().map_or_else(
            || hyper::body::SizeHint::with_exact(0),
            hyper::body::Body::size_hint,
        );
        let lower = hint.lower() + prefix;
        match hint.upper() {
            Some(upper) => {
                hint.set_upper(upper + prefix);
                hint.set_lower(lower);
            }
            None => hint.set_lower(lower),
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static str]) -> Body {
        let frames: Vec<Result<hyper::body::Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(hyper::body::Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    #[tokio::test]
    async fn a_buffered_prefix_is_sent_on_with_the_rest() {
        let mut body = chunks(&["abc", "def", "ghi"]);
        let read = buffer_prefix(&mut body, 4).await.unwrap();
        assert_eq!(&read.bytes[..], b"abcdef");
        assert!(!read.complete);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcdefghi");
    }

    #[tokio::test]
    async fn a_short_body_is_read_whole() {
        let mut body = chunks(&["ab", "c"]);
        let read = buffer_prefix(&mut body, 100).await.unwrap();
        assert_eq!(&read.bytes[..], b"abc");
        assert!(read.complete);
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(3));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abc");
    }

    #[tokio::test]
    async fn trailers_survive_buffering() {
        let frames: Vec<Result<hyper::body::Frame<Bytes>, BoxError>> = vec![
            Ok(hyper::body::Frame::data(Bytes::from_static(b"x"))),
            Ok(hyper::body::Frame::trailers({
                let mut h = http::HeaderMap::new();
                h.insert("grpc-status", http::HeaderValue::from_static("0"));
                h
            })),
        ];
        let mut body: Body =
            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let read = buffer_prefix(&mut body, 100).await.unwrap();
        assert!(read.complete);
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(&collected.to_bytes()[..], b"x");
    }
}
