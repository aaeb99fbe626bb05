//! HTTP/1.1 to backends, spoken by the request's own task.
//!
//! A hyper client connection runs on a task of its own and is handed each
//! exchange over a channel; for a proxy that is a second task woken per
//! request, a channel round trip and a response parser that keeps state
//! between requests. Here the request's task writes the head, reads the
//! answer's head and hands the connection to the response body, which
//! reads the rest and gives the connection back to its pool when the body
//! ends. A connection is therefore owned by exactly one exchange or by the
//! pool, never both.
//!
//! Message framing follows RFC 9112 §6: a response to `HEAD`, a 204 or a
//! 304 has no body; `Transfer-Encoding` with `chunked` last is decoded;
//! other transfer codings, or no length at all, are read until the
//! connection closes; `Content-Length` must be one number (repeated
//! copies of it are accepted). A response carrying both `Transfer-Encoding`
//! and `Content-Length` is refused (§6.3: "ought to be handled as an
//! error"; a gateway passing it on invites response splitting).

use std::future::Future as _;
use std::io;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{Body, BoxError};

/// The largest response head (status line and header fields) read.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in a response head or trailer section.
const MAX_FIELDS: usize = 128;
/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Free room made in the read buffer before each read; a response body
/// whose reads fill it gets twice as much, up to [`MAX_READ_ROOM`].
const READ_ROOM: usize = 8 * 1024;
/// The most room a body read gets: large downloads take few system calls.
const MAX_READ_ROOM: usize = 256 * 1024;

/// A backend connection's transport: plain TCP, or TLS (BackendTLSPolicy).
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open HTTP/1.1 connection to a backend with what was read past the
/// last message (nothing, between exchanges).
#[derive(Debug)]
pub(crate) struct Conn {
    io: Stream,
    read: BytesMut,
    /// The request head being written; kept to reuse its allocation.
    write: Vec<u8>,
    /// Where the fields of a response head sit in it, while it is parsed;
    /// kept to reuse its allocation.
    spans: Vec<Span>,
}

impl Conn {
    /// A new connection over `io`.
    pub(crate) fn new(io: Stream) -> Conn {
        Conn {
            io,
            read: BytesMut::with_capacity(READ_ROOM),
            write: Vec::with_capacity(512),
            spans: Vec::new(),
        }
    }

    /// Whether a connection waiting in a pool can take a request: the
    /// backend has neither closed it nor sent anything unasked.
    ///
    /// For plain TCP this asks the readiness the runtime already holds: a
    /// connection nothing arrived on since its last message costs no
    /// system call. Readiness can outlive a read that emptied the socket,
    /// so a readable connection is read once to be sure.
    pub(crate) fn is_reusable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match &mut self.io {
            Stream::Tcp(s) => match s.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    matches!(s.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
            Stream::Tls(s) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                matches!(
                    Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }

    /// The transport and the bytes read past the last message: what a
    /// protocol switch (`101`) hands to the tunnel.
    pub(crate) fn into_parts(self) -> (Stream, Bytes) {
        (self.io, self.read.freeze())
    }
}

/// Where a connection goes back to when its response body ends.
pub(crate) trait Home: Send + Sync + Unpin + 'static {
    /// Takes back a connection that can carry another exchange.
    fn put(self, conn: Conn);
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The request could not be written: the backend had closed the
    /// connection. On a reused connection that is a backend closing it as
    /// idle just before the request went out (a close the pool had not
    /// seen yet): a request without a body can go again on another
    /// connection, the backend never read it.
    Closed(String),
    /// Anything else: the request is not sent again.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Closed(e) => write!(f, "connection closed before an answer: {e}"),
            Failure::Failed(e) => f.write_str(e),
        }
    }
}

/// What a `101 Switching Protocols` answer carries in its extensions: the
/// backend connection, for the tunnel to take.
#[derive(Debug, Clone)]
pub(crate) struct Upgraded(Arc<Mutex<Option<Conn>>>);

impl Upgraded {
    /// The connection, once.
    pub(crate) fn take(&self) -> Option<Conn> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// How a request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    Empty,
    Length(u64),
    Chunked,
}

