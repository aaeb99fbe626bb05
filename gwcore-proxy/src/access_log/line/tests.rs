use super::*;
use std::sync::{Arc, Mutex};

/// A request with every field set; `host` and `target` as the client sent
/// them.
fn request<'a>(
    method: &'a http::Method,
    host: &'a str,
    uri: &'a http::Uri,
    client: &str,
) -> HttpAccess<'a> {
    HttpAccess {
        at: Instant::now(),
        client: client.parse().unwrap(),
        port: 80,
        method,
        host,
        uri,
        version: http::Version::HTTP_11,
        status: 403,
        micros: 1234,
        gateway: "infra/gw",
        route: "HTTPRoute shop/web",
        backend: "shop/web:8080",
        matched: "listener=infra/gw/http route=HTTPRoute shop/web rule=1 match=0",
        ext_auth: "denied",
        generation: 7,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
    }
}

const TIME: &str = "2026-12-07T17:19:39.012345Z";

/// 2026-12-07T17:19:39 UTC.
const SECS: u64 = 1_796_663_979;

fn stamp() -> Stamp {
    stamp_within(&second_text(SECS), 12_345)
}

struct FixedTime;

impl tracing_subscriber::fmt::time::FormatTime for FixedTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(TIME)
    }
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `tracing_subscriber` makes of the request's `tracing` event, the
/// way `gwcore serve` configures it for `format`.
fn through_tracing(a: &HttpAccess<'_>, format: AccessFormat) -> String {
    let sink = Sink::default();
    let writer = sink.clone();
    let make = move || writer.clone();
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
        AccessFormat::Text { ansi } => Box::new(
            tracing_subscriber::fmt()
                .with_ansi(ansi)
                .with_timer(FixedTime)
                .with_writer(make)
                .finish(),
        ),
        AccessFormat::Json => Box::new(
            tracing_subscriber::fmt()
                .json()
                .with_timer(FixedTime)
                .with_writer(make)
                .finish(),
        ),
    };
    tracing::subscriber::with_default(subscriber, || emit_event(a));
    String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
}

fn direct(a: &HttpAccess<'_>, format: AccessFormat) -> String {
    let mut out = Vec::new();
    format_line(&mut out, a, format, &stamp());
    String::from_utf8(out).unwrap()
}

const FORMATS: [AccessFormat; 3] = [
    AccessFormat::Text { ansi: false },
    AccessFormat::Text { ansi: true },
    AccessFormat::Json,
];

#[test]
fn the_direct_line_is_byte_for_byte_the_tracing_subscribers() {
    let get = http::Method::GET;
    let options = http::Method::OPTIONS;
    let custom = http::Method::from_bytes(b"PURGE").unwrap();
    let cases: [(&http::Method, &str, &str, &str); 6] = [
        (
            &get,
            "acme.example",
            "/careers/x?a=1&b=2",
            "127.0.0.1:60576",
        ),
        (&get, "", "/", "[::1]:443"),
        (&options, "h.example:8080", "*", "[fe80::1%2]:9"),
        (&custom, "shop.example", "/p%20q/\"r\"/{s}", "10.0.0.255:1"),
        // Hostile: a space and a tab forging a field, a backslash, C1
        // controls (CSI) in the path and query.
        (
            &get,
            "evil status=500\tx\\y",
            "/a/\u{9b}31m/\u{85}?q=\u{9b}2J",
            "192.0.2.7:51234",
        ),
        // An absolute-form target (a forward proxy's request).
        (&get, "", "http://example.com:81/x?y", "1.2.3.4:5"),
    ];
    for (method, host, target, client) in cases {
        let uri: http::Uri = target.parse().unwrap();
        let mut a = request(method, host, &uri, client);
        for (ext_auth, trace_id) in [("denied", "4bf92f3577b34da6a3ce929d0e0e4736"), ("", "")] {
            a.ext_auth = ext_auth;
            a.trace_id = trace_id;
            for format in FORMATS {
                assert_eq!(
                    direct(&a, format),
                    through_tracing(&a, format),
                    "{format:?} {host:?} {target:?}"
                );
            }
        }
    }
}

#[test]
fn a_request_with_every_field_has_the_documented_line() {
    // docs/access-log.md, "Format".
    let get = http::Method::GET;
    let uri: http::Uri = "/a/\u{9b}31m/\"x\"?q=1".parse().unwrap();
    let a = request(&get, "evil status=500\tx\\y", &uri, "192.0.2.7:51234");
    assert_eq!(
        direct(&a, AccessFormat::Text { ansi: false }),
        "2026-12-07T17:19:39.012345Z  INFO gwcore::access: client=192.0.2.7:51234 port=80 \
         method=GET host=evil\\x20status=500\\x09x\\x5cy uri=/a/\\u{9b}31m/\"x\"?q=1 \
         version=HTTP/1.1 status=403 micros=1234 gateway=infra/gw route=HTTPRoute shop/web \
         backend=shop/web:8080 matched=listener=infra/gw/http route=HTTPRoute shop/web rule=1 \
         match=0 ext_auth=\"denied\" generation=7 trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n"
    );
    assert_eq!(
        direct(&a, AccessFormat::Json),
        "{\"timestamp\":\"2026-12-07T17:19:39.012345Z\",\"level\":\"INFO\",\"fields\":{\
         \"client\":\"192.0.2.7:51234\",\"port\":80,\"method\":\"GET\",\
         \"host\":\"evil\\\\x20status=500\\\\x09x\\\\x5cy\",\
         \"uri\":\"/a/\\\\u{9b}31m/\\\"x\\\"?q=1\",\"version\":\"HTTP/1.1\",\"status\":403,\
         \"micros\":1234,\"gateway\":\"infra/gw\",\"route\":\"HTTPRoute shop/web\",\
         \"backend\":\"shop/web:8080\",\
         \"matched\":\"listener=infra/gw/http route=HTTPRoute shop/web rule=1 match=0\",\
         \"ext_auth\":\"denied\",\"generation\":7,\
         \"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"},\"target\":\"gwcore::access\"}\n"
    );
}

