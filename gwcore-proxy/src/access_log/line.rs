//! An HTTP request's access line, formatted by the proxy itself.
//!
//! `tracing_subscriber`'s `fmt` layer formats an event through `dyn
//! Debug` fields, `core::fmt` numbers, a clock read per event and (in a
//! terminal) ANSI styling: about 20 000 instructions for an access line,
//! more than the rest of a proxied request. [`install`] makes requests
//! write their line directly into a [`LogHandle`]'s buffer instead, in the
//! same bytes as that layer's `Full` text format (with or without ANSI)
//! or its JSON format: numbers by hand, one pre-sized buffer per thread,
//! and the timestamp's date and time of day formatted once per second per
//! thread, placed by the request's own end [`Instant`] (no clock read per
//! line).
//!
//! Whether a line is written is still the `tracing` subscriber's choice:
//! the request asks `tracing::enabled!` for [`ACCESS_TARGET`] at `INFO`
//! (`RUST_LOG`), as before. Without [`install`] (a program using
//! `gwcore_proxy` with its own subscriber) the line is a `tracing` event
//! as before.
//!
//! The `host` and `uri` fields are the client's words: their spaces,
//! control characters (C0, DEL, C1) and backslashes are written as `\xNN`
//! (`\u{NN}` for C1), so a line is always one line and a client cannot
//! forge another field in it. Nothing else in a line comes from a client.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use super::{ACCESS_TARGET, LogHandle};

/// How [`install`]ed access lines are written: as `gwcore serve
/// --log-format` writes every other line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessFormat {
    /// `tracing_subscriber`'s default (`Full`) text format, with its ANSI
    /// styles when `ansi` (a terminal).
    Text {
        /// Color and style the line as `with_ansi(true)` does.
        ansi: bool,
    },
    /// `tracing_subscriber`'s JSON format (`fmt().json()`).
    Json,
}

struct Direct {
    handle: LogHandle,
    format: AccessFormat,
}

static DIRECT: OnceLock<Direct> = OnceLock::new();

/// Makes every HTTP request's access line of this process go straight
/// into `handle`'s buffer in `format`, not through the `tracing`
/// subscriber's formatting (which is left to every other line, the
/// access log's TCP, UDP and PROXY protocol lines included). The
/// subscriber still decides whether lines are written: [`ACCESS_TARGET`]
/// enabled at `INFO`.
///
/// Once per process, like a global `tracing` subscriber: `false` (and no
/// change) when a writer was installed already.
pub fn install(handle: LogHandle, format: AccessFormat) -> bool {
    DIRECT.set(Direct { handle, format }).is_ok()
}

/// An HTTP request's access-log fields, in the line's order.
pub(crate) struct HttpAccess<'a> {
    /// When the answer was logged: the request's start plus its time.
    pub(crate) at: Instant,
    pub(crate) client: SocketAddr,
    pub(crate) port: u16,
    pub(crate) method: &'a http::Method,
    pub(crate) host: &'a str,
    pub(crate) uri: &'a http::Uri,
    pub(crate) version: http::Version,
    pub(crate) status: u16,
    pub(crate) micros: u64,
    pub(crate) gateway: &'a str,
    pub(crate) route: &'a str,
    pub(crate) backend: &'a str,
    pub(crate) matched: &'a str,
    pub(crate) ext_auth: &'a str,
    pub(crate) generation: u64,
    pub(crate) trace_id: &'a str,
}

/// Per worker thread: the line being built and the second being stamped.
struct Local {
    line: Vec<u8>,
    clock: Clock,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local {
        line: Vec::with_capacity(1024),
        clock: Clock::default(),
    });
}

/// Writes `a`'s access line: into the [`install`]ed buffer, else as a
/// `tracing` event.
pub(crate) fn log_http(a: &HttpAccess<'_>) {
    let Some(direct) = DIRECT.get() else {
        emit_event(a);
        return;
    };
    LOCAL.with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            // Re-entered (a panic hook logging?): not worth a line.
            return;
        };
        let Local { line, clock } = &mut *local;
        line.clear();
        let stamp = clock.stamp(a.at);
        format_line(line, a, direct.format, &stamp);
        direct.handle.append_access(line);
    });
}

/// The `tracing` event of [`log_http`] without an installed writer.
fn emit_event(a: &HttpAccess<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        client = %a.client,
        port = a.port,
        method = %a.method,
        host = %Escaped(a.host),
        uri = %EscapedUri(a.uri),
        version = ?a.version,
        status = a.status,
        micros = a.micros,
        gateway = %a.gateway,
        route = %a.route,
        backend = %a.backend,
        matched = %a.matched,
        ext_auth = a.ext_auth,
        generation = a.generation,
        trace_id = %a.trace_id,
    );
}

