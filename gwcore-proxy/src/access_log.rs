//! Log lines (the access log's above all) buffered in memory and written
//! by a thread of their own, off the request path.
//!
//! A request's access line is appended to a buffer under a lock (a copy of
//! the formatted line, no system call); a writer thread writes the buffer
//! out in one `write` when it holds [`LogBufferOptions::flush_bytes`], when
//! [`LogBufferOptions::interval`] has passed since its first line, or at
//! once when an *urgent* line (anything but an access line: warnings,
//! errors, "listening") comes in. Lines are written in the order they were
//! appended, urgent or not.
//!
//! ```text
//! request ─ enabled!(gwcore::access)? ─ format (install: by hand; else a
//!           tracing event, formatted by the subscriber) ─ append ─┐
//! warn!/error! ─ tracing subscriber ─ append (urgent) ────────────┤
//!                              buffer (≤ capacity) ◀───────────────┘
//!                                 │  full: drop + count
//!                 writer thread ◀─┘  (size, interval, urgent, drop/flush)
//!                       │
//!                  stderr / file
//! ```
//!
//! Memory is bounded: the buffer never holds more than
//! [`LogBufferOptions::capacity`] bytes (plus the chunk being written). A
//! line that does not fit, because the output cannot keep up (a stalled
//! pipe, a full disk), is **dropped, not waited for**: serving requests
//! never blocks on the log. Dropped lines are counted
//! ([`LogBuffer::dropped`], and process-wide [`dropped_lines`], which
//! `/metrics` shows as `gwcore_log_lines_dropped_total`), and once the
//! writer catches up it logs a warning with the count.
//!
//! Why drop rather than block, as nginx does (its worker waits on each
//! `write` of the log): a worker waiting on its log stalls every
//! connection it serves, health checks included, so a slow disk or a
//! stuck log shipper becomes an outage of the gateway. The capacity (4 MiB
//! by default, some 16 000 lines, seconds of a busy gateway's traffic)
//! rides out ordinary hiccups; past it the loss is counted and reported,
//! never silent. HAProxy drops and counts log lines the same way.
//!
//! Nothing buffered is lost at shutdown: [`LogBuffer::flush`] writes
//! everything appended so far, and dropping the [`LogBuffer`] (the end of
//! `gwcore serve`, after a graceful stop on SIGTERM or SIGINT) flushes the
//! rest and waits for the writer thread.
//!
//! `gwcore serve` installs one for its `tracing` output (text or JSON, the
//! format is the subscriber's); [`LogHandle::writer`] is what a
//! `tracing_subscriber` `MakeWriter` hands out. It also [`install`]s the
//! buffer as the writer of HTTP requests' access lines: the proxy then
//! formats them itself, in the subscriber's format, some 20 000
//! instructions cheaper than a `tracing` event through the subscriber's
//! `fmt` layer (see [`AccessFormat`] and docs/access-log.md).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod line;
pub(crate) use line::Digits;

pub use line::{AccessFormat, install};
pub(crate) use line::{HttpAccess, log_http};

/// The `tracing` target of the access log's lines: lines of this target
/// are not urgent (they wait for a full buffer or the interval).
pub const ACCESS_TARGET: &str = "gwcore::access";

/// Lines dropped by every [`LogBuffer`] of the process.
static DROPPED_LINES: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped because a [`LogBuffer`] was full, by every buffer of
/// the process since it started (`gwcore_log_lines_dropped_total`).
pub fn dropped_lines() -> u64 {
    DROPPED_LINES.load(Ordering::Relaxed)
}

/// How a [`LogBuffer`] buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogBufferOptions {
    /// Most bytes waiting to be written; a line that does not fit is
    /// dropped and counted. Default 4 MiB (about 16 000 access lines).
    pub capacity: usize,
    /// The writer writes as soon as this many bytes wait. Default 64 KiB.
    pub flush_bytes: usize,
    /// The longest a line waits to be written. Default 200 ms.
    pub interval: Duration,
}

impl Default for LogBufferOptions {
    fn default() -> Self {
        LogBufferOptions {
            capacity: 4 << 20,
            flush_bytes: 64 << 10,
            interval: Duration::from_millis(200),
        }
    }
}

struct State {
    buf: Vec<u8>,
    /// An urgent line waits: write now.
    urgent: bool,
    /// The buffer is being dropped: write the rest and stop.
    closed: bool,
}