#[test]
fn escaping_keeps_a_line_one_line_of_fields() {
    let cases = [
        ("acme.example", "acme.example"),
        ("a b", "a\\x20b"),
        ("a\u{1b}[31m", "a\\x1b[31m"),
        ("\r\n\0", "\\x0d\\x0a\\x00"),
        ("del\u{7f}", "del\\x7f"),
        ("back\\slash", "back\\x5cslash"),
        ("c1 \u{80}\u{9f}", "c1\\x20\\u{80}\\u{9f}"),
        // Other non-ASCII text is kept: é is C3 A9, and U+00A0 (C2 A0) is
        // not a control.
        ("café\u{a0}", "café\u{a0}"),
    ];
    for (input, want) in cases {
        let mut out = Vec::new();
        push_escaped(&mut out, input);
        assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
    }
}

#[test]
fn json_strings_are_escaped_as_serde_json_does() {
    let all: String = (0u8..=0x7f)
        .map(char::from)
        .chain(['é', '\u{9b}'])
        .collect();
    let mut out = Vec::new();
    push_json_str(&mut out, &all);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        serde_json::to_string(&all).unwrap()
    );
}

#[test]
fn seconds_are_written_as_the_utc_date_and_time() {
    let cases = [
        (0, "1970-01-01T00:00:00."),
        (SECS, "2026-12-07T17:19:39."),
        // A leap day, the last second of a year, a century not leap.
        (951_782_400, "2000-02-29T00:00:00."),
        (1_767_225_599, "2025-12-31T23:59:59."),
        (4_107_542_400, "2100-03-01T00:00:00."),
        (253_402_300_799, "9999-12-31T23:59:59."),
        (253_402_300_800, "+10000-01-01T00:00:00."),
    ];
    for (secs, want) in cases {
        let s = second_text(secs);
        assert_eq!(std::str::from_utf8(s.as_bytes()).unwrap(), want, "{secs}");
    }
    let s = stamp_within(&second_text(0), 7);
    assert_eq!(s.as_bytes(), b"1970-01-01T00:00:00.000007Z");
    let s = stamp_within(&second_text(0), 999_999);
    assert_eq!(s.as_bytes(), b"1970-01-01T00:00:00.999999Z");
}

/// Microseconds since the Unix epoch of a stamp.
fn parse(stamp: &Stamp) -> i128 {
    let s = std::str::from_utf8(stamp.as_bytes()).unwrap();
    let (date, time) = s.split_once('T').unwrap();
    let d: Vec<i128> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<f64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|x| x.parse().unwrap())
        .collect();
    // Days from the civil date (the inverse of civil_from_days).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let micros = (t[2] * 1e6).round() as i128;
    ((days * 24 + t[0] as i128) * 60 + t[1] as i128) * 60_000_000 + micros
}

#[test]
fn a_stamp_is_the_wall_time_of_its_instant_read_once_a_second() {
    let mut clock = Clock::default();
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i128;
    let stamped = parse(&clock.stamp(now));
    assert!(
        (stamped - wall).abs() < 50_000,
        "{stamped} vs the wall clock's {wall}"
    );
    // The second the clock read: its first microsecond is stamped `.000000`.
    let start = clock.second.as_ref().unwrap().0;
    let second = parse(&clock.stamp(start));
    assert_eq!(second % 1_000_000, 0);
    // Within the cached second, stamps are as far apart as their instants
    // to the microsecond; past it (a new reading, which may add a few
    // microseconds of drift) too.
    let cases = [
        (1, 0),
        (250_000, 0),
        (999_999, 0),
        (1_000_000, 2_000),
        (1_500_000, 2_000),
        (3_000_001, 2_000),
    ];
    for (offset_us, tolerance) in cases {
        let at = start + Duration::from_micros(offset_us);
        let got = parse(&clock.stamp(at)) - second;
        assert!(
            (got - i128::from(offset_us)).abs() <= tolerance,
            "+{offset_us} µs stamped +{got} µs"
        );
        // The cached second holds `at`.
        let cached = clock.second.as_ref().unwrap().0;
        assert!(at >= cached && at - cached < Duration::from_secs(1));
    }
    // An instant before the cached second is stamped by a new reading.
    let got = parse(&clock.stamp(start)) - second;
    assert!(got.abs() <= 2_000, "{got}");
}

#[test]
fn client_addresses_are_written_as_their_display() {
    for addr in [
        "0.0.0.0:0",
        "255.255.255.255:65535",
        "9.99.100.10:10000",
        "1.20.255.7:999",
        "[::1]:80",
        "[::ffff:1.2.3.4]:8080",
        "[2001:db8::1%7]:443",
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut out = Vec::new();
        push_addr(&mut out, addr);
        assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
    }
}
