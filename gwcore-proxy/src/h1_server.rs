//! HTTP/1.x from clients: gwcore's own server connection.
//!
//! hyper's HTTP/1 server was about a third of the instructions the proxy
//! spends on a request (its dispatcher, a per-request body channel, a
//! response encoder that keeps state between messages). Here the
//! connection's task reads a head into the connection's one read buffer,
//! hands the request to the handler on the same task (no spawn, no
//! channel), and writes the response head and the start of its body in one
//! write.
//!
//! ```text
//!  socket ──read──▶ buffer ──parse_head──▶ Request<Body> ──handler──▶ Response
//!                     ▲                         │ body: ReqBody reads the
//!                     └──────── same buffer ◀───┘ same buffer and socket
//!  socket ◀──write── head + first body bytes (one buffer), then the rest
//! ```
//!
//! Message framing follows RFC 9112: a request body is delimited by
//! `Transfer-Encoding` whose final coding is `chunked` (§6.3 rule 4: any
//! other final coding is refused with 400), else by `Content-Length` (one
//! number; a list of copies of it is that number; anything else is 400),
//! else it is empty. A request with both `Transfer-Encoding` and
//! `Content-Length` is refused (§6.3: "ought to be handled as an error";
//! a server MAY reject it, and accepting it invites request smuggling),
//! and so is `Transfer-Encoding` on HTTP/1.0 (§6.1: a 1.0 recipient cannot
//! have understood it). Chunk sizes and extensions are read strictly
//! (§7.1.1: `chunk-ext` is tokens or quoted strings). Field lines are
//! httparse's: no whitespace before the colon (§5.1: "MUST reject"), no
//! obs-fold (§5.2: a server MUST reject or replace it; it is rejected).
//!
//! The connection stays open after a response unless the request said
//! `Connection: close` (or was HTTP/1.0 without `keep-alive`), the response
//! says `close`, the request body was not read to its end (where the next
//! request would start is unknown), or the server drains.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::access_log::Digits;
use crate::body::{Body, BoxError};

/// The smallest head limit: heads of 8 KiB are always read, as hyper did.
pub(crate) const MIN_HEAD_BYTES: usize = 8 * 1024;
/// Free room made in the read buffer before a read.
const READ_ROOM: usize = 8 * 1024;
/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Response bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;
/// Field slots httparse gets on the stack; a larger field limit takes them
/// from the heap.
const STACK_FIELDS: usize = 100;
/// The field limit when none is set.
const UNLIMITED_FIELDS: usize = 10_000;
/// What a `100-continue` expectation is answered with (RFC 9110 §10.1.1).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

// ------------------------------------------------------------------ heads

/// Limits on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadLimits {
    /// The largest head, request line and fields (at least
    /// [`MIN_HEAD_BYTES`]).
    pub(crate) max_bytes: usize,
    /// The most field lines; zero: no limit.
    pub(crate) max_fields: usize,
}

impl HeadLimits {
    /// The limits of `limits`.
    pub(crate) fn of(limits: &crate::limits::Limits) -> HeadLimits {
        HeadLimits {
            max_bytes: if limits.max_header_bytes == 0 {
                usize::MAX
            } else {
                limits.max_header_bytes.max(MIN_HEAD_BYTES)
            },
            max_fields: limits.max_headers,
        }
    }
}

/// How a request body is delimited, and what is left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at this step.
    Chunked(Chunk),
    /// Read whole (or there is none).
    Done,
    /// It failed; nothing more is read.
    Failed,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data are left.
    Data(u64),
    /// The CRLF after chunk data is next.
    DataEnd,
    /// The trailer section is next.
    Trailers,
}

/// A request head as read, with what its fields say of its framing and
/// connection.
#[derive(Debug)]
pub(crate) struct Head {
    /// Method, target, version and fields.
    pub(crate) parts: http::request::Parts,
    /// How its body is delimited.
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request (RFC 9112 §9.3).
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request with a body.
    pub(crate) expect_continue: bool,
}

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Larger than [`HeadLimits::max_bytes`]: 431.
    TooLarge,
    /// More fields than [`HeadLimits::max_fields`]: 431.
    TooManyFields,
    /// A target longer than a URI can be: 414.
    UriTooLong,
    /// Not a valid HTTP/1.x request head, or framing that cannot be
    /// trusted: 400.
    Bad(&'static str),
}

