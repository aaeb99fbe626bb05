use super::*;
use std::sync::mpsc;

/// An output that keeps what it is given, and can be held up.
#[derive(Clone, Default)]
struct Sink {
    bytes: Arc<Mutex<Vec<u8>>>,
    writes: Arc<AtomicU64>,
    /// While set, each write waits for a message (or the sender's end).
    gate: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8(lock(&self.bytes).clone()).unwrap()
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(rx) = lock(&self.gate).as_ref() {
            let _ = rx.recv();
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        lock(&self.bytes).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn line(w: &LogHandle, urgent: bool, text: &str) {
    w.writer(urgent).write_all(text.as_bytes()).unwrap();
}

/// Options under which nothing is written until asked: an hour's interval
/// and a size never reached.
fn held() -> LogBufferOptions {
    LogBufferOptions {
        capacity: 1 << 20,
        flush_bytes: 1 << 20,
        interval: Duration::from_secs(3600),
    }
}

#[test]
fn access_lines_wait_and_are_all_written_in_order_when_the_buffer_is_dropped() {
    let sink = Sink::default();
    let logs = LogBuffer::start(sink.clone(), held()).unwrap();
    let h = logs.handle();
    let expected: String = (0..1000).map(|i| format!("request {i}\n")).collect();
    for i in 0..1000 {
        line(&h, false, &format!("request {i}\n"));
    }
    std::thread::sleep(Duration::from_millis(50));
    // Buffered: not one write per line, not yet any.
    assert_eq!(sink.text(), "");
    assert_eq!(logs.pending(), expected.len());
    drop(logs);
    assert_eq!(sink.text(), expected);
    assert_eq!(sink.writes.load(Ordering::Relaxed), 1);
    // A line appended through a handle that outlived the buffer is not
    // written anywhere, but nothing blocks or panics.
    line(&h, true, "late\n");
}

#[test]
fn flush_writes_what_was_appended_so_far() {
    let sink = Sink::default();
    let logs = LogBuffer::start(sink.clone(), held()).unwrap();
    line(&logs.handle(), false, "a\n");
    line(&logs.handle(), false, "b\n");
    logs.flush().unwrap();
    assert_eq!(sink.text(), "a\nb\n");
    assert_eq!(logs.pending(), 0);
}

#[test]
fn an_urgent_line_is_written_at_once_after_the_lines_before_it() {
    let sink = Sink::default();
    let logs = LogBuffer::start(sink.clone(), held()).unwrap();
    let h = logs.handle();
    line(&h, false, "access 1\n");
    line(&h, false, "access 2\n");
    line(&h, true, "WARN something\n");
    let start = Instant::now();
    while sink.text().is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sink.text(), "access 1\naccess 2\nWARN something\n");
    line(&h, false, "access 3\n");
    drop(logs);
    assert_eq!(
        sink.text(),
        "access 1\naccess 2\nWARN something\naccess 3\n"
    );
}

#[test]
fn lines_are_written_within_the_interval_and_on_size() {
    let sink = Sink::default();
    let logs = LogBuffer::start(
        sink.clone(),
        LogBufferOptions {
            capacity: 1 << 20,
            flush_bytes: 1 << 20,
            interval: Duration::from_millis(20),
        },
    )
    .unwrap();
    line(&logs.handle(), false, "one\n");
    let start = Instant::now();
    while sink.text().is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sink.text(), "one\n");

    let sink = Sink::default();
    let logs = LogBuffer::start(
        sink.clone(),
        LogBufferOptions {
            capacity: 1 << 20,
            flush_bytes: 100,
            interval: Duration::from_secs(3600),
        },
    )
    .unwrap();
    let h = logs.handle();
    for _ in 0..9 {
        line(&h, false, "0123456789\n");
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sink.text(), "", "99 bytes: below the size");
    line(&h, false, "0123456789\n");
    let start = Instant::now();
    while sink.text().is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sink.text(), "0123456789\n".repeat(10));
}

#[test]
fn a_stalled_output_drops_and_counts_lines_instead_of_blocking_or_growing() {
    let sink = Sink::default();
    let (release, gate) = mpsc::channel();
    *lock(&sink.gate) = Some(gate);
    let logs = LogBuffer::start(
        sink.clone(),
        LogBufferOptions {
            capacity: 1000,
            flush_bytes: 1,
            interval: Duration::from_secs(3600),
        },
    )
    .unwrap();
    let h = logs.handle();
    // The first line is taken by the writer, which then waits at the gate.
    line(&h, false, "first 0123456789\n");
    let start = Instant::now();
    while logs.pending() > 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(logs.pending(), 0);
    let before = dropped_lines();
    // 10 000 lines of 10 bytes while the output is stuck: they return at
    // once, the buffer holds at most `capacity` bytes, the rest is counted.
    let t = Instant::now();
    for i in 0..10_000 {
        line(&h, false, &format!("line {i:04}\n"));
        assert!(logs.pending() <= 1000);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "appending blocked");
    assert_eq!(logs.pending(), 1000);
    assert_eq!(logs.dropped(), 10_000 - 100);
    assert!(dropped_lines() - before >= 10_000 - 100);
    // Unstuck: what was kept is written, in order, at the drop.
    drop(release);
    drop(logs);
    let kept: String = (0..100).map(|i| format!("line {i:04}\n")).collect();
    assert_eq!(sink.text(), format!("first 0123456789\n{kept}"));
}
