//! The body type every response of the proxy carries.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::{Frame, SizeHint};

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

/// An empty body. Boxing it allocates nothing (`Empty` has no size).
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
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
    let ahead = ReadAhead::read(std::mem::replace(body, empty()), |n| n >= limit).await?;
    let bytes = {
        let mut data = ahead.data();
        match (data.next(), data.next()) {
            (None, _) => Bytes::new(),
            (Some(one), None) => one.clone(),
            (Some(a), Some(b)) => {
                let mut all = bytes::BytesMut::with_capacity(ahead.pending as usize);
                all.extend_from_slice(a);
                all.extend_from_slice(b);
                data.for_each(|d| all.extend_from_slice(d));
                all.freeze()
            }
        }
    };
    let complete = ahead.is_complete();
    *body = ahead.boxed();
    Ok(Buffered { bytes, complete })
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

/// The frames read from the start of a body, then the rest of it: what
/// [`buffer_prefix`] and the proxy's read-ahead of small request bodies
/// (`crate::client_body`) leave in the body's place.
pub(crate) struct ReadAhead {
    frames: VecDeque<Frame<Bytes>>,
    /// The data bytes in `frames`.
    pending: u64,
    /// Whether the frames end with trailers.
    trailers: bool,
    /// The rest of the body; `None` once it ended.
    rest: Option<Body>,
}

impl ReadAhead {
    /// Reads `body`'s frames until `enough` (of the data bytes read so
    /// far, asked before each frame) or the body's end. An error of the
    /// body is returned as is.
    pub(crate) async fn read(
        mut body: Body,
        enough: impl Fn(usize) -> bool,
    ) -> Result<ReadAhead, BoxError> {
        let mut frames = VecDeque::new();
        let mut len = 0usize;
        let mut trailers = false;
        let ended = loop {
            if enough(len) {
                break false;
            }
            match body.frame().await {
                None => break true,
                Some(Err(e)) => return Err(e),
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        if d.is_empty() {
                            continue;
                        }
                        len += d.len();
                    } else {
                        trailers = true;
                    }
                    frames.push_back(f);
                }
            }
        };
        let ended = ended || hyper::body::Body::is_end_stream(&body);
        Ok(ReadAhead {
            frames,
            pending: len as u64,
            trailers,
            rest: (!ended).then_some(body),
        })
    }

    /// Whether the frames read are the whole body.
    pub(crate) fn is_complete(&self) -> bool {
        self.rest.is_none()
    }

    /// The data read, frame by frame.
    fn data(&self) -> impl Iterator<Item = &Bytes> {
        self.frames.iter().filter_map(Frame::data_ref)
    }
}

impl hyper::body::Body for ReadAhead {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.frames.pop_front() {
            if let Some(d) = f.data_ref() {
                self.pending -= d.len() as u64;
            }
            return Poll::Ready(Some(Ok(f)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self
                .rest
                .as_ref()
                .is_none_or(hyper::body::Body::is_end_stream)
    }

    /// Exact when the frames are the whole body and carry no trailers (a
    /// body sent with its length cannot carry them); otherwise what the
    /// rest declares, plus the bytes read ahead.
    fn size_hint(&self) -> SizeHint {
        match &self.rest {
            None if self.trailers => SizeHint::default(),
            None => SizeHint::with_exact(self.pending),
            Some(rest) => {
                let mut hint = rest.size_hint();
                let lower = hint.lower() + self.pending;
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + self.pending);
                }
                hint.set_lower(lower);
                hint
            }
        }
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
        // Sent on with a length, the trailers would be lost.
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), None);
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(&collected.to_bytes()[..], b"x");
    }
}
