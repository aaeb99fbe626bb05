//! A budget of the HTTP/2 frames a client can make the server work for
//! without asking for anything: PING and SETTINGS (each must be
//! acknowledged) and RST_STREAM (each cancels a request the server has
//! started: the rapid reset attack, CVE-2023-44487).
//!
//! h2 answers these one at a time and stops reading while an answer is
//! not written, so a client that does not read cannot make it queue them;
//! but a client that reads can keep a core busy for as long as it likes
//! (and h2 limits only resets of streams not yet handed to the server).
//! [`FloodGuard`] sits between the socket and hyper and reads the frame
//! headers going by (9 bytes a frame, payloads skipped): each such frame
//! takes a token from a bucket that refills at the configured rate and
//! holds ten seconds of it. When the bucket is empty the client gets
//! `GOAWAY(ENHANCE_YOUR_CALM)`, written between two of the server's
//! frames, and the connection ends: the guard hands hyper no more bytes.
//!
//! Connections that do not start with the HTTP/2 preface (HTTP/1.x) are
//! passed through untouched after their first bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What an HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const DEBUG: &[u8] = b"too_many_control_frames";
/// How many seconds of the rate the bucket holds.
const BURST_SECONDS: u32 = 10;

/// Frame boundaries in one direction of an HTTP/2 connection.
#[derive(Debug, Default)]
struct Frames {
    header: [u8; HEADER_LEN],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
}

impl Frames {
    /// Walks `bytes`, calling `on_header` with each complete frame header
    /// and the offset in `bytes` where it started (0 when it started in
    /// an earlier call); stops, returning that offset, when `on_header`
    /// returns `false`.
    fn walk(
        &mut self,
        mut bytes: &[u8],
        mut on_header: impl FnMut(&[u8; HEADER_LEN]) -> bool,
    ) -> Option<usize> {
        let mut at = 0;
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                bytes = &bytes[n..];
                at += n;
                continue;
            }
            let start = at.saturating_sub(self.have);
            let n = (HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            at += n;
            if self.have == HEADER_LEN {
                self.have = 0;
                let h = &self.header;
                self.left = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                if !on_header(&self.header) {
                    return Some(start);
                }
            }
        }
        None
    }

    /// Bytes left to the end of the current frame (0 between frames).
    fn to_boundary(&self) -> usize {
        if self.have > 0 {
            HEADER_LEN - self.have
        } else {
            self.left
        }
    }
}

#[derive(Debug)]
enum State {
    /// Matching the preface; this many bytes of it came.
    Preface(usize),
    /// HTTP/2: counting.
    Frames,
    /// Not HTTP/2, or no budget: bytes pass through.
    Off,
    /// Over budget: the GOAWAY is written from this offset.
    GoingAway(usize),
    /// The GOAWAY is written; the connection ends.
    Gone,
}

/// A connection's transport with the HTTP/2 control frame budget.
#[derive(Debug)]
pub(crate) struct FloodGuard<S> {
    inner: S,
    state: State,
    read: Frames,
    write: Frames,
    /// Tokens, in thousandths, and when they were last counted.
    tokens: u64,
    capacity: u64,
    per_second: u64,
    counted: Instant,
    /// The highest stream a client opened, for the GOAWAY.
    last_stream: u32,
    /// The reader waiting for the GOAWAY to be written.
    reader: Option<Waker>,
}

impl<S> FloodGuard<S> {
    /// Guards `inner` with a budget of `per_second` control frames a
    /// second (and a burst of ten seconds' worth); zero guards nothing.
    pub(crate) fn new(inner: S, per_second: u32) -> FloodGuard<S> {
        let capacity = u64::from(per_second) * u64::from(BURST_SECONDS) * 1000;
        FloodGuard {
            inner,
            state: if per_second == 0 {
                State::Off
            } else {
                State::Preface(0)
            },
            read: Frames::default(),
            write: Frames::default(),
            tokens: capacity,
            capacity,
            per_second: u64::from(per_second),
            counted: Instant::now(),
            last_stream: 0,
            reader: None,
        }
    }

    /// Takes a token for a control frame; `false` when none is left.
    fn spend(&mut self) -> bool {
        self.spend_at(Instant::now)
    }

    /// [`FloodGuard::spend`] with the clock passed in.
    fn spend_at(&mut self, now: impl FnOnce() -> Instant) -> bool {
        if self.tokens < 1000 {
            let now = now();
            let ms =
                u64::try_from(now.duration_since(self.counted).as_millis()).unwrap_or(u64::MAX);
            self.counted = now;
            self.tokens = self
                .tokens
                .saturating_add(ms.saturating_mul(self.per_second))
                .min(self.capacity);
            if self.tokens < 1000 {
                return false;
            }
        }
        self.tokens -= 1000;
        true
    }

    /// Counts the frames in bytes just read; the offset of the first one
    /// over budget.
    fn count(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut read = std::mem::take(&mut self.read);
        let mut last_stream = self.last_stream;
        let over = read.walk(bytes, |h| {
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let control = match kind {
                PING | SETTINGS => flags & ACK == 0,
                RST_STREAM => true,
                HEADERS => {
                    last_stream = last_stream.max(stream);
                    false
                }
                _ => false,
            };
            !control || self.spend()
        });
        self.read = read;
        self.last_stream = last_stream;
        over
    }

    fn goaway(&self) -> Vec<u8> {
        let len = 8 + DEBUG.len();
        let mut f = Vec::with_capacity(HEADER_LEN + len);
        f.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_be_bytes()[1..]);
        f.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&self.last_stream.to_be_bytes());
        f.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        f.extend_from_slice(DEBUG);
        f
    }
}