impl HeadError {
    /// The status the client gets.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            HeadError::TooLarge | HeadError::TooManyFields => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
            HeadError::Bad(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Where a field's name and value sit in a head being parsed: name start
/// and end, value start and end.
type Span = [usize; 4];

/// Parses a request head at the start of `buf` and removes it; `None`
/// while it is incomplete (and within the limits). Field values share the
/// buffer, no copy; the fields go in `headers` (emptied first), their
/// spans in `spans` while it is parsed. Empty lines before the request
/// line are skipped (RFC 9112 §2.2).
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    spans: &mut Vec<Span>,
    headers: &mut HeaderMap,
) -> Result<Option<Head>, HeadError> {
    let max_fields = match limits.max_fields {
        0 => UNLIMITED_FIELDS,
        n => n,
    };
    // Left uninitialized: the parser writes the fields it finds, and
    // setting a hundred empty ones first would cost more than the parse.
    let mut stack = [const { std::mem::MaybeUninit::uninit() }; STACK_FIELDS];
    let mut heap = Vec::new();
    let fields: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] = if max_fields <= STACK_FIELDS {
        &mut stack[..max_fields]
    } else {
        heap.resize_with(max_fields, std::mem::MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, fields);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_bytes => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyFields),
        Err(httparse::Error::Version) => return Err(HeadError::Bad("unsupported HTTP version")),
        Err(_) => return Err(HeadError::Bad("malformed request head")),
    };
    if len > limits.max_bytes {
        return Err(HeadError::TooLarge);
    }
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Bad("invalid method"))?;
    let base = buf.as_ptr() as usize;
    let path = req.path.unwrap_or_default();
    let path_at = path.as_ptr() as usize - base;
    let path_span = path_at..path_at + path.len();
    spans.clear();
    spans.extend(req.headers.iter().map(|h| {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        [name, name + h.name.len(), value, value + h.value.len()]
    }));
    let head = buf.split_to(len).freeze();
    // `http` refuses longer targets (its limit is below 64 KiB).
    if path_span.len() >= usize::from(u16::MAX) {
        return Err(HeadError::UriTooLong);
    }
    let uri = Uri::from_maybe_shared(head.slice(path_span))
        .map_err(|_| HeadError::Bad("invalid request target"))?;
    headers.clear();
    headers.reserve(spans.len());
    let mut length: Option<u64> = None;
    let mut has_length = false;
    // Some(whether the final coding is chunked), when present.
    let mut transfer_encoding: Option<bool> = None;
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for &[ns, ne, vs, ve] in spans.iter() {
        let name =
            HeaderName::from_bytes(&head[ns..ne]).map_err(|_| HeadError::Bad("invalid field"))?;
        let value = &head[vs..ve];
        if name == header::CONTENT_LENGTH {
            has_length = true;
            length = crate::h1::content_length(value, length)
                .map_err(|_| HeadError::Bad("invalid Content-Length"))?;
        } else if name == header::TRANSFER_ENCODING {
            // The last field line's last coding is the final one.
            transfer_encoding = Some(
                crate::h1::visible(value)
                    .and_then(|v| v.rsplit(',').next())
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked")),
            );
        } else if name == header::CONNECTION {
            for token in crate::h1::visible(value).unwrap_or("").split(',') {
                let token = token.trim();
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name == header::EXPECT {
            expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        }
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| HeadError::Bad("invalid field value"))?;
        headers.append(name, value);
    }
    let framing = match transfer_encoding {
        Some(_) if version == Version::HTTP_10 => {
            return Err(HeadError::Bad("Transfer-Encoding on an HTTP/1.0 request"));
        }
        Some(_) if has_length => {
            return Err(HeadError::Bad("both Transfer-Encoding and Content-Length"));
        }
        Some(true) => Framing::Chunked(Chunk::Size),
        Some(false) => {
            return Err(HeadError::Bad("the final transfer coding is not chunked"));
        }
        None => match length {
            None | Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
        },
    };
    let keep_alive = if version == Version::HTTP_10 {
        keep_alive && !close
    } else {
        !close
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = std::mem::take(headers);
    let (parts, ()) = request.into_parts();
    Ok(Some(Head {
        parts,
        expect_continue: expect_continue && version == Version::HTTP_11 && framing != Framing::Done,
        framing,
        keep_alive,
    }))
}

// ------------------------------------------------------------------ bodies

/// What the decoder made of the bytes read so far.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A piece of the body (data or trailers).
    Frame(Frame<Bytes>),
    /// More bytes are needed.
    More,
    /// The body is complete.
    End,
}

