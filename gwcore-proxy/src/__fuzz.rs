//! Entry points for the fuzz targets in `fuzz/` (not a public API): the
//! proxy's own parsers of untrusted bytes. Each function takes the
//! fuzzer's bytes and panics when a property fails.

use std::fmt::Write as _;

use http::Method;

use crate::h1::{ReadResponse, read_response};
use crate::h1_server::{Framing, read_request};
use crate::l4::{Hello, client_hello_sni};
use crate::limits::{IpNet, TrustedProxies};

/// A backend's answer, as the bytes after the first: the first byte picks
/// the request method (GET or HEAD) and how many bytes each read brings.
/// Reading it whole or in small reads gives the same response (or fails
/// both ways); a `Content-Length` body is exactly that long; the body
/// never holds more bytes than came in.
pub fn h1_response(data: &[u8]) {
    let Some((&first, wire)) = data.split_first() else {
        return;
    };
    let method = if first & 0x80 == 0 {
        Method::GET
    } else {
        Method::HEAD
    };
    let step = usize::from(first & 0x0f) + 1;
    let Some(r) = same_whole_or_stepped(
        read_response(wire, &method, wire.len()),
        read_response(wire, &method, step),
        step,
    ) else {
        return;
    };
    assert!(r.body.len() + r.rest <= wire.len());
    let bodiless = method == Method::HEAD || r.status == 204 || r.status == 304;
    let length = r
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        _ if bodiless || r.status == 101 => assert!(r.body.is_empty(), "{r:?}"),
        Some(n) => assert_eq!(r.body.len(), n, "Content-Length {n}"),
        None => {}
    }
}

/// A client's request, as the bytes after the first: the first byte says
/// how many bytes each read brings. Reading it whole or in small reads
/// gives the same request (or refuses it both ways); a body framed by
/// `Content-Length` is exactly that long; the request never holds more
/// bytes than came in.
pub fn h1_request(data: &[u8]) {
    let Some((&first, wire)) = data.split_first() else {
        return;
    };
    let step = usize::from(first & 0x1f) + 1;
    let Some(r) = same_whole_or_stepped(
        read_request(wire, wire.len()),
        read_request(wire, step),
        step,
    ) else {
        return;
    };
    assert!(r.body.len() + r.rest <= wire.len());
    if let Framing::Length(n) = r.framing {
        assert_eq!(r.body.len() as u64, n);
    }
}

/// What a parser made of bytes fed whole and fed `step` bytes at a time:
/// both refused, or both the same (`None`: not complete); the message
/// when both took it. Which error a refusal gives may depend on how much
/// had come (a head over the limit is refused before its end is seen), so
/// errors are not compared.
fn same_whole_or_stepped<T, E>(
    whole: Result<Option<T>, E>,
    stepped: Result<Option<T>, E>,
    step: usize,
) -> Option<T>
where
    T: PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    assert_eq!(
        whole.is_ok(),
        stepped.is_ok(),
        "fed whole: {whole:?}, fed {step} at a time: {stepped:?}"
    );
    let (Ok(whole), Ok(stepped)) = (whole, stepped) else {
        return None;
    };
    assert_eq!(whole, stepped, "fed whole or {step} bytes at a time");
    whole
}

/// A body chunked as a backend may chunk it (pieces cut where the body's
/// own bytes say, sizes in either case, extensions, a trailer), followed
/// by the next response's first bytes: it decodes to the body and the
/// trailer, whatever the size of each read, and the next bytes are left.
/// The first byte holds the options.
pub fn h1_chunked(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut at = 0;
    while at < body.len() {
        let n = (usize::from(body[at]) % 64 + 1).min(body.len() - at);
        let mut size = String::new();
        if flags & 1 == 0 {
            let _ = write!(size, "{n:x}");
        } else {
            let _ = write!(size, "{n:X}");
        }
        wire.extend_from_slice(size.as_bytes());
        if flags & 2 != 0 {
            wire.extend_from_slice(b" ;ext=\"v\"");
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&body[at..at + n]);
        wire.extend_from_slice(b"\r\n");
        at += n;
    }
    wire.extend_from_slice(b"0\r\n");
    let trailer = flags & 4 != 0;
    if trailer {
        wire.extend_from_slice(b"x-checksum: 7\r\n");
    }
    wire.extend_from_slice(b"\r\nHTTP/1.1");
    let step = usize::from(flags >> 3) + 1;
    for step in [wire.len(), step] {
        let r: ReadResponse = read_response(&wire, &Method::GET, step)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&wire)))
            .expect("a complete response");
        assert_eq!(r.body, body, "fed {step} bytes at a time");
        assert_eq!(r.rest, b"HTTP/1.1".len());
        assert_eq!(
            r.trailers.map(|t| t["x-checksum"] == "7"),
            trailer.then_some(true)
        );
    }
}

/// The first bytes of a connection, as the ClientHello reader sees them
/// on a TLS listener: an SNI it reads is a precise hostname (no wildcard,
/// no trailing dot, no address) found in the bytes as is; and the first
/// half of bytes that hold a whole hello is incomplete or reads the same.
pub fn tls_client_hello(data: &[u8]) {
    let hello = client_hello_sni(data);
    if let Hello::Complete(Some(name)) = &hello {
        let lower = name.to_ascii_lowercase();
        assert!(
            gwcore::hostname::is_valid(&lower) && !gwcore::hostname::is_wildcard(&lower),
            "{name:?}"
        );
        assert!(
            data.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name:?} is not in the input"
        );
    }
    if let Hello::Complete(_) = hello {
        let cut = client_hello_sni(&data[..data.len() / 2]);
        assert!(
            cut == Hello::Incomplete || cut == hello,
            "the first half read as {cut:?}, the whole as {hello:?}"
        );
    }
}

/// Networks as `--trusted-proxies` takes them: one that parses prints as
/// text that parses back to it (and prints the same), and contains its
/// own address; a list parses back from its networks joined by commas.
pub fn cidr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(net) = text.parse::<IpNet>() {
        let printed = net.to_string();
        assert_eq!(printed.parse::<IpNet>().as_ref(), Ok(&net), "{printed}");
        assert_eq!(printed.parse::<IpNet>().unwrap().to_string(), printed);
        let addr = printed
            .split_once('/')
            .and_then(|(a, _)| a.parse().ok())
            .expect("an address before the prefix");
        assert!(net.contains(addr), "{net} does not contain {addr}");
    }
    if let Ok(list) = text.parse::<TrustedProxies>() {
        let joined = list
            .nets()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            joined.parse::<TrustedProxies>().as_ref(),
            Ok(&list),
            "{joined}"
        );
    }
}
