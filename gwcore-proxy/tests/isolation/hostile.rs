//! A deterministic generator of hostile HTTP/1 requests.
//!
//! Each request is assembled from parts (method, request target, version,
//! Host lines, the `x-role` header, framing, junk headers), each part drawn
//! from a list of spellings that gateways and backends are known to read
//! differently. The generator also records how an RFC 9112 recipient must
//! read the request: its interpretation when it is unambiguous, and whether
//! the RFC requires a 400 (or a close).

use std::fmt::Write as _;

/// How an RFC 9112 server must read a request, when it can.
#[derive(Debug, Clone)]
pub(crate) struct Interp {
    /// The method.
    pub(crate) method: String,
    /// The host the request is for: the authority of an absolute-form
    /// target, else the Host header (RFC 9112 §3.2.2).
    pub(crate) host: String,
    /// Path and query as sent (origin-form).
    pub(crate) path_and_query: String,
    /// The `x-role` field values, trimmed.
    pub(crate) roles: Vec<String>,
}

/// One generated request.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    /// The bytes written to the socket.
    pub(crate) bytes: Vec<u8>,
    /// Labels of the hostile shapes it contains (for the report).
    pub(crate) shapes: Vec<&'static str>,
    /// The unambiguous reading, `None` when the request is malformed or
    /// ambiguous (then only the backend-side checks apply).
    pub(crate) interp: Option<Interp>,
    /// Why RFC 9112 requires the server to reject it (400, 4xx, or a
    /// close), if it does.
    pub(crate) must_reject: Option<&'static str>,
    /// Whether more than one request is written (pipelined or smuggled).
    pub(crate) multi: bool,
}

/// Path beginnings: route prefixes and their spellings.
const STARTS: &[&str] = &[
    "/careers",
    "/product",
    "/hr",
    "/admin",
    "/",
    "/Careers",
    "/CAREERS",
    "/HR",
    "/Hr",
    "/ADMIN",
    "/Admin",
    "/careers/jobs",
    "/careers/",
    "/product/x",
    "/admin/panel",
    "/admin/",
    "//careers",
    "//hr",
    "/./careers",
    "/%63areers",
    "/%68r",
    "/%48R",
    "/%2568r",
    "/%61dmin",
    "/careers%2f",
    "/hr%2f",
    "/careersx",
    "/adminx",
    "/hr.",
    "/hr..",
    "/careers.json",
    "",
];

/// Pieces appended to a start: dot segments and their encodings, encoded
/// and raw slashes and backslashes, `;params`, `?` and `#` tricks.
const TAILS: &[&str] = &[
    "/../hr",
    "/../admin",
    "/../careers",
    "/..",
    "/.",
    "/./",
    "/../",
    "/%2e%2e/hr",
    "/%2E%2E/hr",
    "/%2E%2e/hr",
    "/%2e./hr",
    "/.%2E/admin",
    "/%2e%2e/admin",
    "/%2e/",
    "/%252e%252e/hr",
    "/%252E%252E/admin",
    "/.%252e/hr",
    "/..;/hr",
    "/..;x=1/hr",
    "/..;/admin",
    ";jsessionid=abc",
    ";/../hr",
    ";",
    "/..%2fhr",
    "/..%2Fhr",
    "%2f..%2fhr",
    "%2F..%2Fadmin",
    "/..%5chr",
    "%5c..%5chr",
    "/..%255chr",
    "/..\\hr",
    "\\..\\hr",
    "\\",
    "//",
    "///hr",
    "/%2f/hr",
    "/%252f..%252fhr",
    "/%c0%ae%c0%ae/hr",
    "/%e0%80%ae%e0%80%ae/hr",
    "/%uff0e%uff0e/hr",
    "/..%00/hr",
    "/%00",
    "/%0a",
    "/x",
    "/jobs",
    "/HR",
    "/hr",
    "/admin",
    "?/../hr",
    "?x=/hr",
    "?x=1&y=%2e%2e",
    "#/../hr",
    "#",
    "%3f/../hr",
    "%3F/../admin",
    "%23/../hr",
    "/%2e%2e%2fhr",
    "/.../hr",
    "/..../hr",
    "/ ..",
    "/%20",
    "/%09/hr",
    "/\t",
    "/\u{e9}",
    "/%ZZ",
    "/%",
    "/%2",
    "/careers",
    "/%2e%2e",
    "/.%2e",
];