/// Takes the next piece of a request body framed as `framing` out of
/// `buf`; trailer sections longer than `max_trailers` bytes are refused.
pub(crate) fn decode(
    buf: &mut BytesMut,
    framing: &mut Framing,
    max_trailers: usize,
) -> Result<Decoded, BoxError> {
    loop {
        match framing {
            Framing::Done | Framing::Failed => return Ok(Decoded::End),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    *framing = Framing::Done;
                }
                return Ok(Decoded::Frame(Frame::data(buf.split_to(n).freeze())));
            }
            Framing::Chunked(Chunk::Size) => {
                let Some(end) = crate::h1::line_end(buf, MAX_CHUNK_LINE)? else {
                    return Ok(Decoded::More);
                };
                let size = chunk_size(&buf[..end])?;
                buf.advance(end + 2);
                *framing = Framing::Chunked(if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                });
            }
            Framing::Chunked(Chunk::Data(left)) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    *framing = Framing::Chunked(Chunk::DataEnd);
                }
                return Ok(Decoded::Frame(Frame::data(buf.split_to(n).freeze())));
            }
            Framing::Chunked(Chunk::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("chunk data is not followed by CRLF".into());
                }
                buf.advance(2);
                *framing = Framing::Chunked(Chunk::Size);
            }
            Framing::Chunked(Chunk::Trailers) => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    *framing = Framing::Done;
                    return Ok(Decoded::End);
                }
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                let mut fields = [httparse::EMPTY_HEADER; 32];
                match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        // httparse takes a bare LF for a line's end; RFC
                        // 9112 §7.1.2's field lines end in CRLF.
                        let section = &buf[..len];
                        if section
                            .iter()
                            .enumerate()
                            .any(|(i, &b)| b == b'\n' && (i == 0 || section[i - 1] != b'\r'))
                        {
                            return Err("a trailer line ends in a bare LF".into());
                        }
                        let mut trailers = HeaderMap::with_capacity(fields.len());
                        for f in fields {
                            let name = HeaderName::from_bytes(f.name.as_bytes())?;
                            trailers.append(name, HeaderValue::from_bytes(f.value)?);
                        }
                        buf.advance(len);
                        *framing = Framing::Done;
                        return Ok(Decoded::Frame(Frame::trailers(trailers)));
                    }
                    Ok(httparse::Status::Partial) if buf.len() < max_trailers => {
                        return Ok(Decoded::More);
                    }
                    Ok(httparse::Status::Partial) => {
                        return Err("the trailer section is too large".into());
                    }
                    Err(e) => return Err(format!("invalid trailer section: {e}").into()),
                }
            }
        }
    }
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2).
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1): 1 to 16 hex digits, then
/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )` with names tokens
/// and values tokens or quoted strings.
pub(crate) fn chunk_size(line: &[u8]) -> Result<u64, BoxError> {
    const BAD: &str = "invalid chunk size";
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BAD.into());
    }
    let mut size = 0u64;
    for &d in &line[..digits] {
        // One hex digit each; 16 of them fit.
        let v = (d as char).to_digit(16).ok_or(BAD)?;
        size = (size << 4) | u64::from(v);
    }
    let mut e = &line[digits..];
    let bws = |e: &mut &[u8]| {
        while let [b' ' | b'\t', r @ ..] = *e {
            *e = r;
        }
    };
    loop {
        bws(&mut e);
        let [b';', r @ ..] = e else {
            return if e.is_empty() {
                Ok(size)
            } else {
                Err("invalid chunk extension".into())
            };
        };
        e = r;
        bws(&mut e);
        let n = e.iter().take_while(|b| tchar(**b)).count();
        if n == 0 {
            return Err("invalid chunk extension".into());
        }
        e = &e[n..];
        let before = e;
        bws(&mut e);
        let [b'=', r @ ..] = e else {
            e = before;
            continue;
        };
        e = r;
        bws(&mut e);
        if let [b'"', r @ ..] = e {
            let mut r = r;
            loop {
                match r {
                    [b'"', t @ ..] => {
                        e = t;
                        break;
                    }
                    [b'\\', c, t @ ..] if *c == b'\t' || *c >= 0x20 && *c != 0x7f => r = t,
                    [c, t @ ..] if *c == b'\t' || *c >= 0x20 && *c != 0x7f && *c != b'\\' => r = t,
                    _ => return Err("invalid chunk extension".into()),
                }
            }
        } else {
            let n = e.iter().take_while(|b| tchar(**b)).count();
            if n == 0 {
                return Err("invalid chunk extension".into());
            }
            e = &e[n..];
        }
    }
}

/// A connection's socket and read buffer, shared by the connection's loop,
/// the body of the request being served and, after a protocol switch, the
/// tunnel. Each holder locks it for one poll at a time.
struct Shared<S> {
    io: S,
    /// What was read and not consumed yet.
    buf: BytesMut,
    /// The current request's body was read to its end (or it had none).
    body_done: bool,
    /// The request expects `100 Continue` before it sends its body; it is
    /// sent when the body is first read, unless the response started.
    expect: bool,
    /// The response's head is being written: no interim answer any more.
    responding: bool,
    /// An interim answer's bytes still to write.
    interim: &'static [u8],
}

type Conn<S> = Arc<Mutex<Shared<S>>>;

fn lock<S>(conn: &Conn<S>) -> MutexGuard<'_, Shared<S>> {
    // A holder that panicked mid-poll leaves the state as it was between
    // two polls: still usable.
    conn.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    /// Reads more bytes into `buf`; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_ROOM / 2 {
            self.buf.reserve(READ_ROOM);
        }
        let fut = self.io.read_buf(&mut self.buf);
        let fut = std::pin::pin!(fut);
        fut.poll(cx)
    }

    /// Writes what is left of an interim answer.
    fn poll_interim(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.interim.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, self.interim) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.interim = &self.interim[n..],
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

/// A request body read from its connection.
struct ReqBody<S> {
    conn: Conn<S>,
    framing: Framing,
    max_trailers: usize,
}

impl<S> ReqBody<S> {
    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.framing = Framing::Failed;
        Poll::Ready(Some(Err(e)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> hyper::body::Body for ReqBody<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if matches!(this.framing, Framing::Done | Framing::Failed) {
            return Poll::Ready(None);
        }
        let conn = this.conn.clone();
        let mut shared = lock(&conn);
        let st = &mut *shared;
        if st.expect {
            st.expect = false;
            if !st.responding {
                st.interim = CONTINUE;
            }
        }
        if !st.interim.is_empty()
            && let Poll::Ready(Err(e)) = st.poll_interim(cx)
        {
            return this.fail(e.into());
        }
        loop {
            match decode(&mut st.buf, &mut this.framing, this.max_trailers) {
                Ok(Decoded::Frame(f)) => {
                    st.body_done = this.framing == Framing::Done;
                    return Poll::Ready(Some(Ok(f)));
                }
                Ok(Decoded::End) => {
                    st.body_done = true;
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(e) => return this.fail(e),
            }
            match st.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    return this.fail(
                        "the client closed the connection before the end of the request body"
                            .into(),
                    );
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(e.into()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Failed)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done | Framing::Failed => SizeHint::with_exact(0),
            Framing::Chunked(_) => SizeHint::default(),
        }
    }
}

/// The connection after a protocol switch: what was read past the
/// request's head first, then the socket.
struct Switched<S>(Conn<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Switched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = lock(&self.0);
        if !st.buf.is_empty() {
            let n = st.buf.len().min(out.remaining());
            out.put_slice(&st.buf[..n]);
            st.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut st.io).poll_read(cx, out)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Switched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.0).io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_shutdown(cx)
    }
}

/// Writes `out` whole and flushes.
async fn write_out<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &Conn<S>,
    out: &[u8],
) -> io::Result<()> {
    let mut at = 0;
    std::future::poll_fn(|cx| {
        let mut st = lock(conn);
        while at < out.len() {
            match Pin::new(&mut st.io).poll_write(cx, &out[at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut st.io).poll_flush(cx)
    })
    .await
}

// --------------------------------------------------------------- responses

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// No body is sent (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length`: this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (HTTP/1.0 without a length).
    Close,
}

