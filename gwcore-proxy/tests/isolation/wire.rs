//! A raw HTTP/1 client: writes bytes as given, reads what comes back and
//! splits it into responses, so that malformed requests really reach the
//! proxy and malformed answers would be noticed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One parsed response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The status code of the status line.
    pub(crate) status: u16,
    /// The body, de-chunked.
    pub(crate) body: Vec<u8>,
}

/// How an exchange ended.
#[derive(Debug)]
pub(crate) enum Exchange {
    /// Complete responses, then the connection closed (or stayed quiet
    /// for the linger time).
    Answered(Vec<Response>),
    /// The proxy closed the connection without a byte of answer.
    Closed,
    /// The connection was reset before any answer arrived.
    Reset,
    /// Bytes arrived that are not a well-formed HTTP/1 response.
    Garbled(String),
    /// Nothing complete arrived within the timeout: a hang.
    Hang(Vec<u8>),
}

/// Sends `bytes` on a new connection to `addr` and reads the answers.
/// `want` is how many responses the request bytes call for at most (more
/// than one when a pipelined or smuggled request follows); after the first
/// complete response the reader waits `linger` for more unless the
/// connection closes. `head_first`: the first request is a HEAD, so its
/// response has no body whatever its Content-Length says.
pub(crate) async fn exchange(
    addr: SocketAddr,
    bytes: &[u8],
    head_first: bool,
    timeout: Duration,
    linger: Duration,
) -> Exchange {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Exchange::Garbled(format!("connect failed: {e}")),
    };
    let _ = s.set_nodelay(true);
    // A server may answer (431, 400) and close before it read everything;
    // a failed write is then expected, and the answer is still read.
    let _ = s.write_all(bytes).await;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reset = false;
    loop {
        let parsed = parse_all(&buf, head_first);
        let have = parsed.as_ref().map(|(r, _)| r.len()).unwrap_or(0);
        let wait_until = if have > 0 {
            (tokio::time::Instant::now() + linger).min(deadline)
        } else {
            deadline
        };
        match tokio::time::timeout_at(wait_until, s.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => {
                reset = true;
                break;
            }
            Err(_) => {
                if have > 0 {
                    break;
                }
                return Exchange::Hang(buf);
            }
        }
    }
    if buf.is_empty() {
        return if reset {
            Exchange::Reset
        } else {
            Exchange::Closed
        };
    }
    match parse_all(&buf, head_first) {
        Ok((responses, rest)) if rest == buf.len() && !responses.is_empty() => {
            Exchange::Answered(responses)
        }
        Ok((responses, rest)) => Exchange::Garbled(format!(
            "{} complete responses, then {} stray bytes: {:?}",
            responses.len(),
            buf.len() - rest,
            String::from_utf8_lossy(&buf[rest..buf.len().min(rest + 200)])
        )),
        Err(e) => Exchange::Garbled(e),
    }
}

/// Parses as many complete responses as `buf` holds; returns them and how
/// many bytes they took. An error means bytes that can never become a
/// response.
pub(crate) fn parse_all(buf: &[u8], head_first: bool) -> Result<(Vec<Response>, usize), String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match parse_one(&buf[at..], head_first && out.is_empty())? {
            Some((r, used)) => {
                out.push(r);
                at += used;
            }
            None => break,
        }
    }
    Ok((out, at))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One response from the start of `buf`: `Ok(None)` when incomplete.
fn parse_one(buf: &[u8], head_only: bool) -> Result<Option<(Response, usize)>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 5 && !buf.starts_with(b"HTTP/") {
            return Err(format!(
                "not a status line: {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(80)])
            ));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "head is not UTF-8".to_owned())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || code.len() != 3 {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status code in {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut at = end + 4;
    let mut body = Vec::new();
    let no_body = head_only || status / 100 == 1 || status == 204 || status == 304;
    if no_body {
    } else if get("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        loop {
            let Some(le) = find(&buf[at..], b"\r\n") else {
                return Ok(None);
            };
            let size_text = std::str::from_utf8(&buf[at..at + le]).unwrap_or("");
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            at += le + 2;
            if size == 0 {
                // Trailers, then an empty line.
                loop {
                    let Some(le) = find(&buf[at..], b"\r\n") else {
                        return Ok(None);
                    };
                    at += le + 2;
                    if le == 0 {
                        break;
                    }
                }
                break;
            }
            if buf.len() < at + size + 2 {
                return Ok(None);
            }
            body.extend_from_slice(&buf[at..at + size]);
            if &buf[at + size..at + size + 2] != b"\r\n" {
                return Err("chunk not followed by CRLF".into());
            }
            at += size + 2;
        }
    } else if let Some(cl) = get("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| format!("bad content-length {cl:?}"))?;
        if buf.len() < at + n {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + n]);
        at += n;
    } else {
        // Delimited by close: only complete once the connection closed,
        // which the caller tells by stopping; take what there is.
        body.extend_from_slice(&buf[at..]);
        at = buf.len();
    }
    Ok(Some((Response { status, body }, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_sized_responses() {
        let two = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiHTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (rs, used) = parse_all(two, false).unwrap();
        assert_eq!(used, two.len());
        assert_eq!(rs[0].status, 200);
        assert_eq!(rs[0].body, b"hi");
        assert_eq!(rs[1].status, 404);
        assert_eq!(rs[1].body, b"abc");
        assert!(parse_all(b"garbage that is long", false).is_err());
        let (rs, used) =
            parse_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab", false).unwrap();
        assert!(rs.is_empty() && used == 0, "incomplete");
    }
}