/// Host values: case, ports, trailing dots, IP literals, look-alikes.
/// The bool tells whether the value is a valid `Host` (RFC 9110 §7.2:
/// `uri-host [ ":" port ]`).
const HOSTS: &[(&str, bool)] = &[
    ("acme.example", true),
    ("admin.acme.example", true),
    ("ADMIN.Acme.Example", true),
    ("admin.acme.example.", true),
    ("admin.acme.example:80", true),
    ("admin.acme.example:8080", true),
    ("admin.acme.example:", true),
    ("admin.acme.example.:80", true),
    ("admin.acme.example..", true),
    ("127.0.0.1", true),
    ("127.0.0.1:80", true),
    ("[::1]", true),
    ("[::1]:80", true),
    ("evil.example", true),
    ("admin.acme.example.evil.example", true),
    ("xadmin.acme.example", true),
    ("admin%2eacme.example", true),
    ("", true),
    ("admin.acme.example:abc", false),
    ("admin.acme.example, evil.example", false),
    ("adm in.acme.example", false),
    ("admin.acme.example@evil.example", false),
    ("evil.example@admin.acme.example", false),
    ("evil.example/admin.acme.example", false),
    ("[::1", false),
];

/// `x-role` header lines: (lines, trimmed values if well-formed, reject
/// reason).
struct Role {
    lines: &'static [&'static str],
    values: &'static [&'static str],
    reject: Option<&'static str>,
    shape: &'static str,
}

const ROLES: &[Role] = &[
    Role {
        lines: &[],
        values: &[],
        reject: None,
        shape: "role:none",
    },
    Role {
        lines: &["x-role: admin"],
        values: &["admin"],
        reject: None,
        shape: "role:admin",
    },
    Role {
        lines: &["X-Role: admin"],
        values: &["admin"],
        reject: None,
        shape: "role:admin",
    },
    Role {
        lines: &["X-ROLE:admin"],
        values: &["admin"],
        reject: None,
        shape: "role:admin",
    },
    Role {
        lines: &["x-role: \t admin \t "],
        values: &["admin"],
        reject: None,
        shape: "role:ows",
    },
    Role {
        lines: &["x-role: Admin"],
        values: &["Admin"],
        reject: None,
        shape: "role:case",
    },
    Role {
        lines: &["x-role: admin2"],
        values: &["admin2"],
        reject: None,
        shape: "role:other",
    },
    Role {
        lines: &["x-role: admin, admin"],
        values: &["admin, admin"],
        reject: None,
        shape: "role:list",
    },
    Role {
        lines: &["x-role: admin", "x-role: user"],
        values: &["admin", "user"],
        reject: None,
        shape: "role:repeated",
    },
    Role {
        lines: &["x-role: user", "X-Role: admin"],
        values: &["user", "admin"],
        reject: None,
        shape: "role:repeated",
    },
    Role {
        lines: &["x_role: admin"],
        values: &[],
        reject: None,
        shape: "role:underscore",
    },
    Role {
        lines: &["x-role : admin"],
        values: &[],
        reject: Some("whitespace before a field colon (RFC 9112 §5.1)"),
        shape: "role:space-before-colon",
    },
    Role {
        lines: &["x-role: admin\0"],
        values: &[],
        reject: Some("NUL in a field value (RFC 9110 §5.5)"),
        shape: "role:nul",
    },
    Role {
        lines: &["x-role: adm\rin"],
        values: &[],
        reject: Some("bare CR in a field value (RFC 9110 §5.5)"),
        shape: "role:bare-cr",
    },
    Role {
        lines: &["x-role: ad\x7fmin"],
        values: &[],
        reject: Some("DEL in a field value (RFC 9110 §5.5)"),
        shape: "role:del",
    },
    Role {
        lines: &["x-role:", " admin"],
        values: &[],
        reject: None,
        shape: "role:obs-fold",
    },
    Role {
        lines: &["x-role: user", " admin"],
        values: &[],
        reject: None,
        shape: "role:obs-fold",
    },
];