impl<S: AsyncWrite + Unpin> FloodGuard<S> {
    /// Writes the GOAWAY once the server's frame in progress is complete,
    /// then closes the sending side.
    fn poll_go_away(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.state {
                State::GoingAway(at) => {
                    if self.write.to_boundary() > 0 {
                        return Poll::Pending;
                    }
                    let frame = self.goaway();
                    let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &frame[at..]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.state = if at + n == frame.len() {
                        State::Gone
                    } else {
                        State::GoingAway(at + n)
                    };
                }
                State::Gone => {
                    if let Some(w) = self.reader.take() {
                        w.wake();
                    }
                    ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
                    return Pin::new(&mut self.inner).poll_shutdown(cx);
                }
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FloodGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            State::Off => return Pin::new(&mut this.inner).poll_read(cx, buf),
            State::GoingAway(_) | State::Gone => {
                // The server's frame in progress completes on its write
                // side, which wakes this reader.
                this.reader = Some(cx.waker().clone());
                ready!(this.poll_go_away(cx))?;
                return Poll::Ready(Ok(()));
            }
            State::Preface(_) | State::Frames => {}
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let mut new = &buf.filled()[before..];
        let mut at = 0;
        if let State::Preface(n) = this.state {
            let m = (PREFACE.len() - n).min(new.len());
            if new[..m] != PREFACE[n..n + m] {
                this.state = State::Off;
                return Poll::Ready(Ok(()));
            }
            this.state = if n + m == PREFACE.len() {
                State::Frames
            } else {
                State::Preface(n + m)
            };
            new = &new[m..];
            at = m;
        }
        if let State::Frames = this.state
            && let Some(over) = this.count(new)
        {
            tracing::info!(
                target: "gwcore::access",
                last_stream = this.last_stream,
                "HTTP/2 control frame flood (PING, SETTINGS, RST_STREAM); GOAWAY(ENHANCE_YOUR_CALM)"
            );
            buf.set_filled(before + at + over);
            this.state = State::GoingAway(0);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FloodGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.state {
            State::Off | State::Preface(_) => Pin::new(&mut this.inner).poll_write(cx, buf),
            State::Frames => {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
                this.write.walk(&buf[..n], |_| true);
                Poll::Ready(Ok(n))
            }
            State::GoingAway(_) | State::Gone => {
                // The frame in progress is finished; then the GOAWAY goes,
                // and what the server writes after it is dropped.
                let left = this.write.to_boundary();
                if left > 0 {
                    let cap = left.min(buf.len());
                    let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..cap]))?;
                    this.write.walk(&buf[..n], |_| true);
                    if this.write.to_boundary() == 0
                        && let Some(w) = this.reader.take()
                    {
                        // The reader writes the GOAWAY if the server has
                        // nothing more to write.
                        w.wake();
                    }
                    return Poll::Ready(Ok(n));
                }
                ready!(this.poll_go_away(cx))?;
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.state {
            State::Off | State::Preface(_) => {
                Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
            }
            State::Frames => {
                let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
                let mut left = n;
                for b in bufs {
                    let k = left.min(b.len());
                    this.write.walk(&b[..k], |_| true);
                    left -= k;
                }
                Poll::Ready(Ok(n))
            }
            State::GoingAway(_) | State::Gone => {
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
                Pin::new(this).poll_write(cx, first)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::GoingAway(_) | State::Gone = this.state {
            return this.poll_go_away(cx);
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frame_headers_are_found_across_any_split() {
        let mut wire = Vec::new();
        let mut starts = Vec::new();
        for (kind, len) in [(0u8, 0usize), (1, 1), (2, 8), (3, 9), (4, 10), (5, 300)] {
            starts.push(wire.len());
            wire.extend(frame(kind, 0, 1, &vec![0xff; len]));
        }
        for step in [1, 2, 7, 9, 10, 64, wire.len()] {
            let mut frames = Frames::default();
            let mut kinds = Vec::new();
            for chunk in wire.chunks(step) {
                let stop = frames.walk(chunk, |h| {
                    kinds.push(h[3]);
                    true
                });
                assert_eq!(stop, None);
            }
            assert_eq!(kinds, [0, 1, 2, 3, 4, 5], "step {step}");
            assert_eq!(frames.to_boundary(), 0, "step {step}");
        }
        // Stopped at the fourth frame: where its header starts.
        let mut frames = Frames::default();
        assert_eq!(frames.walk(&wire, |h| h[3] != 3), Some(starts[3]));
        // Mid-frame, the bytes to its end.
        let mut frames = Frames::default();
        assert_eq!(frames.walk(&wire[..starts[5] + 4], |_| true), None);
        assert_eq!(frames.to_boundary(), 5);
        assert_eq!(
            frames.walk(&wire[starts[5] + 4..starts[5] + 9], |_| true),
            None
        );
        assert_eq!(frames.to_boundary(), 300);
    }

    #[test]
    fn the_budget_refills_at_its_rate_up_to_ten_seconds_of_it() {
        let mut g = FloodGuard::new((), 2);
        let t0 = g.counted;
        let at = |ms: u64| move || t0 + std::time::Duration::from_millis(ms);
        for i in 0..20 {
            assert!(g.spend_at(at(0)), "burst frame {i}");
        }
        assert!(!g.spend_at(at(0)), "the burst is spent");
        assert!(g.spend_at(at(500)), "one frame refilled in half a second");
        assert!(!g.spend_at(at(500)));
        for i in 0..20 {
            assert!(
                g.spend_at(at(3_600_000)),
                "refilled to the burst only: frame {i}"
            );
        }
        assert!(!g.spend_at(at(3_600_000)));
    }
}