/// Sends one request on `conn` and reads its answer's head; the answer's
/// body reads the rest and gives the connection to `home` when it ends
/// and the connection can carry another exchange.
///
/// `parts` must be ready for a backend (origin-form target, `Host`, no
/// hop-by-hop fields but a WebSocket upgrade's). Framing is ours:
/// `Content-Length` from the body's exact size, else `chunked`.
///
/// Once the head is written, `parts`' header map is emptied and holds the
/// response's fields (its allocation reused: the server hands a
/// response's map to the connection's next request).
pub(crate) async fn exchange<H: Home>(
    mut conn: Conn,
    parts: &mut http::request::Parts,
    body: &mut Body,
    home: H,
) -> Result<Response<Body>, Failure> {
    let outgoing = if hyper::body::Body::is_end_stream(body) {
        Outgoing::Empty
    } else {
        match hyper::body::Body::size_hint(body).exact() {
            Some(0) => Outgoing::Empty,
            Some(n) => Outgoing::Length(n),
            None => Outgoing::Chunked,
        }
    };
    encode_head(&mut conn.write, parts, outgoing);
    let upgrade = parts.headers.contains_key(header::UPGRADE);
    let (head, complete) = if outgoing == Outgoing::Empty {
        let Conn {
            io,
            read,
            write,
            spans,
        } = &mut conn;
        io.write_all(write)
            .await
            .map_err(|e| Failure::Closed(e.to_string()))?;
        io.flush()
            .await
            .map_err(|e| Failure::Closed(e.to_string()))?;
        // Sent: a failure from here on does not send the request again,
        // so its fields are not needed any more.
        let mut fields = std::mem::take(&mut parts.headers);
        fields.clear();
        (read_head(io, read, spans, fields).await?, true)
    } else {
        // Rare and large: kept off the common request's future.
        Box::pin(send_with_body(&mut conn, body, outgoing)).await?
    };
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        if !upgrade {
            return Err(Failure::Failed(
                "the backend switched protocols unasked".into(),
            ));
        }
        *resp.headers_mut() = head.headers;
        resp.extensions_mut()
            .insert(Upgraded(Arc::new(Mutex::new(Some(conn)))));
        return Ok(resp);
    }
    let framing = response_framing(&parts.method, head.status, &head.fields)?;
    let reusable = complete && keeps_alive(head.version, &head.fields);
    *resp.headers_mut() = head.headers;
    let mut body = BackendBody {
        conn: Some(conn),
        framing,
        reusable,
        home: Some(home),
        room: READ_ROOM,
    };
    if body.is_done() {
        body.finish();
        return Ok(resp);
    }
    *resp.body_mut() = body.boxed();
    Ok(resp)
}

/// Writes the head and the body, watching for an answer that comes
/// before the body is all sent (a backend refusing an upload, say); such
/// an exchange is not complete and its connection is not reused.
async fn send_with_body(
    conn: &mut Conn,
    body: &mut Body,
    outgoing: Outgoing,
) -> Result<(Head, bool), Failure> {
    let Conn {
        io,
        read,
        write,
        spans,
    } = conn;
    io.write_all(write)
        .await
        .map_err(|e| Failure::Closed(e.to_string()))?;
    let (mut r, mut w) = tokio::io::split(io);
    let mut send = std::pin::pin!(send_body(&mut w, body, outgoing));
    let mut head = std::pin::pin!(read_head(&mut r, read, spans, HeaderMap::new()));
    tokio::select! {
        biased;
        h = &mut head => Ok((h?, false)),
        sent = &mut send => match sent {
            Ok(()) => Ok((head.await?, true)),
            // The client's body broke: nothing more to wait for.
            Err(SendError::Client(e)) => Err(Failure::Failed(format!("request body: {e}"))),
            // The backend stopped reading; it may have answered first.
            Err(SendError::Io(e)) => match head.await {
                Ok(h) => Ok((h, false)),
                Err(_) => Err(Failure::Failed(format!("sending the request body: {e}"))),
            },
        },
    }
}