/// Message framing and smuggling shapes: (header lines, body, reject
/// reason, label, whether another request follows on the connection).
fn framing(
    rng: &mut fastrand::Rng,
) -> (
    Vec<String>,
    Vec<u8>,
    Option<&'static str>,
    &'static str,
    bool,
) {
    let smuggled = |path: &str| -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: admin.acme.example\r\nx-role: admin\r\nConnection: close\r\n\r\n"
        )
    };
    let target = ["/hr", "/admin", "/careers/../hr", "/product"][rng.usize(..4)];
    match rng.u32(..22) {
        0..=7 => (vec![], vec![], None, "frame:none", false),
        8 => (
            vec!["Content-Length: 5".into()],
            b"hello".to_vec(),
            None,
            "frame:cl",
            false,
        ),
        9 => (
            vec!["Content-Length: 0".into()],
            vec![],
            None,
            "frame:cl0",
            false,
        ),
        10 => (
            vec!["Content-Length: 5".into(), "Content-Length: 5".into()],
            b"hello".to_vec(),
            None,
            "frame:cl-twice-same",
            false,
        ),
        11 => {
            let s = smuggled(target);
            (
                vec![
                    "Content-Length: 5".into(),
                    format!("Content-Length: {}", 5 + s.len()),
                ],
                [b"hello".as_slice(), s.as_bytes()].concat(),
                Some("conflicting Content-Length (RFC 9112 §6.3)"),
                "frame:cl-conflict",
                true,
            )
        }
        12 => {
            let bad = ["+5", "5a", "-1", "0x5", "5 5", "5,6", ""][rng.usize(..7)];
            (
                vec![format!("Content-Length: {bad}")],
                b"hello".to_vec(),
                Some("invalid Content-Length (RFC 9112 §6.3)"),
                "frame:cl-invalid",
                false,
            )
        }
        13 => {
            // TE + CL: the CL covers only part of the chunked body, the
            // rest is a request for a backend that reads by CL.
            let s = smuggled(target);
            (
                vec![
                    "Content-Length: 4".into(),
                    "Transfer-Encoding: chunked".into(),
                ],
                format!("0\r\n\r\n{s}").into_bytes(),
                None,
                "frame:te-cl",
                true,
            )
        }
        14 => {
            let s = smuggled(target);
            (
                vec![
                    "Transfer-Encoding: chunked".into(),
                    format!("Content-Length: {}", 5 + s.len()),
                ],
                format!("0\r\n\r\n{s}").into_bytes(),
                None,
                "frame:te-cl",
                true,
            )
        }
        15 => {
            let te = [
                "xchunked",
                "chunked, identity",
                "chunked;x=1",
                "gzip",
                "chunk",
            ][rng.usize(..5)];
            (
                vec![format!("Transfer-Encoding: {te}")],
                b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
                Some("a Transfer-Encoding whose final coding is not chunked (RFC 9112 §6.3)"),
                "frame:te-not-chunked",
                false,
            )
        }
        16 => (
            vec!["Transfer-Encoding : chunked".into()],
            b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
            Some("whitespace before a field colon (RFC 9112 §5.1)"),
            "frame:te-space-colon",
            false,
        ),
        17 => {
            let s = smuggled(target);
            (
                vec![
                    "Transfer-Encoding:".into(),
                    " chunked".into(),
                    format!("Content-Length: {}", s.len()),
                ],
                s.into_bytes(),
                None,
                "frame:te-obs-fold",
                true,
            )
        }
        18 => (
            vec![
                "Transfer-Encoding: chunked".into(),
                "Transfer-Encoding: chunked".into(),
            ],
            b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
            // A sender MUST NOT apply chunked twice (RFC 9112 §6.1); a
            // recipient may decode once, as hyper does, and re-frame.
            None,
            "frame:te-twice",
            false,
        ),
        19 => {
            let s = smuggled(target);
            (
                vec!["Transfer-Encoding: chunked".into()],
                format!("5\r\nhello\r\n0\r\n\r\n{s}").into_bytes(),
                None,
                "frame:pipelined-after-chunked",
                true,
            )
        }
        20 => (
            vec!["Transfer-Encoding: chunked".into()],
            b"zz\r\nhello\r\n0\r\n\r\n".to_vec(),
            Some("an invalid chunk size (RFC 9112 §7.1)"),
            "frame:bad-chunk",
            false,
        ),
        _ => {
            let s = smuggled(target);
            (
                vec!["Content-Length: 0".into()],
                s.into_bytes(),
                None,
                "frame:pipelined",
                true,
            )
        }
    }
}

/// Path shapes that make a request-target invalid.
const REFUSED_SHAPES: &[&str] = &[
    "path:backslash",
    "path:raw-space-or-non-ascii",
    "path:bad-percent",
];