/// A timestamp as `tracing_subscriber`'s `SystemTime` timer writes it:
/// `2026-12-07T17:19:39.123456Z`.
pub(crate) struct Stamp {
    bytes: [u8; 40],
    len: usize,
}

impl Stamp {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The wall clock's second an [`Instant`] falls in, formatted once.
#[derive(Default)]
struct Clock {
    /// The instant the cached second began, and its text up to the dot
    /// (`2026-12-07T17:19:39.`).
    second: Option<(Instant, Stamp)>,
}

impl Clock {
    fn stamp(&mut self, at: Instant) -> Stamp {
        if let Some((start, second)) = &self.second
            && let Some(d) = at.checked_duration_since(*start)
            && d < Duration::from_secs(1)
        {
            return stamp_within(second, d.subsec_micros());
        }
        // A new second (or the first line): read the wall clock once and
        // place `at` in it.
        let wall_now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let now = Instant::now();
        // `at` is the end of a request, just before now (or, in tests,
        // anywhere).
        let wall = match now.checked_duration_since(at) {
            Some(ago) => wall_now.saturating_sub(ago),
            None => wall_now + at.saturating_duration_since(now),
        };
        let sub = Duration::from_nanos(u64::from(wall.subsec_nanos()));
        let start = at.checked_sub(sub).unwrap_or(at);
        let second = second_text(wall.as_secs());
        let stamp = stamp_within(&second, at.saturating_duration_since(start).subsec_micros());
        self.second = Some((start, second));
        stamp
    }
}

/// `second` (`...:39.`) with `micros` as six digits and `Z`.
fn stamp_within(second: &Stamp, micros: u32) -> Stamp {
    let mut s = Stamp {
        bytes: second.bytes,
        len: second.len,
    };
    let mut m = micros;
    for i in (0..6).rev() {
        s.bytes[s.len + i] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    s.bytes[s.len + 6] = b'Z';
    s.len += 7;
    s
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` since the Unix epoch (UTC).
pub(crate) fn second_text(secs: u64) -> Stamp {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut s = Stamp {
        bytes: [0; 40],
        len: 0,
    };
    let mut put = |b: &[u8]| {
        s.bytes[s.len..s.len + b.len()].copy_from_slice(b);
        s.len += b.len();
    };
    if year > 9999 {
        put(b"+");
        put(Digits::new(year).as_bytes());
    } else {
        put(&two(year / 100));
        put(&two(year % 100));
    }
    put(b"-");
    put(&two(month));
    put(b"-");
    put(&two(day));
    put(b"T");
    put(&two(rem / 3600));
    put(b":");
    put(&two(rem / 60 % 60));
    put(b":");
    put(&two(rem % 60));
    put(b".");
    s
}

fn two(n: u64) -> [u8; 2] {
    [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// (year, month, day) of a day count since 1970-01-01, proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`, for days >= 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A number's decimal digits (the access line's numbers and the HTTP/1
/// server's `content-length`).
pub(crate) struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    pub(crate) fn new(mut n: u64) -> Digits {
        let mut d = Digits {
            buf: [0; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Appends `a`'s line in `format`, stamped `stamp`.
pub(crate) fn format_line(
    out: &mut Vec<u8>,
    a: &HttpAccess<'_>,
    format: AccessFormat,
    stamp: &Stamp,
) {
    match format {
        AccessFormat::Text { ansi } => Text { out, ansi }.line(a, stamp),
        AccessFormat::Json => json_line(out, a, stamp),
    }
}

// `nu_ansi_term`'s sequences, as `tracing_subscriber` paints with them.
const DIM: &[u8] = b"\x1b[2m";
const RESET: &[u8] = b"\x1b[0m";

struct Text<'o> {
    out: &'o mut Vec<u8>,
    ansi: bool,
}

impl Text<'_> {
    fn line(mut self, a: &HttpAccess<'_>, stamp: &Stamp) {
        let out = &mut *self.out;
        if self.ansi {
            out.extend_from_slice(DIM);
            out.extend_from_slice(stamp.as_bytes());
            out.extend_from_slice(RESET);
            // The level and ACCESS_TARGET, styled.
            out.extend_from_slice(
                b" \x1b[32m INFO\x1b[0m \x1b[2mgwcore::access\x1b[0m\x1b[2m:\x1b[0m ",
            );
        } else {
            out.extend_from_slice(stamp.as_bytes());
            // The level and ACCESS_TARGET.
            out.extend_from_slice(b"  INFO gwcore::access: ");
        }
        self.name(b"client=", b"\x1b[3mclient\x1b[0m\x1b[2m=\x1b[0m");
        push_addr(self.out, a.client);
        self.name(b" port=", b" \x1b[3mport\x1b[0m\x1b[2m=\x1b[0m");
        self.num(u64::from(a.port));
        self.name(b" method=", b" \x1b[3mmethod\x1b[0m\x1b[2m=\x1b[0m");
        self.raw(a.method.as_str());
        self.name(b" host=", b" \x1b[3mhost\x1b[0m\x1b[2m=\x1b[0m");
        push_escaped(self.out, a.host);
        self.name(b" uri=", b" \x1b[3muri\x1b[0m\x1b[2m=\x1b[0m");
        push_uri(self.out, a.uri, push_escaped);
        self.name(b" version=", b" \x1b[3mversion\x1b[0m\x1b[2m=\x1b[0m");
        push_version(self.out, a.version);
        self.name(b" status=", b" \x1b[3mstatus\x1b[0m\x1b[2m=\x1b[0m");
        self.num(u64::from(a.status));
        self.name(b" micros=", b" \x1b[3mmicros\x1b[0m\x1b[2m=\x1b[0m");
        self.num(a.micros);
        self.name(b" gateway=", b" \x1b[3mgateway\x1b[0m\x1b[2m=\x1b[0m");
        self.raw(a.gateway);
        self.name(b" route=", b" \x1b[3mroute\x1b[0m\x1b[2m=\x1b[0m");
        self.raw(a.route);
        self.name(b" backend=", b" \x1b[3mbackend\x1b[0m\x1b[2m=\x1b[0m");
        self.raw(a.backend);
        self.name(b" matched=", b" \x1b[3mmatched\x1b[0m\x1b[2m=\x1b[0m");
        self.raw(a.matched);
        self.name(b" ext_auth=", b" \x1b[3mext_auth\x1b[0m\x1b[2m=\x1b[0m");
        push_debug_str(self.out, a.ext_auth);
        self.name(b" generation=", b" \x1b[3mgeneration\x1b[0m\x1b[2m=\x1b[0m");
        self.num(a.generation);
        self.name(b" trace_id=", b" \x1b[3mtrace_id\x1b[0m\x1b[2m=\x1b[0m");
        self.raw(a.trace_id);
        self.out.push(b'\n');
    }

    /// A field's ` name=` (the first without the space): `plain`, or
    /// `styled` as `tracing_subscriber` styles field names (one copy
    /// each, the bytes spelled out).
    fn name(&mut self, plain: &[u8], styled: &[u8]) {
        self.out
            .extend_from_slice(if self.ansi { styled } else { plain });
    }

    fn num(&mut self, n: u64) {
        self.out.extend_from_slice(Digits::new(n).as_bytes());
    }

    fn raw(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }
}

fn json_line(out: &mut Vec<u8>, a: &HttpAccess<'_>, stamp: &Stamp) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"client\":\"");
    push_addr(out, a.client);
    out.extend_from_slice(b"\",\"port\":");
    out.extend_from_slice(Digits::new(u64::from(a.port)).as_bytes());
    out.extend_from_slice(b",\"method\":");
    push_json_str(out, a.method.as_str());
    out.extend_from_slice(b",\"host\":");
    push_json_escaped(out, a.host);
    out.extend_from_slice(b",\"uri\":\"");
    push_uri(out, a.uri, |out, s| {
        if needs_escape(s) {
            let mut esc = Vec::with_capacity(s.len() + 16);
            push_escaped(&mut esc, s);
            push_json_bytes(out, &esc);
        } else {
            push_json_bytes(out, s.as_bytes());
        }
    });
    out.extend_from_slice(b"\",\"version\":\"");
    push_version(out, a.version);
    out.extend_from_slice(b"\",\"status\":");
    out.extend_from_slice(Digits::new(u64::from(a.status)).as_bytes());
    out.extend_from_slice(b",\"micros\":");
    out.extend_from_slice(Digits::new(a.micros).as_bytes());
    out.extend_from_slice(b",\"gateway\":");
    push_json_str(out, a.gateway);
    out.extend_from_slice(b",\"route\":");
    push_json_str(out, a.route);
    out.extend_from_slice(b",\"backend\":");
    push_json_str(out, a.backend);
    out.extend_from_slice(b",\"matched\":");
    push_json_str(out, a.matched);
    out.extend_from_slice(b",\"ext_auth\":");
    push_json_str(out, a.ext_auth);
    out.extend_from_slice(b",\"generation\":");
    out.extend_from_slice(Digits::new(a.generation).as_bytes());
    out.extend_from_slice(b",\"trace_id\":");
    push_json_str(out, a.trace_id);
    out.extend_from_slice(b"},\"target\":");
    push_json_str(out, ACCESS_TARGET);
    out.extend_from_slice(b"}\n");
}

/// A socket address as its `Display` writes it; IPv4 by hand, into one
/// stack buffer (`255.255.255.255:65535` and a separator are 22 bytes).
fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            let mut buf = [0u8; 22];
            let mut len = 0;
            let mut put = |n: u16, sep: u8| {
                if n >= 10_000 {
                    buf[len] = b'0' + (n / 10_000) as u8;
                    len += 1;
                }
                if n >= 1000 {
                    buf[len] = b'0' + (n / 1000 % 10) as u8;
                    len += 1;
                }
                if n >= 100 {
                    buf[len] = b'0' + (n / 100 % 10) as u8;
                    len += 1;
                }
                if n >= 10 {
                    buf[len] = b'0' + (n / 10 % 10) as u8;
                    len += 1;
                }
                buf[len] = b'0' + (n % 10) as u8;
                buf[len + 1] = sep;
                len += 2;
            };
            let [a, b, c, d] = v4.ip().octets();
            put(u16::from(a), b'.');
            put(u16::from(b), b'.');
            put(u16::from(c), b'.');
            put(u16::from(d), b':');
            put(v4.port(), 0);
            // Without the last separator.
            out.extend_from_slice(&buf[..len - 1]);
        }
        SocketAddr::V6(_) => {
            use std::io::Write;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{addr}");
        }
    }
}

/// The request target as `http::Uri`'s `Display` writes it, its parts
/// written by `push`.
fn push_uri(out: &mut Vec<u8>, uri: &http::Uri, push: impl Fn(&mut Vec<u8>, &str)) {
    if let Some(scheme) = uri.scheme() {
        push(out, scheme.as_str());
        out.extend_from_slice(b"://");
    }
    if let Some(authority) = uri.authority() {
        push(out, authority.as_str());
    }
    push(out, uri.path());
    if let Some(query) = uri.query() {
        out.push(b'?');
        push(out, query);
    }
}

/// The version as its `Debug` writes it.
fn push_version(out: &mut Vec<u8>, v: http::Version) {
    let s: &[u8] = match v {
        http::Version::HTTP_09 => b"HTTP/0.9",
        http::Version::HTTP_10 => b"HTTP/1.0",
        http::Version::HTTP_11 => b"HTTP/1.1",
        http::Version::HTTP_2 => b"HTTP/2.0",
        http::Version::HTTP_3 => b"HTTP/3.0",
        other => {
            use std::io::Write;
            let _ = write!(out, "{other:?}");
            return;
        }
    };
    out.extend_from_slice(s);
}

/// A `&str` field as `tracing_subscriber` writes it in text: its `Debug`,
/// quoted.
fn push_debug_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (b.is_ascii_graphic() && b != b'"' && b != b'\\') || b == b' ')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        use std::io::Write;
        let _ = write!(out, "{s:?}");
    }
}