enum SendError {
    Client(BoxError),
    Io(io::Error),
}

impl From<io::Error> for SendError {
    fn from(e: io::Error) -> Self {
        SendError::Io(e)
    }
}

/// Streams `body` framed as `outgoing`.
async fn send_body<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &mut Body,
    outgoing: Outgoing,
) -> Result<(), SendError> {
    let mut sent: u64 = 0;
    let mut scratch = Vec::new();
    let mut ended = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(SendError::Client)?;
        let frame = match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    continue;
                }
                sent += data.len() as u64;
                match outgoing {
                    Outgoing::Length(n) if sent > n => {
                        return Err(SendError::Client(
                            "the body is longer than its declared length".into(),
                        ));
                    }
                    Outgoing::Chunked => {
                        scratch.clear();
                        let _ = write!(scratch, "{:x}\r\n", data.len());
                        scratch.extend_from_slice(&data);
                        scratch.extend_from_slice(b"\r\n");
                        w.write_all(&scratch).await?;
                    }
                    _ => w.write_all(&data).await?,
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let (Ok(trailers), Outgoing::Chunked) = (frame.into_trailers(), outgoing) {
            scratch.clear();
            scratch.extend_from_slice(b"0\r\n");
            for (name, value) in &trailers {
                push_field(&mut scratch, name, value);
            }
            scratch.extend_from_slice(b"\r\n");
            w.write_all(&scratch).await?;
            ended = true;
        }
    }
    match outgoing {
        Outgoing::Length(n) if sent != n => {
            return Err(SendError::Client(
                "the body is shorter than its declared length".into(),
            ));
        }
        Outgoing::Chunked if !ended => w.write_all(b"0\r\n\r\n").await?,
        _ => {}
    }
    w.flush().await?;
    Ok(())
}

fn push_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The request head: request line, the fields but framing ones, then
/// ours.
fn encode_head(out: &mut Vec<u8>, parts: &http::request::Parts, outgoing: Outgoing) {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut declared_length = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            declared_length = true;
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        push_field(out, name, value);
    }
    match outgoing {
        // RFC 9110 §8.6: a user agent SHOULD send Content-Length when the
        // method defines a meaning for enclosed content, even if it is 0.
        Outgoing::Empty => {
            if declared_length || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
            {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        Outgoing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Outgoing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// A response head.
#[derive(Debug)]
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    /// What its framing and connection fields say.
    fields: Fields,
}

/// Where a field's name and value sit in a head being parsed: name start
/// and end, value start and end.
type Span = [usize; 4];

/// What the fields of a response head that frame it and manage its
/// connection say, read while the head is parsed (no map lookups after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    /// A `Connection` field lists `close`.
    close: bool,
    /// A `Connection` field lists `keep-alive`.
    keep_alive: bool,
    /// Some `Content-Length` field is present.
    has_length: bool,
    /// The `Content-Length` fields' one number; `Err` when a value is not
    /// a number or two differ.
    length: Result<Option<u64>, &'static str>,
    /// A `Transfer-Encoding` field is present; `Some(true)` when the last
    /// one's last coding is `chunked`.
    transfer_encoding: Option<bool>,
}

impl Default for Fields {
    fn default() -> Fields {
        Fields {
            close: false,
            keep_alive: false,
            has_length: false,
            length: Ok(None),
            transfer_encoding: None,
        }
    }
}

impl Fields {
    /// Takes in a field the head carries; `false` when the field need not
    /// be kept in the response's map: a `Connection` field listing only
    /// `keep-alive`, `close` or `upgrade` (it speaks of this connection
    /// alone, names no other field, and is removed from what is passed on
    /// anyway: `crate::forward::prepare_response`).
    fn read(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if *name == header::CONNECTION {
            // As `HeaderValue::to_str` reads it: a value with other bytes
            // lists nothing, and is kept for the proxy to judge.
            let Some(text) = visible(value) else {
                return true;
            };
            let mut usual = true;
            for token in text.split(',').map(str::trim) {
                let close = token.eq_ignore_ascii_case("close");
                let keep_alive = token.eq_ignore_ascii_case("keep-alive");
                self.close |= close;
                self.keep_alive |= keep_alive;
                usual &= close
                    || keep_alive
                    || token.is_empty()
                    || token.eq_ignore_ascii_case("upgrade");
            }
            return !usual;
        } else if *name == header::CONTENT_LENGTH {
            self.has_length = true;
            if let Ok(length) = self.length {
                self.length = content_length(value, length);
            }
        } else if *name == header::TRANSFER_ENCODING {
            let chunked = visible(value)
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            self.transfer_encoding = Some(chunked);
        }
        true
    }
}

/// A field value as text, when it is visible ASCII, spaces and tabs
/// only (what `HeaderValue::to_str` accepts).
pub(crate) fn visible(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The number a `Content-Length` value gives (a list of copies of one
/// number is that number), with the one `before` it (RFC 9112 §6.3).
pub(crate) fn content_length(
    value: &[u8],
    before: Option<u64>,
) -> Result<Option<u64>, &'static str> {
    let text = visible(value).ok_or("invalid Content-Length")?;
    let mut length = before;
    for part in text.split(',') {
        let part = part.trim();
        let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u64>().ok())
            .flatten()
            .ok_or("invalid Content-Length")?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length values");
        }
        length = Some(n);
    }
    Ok(length)
}