/// The family of a path tail, for the report: the first that applies.
pub(crate) fn tail_shape(t: &str) -> &'static str {
    let l = t.to_ascii_lowercase();
    let has = |x: &str| l.contains(x);
    if t.contains('\\') {
        "path:backslash"
    } else if t.bytes().any(|b| b <= 0x20 || b >= 0x7f) {
        "path:raw-space-or-non-ascii"
    } else if has("%u") || has("%zz") || l.ends_with('%') || l.ends_with("%2") {
        "path:bad-percent"
    } else if has("%25") {
        "path:double-encoded"
    } else if has("%2f") || has("%5c") {
        "path:encoded-slash"
    } else if has("%c0") || has("%e0") {
        "path:overlong-utf8"
    } else if has("%00") || has("%0a") || has("%09") || has("%20") {
        "path:encoded-control"
    } else if t.contains(';') {
        "path:params"
    } else if t.contains(['?', '#']) || has("%3f") || has("%23") {
        "path:query-fragment"
    } else if has("%2e") {
        "path:encoded-dot"
    } else if t.contains("/.") {
        "path:dot-segment"
    } else if t.contains("//") {
        "path:repeated-slash"
    } else {
        "path:plain"
    }
}

fn pick<'a, T>(rng: &mut fastrand::Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.usize(..xs.len())]
}

/// Whether a byte may appear in a request target as hyper's URI parser
/// takes it (visible ASCII, no space or control).
fn target_byte_ok(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b'\\'
}