struct Out {
    sink: Box<dyn Write + Send>,
    /// The chunk being written, swapped with the buffer (no allocation
    /// per write).
    chunk: Vec<u8>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Held while a chunk is taken and written: chunks go out in order.
    out: Mutex<Out>,
    opts: LogBufferOptions,
    dropped: AtomicU64,
    /// Dropped lines not yet reported in a warning.
    unreported: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain bytes behind: keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn append(&self, line: &[u8], urgent: bool) {
        let mut st = lock(&self.state);
        let before = st.buf.len();
        if before + line.len() > self.opts.capacity {
            drop(st);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.unreported.fetch_add(1, Ordering::Relaxed);
            DROPPED_LINES.fetch_add(1, Ordering::Relaxed);
            return;
        }
        st.buf.extend_from_slice(line);
        // Wake the writer only when it has something new to do: the first
        // line (it starts the interval), the size reached, an urgent line.
        // A wake is a system call; most lines need none.
        let notify = before == 0
            || (urgent && !st.urgent)
            || (before < self.opts.flush_bytes && st.buf.len() >= self.opts.flush_bytes);
        st.urgent |= urgent;
        drop(st);
        if notify {
            self.wake.notify_one();
        }
    }

    /// Writes what the buffer holds now.
    fn write_out(&self) -> io::Result<()> {
        let mut out = lock(&self.out);
        let out = &mut *out;
        {
            let mut st = lock(&self.state);
            std::mem::swap(&mut st.buf, &mut out.chunk);
            st.urgent = false;
        }
        if out.chunk.is_empty() {
            return Ok(());
        }
        let res = out
            .sink
            .write_all(&out.chunk)
            .and_then(|()| out.sink.flush());
        out.chunk.clear();
        res
    }

    fn run(&self) {
        loop {
            let mut st = lock(&self.state);
            while st.buf.is_empty() && !st.closed {
                st = self.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            let deadline = Instant::now() + self.opts.interval;
            while !st.closed && !st.urgent && st.buf.len() < self.opts.flush_bytes {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = self
                    .wake
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let closed = st.closed;
            drop(st);
            // Nowhere to report a failing output but the output itself.
            let _ = self.write_out();
            let lost = self.unreported.swap(0, Ordering::Relaxed);
            if lost > 0 {
                // Appended to this buffer when the subscriber is ours.
                tracing::warn!(
                    lines = lost,
                    "log lines dropped: the log output could not keep up"
                );
            }
            if closed && lock(&self.state).buf.is_empty() {
                return;
            }
        }
    }
}

/// Log lines buffered in memory and written by a thread of its own (see
/// the [module](self) documentation). Dropping it writes what is left and
/// stops the thread.
pub struct LogBuffer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBuffer")
            .field("opts", &self.shared.opts)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl LogBuffer {
    /// Starts the writer thread, writing to `out` (standard error, a
    /// file...).
    pub fn start<W: Write + Send + 'static>(out: W, opts: LogBufferOptions) -> io::Result<Self> {
        let opts = LogBufferOptions {
            flush_bytes: opts.flush_bytes.clamp(1, opts.capacity.max(1)),
            ..opts
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::with_capacity(opts.flush_bytes),
                urgent: false,
                closed: false,
            }),
            wake: Condvar::new(),
            out: Mutex::new(Out {
                sink: Box::new(out),
                chunk: Vec::with_capacity(opts.flush_bytes),
            }),
            opts,
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        });
        let thread = std::thread::Builder::new()
            .name("gwcore-log".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run()
            })?;
        Ok(LogBuffer {
            shared,
            thread: Some(thread),
        })
    }

    /// A handle that appends lines, for a `MakeWriter`.
    pub fn handle(&self) -> LogHandle {
        LogHandle {
            shared: self.shared.clone(),
        }
    }

    /// Writes everything appended so far, in the calling thread.
    pub fn flush(&self) -> io::Result<()> {
        self.shared.write_out()
    }

    /// Lines this buffer dropped because it was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Bytes waiting to be written now.
    pub fn pending(&self) -> usize {
        lock(&self.shared.state).buf.len()
    }
}

impl Drop for LogBuffer {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The thread is gone (or panicked): whatever came in since is
        // written here.
        let _ = self.shared.write_out();
    }
}

/// Appends lines to a [`LogBuffer`]; cheap to clone.
#[derive(Clone)]
pub struct LogHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHandle").finish_non_exhaustive()
    }
}

impl LogHandle {
    /// A writer for one line (or a few): each `write` is appended whole or
    /// dropped whole. `urgent` lines are written out at once (with
    /// everything before them); others wait for the size or the interval.
    pub fn writer(&self, urgent: bool) -> LogWriter<'_> {
        LogWriter {
            shared: &self.shared,
            urgent,
        }
    }

    /// Appends an access line (not urgent), or drops and counts it when
    /// the buffer is full.
    pub(crate) fn append_access(&self, line: &[u8]) {
        self.shared.append(line, false);
    }

    /// Whether lines of a `tracing` target are urgent: all but the access
    /// log's ([`ACCESS_TARGET`]).
    pub fn is_urgent(target: &str) -> bool {
        target != ACCESS_TARGET
    }
}

/// Writes into a [`LogBuffer`] ([`LogHandle::writer`]); never blocks on the
/// output.
pub struct LogWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl std::fmt::Debug for LogWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("urgent", &self.urgent)
            .finish_non_exhaustive()
    }
}

impl Write for LogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.append(buf, self.urgent);
        // A dropped line counts as written: the caller must not retry.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