/// Reads until a final response head (interim `1xx` answers but `101` are
/// skipped), leaving what follows it in `buf`; its fields go in
/// `headers` (empty), their spans in `spans` while it is parsed.
async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    spans: &mut Vec<Span>,
    mut headers: HeaderMap,
) -> Result<Head, Failure> {
    let mut answered = false;
    loop {
        if !buf.is_empty() {
            answered = true;
            match parse_head_into(buf, spans, headers)? {
                Ok(h) if h.status.is_informational() && h.status != 101 => {
                    headers = h.headers;
                    headers.clear();
                    continue;
                }
                Ok(h) => return Ok(h),
                Err(_) if buf.len() >= MAX_HEAD => {
                    return Err(Failure::Failed(format!(
                        "the response head is larger than {MAX_HEAD} bytes"
                    )));
                }
                Err(h) => headers = h,
            }
        }
        buf.reserve(READ_ROOM);
        match r.read_buf(buf).await {
            // Once the request is written, a close is not taken for an
            // idle close: the backend may have read the request and acted
            // on it before closing (a retry policy counts it as an
            // attempt).
            Ok(0) if !answered => {
                return Err(Failure::Failed(
                    "the backend closed the connection without answering".into(),
                ));
            }
            Ok(0) => {
                return Err(Failure::Failed(
                    "the backend closed the connection in the middle of the response head".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(Failure::Failed(e.to_string())),
        }
    }
}

/// Parses a response head at the start of `buf` and removes it; `None`
/// while it is incomplete. Field values share the buffer, no copy.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Failure> {
    Ok(parse_head_into(buf, &mut Vec::new(), HeaderMap::new())?.ok())
}

/// [`parse_head`], its fields put in `headers` (empty) and their spans in
/// `spans` while it is parsed; `Err` gives `headers` back while the head
/// is incomplete.
fn parse_head_into(
    buf: &mut BytesMut,
    spans: &mut Vec<Span>,
    mut headers: HeaderMap,
) -> Result<Result<Head, HeaderMap>, Failure> {
    // Left uninitialized: the parser writes the fields it finds, and
    // setting 128 empty ones first would cost more than the parse.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Err(headers)),
        Err(e) => return Err(Failure::Failed(format!("invalid response head: {e}"))),
    };
    let status = StatusCode::from_u16(resp.code.unwrap_or(0))
        .map_err(|_| Failure::Failed("invalid response status".into()))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each name and value sits in the buffer, to slice them out of
    // the frozen head once the parser lets go of it.
    let base = buf.as_ptr() as usize;
    spans.clear();
    spans.extend(resp.headers.iter().map(|h| {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        [name, name + h.name.len(), value, value + h.value.len()]
    }));
    let head = buf.split_to(len).freeze();
    headers.reserve(spans.len());
    let mut fields = Fields::default();
    for &[ns, ne, vs, ve] in spans.iter() {
        let name = HeaderName::from_bytes(&head[ns..ne])
            .map_err(|_| Failure::Failed("invalid response header name".into()))?;
        if !fields.read(&name, &head[vs..ve]) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| Failure::Failed(format!("invalid value of response header {name}")))?;
        headers.append(name, value);
    }
    Ok(Ok(Head {
        status,
        version,
        headers,
        fields,
    }))
}