/// Makes one request from `rng`.
pub(crate) fn request(rng: &mut fastrand::Rng) -> Req {
    let mut shapes: Vec<&'static str> = Vec::new();
    let mut must_reject: Option<&'static str> = None;
    let mut ambiguous = false;
    // Half the requests are hostile only in their target and Host value
    // (well-formed otherwise), so that they get as far as the table.
    let clean = rng.bool();
    let method = *pick(
        rng,
        &[
            "GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
        ],
    );

    // The path.
    let mut path = String::from(*pick(rng, STARTS));
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        shapes.push("path:mixed-case");
    }
    for _ in 0..rng.usize(0..=4) {
        let mut tail = *pick(rng, TAILS);
        let mut shape = tail_shape(tail);
        // Tails that make the whole request a 400 are drawn less often, so
        // that most requests get as far as the routing table.
        if REFUSED_SHAPES.contains(&shape) && rng.u32(..4) != 0 {
            tail = *pick(rng, TAILS);
            shape = tail_shape(tail);
        }
        path.push_str(tail);
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
    }
    if rng.u32(..150) == 0 {
        shapes.push("path:overlong");
        let n = *pick(rng, &[300usize, 2000, 9000, 70_000]);
        if rng.bool() {
            path.push_str(&"/a".repeat(n / 2));
        } else {
            path.push('/');
            path.push_str(&"x".repeat(n));
        }
        path.push_str("/../hr");
    }
    if path.bytes().any(|b| !target_byte_ok(b)) {
        shapes.push("path:invalid-byte");
        // RFC 9112 §3.2: a request-target with whitespace or controls is
        // invalid; a raw `\` is not a URI character (RFC 3986 §2).
        if path.bytes().any(|b| b <= 0x20 || b == 0x7f) {
            must_reject = Some("invalid byte in the request-target (RFC 9112 §3)");
        }
    }

    // The target form.
    let host_a = *pick(rng, HOSTS);
    let mut target_host: Option<String> = None;
    let target = match rng.u32(..20) {
        0..=13 => {
            shapes.push("target:origin");
            path.clone()
        }
        14..=16 => {
            shapes.push("target:absolute");
            let (auth, ok) = *pick(rng, HOSTS);
            if !ok || auth.is_empty() {
                ambiguous = true;
            }
            let scheme = *pick(rng, &["http", "HTTP", "https"]);
            let p = if path.starts_with('/') || path.is_empty() {
                path.clone()
            } else {
                ambiguous = true;
                format!("/{path}")
            };
            target_host = Some(auth.rsplit('@').next().unwrap_or(auth).to_owned());
            format!("{scheme}://{auth}{p}")
        }
        17 => {
            shapes.push("target:absolute-userinfo");
            let (auth, _) = *pick(rng, &HOSTS[..6]);
            target_host = Some(auth.to_owned());
            format!("http://evil.example@{auth}{path}")
        }
        18 => {
            shapes.push("target:authority-form");
            ambiguous = true;
            format!("{}:80", host_a.0.split(':').next().unwrap_or(""))
        }
        _ => {
            shapes.push("target:asterisk");
            ambiguous = true;
            "*".to_owned()
        }
    };

    // The version.
    let version = match rng.u32(..if clean { 38 } else { 40 }) {
        0..=35 => "HTTP/1.1",
        36 | 37 => {
            shapes.push("version:1.0");
            "HTTP/1.0"
        }
        _ => {
            shapes.push("version:invalid");
            must_reject = must_reject.or(Some("an unknown HTTP version on an HTTP/1 connection"));
            *pick(
                rng,
                &["HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1x", "HTTP/1"],
            )
        }
    };

    // Host lines.
    let (host_value, host_ok) = host_a;
    let mut lines: Vec<String> = Vec::new();
    let host_draw = if clean {
        *pick(
            rng,
            &[0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 23],
        )
    } else {
        rng.u32(..24)
    };
    let host_for_interp: Option<String> = match host_draw {
        0..=15 => {
            lines.push(format!(
                "{}: {host_value}",
                pick(rng, &["Host", "host", "HOST"])
            ));
            if !host_ok {
                shapes.push("host:invalid");
                must_reject = must_reject.or(Some("an invalid Host value (RFC 9112 §3.2)"));
            } else {
                shapes.push("host:one");
            }
            Some(host_value.to_owned())
        }
        16 | 17 => {
            shapes.push("host:missing");
            if version == "HTTP/1.1" {
                must_reject =
                    must_reject.or(Some("an HTTP/1.1 request without Host (RFC 9112 §3.2)"));
            }
            None
        }
        18 | 19 => {
            shapes.push("host:twice-different");
            let (other, _) = *pick(rng, HOSTS);
            lines.push(format!("Host: {host_value}"));
            lines.push(format!("Host: {other}"));
            must_reject = must_reject.or(Some("more than one Host field line (RFC 9112 §3.2)"));
            None
        }
        20 => {
            shapes.push("host:twice-same");
            lines.push(format!("Host: {host_value}"));
            lines.push(format!("host: {host_value}"));
            must_reject = must_reject.or(Some("more than one Host field line (RFC 9112 §3.2)"));
            None
        }
        21 => {
            shapes.push("host:space-before-colon");
            lines.push(format!("Host : {host_value}"));
            must_reject = must_reject.or(Some("whitespace before a field colon (RFC 9112 §5.1)"));
            None
        }
        22 => {
            shapes.push("host:obs-fold");
            lines.push("Host: evil.example".into());
            lines.push(format!(" {host_value}"));
            ambiguous = true;
            None
        }
        _ => {
            shapes.push("host:list");
            lines.push(format!("Host: {host_value}"));
            lines.push("X-Forwarded-Host: admin.acme.example".into());
            Some(host_value.to_owned())
        }
    };

    // The role header, junk and framing.
    let mut role = pick(rng, ROLES);
    while clean && (role.reject.is_some() || role.shape == "role:obs-fold") {
        role = pick(rng, ROLES);
    }
    shapes.push(role.shape);
    if role.reject.is_some() {
        must_reject = must_reject.or(role.reject);
    }
    if role.shape == "role:obs-fold" {
        ambiguous = true;
    }
    lines.extend(role.lines.iter().map(|l| (*l).to_owned()));
    match rng.u32(..30) {
        0 | 1 | 2 | 4 if clean => {}
        0 => {
            shapes.push("header:nul");
            lines.push("X-Junk: a\0b".into());
            must_reject = must_reject.or(Some("NUL in a field value (RFC 9110 §5.5)"));
        }
        1 => {
            shapes.push("header:space-in-name");
            lines.push("X Junk: a".into());
            must_reject = must_reject.or(Some("a field name with a space (RFC 9110 §5.1)"));
        }
        2 => {
            shapes.push("header:no-colon");
            lines.push("X-Junk a".into());
            must_reject = must_reject.or(Some("a field line without a colon (RFC 9112 §5)"));
        }
        3 => {
            shapes.push("header:obs-text");
            lines.push("X-Junk: caf\u{e9} \u{80}".into());
        }
        4 => {
            shapes.push("header:control-in-name");
            lines.push("\u{1}X-Junk: a".into());
            must_reject = must_reject.or(Some("a control byte in a field name (RFC 9110 §5.1)"));
        }
        5 => {
            shapes.push("header:huge-value");
            let n = *pick(rng, &[8_000usize, 64_000, 120_000, 600_000]);
            lines.push(format!("X-Big: {}", "a".repeat(n)));
        }
        6 => {
            shapes.push("header:many");
            let n = *pick(rng, &[60usize, 99, 101, 300]);
            for i in 0..n {
                lines.push(format!("X-H{i}: {i}"));
            }
        }
        _ => {}
    }
    let mut frame = framing(rng);
    while clean && (frame.2.is_some() || frame.3 == "frame:te-obs-fold") {
        frame = framing(rng);
    }
    let (frame_lines, body, frame_reject, frame_shape, multi) = frame;
    shapes.push(frame_shape);
    if frame_reject.is_some() {
        must_reject = must_reject.or(frame_reject);
    }
    if frame_shape == "frame:te-obs-fold" {
        ambiguous = true;
    }
    lines.extend(frame_lines);
    if !multi {
        lines.push("Connection: close".into());
    }
    // Shuffle header order a little (Host need not come first).
    if lines.len() > 1 && rng.u32(..4) == 0 {
        let i = rng.usize(..lines.len());
        // Keep continuation lines after the line they continue.
        if !lines[i].starts_with(' ') && !lines.get(i + 1).is_some_and(|l| l.starts_with(' ')) {
            let l = lines.remove(i);
            lines.push(l);
        }
    }
    let eol = if rng.u32(..40) == 0 {
        shapes.push("eol:bare-lf");
        "\n"
    } else {
        "\r\n"
    };

    let mut text = String::new();
    let _ = write!(text, "{method} {target} {version}{eol}");
    for l in &lines {
        text.push_str(l);
        text.push_str(eol);
    }
    text.push_str(eol);
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(&body);

    let interp = if must_reject.is_some() || ambiguous {
        None
    } else {
        let host = match (target_host, host_for_interp) {
            (Some(t), _) => Some(t),
            (None, Some(h)) => Some(h),
            // HTTP/1.0 without Host: the table sees an empty host.
            (None, None) => (version == "HTTP/1.0").then(String::new),
        };
        host.map(|host| Interp {
            method: method.to_owned(),
            host,
            path_and_query: if target.starts_with('/') || target.is_empty() {
                path.clone()
            } else {
                // Absolute-form: what follows the authority.
                let after = &target[target.find("://").map_or(0, |i| i + 3)..];
                after[after.find(['/', '?', '#']).unwrap_or(after.len())..].to_owned()
            },
            roles: role.values.iter().map(|v| v.trim().to_owned()).collect(),
        })
    };
    Req {
        bytes,
        shapes,
        interp,
        must_reject,
        multi,
    }
}