/// Whether [`push_escaped`] changes `s`.
fn needs_escape(s: &str) -> bool {
    s.bytes()
        .any(|b| b <= b' ' || b == b'\\' || b == 0x7f || b == 0xc2)
}

/// `s` with spaces, controls and backslashes escaped (module docs).
pub(crate) fn push_escaped(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0..=b' ' | b'\\' | 0x7f => {
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
            // U+0080..=U+009F, the C1 controls, are C2 80..=C2 9F.
            0xc2 if matches!(bytes.get(i + 1), Some(0x80..=0x9f)) => {
                let c = bytes[i + 1];
                out.extend_from_slice(b"\\u{");
                out.extend_from_slice(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
                out.push(b'}');
                i += 1;
            }
            _ => out.push(b),
        }
        i += 1;
    }
}

/// `s`, escaped as [`push_escaped`] does, as a JSON string.
fn push_json_escaped(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s) {
        let mut esc = Vec::with_capacity(s.len() + 16);
        push_escaped(&mut esc, s);
        out.push(b'"');
        push_json_bytes(out, &esc);
        out.push(b'"');
    } else {
        push_json_str(out, s);
    }
}

/// `s` as a JSON string, as `serde_json` writes it.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_json_bytes(out, s.as_bytes());
    out.push(b'"');
}

/// The inside of a JSON string, escaped as `serde_json` does: `"`, `\`
/// and the C0 controls (short forms where JSON has them).
fn push_json_bytes(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut from = 0;
    for (i, &b) in s.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[from..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        from = i + 1;
    }
    out.extend_from_slice(&s[from..]);
}

/// [`push_escaped`] as a `Display`, for the `tracing` event.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !needs_escape(self.0) {
            return f.write_str(self.0);
        }
        let mut out = Vec::with_capacity(self.0.len() + 16);
        push_escaped(&mut out, self.0);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// The request target, escaped, as a `Display`.
struct EscapedUri<'a>(&'a http::Uri);

impl std::fmt::Display for EscapedUri<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::with_capacity(64);
        push_uri(&mut out, self.0, push_escaped);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
mod tests;