/// Whether a response leaves its connection open (RFC 9112 §9.3):
/// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `keep-alive`.
fn keeps_alive(version: Version, fields: &Fields) -> bool {
    if version == Version::HTTP_10 {
        fields.keep_alive && !fields.close
    } else {
        !fields.close
    }
}

/// How a response's body is delimited, and what is left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at this step.
    Chunked(Chunk),
    /// Until the connection closes.
    Close,
    /// Read whole.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data are left.
    Data(u64),
    /// The CRLF after chunk data is next.
    DataEnd,
    /// The trailer section is next.
    Trailers,
}

/// RFC 9112 §6.3, for the answer to `method`.
fn response_framing(
    method: &Method,
    status: StatusCode,
    fields: &Fields,
) -> Result<Framing, Failure> {
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return Ok(Framing::Done);
    }
    if let Some(chunked) = fields.transfer_encoding {
        if fields.has_length {
            return Err(Failure::Failed(
                "the response has both Transfer-Encoding and Content-Length".into(),
            ));
        }
        return Ok(if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        });
    }
    Ok(
        match fields.length.map_err(|e| Failure::Failed(e.into()))? {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        },
    )
}

/// What the decoder made of the bytes read so far.
#[derive(Debug)]
enum Decoded {
    Frame(Frame<Bytes>),
    /// More bytes are needed.
    More,
    /// The body is complete.
    End,
}

