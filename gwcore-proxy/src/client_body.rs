//! What gwcore checks of a client's request body before and while a
//! backend gets it ([`crate::limits::Limits`]):
//!
//! - its pace: a body that keeps gwcore waiting too long for its next
//!   bytes, or arrives slower than a least average rate, fails with
//!   [`BodyTimeout`] (the client gets 408);
//! - its framing: a small HTTP/1.x body is read whole before the backend
//!   is contacted, so a malformed one (a bad chunk size, a body cut short)
//!   gets 400 and no backend sees any of its request;
//! - the status a client gets for a body that failed ([`status_of`]).
//!
//! ```text
//! client ─▶ h1_server / hyper's HTTP/2 (decode the framing) ─▶ paced ─▶ policies
//!        ─▶ read whole when small (HTTP/1.x) ─▶ backend
//! ```

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{Body, BoxError, ReadAhead};
use crate::limits::Limits;

/// The error of a request body that came too slowly: it stalled longer
/// than [`Limits::request_body_timeout`], or fell below
/// [`Limits::min_request_body_rate`]. Its client gets 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body came too slowly")]
#[non_exhaustive]
pub struct BodyTimeout;

/// The status a client gets for a request body that failed with `error`
/// (anywhere in its chain of sources): 413 for a body over its limit
/// ([`crate::body_limit::TooLarge`]), 408 for one too slow
/// ([`BodyTimeout`]), 400 for anything else (malformed framing, a body
/// cut short).
pub fn status_of(error: &(dyn std::error::Error + 'static)) -> StatusCode {
    let mut e = Some(error);
    while let Some(err) = e {
        if err.is::<crate::body_limit::TooLarge>() {
            return StatusCode::PAYLOAD_TOO_LARGE;
        }
        if err.is::<BodyTimeout>() {
            return StatusCode::REQUEST_TIMEOUT;
        }
        e = err.source();
    }
    StatusCode::BAD_REQUEST
}

/// `body` held to the pace `limits` set; unchanged when both limits are
/// off or the body is empty.
pub(crate) fn paced(body: Body, limits: &Limits) -> Body {
    if hyper::body::Body::is_end_stream(&body)
        || (limits.request_body_timeout.is_zero() && limits.min_request_body_rate == 0)
    {
        return body;
    }
    Paced {
        inner: body,
        stall: limits.request_body_timeout,
        rate: limits.min_request_body_rate,
        received: 0,
        waited: Duration::ZERO,
        waiting_since: None,
        sleep: None,
        failed: false,
    }
    .boxed()
}

/// A request body that fails with [`BodyTimeout`] when it keeps its
/// reader waiting too long. Only time spent waiting for the client counts:
/// the clock runs from a poll that found nothing to the next frame, not
/// while the reader (a backend slow to take the body) does not ask.
struct Paced {
    inner: Body,
    /// The longest wait for the next frame; zero: none.
    stall: Duration,
    /// The least average rate, bytes per second of waiting, once `stall`
    /// of waiting is behind; zero: none.
    rate: u64,
    received: u64,
    /// Time spent waiting before the current wait.
    waited: Duration,
    /// When the current wait began.
    waiting_since: Option<Instant>,
    /// Allocated at the first wait only.
    sleep: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl Paced {
    /// When the current wait, begun at `since`, runs out.
    fn deadline(&self, since: Instant) -> Option<Instant> {
        let stall = (!self.stall.is_zero()).then(|| since + self.stall);
        let rate = (self.rate > 0).then(|| {
            // The waiting this many bytes earn: the grace, then a second
            // per `rate` bytes.
            let earned =
                self.stall + Duration::from_secs_f64(self.received as f64 / self.rate as f64);
            since + earned.saturating_sub(self.waited)
        });
        match (stall, rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl hyper::body::Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(f)) = &frame
                    && let Some(d) = f.data_ref()
                {
                    this.received += d.len() as u64;
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let since = *this.waiting_since.get_or_insert_with(Instant::now);
                let Some(deadline) = this.deadline(since) else {
                    return Poll::Pending;
                };
                let sleep = match &mut this.sleep {
                    Some(s) => {
                        if s.deadline() != deadline {
                            s.as_mut().reset(deadline);
                        }
                        s
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.failed = true;
                        Poll::Ready(Some(Err(Box::new(BodyTimeout))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads `body` whole when it is small: its declared length is at most
/// `max`, or it has none and ends within `max` bytes. `body` is then a body
/// of the same frames (with an exact length unless it had trailers);
/// otherwise it is the frames read, then the rest. An error of the body
/// (malformed framing, too slow, too large) is returned, and nothing was
/// sent anywhere.
pub(crate) async fn read_small(body: &mut Body, max: usize) -> Result<(), BoxError> {
    if max == 0
        || hyper::body::Body::is_end_stream(body)
        || hyper::body::Body::size_hint(body)
            .exact()
            .is_some_and(|n| n > max as u64)
    {
        return Ok(());
    }
    let inner = std::mem::replace(body, crate::body::empty());
    *body = ReadAhead::read(inner, |n| n > max).await?.boxed();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: Vec<Result<Frame<Bytes>, BoxError>>) -> Body {
        http_body_util::StreamBody::new(futures_util::stream::iter(parts)).boxed()
    }

    #[tokio::test]
    async fn a_small_body_is_read_whole_and_sent_with_its_length() {
        let mut body = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
        ]);
        read_small(&mut body, 10).await.unwrap();
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(4));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcd");
    }

    #[tokio::test]
    async fn a_body_that_breaks_is_an_error_before_anything_is_sent() {
        let mut body = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err("bad chunk".into()),
        ]);
        let e = read_small(&mut body, 10).await.unwrap_err();
        assert_eq!(status_of(&*e), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_large_body_streams_on_with_what_was_read() {
        let mut body = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::data(Bytes::from_static(b"def"))),
            Ok(Frame::data(Bytes::from_static(b"ghi"))),
        ]);
        read_small(&mut body, 4).await.unwrap();
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), None);
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcdefghi");
    }

    #[tokio::test]
    async fn trailers_keep_the_body_chunked() {
        let mut t = http::HeaderMap::new();
        t.insert("x-sum", http::HeaderValue::from_static("1"));
        let mut body = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::trailers(t)),
        ]);
        read_small(&mut body, 10).await.unwrap();
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), None);
        let c = body.collect().await.unwrap();
        assert_eq!(c.trailers().unwrap()["x-sum"], "1");
    }

    /// A body whose frames come after the given delays.
    fn trickle(delays: Vec<(u64, usize)>) -> Body {
        let s = futures_util::stream::unfold(delays.into_iter(), |mut it| async move {
            let (ms, n) = it.next()?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Some((Ok(Frame::data(Bytes::from(vec![b'x'; n]))), it))
        });
        http_body_util::StreamBody::new(s).boxed()
    }

    fn limits(stall_ms: u64, rate: u64) -> Limits {
        Limits {
            request_body_timeout: Duration::from_millis(stall_ms),
            min_request_body_rate: rate,
            ..Limits::default()
        }
    }

    async fn outcome(body: Body) -> Result<usize, StatusCode> {
        body.collect()
            .await
            .map(|c| c.to_bytes().len())
            .map_err(|e| status_of(&*e))
    }

    #[tokio::test]
    async fn a_stall_longer_than_the_timeout_is_408() {
        let l = limits(300, 0);
        assert_eq!(
            outcome(paced(trickle(vec![(10, 5), (100, 5)]), &l)).await,
            Ok(10)
        );
        assert_eq!(
            outcome(paced(trickle(vec![(10, 5), (600, 5)]), &l)).await,
            Err(StatusCode::REQUEST_TIMEOUT)
        );
    }

    #[tokio::test]
    async fn a_trickle_that_beats_the_stall_timeout_is_408_by_rate() {
        // A byte every 100 ms never stalls 300 ms, but 10 B/s is far
        // under 100 B/s once the first 300 ms of waiting are spent.
        let l = limits(300, 100);
        let slow: Vec<(u64, usize)> = (0..10).map(|_| (100, 1)).collect();
        assert_eq!(
            outcome(paced(trickle(slow.clone()), &l)).await,
            Err(StatusCode::REQUEST_TIMEOUT)
        );
        // Without the rate, the same trickle passes.
        assert_eq!(outcome(paced(trickle(slow), &limits(300, 0))).await, Ok(10));
        // Fast enough: 100 B every 100 ms.
        let fine: Vec<(u64, usize)> = (0..10).map(|_| (100, 100)).collect();
        assert_eq!(outcome(paced(trickle(fine), &l)).await, Ok(1000));
    }

    #[tokio::test]
    async fn time_the_reader_does_not_ask_does_not_count() {
        let l = limits(300, 0);
        let mut body = paced(trickle(vec![(10, 5), (10, 5)]), &l);
        assert!(body.frame().await.unwrap().is_ok());
        // The backend takes its time to ask for more.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.is_none());
    }
}