/// Every spelling of one family: a route's path, an escaped separator
/// with or without dot segments, another route's path, on both hosts,
/// with and without `x-role: admin`: requests a decoding backend may read
/// as another route's (issue 18, item 1). Well-formed, so that each gets
/// as far as the routing table.
pub(crate) fn escaped_slashes() -> Vec<Req> {
    const FROM: &[&str] = &["/careers", "/product", "/admin", "/careers/jobs", ""];
    const VIA: &[&str] = &[
        "/..%2F",
        "/..%2f",
        "/..%5C",
        "/..%5c",
        "%2F..%2F",
        "/%2e%2e%2F",
        "/.%2E%5C",
        "/x%2F..%2F..%2F",
        "%2F",
        "/%2F",
        "/a%2Fb/..%2F..%2F",
    ];
    const TO: &[&str] = &["hr", "admin", "admin/panel", "product", "careers/x"];
    let mut out = Vec::new();
    for from in FROM {
        for via in VIA {
            for to in TO {
                for host in ["acme.example", "admin.acme.example"] {
                    for admin in [false, true] {
                        let path = format!("{from}{via}{to}");
                        let path = if path.starts_with('/') {
                            path
                        } else {
                            format!("/{path}")
                        };
                        let role = if admin { "x-role: admin\r\n" } else { "" };
                        out.push(Req {
                            bytes: format!(
                                "GET {path} HTTP/1.1\r\nHost: {host}\r\n{role}Connection: close\r\n\r\n"
                            )
                            .into_bytes(),
                            shapes: vec!["path:escaped-separator-family"],
                            interp: Some(Interp {
                                method: "GET".into(),
                                host: host.into(),
                                path_and_query: path,
                                roles: if admin { vec!["admin".into()] } else { vec![] },
                            }),
                            must_reject: None,
                            multi: false,
                        });
                    }
                }
            }
        }
    }
    out
}