/// Takes the next piece of a body framed as `framing` out of `buf`.
fn decode(buf: &mut BytesMut, framing: &mut Framing) -> Result<Decoded, BoxError> {
    loop {
        match framing {
            Framing::Done => return Ok(Decoded::End),
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
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                return Ok(Decoded::Frame(Frame::data(buf.split().freeze())));
            }
            Framing::Chunked(Chunk::Size) => {
                let Some(end) = line_end(buf, MAX_CHUNK_LINE)? else {
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
                let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
                match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        let mut trailers = HeaderMap::with_capacity(fields.len());
                        for f in fields {
                            let name = HeaderName::from_bytes(f.name.as_bytes())?;
                            trailers.append(name, HeaderValue::from_bytes(f.value)?);
                        }
                        buf.advance(len);
                        *framing = Framing::Done;
                        return Ok(Decoded::Frame(Frame::trailers(trailers)));
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
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

/// Where the CRLF ending the first line of `buf` starts; `None` while it
/// has not come, an error when the line is longer than `max` or ends in a
/// bare LF.
pub(crate) fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, BoxError> {
    match buf.iter().take(max + 2).position(|&b| b == b'\n') {
        Some(i) if i > 0 && buf[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => Err("a chunk-size line ends in a bare LF".into()),
        None if buf.len() > max => Err("a chunk-size line is too long".into()),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1): hex digits, then nothing
/// or `;` extensions after optional whitespace.
fn chunk_size(line: &[u8]) -> Result<u64, BoxError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err("invalid chunk size".into());
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    if !(rest.is_empty() || rest[0] == b';') {
        return Err("invalid chunk size".into());
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| "invalid chunk size")?;
    Ok(u64::from_str_radix(text, 16)?)
}

/// A backend's response body, read from its connection; the connection
/// goes back to its pool when the body ends.
struct BackendBody<H: Home> {
    conn: Option<Conn>,
    framing: Framing,
    /// Whether the connection can carry another exchange once the body
    /// is read.
    reusable: bool,
    home: Option<H>,
    /// Room made for the next read.
    room: usize,
}

impl<H: Home> BackendBody<H> {
    fn is_done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// Gives the connection back, or closes it.
    fn finish(&mut self) {
        let conn = self.conn.take();
        if let (Some(conn), Some(home)) = (conn, self.home.take())
            && self.reusable
            && self.framing == Framing::Done
            && conn.read.is_empty()
        {
            home.put(conn);
        }
    }

    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(e)))
    }
}

impl<H: Home> hyper::body::Body for BackendBody<H> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match decode(&mut conn.read, &mut this.framing) {
                Ok(Decoded::Frame(f)) => {
                    // The last piece: the connection goes back now, as the
                    // reader may stop at `is_end_stream` without asking
                    // again.
                    if this.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(f)));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(e) => return this.fail(e),
            }
            conn.read.reserve(this.room);
            let read = {
                let fut = conn.io.read_buf(&mut conn.read);
                let fut = std::pin::pin!(fut);
                ready!(fut.poll(cx))
            };
            match read {
                Ok(0) if this.framing == Framing::Close => {
                    this.framing = Framing::Done;
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(
                        "the backend closed the connection before the end of the response body"
                            .into(),
                    );
                }
                Ok(n) if n >= this.room => this.room = (this.room * 2).min(MAX_READ_ROOM),
                Ok(_) => {}
                Err(e) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A response as [`read_response`] read it.
#[derive(Debug, PartialEq)]
pub(crate) struct ReadResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Option<HeaderMap>,
    /// How many bytes of `wire` follow the message.
    pub(crate) rest: usize,
}

/// Reads one response to `method` from `wire` as a backend connection
/// does (interim answers skipped, framing of RFC 9112 §6.3), fed `step`
/// bytes at a time; `Ok(None)` when `wire` ends before the message does.
/// A body delimited by the connection's close ends with `wire`. For the
/// fuzz targets (`crate::__fuzz`).
pub(crate) fn read_response(
    wire: &[u8],
    method: &Method,
    step: usize,
) -> Result<Option<ReadResponse>, String> {
    let step = step.max(1);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut feed = |buf: &mut BytesMut| {
        let n = step.min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        n > 0
    };
    let head = loop {
        if !buf.is_empty() {
            match parse_head(&mut buf).map_err(|e| e.to_string())? {
                Some(h) if h.status.is_informational() && h.status != 101 => continue,
                Some(h) => break h,
                None if buf.len() >= MAX_HEAD => return Err("the head is too large".into()),
                None => {}
            }
        }
        if !feed(&mut buf) {
            return Ok(None);
        }
    };
    let mut framing =
        response_framing(method, head.status, &head.fields).map_err(|e| e.to_string())?;
    let (mut body, mut trailers) = (Vec::new(), None);
    loop {
        match decode(&mut buf, &mut framing).map_err(|e| e.to_string())? {
            Decoded::Frame(f) => match f.into_data() {
                Ok(d) => body.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            },
            Decoded::End => break,
            Decoded::More if feed(&mut buf) => {}
            Decoded::More if framing == Framing::Close => break,
            Decoded::More => return Ok(None),
        }
    }
    Ok(Some(ReadResponse {
        status: head.status,
        headers: head.headers,
        body,
        trailers,
        rest: buf.len() + wire.len() - fed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        wire: &[u8],
        mut framing: Framing,
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError> {
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match decode(&mut buf, &mut framing)? {
                Decoded::Frame(f) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Decoded::End => return Ok((data, trailers)),
                Decoded::More => {
                    if fed == wire.len() {
                        return Err("incomplete".into());
                    }
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_fed_whole_or_byte_by_byte() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\ngrpc-status: 0\r\nx-t: a\r\n\r\n";
        for step in [1, 3, wire.len()] {
            let (data, trailers) = decode_all(wire, Framing::Chunked(Chunk::Size), step).unwrap();
            assert_eq!(data, b"hello world", "step {step}");
            let t = trailers.expect("trailers");
            assert_eq!(t["grpc-status"], "0");
            assert_eq!(t["x-t"], "a");
        }
        let (data, trailers) = decode_all(
            b"A \r\n0123456789\r\n0\r\n\r\n",
            Framing::Chunked(Chunk::Size),
            2,
        )
        .unwrap();
        assert_eq!(data, b"0123456789");
        assert!(trailers.is_none());
    }

    /// A body as a backend may chunk it: pieces (some empty, which end
    /// nothing: a zero-size chunk is only written as the last one), sizes
    /// in either hex case, optional extensions and trailers.
    fn chunked_wire(
        pieces: &[Vec<u8>],
        upper: bool,
        ext: bool,
        trailers: &[(String, String)],
    ) -> Vec<u8> {
        let mut wire = Vec::new();
        for p in pieces.iter().filter(|p| !p.is_empty()) {
            let size = if upper {
                format!("{:X}", p.len())
            } else {
                format!("{:x}", p.len())
            };
            wire.extend_from_slice(size.as_bytes());
            if ext {
                wire.extend_from_slice(b" ;name=value");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(p);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n");
        for (k, v) in trailers {
            wire.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_decodes_to_its_body_fed_in_any_steps(
            pieces in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..8),
            upper in proptest::bool::ANY,
            ext in proptest::bool::ANY,
            trailers in proptest::collection::vec(("x-[a-z]{1,8}", "[a-z0-9 ]{0,12}"), 0..3),
            step in 1usize..64,
        ) {
            let wire = chunked_wire(&pieces, upper, ext, &trailers);
            let (data, got) = decode_all(&wire, Framing::Chunked(Chunk::Size), step).unwrap();
            proptest::prop_assert_eq!(data, pieces.concat());
            let got = got.unwrap_or_default();
            proptest::prop_assert_eq!(got.len(), trailers.len());
            for (k, v) in &trailers {
                proptest::prop_assert!(got.get_all(k.as_str()).iter().any(|g| g == v.trim()));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_never_overrun(
            wire in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            step in 1usize..64,
            length in 0u64..600,
        ) {
            // Whatever a backend sends, decoding ends in data, an end or an
            // error; a length body never yields more than its length.
            let _ = decode_all(&wire, Framing::Chunked(Chunk::Size), step);
            if let Ok((data, _)) = decode_all(&wire, Framing::Length(length), step) {
                proptest::prop_assert_eq!(data.len() as u64, length);
            }
        }
    }

    #[test]
    fn malformed_chunking_is_an_error_not_data() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode_all(bad, Framing::Chunked(Chunk::Size), 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b'1'; MAX_CHUNK_LINE + 10];
        assert!(decode_all(&long, Framing::Chunked(Chunk::Size), 64).is_err());
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let mut buf = BytesMut::from(&b"abcdeNEXT"[..]);
        let mut framing = Framing::Length(5);
        let Decoded::Frame(f) = decode(&mut buf, &mut framing).unwrap() else {
            panic!("no frame")
        };
        assert_eq!(f.into_data().unwrap(), "abcde");
        assert_eq!(framing, Framing::Done);
        assert_eq!(&buf[..], b"NEXT", "the next message's bytes stay");
    }

    fn head(text: &str) -> Fields {
        let mut buf = BytesMut::from(text.as_bytes());
        parse_head(&mut buf).unwrap().unwrap().fields
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let get = Method::GET;
        let ok = StatusCode::OK;
        let f = |h: &str| response_framing(&get, ok, &head(h));
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n").unwrap(),
            Framing::Length(12)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 12, 12\r\ncontent-length: 12\r\n\r\n").unwrap(),
            Framing::Length(12)
        );
        assert!(f("HTTP/1.1 200 OK\r\ncontent-length: 12, 13\r\n\r\n").is_err());
        assert!(f("HTTP/1.1 200 OK\r\ncontent-length: +12\r\n\r\n").is_err());
        assert!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n")
                .is_err(),
            "both framings: refused"
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n").unwrap(),
            Framing::Chunked(Chunk::Size)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n").unwrap(),
            Framing::Close
        );
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n").unwrap(), Framing::Close);
        let with_length = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        assert_eq!(
            response_framing(&Method::HEAD, ok, &with_length).unwrap(),
            Framing::Done
        );
        assert_eq!(
            response_framing(&get, StatusCode::NOT_MODIFIED, &with_length).unwrap(),
            Framing::Done
        );
    }

    #[test]
    fn heads_parse_incrementally_and_keep_what_follows() {
        let text = b"HTTP/1.1 200 OK\r\nServer: x\r\nX-Long: a b\tc\r\n\r\nbody";
        let head_len = text.len() - 4;
        let mut buf = BytesMut::new();
        for (i, b) in text[..head_len].iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let parsed = parse_head(&mut buf).unwrap();
            if i + 1 < head_len {
                assert!(parsed.is_none(), "complete after {i} bytes");
            } else {
                let h = parsed.unwrap();
                assert_eq!(h.status, 200);
                assert_eq!(h.headers["server"], "x");
                assert_eq!(h.headers["x-long"], "a b\tc");
            }
        }
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&text[..]);
        assert!(parse_head(&mut buf).unwrap().is_some());
        assert_eq!(&buf[..], b"body", "what follows the head stays");
        let mut bad = BytesMut::from(&b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"[..]);
        assert!(parse_head(&mut bad).is_err());
    }

    #[test]
    fn keep_alive_by_version_and_connection_tokens() {
        let h = |t: &str| head(t);
        assert!(keeps_alive(Version::HTTP_11, &h("HTTP/1.1 200 OK\r\n\r\n")));
        assert!(!keeps_alive(
            Version::HTTP_11,
            &h("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\n\r\n")
        ));
        assert!(!keeps_alive(
            Version::HTTP_10,
            &h("HTTP/1.0 200 OK\r\n\r\n")
        ));
        assert!(keeps_alive(
            Version::HTTP_10,
            &h("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n")
        ));
    }

    #[test]
    fn connection_fields_naming_no_other_field_are_read_not_kept() {
        let parse = |t: &str| {
            let mut buf = BytesMut::from(t.as_bytes());
            parse_head(&mut buf).unwrap().unwrap()
        };
        let h = parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nServer: x\r\n\r\n");
        assert_eq!(h.headers.get(header::CONNECTION), None);
        assert_eq!(h.headers["server"], "x");
        assert!(h.fields.keep_alive && !h.fields.close);
        let h = parse("HTTP/1.1 200 OK\r\nConnection: Upgrade, close\r\n\r\n");
        assert_eq!(h.headers.get(header::CONNECTION), None);
        assert!(!keeps_alive(h.version, &h.fields));
        // One that names another field is kept, for the proxy to remove
        // that field too.
        let h = parse("HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\r\n");
        assert_eq!(h.headers[header::CONNECTION], "close, X-Secret");
        assert!(h.fields.close);
    }

    #[test]
    fn request_heads_carry_our_framing_only() {
        let (mut parts, ()) = http::Request::post("/up?x=1")
            .header("host", "a.example")
            .header("content-length", "999")
            .header("transfer-encoding", "chunked")
            .header("x-a", "1")
            .body(())
            .unwrap()
            .into_parts();
        let mut out = Vec::new();
        encode_head(&mut out, &parts, Outgoing::Length(5));
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /up?x=1 HTTP/1.1\r\nhost: a.example\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
        );
        encode_head(&mut out, &parts, Outgoing::Chunked);
        assert!(
            String::from_utf8(out.clone())
                .unwrap()
                .ends_with("x-a: 1\r\ntransfer-encoding: chunked\r\n\r\n")
        );
        encode_head(&mut out, &parts, Outgoing::Empty);
        assert!(
            String::from_utf8(out.clone())
                .unwrap()
                .ends_with("content-length: 0\r\n\r\n")
        );
        parts.method = Method::GET;
        parts.headers.remove("content-length");
        encode_head(&mut out, &parts, Outgoing::Empty);
        assert!(!String::from_utf8(out).unwrap().contains("content-length"));
    }
}