/// The fields [`encode_head`] adds to a response's own.
#[derive(Debug, Clone, Copy)]
struct HeadFields {
    /// `Transfer-Encoding: chunked`.
    chunked: bool,
    /// `Content-Length`.
    add_length: Option<u64>,
    /// `Date`.
    date: bool,
}

/// The status line, the fields, then the framing and connection fields
/// the response lacks, and `Date`.
fn encode_head(
    out: &mut Vec<u8>,
    version: Version,
    parts: &http::response::Parts,
    add: &HeadFields,
    connection: Option<&'static [u8]>,
) {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = add.add_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(Digits::new(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    } else if add.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(c) = connection {
        out.extend_from_slice(b"connection: ");
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    if add.date {
        out.extend_from_slice(b"date: ");
        date::now(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What a response's own fields say of its framing and connection, read
/// in one pass over them (no lookup by name).
#[derive(Debug, Default)]
struct OwnFields<'a> {
    transfer_encoding: Option<&'a HeaderValue>,
    content_length: Option<&'a HeaderValue>,
    connection: Option<&'a HeaderValue>,
    date: bool,
}

impl OwnFields<'_> {
    fn of(headers: &HeaderMap) -> OwnFields<'_> {
        let mut f = OwnFields::default();
        for (name, value) in headers {
            if name == header::TRANSFER_ENCODING {
                f.transfer_encoding.get_or_insert(value);
            } else if name == header::CONTENT_LENGTH {
                f.content_length.get_or_insert(value);
            } else if name == header::CONNECTION {
                f.connection.get_or_insert(value);
            } else if name == header::DATE {
                f.date = true;
            }
        }
        f
    }

    /// The `Connection` field lists `close`.
    fn says_close(&self) -> bool {
        self.connection
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// How a response is to be sent: its framing, the length field to add
/// (when the body's size is known and the response has none).
fn out_framing<B: hyper::body::Body>(
    req_version: Version,
    is_head: bool,
    status: StatusCode,
    own: &OwnFields<'_>,
    body: &B,
) -> (Out, Option<u64>) {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return (Out::None, None);
    }
    if let Some(te) = own.transfer_encoding {
        let chunked = te
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        return match (is_head, chunked && req_version == Version::HTTP_11) {
            (true, _) => (Out::None, None),
            (false, true) => (Out::Chunked, None),
            (false, false) => (Out::Close, None),
        };
    }
    if let Some(cl) = own.content_length {
        let n = crate::h1::content_length(cl.as_bytes(), None)
            .ok()
            .flatten();
        return match (is_head, n) {
            (true, _) => (Out::None, None),
            (false, Some(n)) => (Out::Length(n), None),
            (false, None) => (Out::Close, None),
        };
    }
    if is_head {
        return (Out::None, None);
    }
    match body.size_hint().exact() {
        Some(n) => (Out::Length(n), Some(n)),
        None if req_version == Version::HTTP_11 => (Out::Chunked, None),
        None => (Out::Close, None),
    }
}

/// Appends a data frame framed as `framing`; `false` when it passes a
/// declared length.
fn push_data(out: &mut Vec<u8>, framing: Out, sent: &mut u64, data: &[u8]) -> bool {
    if data.is_empty() {
        return true;
    }
    *sent += data.len() as u64;
    match framing {
        Out::None => {}
        Out::Length(n) => {
            if *sent > n {
                return false;
            }
            out.extend_from_slice(data);
        }
        Out::Close => out.extend_from_slice(data),
        Out::Chunked => {
            let mut size = [0u8; 16];
            let mut at = size.len();
            let mut n = data.len();
            loop {
                at -= 1;
                size[at] = b"0123456789abcdef"[n & 0xf];
                n >>= 4;
                if n == 0 {
                    break;
                }
            }
            out.extend_from_slice(&size[at..]);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    }
    true
}

/// What became of a response.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Written whole; the connection may carry another request.
    KeepAlive,
    /// Written whole; the connection closes.
    Close,
    /// A `101` answer was written: the connection is switched.
    Switched,
    /// Writing failed or the body broke: the connection closes at once.
    Broken,
}

/// What the connection knows of the request a response answers.
struct Answering {
    version: Version,
    is_head: bool,
    keep_alive: bool,
}

/// Writes a response: the head and whatever of the body is ready in one
/// write, then the rest as it comes, gathered up to [`WRITE_BATCH`].
async fn send_response<S, B>(
    conn: &Conn<S>,
    out: &mut Vec<u8>,
    req: &Answering,
    closing: bool,
    resp: Response<B>,
) -> (Sent, HeaderMap)
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let (mut parts, mut body) = resp.into_parts();
    let (framing, says_close, has_connection, head_fields) = {
        let own = OwnFields::of(&parts.headers);
        let (framing, add_length) =
            out_framing(req.version, req.is_head, parts.status, &own, &body);
        let head_fields = HeadFields {
            chunked: framing == Out::Chunked && own.transfer_encoding.is_none(),
            add_length,
            date: !own.date,
        };
        (
            framing,
            own.says_close(),
            own.connection.is_some(),
            head_fields,
        )
    };
    let switched = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let body_done = {
        let mut st = lock(conn);
        st.responding = true;
        st.expect = false;
        st.body_done
    };
    let close = !switched
        && (!req.keep_alive || closing || !body_done || says_close || framing == Out::Close);
    if close && !says_close && has_connection {
        parts.headers.remove(header::CONNECTION);
    }
    let connection: Option<&'static [u8]> = match (close, req.version) {
        (true, _) if !says_close => Some(b"close"),
        (false, Version::HTTP_10) if !has_connection => Some(b"keep-alive"),
        _ => None,
    };
    out.clear();
    // An interim answer not fully written yet goes first.
    {
        let mut st = lock(conn);
        out.extend_from_slice(st.interim);
        st.interim = &[];
    }
    encode_head(out, req.version, &parts, &head_fields, connection);
    let mut sent = 0u64;
    let mut trailers = None;
    let mut broken = false;
    if framing != Out::None {
        loop {
            if hyper::body::Body::is_end_stream(&body) {
                break;
            }
            let frame = if out.is_empty() {
                body.frame().await
            } else {
                match futures_util::FutureExt::now_or_never(body.frame()) {
                    Some(f) => f,
                    None => {
                        if write_out(conn, out).await.is_err() {
                            return (Sent::Broken, HeaderMap::new());
                        }
                        out.clear();
                        continue;
                    }
                }
            };
            match frame {
                None => break,
                Some(Ok(f)) => match f.into_data() {
                    Ok(data) => {
                        // A large piece sent as it is rather than copied
                        // (its framing needs no bytes around it).
                        if data.len() >= WRITE_BATCH
                            && matches!(framing, Out::Length(_) | Out::Close)
                        {
                            sent += data.len() as u64;
                            if matches!(framing, Out::Length(n) if sent > n) {
                                broken = true;
                                break;
                            }
                            if (!out.is_empty() && write_out(conn, out).await.is_err())
                                || write_out(conn, &data).await.is_err()
                            {
                                return (Sent::Broken, HeaderMap::new());
                            }
                            out.clear();
                            continue;
                        }
                        if !push_data(out, framing, &mut sent, &data) {
                            broken = true;
                            break;
                        }
                        if out.len() >= WRITE_BATCH {
                            if write_out(conn, out).await.is_err() {
                                return (Sent::Broken, HeaderMap::new());
                            }
                            out.clear();
                        }
                    }
                    Err(f) => {
                        if let Ok(t) = f.into_trailers() {
                            trailers = Some(t);
                        }
                    }
                },
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "response body failed");
                    broken = true;
                    break;
                }
            }
        }
    }
    if !broken {
        match framing {
            Out::Chunked => {
                out.extend_from_slice(b"0\r\n");
                for (name, value) in trailers.iter().flatten() {
                    out.extend_from_slice(name.as_str().as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
            Out::Length(n) if sent != n => broken = true,
            _ => {}
        }
    }
    let written = out.is_empty() || write_out(conn, out).await.is_ok();
    out.clear();
    drop(body);
    let mut headers = parts.headers;
    headers.clear();
    let outcome = match () {
        _ if broken || !written => Sent::Broken,
        _ if switched => Sent::Switched,
        _ if close => Sent::Close,
        _ => Sent::KeepAlive,
    };
    (outcome, headers)
}

/// Writes the answer to a refused head, and ends the connection.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &Conn<S>,
    out: &mut Vec<u8>,
    e: HeadError,
) {
    tracing::debug!(?e, "request head refused");
    let mut resp = Response::new(());
    *resp.status_mut() = e.status();
    let (parts, ()) = resp.into_parts();
    out.clear();
    let add = HeadFields {
        chunked: false,
        add_length: Some(0),
        date: true,
    };
    encode_head(out, Version::HTTP_11, &parts, &add, Some(b"close"));
    if write_out(conn, out).await.is_ok() {
        shutdown(conn).await;
    }
}

/// Ends the writing side (a FIN after the last response).
async fn shutdown<S: AsyncRead + AsyncWrite + Unpin>(conn: &Conn<S>) {
    let _ = std::future::poll_fn(|cx| Pin::new(&mut lock(conn).io).poll_shutdown(cx)).await;
}

// ------------------------------------------------------------- connection

/// Serves HTTP/1.x on `io` until the client closes, a response closes the
/// connection, or `close` resolves while the connection waits for a
/// request (a request being served is answered first, with `Connection:
/// close`). `read` holds bytes already read from `io`.
pub(crate) async fn serve<S, H, F, B, C>(
    io: S,
    read: BytesMut,
    limits: HeadLimits,
    handler: H,
    mut close: C,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Body>) -> F,
    F: Future<Output = Response<B>>,
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
    C: Future + Unpin,
{
    let conn: Conn<S> = Arc::new(Mutex::new(Shared {
        io,
        buf: read,
        body_done: true,
        expect: false,
        responding: false,
        interim: &[],
    }));
    let mut out = Vec::with_capacity(READ_ROOM);
    let mut spans = Vec::new();
    let mut headers = HeaderMap::new();
    let mut closing = false;
    loop {
        // The next head.
        let head = loop {
            let parsed = {
                let mut st = lock(&conn);
                if st.buf.is_empty() {
                    Ok(None)
                } else {
                    parse_head(&mut st.buf, &limits, &mut spans, &mut headers)
                }
            };
            match parsed {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return refuse(&conn, &mut out, e).await,
            }
            let read = std::future::poll_fn(|cx| {
                if !closing && Pin::new(&mut close).poll(cx).is_ready() {
                    closing = true;
                }
                if closing {
                    return Poll::Ready(None);
                }
                lock(&conn).poll_fill(cx).map(Some)
            })
            .await;
            match read {
                // Closing, or the client is gone (mid-head: nothing to
                // answer).
                None | Some(Ok(0)) | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        };
        let Head {
            mut parts,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        let answering = Answering {
            version: parts.version,
            is_head: parts.method == Method::HEAD,
            keep_alive,
        };
        let switch = if crate::forward::is_websocket_upgrade(&parts.headers) {
            let (claim, tx) = crate::upgrade::ClientUpgrade::own();
            parts.extensions.insert(claim);
            Some(tx)
        } else {
            None
        };
        let body = {
            let mut st = lock(&conn);
            st.body_done = framing == Framing::Done;
            st.expect = expect_continue;
            st.responding = false;
            if st.body_done {
                crate::body::empty()
            } else {
                ReqBody {
                    conn: conn.clone(),
                    framing,
                    max_trailers: limits.max_bytes,
                }
                .boxed()
            }
        };
        let resp = handler(Request::from_parts(parts, body)).await;
        if !closing && futures_util::FutureExt::now_or_never(&mut close).is_some() {
            closing = true;
        }
        let (sent, spare) = send_response(&conn, &mut out, &answering, closing, resp).await;
        headers = spare;
        match sent {
            Sent::KeepAlive => {}
            Sent::Switched => {
                if let Some(tx) = switch {
                    let _ = tx.send(Box::new(Switched(conn)));
                }
                return;
            }
            Sent::Close => return shutdown(&conn).await,
            Sent::Broken => return,
        }
    }
}

// -------------------------------------------------------------------- fuzz

/// A request as [`read_request`] read it.
#[derive(Debug, PartialEq)]
pub(crate) struct ReadRequest {
    /// The request's method, target and fields.
    pub(crate) head: String,
    /// Its framing when the head was read.
    pub(crate) framing: Framing,
    /// The body's data.
    pub(crate) body: Vec<u8>,
    /// Its trailers.
    pub(crate) trailers: Option<HeaderMap>,
    /// Bytes of `wire` left after the request.
    pub(crate) rest: usize,
}

/// Reads one request from `wire` as a client connection does, fed `step`
/// bytes at a time: `Ok(None)` when `wire` ends before the request does,
/// `Err` when its head is refused or its body is malformed. For the fuzz
/// targets (`crate::__fuzz`).
pub(crate) fn read_request(wire: &[u8], step: usize) -> Result<Option<ReadRequest>, String> {
    let limits = HeadLimits {
        max_bytes: 64 * 1024,
        max_fields: STACK_FIELDS,
    };
    let step = step.max(1);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut feed = |buf: &mut BytesMut| {
        let n = step.min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        n > 0
    };
    let (mut spans, mut headers) = (Vec::new(), HeaderMap::new());
    let head = loop {
        match parse_head(&mut buf, &limits, &mut spans, &mut headers) {
            Ok(Some(head)) => break head,
            Ok(None) if feed(&mut buf) => {}
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("{e:?}")),
        }
    };
    let mut framing = head.framing;
    let (mut body, mut trailers) = (Vec::new(), None);
    loop {
        match decode(&mut buf, &mut framing, limits.max_bytes) {
            Ok(Decoded::Frame(f)) => match f.into_data() {
                Ok(d) => body.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            },
            Ok(Decoded::End) => break,
            Ok(Decoded::More) if feed(&mut buf) => {}
            Ok(Decoded::More) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    }
    let p = &head.parts;
    let mut text = format!("{} {} {:?}\n", p.method, p.uri, p.version);
    for (k, v) in &p.headers {
        text.push_str(&format!("{k}: {v:?}\n"));
    }
    Ok(Some(ReadRequest {
        head: text,
        framing: head.framing,
        body,
        trailers,
        rest: buf.len() + wire.len() - fed,
    }))
}

// -------------------------------------------------------------------- date

/// The `Date` field's value (RFC 9110 §5.6.7, IMF-fixdate), formatted once
/// a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }

    /// Calls `f` with the current date.
    pub(super) fn now(f: impl FnOnce(&[u8])) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                *c = (secs, format(secs));
            }
            f(&c.1);
        });
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT` for `secs` since the epoch.
    pub(super) fn format(secs: u64) -> [u8; 29] {
        const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
        // Civil date from days since 1970-01-01 (Howard Hinnant's
        // algorithm, in unsigned arithmetic: the epoch moved to 0000-03-01).
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
        out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
        let two = |out: &mut [u8; 29], at: usize, v: u64| {
            out[at] = b'0' + (v / 10 % 10) as u8;
            out[at + 1] = b'0' + (v % 10) as u8;
        };
        two(&mut out, 5, day);
        out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
        two(&mut out, 12, year / 100);
        two(&mut out, 14, year % 100);
        two(&mut out, 17, h);
        two(&mut out, 20, m);
        two(&mut out, 23, s);
        out
    }
}

#[cfg(test)]
mod tests;
