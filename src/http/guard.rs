//! A guard on every connection, in front of actix-http's HTTP/1 parser.
//!
//! actix-http answers some bad request heads itself, before the application and with an
//! empty body: a request target past 64 KiB (400), a head past 128 KiB (431), a
//! `Content-Length` that does not parse or appears twice (400), a malformed request line
//! or header (400) — and nothing in actix-web lets an application change those answers.
//! The guard reads each request head first and refuses, with an RFC 9457 problem, every
//! head actix would refuse, and also a target past [`URI_BYTES_MAX`] (414) and a head
//! past [`HEAD_BYTES_MAX`] or with more than [`HEADERS_MAX`] fields (431). actix only
//! ever sees heads it accepts. To know where the next head starts, the guard follows
//! each body's framing (`Content-Length`, chunked); after an upgrade or a `CONNECT`, or a
//! chunked body it cannot follow (actix refuses that body itself), it passes everything.
//!
//! A refused head is not passed on: actix sees the connection end there, answers the
//! requests before it, and shuts the connection down. The guard then writes the problem
//! (after those answers), closes its sending side, and reads and drops what the client
//! still sends — at most [`DRAIN_BYTES_MAX`], within actix's disconnect timeout — so that
//! closing with unread data does not reset the connection before the client reads the
//! answer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::http::{Method, Uri};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::problem::Problem;
use crate::domain::ErrorCode;

/// Longest request target (path and query), in bytes: 414 past it. Far above any
/// request of this API (a search's longest query string is a few KiB).
pub const URI_BYTES_MAX: usize = 8 << 10;
/// Longest request head (request line and header fields), in bytes: 431 past it.
pub const HEAD_BYTES_MAX: usize = 32 << 10;
/// Most header fields in a request head: 431 past it (actix's own bound is 96).
pub const HEADERS_MAX: usize = 64;
/// Most bytes read and dropped after a refusal before the connection closes.
const DRAIN_BYTES_MAX: usize = 1 << 20;
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 8 << 10;

/// Where the connection's byte stream is.
#[derive(Debug)]
enum State {
    /// The next bytes are a request head.
    Head,
    /// This many body bytes remain.
    Body(u64),
    /// A chunked body.
    Chunked(Chunks),
    /// Everything passes: an upgrade, `CONNECT`, or a body the guard cannot follow.
    Through,
    /// A head was refused: nothing more is passed on.
    Refused,
}

/// A TCP connection whose request heads are checked before actix-http reads them.
pub struct Guarded {
    io: TcpStream,
    /// Bytes read and held back: the start of a head still arriving, and checked bytes
    /// after it that did not fit the reader's buffer (`buf[start..ready]`).
    buf: Vec<u8>,
    start: usize,
    ready: usize,
    state: State,
    /// The refusal to send at shutdown, and how much of it is sent.
    refusal: Option<(Vec<u8>, usize)>,
    closed_sending: bool,
    drained: usize,
}

impl Guarded {
    pub fn new(io: TcpStream) -> Guarded {
        Guarded { io, buf: Vec::new(), start: 0, ready: 0, state: State::Head, refusal: None, closed_sending: false, drained: 0 }
    }

    fn scan(&mut self, bytes: &[u8]) -> usize {
        scan(&mut self.state, &mut self.refusal, bytes)
    }

    /// Reads straight into the reader's buffer and keeps back what may not be passed
    /// on (the common case keeps nothing, copies nothing). `Ok(None)`: nothing new was
    /// passed, read again; `Ok(Some(()))`: done (bytes passed, or the end).
    fn poll_read_direct(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<Option<()>>> {
        let before = out.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, out))?;
        let got = out.filled().len() - before;
        if got == 0 {
            return Poll::Ready(Ok(Some(())));
        }
        let passed = self.scan(&out.filled()[before..]);
        if passed < got {
            if !matches!(self.state, State::Refused) {
                self.buf.extend_from_slice(&out.filled()[before + passed..]);
            }
            out.set_filled(before + passed);
        }
        Poll::Ready(Ok((passed > 0 || matches!(self.state, State::Refused)).then_some(())))
    }

    /// With bytes held back: reads more after them, checks, and passes what it can.
    fn poll_read_held(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<Option<()>>> {
        if self.ready == self.start {
            let mut chunk = [0u8; READ_CHUNK_BYTES];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // The client closed inside a head: it is not passed on.
                return Poll::Ready(Ok(Some(())));
            }
            self.buf.extend_from_slice(rb.filled());
            let mut held = std::mem::take(&mut self.buf);
            let passed = self.scan(&held[self.ready..]);
            self.ready += passed;
            if matches!(self.state, State::Refused) {
                held.truncate(self.ready);
            }
            self.buf = held;
        }
        let n = (self.ready - self.start).min(out.remaining());
        out.put_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.buf.len() {
            // All passed on: an idle connection holds no buffer.
            (self.buf, self.start, self.ready) = (Vec::new(), 0, 0);
        } else if self.start == self.ready && self.start > 0 {
            self.buf.drain(..self.start);
            (self.start, self.ready) = (0, 0);
        }
        Poll::Ready(Ok((n > 0 || matches!(self.state, State::Refused) && self.buf.is_empty()).then_some(())))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.buf.is_empty() && matches!(this.state, State::Refused) {
                // actix sees the connection end here, answers what came before and
                // shuts the connection down; the refusal goes out then.
                return Poll::Ready(Ok(()));
            }
            let step = if this.buf.is_empty() { this.poll_read_direct(cx, out) } else { this.poll_read_held(cx, out) };
            if ready!(step)?.is_some() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some((answer, sent)) = &mut this.refusal else {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        };
        while *sent < answer.len() {
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, &answer[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        if !this.closed_sending {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.closed_sending = true;
        }
        // Read what the client still sends, so that closing does not reset the answer
        // away before it reads it; bounded, and by actix's disconnect timeout.
        let mut sink = [0u8; READ_CHUNK_BYTES];
        while this.drained < DRAIN_BYTES_MAX {
            let mut rb = ReadBuf::new(&mut sink);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb)) {
                Ok(()) if rb.filled().is_empty() => break,
                Ok(()) => this.drained += rb.filled().len(),
                Err(_) => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Follows `bytes` from the current state; returns how many of them may be passed
/// on. The rest, if any, are the start of a head still arriving, or follow a refused
/// head.
fn scan(state: &mut State, refusal: &mut Option<(Vec<u8>, usize)>, bytes: &[u8]) -> usize {
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        match state {
            State::Head => match check_head(rest) {
                HeadCheck::Partial => break,
                HeadCheck::Complete { len, next } => {
                    at += len;
                    *state = next;
                }
                HeadCheck::Refused(problem) => {
                    tracing::debug!(code = problem.code.as_str(), detail = %problem.detail, "request head refused before the app");
                    *refusal = Some((problem.raw_response(), 0));
                    *state = State::Refused;
                    break;
                }
            },
            State::Body(left) => {
                let take = (*left).min(rest.len() as u64);
                at += take as usize;
                *left -= take;
                if *left == 0 {
                    *state = State::Head;
                }
            }
            State::Chunked(chunks) => {
                let (used, step) = chunks.feed(rest);
                at += used;
                match step {
                    ChunkStep::More => {}
                    ChunkStep::Done => *state = State::Head,
                    ChunkStep::Lost => *state = State::Through,
                }
            }
            State::Through => at = bytes.len(),
            State::Refused => break,
        }
    }
    at
}

/// What a request head turned out to be.
enum HeadCheck {
    /// Not all of it has arrived, and what has is within the bounds.
    Partial,
    /// Acceptable: `len` bytes, and what follows it.
    Complete {
        len: usize,
        next: State,
    },
    Refused(Problem),
}

fn refuse(code: ErrorCode, detail: impl Into<String>) -> HeadCheck {
    HeadCheck::Refused(Problem::new(code, detail))
}

fn bad(detail: impl Into<String>) -> HeadCheck {
    refuse(ErrorCode::InvalidRequest, detail)
}

fn uri_too_long() -> HeadCheck {
    refuse(ErrorCode::UriTooLong, format!("the request target may be at most {URI_BYTES_MAX} bytes; shorten the path or query string"))
}

fn head_too_large() -> HeadCheck {
    refuse(
        ErrorCode::HeadersTooLarge,
        format!(
            "a request head may be at most {HEAD_BYTES_MAX} bytes with at most {HEADERS_MAX} header fields; send fewer or shorter headers"
        ),
    )
}

/// Checks the head at the start of `bytes` as actix-http's decoder would (same parser,
/// same rules on `Content-Length`, `Transfer-Encoding` and `Host`), within this module's
/// bounds.
fn check_head(bytes: &[u8]) -> HeadCheck {
    // The target is checked as soon as the request line is in, however long the rest.
    let line_end = bytes.iter().position(|&b| b == b'\n');
    let line = &bytes[..line_end.unwrap_or(bytes.len())];
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or(&[]);
    if target.len() > URI_BYTES_MAX || (line_end.is_none() && line.len() > URI_BYTES_MAX + 64) {
        return uri_too_long();
    }
    let mut fields = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() > HEAD_BYTES_MAX => return head_too_large(),
        Ok(httparse::Status::Partial) => return HeadCheck::Partial,
        Err(httparse::Error::TooManyHeaders) => return head_too_large(),
        Err(e) => return bad(format!("the request head cannot be parsed ({e}); send an HTTP/1.1 request")),
    };
    if len > HEAD_BYTES_MAX {
        return head_too_large();
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return bad("the request line is incomplete");
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return bad("the request method is not a valid token") };
    if Uri::try_from(path).is_err() {
        return bad("the request target is not a valid URI; percent-encode it");
    }
    match framing(&method, version, req.headers) {
        Ok(next) => HeadCheck::Complete { len, next },
        Err(detail) => bad(detail),
    }
}

/// The body that follows a head, by actix-http's rules, or why the head is refused.
fn framing(method: &Method, version: u8, fields: &[httparse::Header<'_>]) -> Result<State, String> {
    let (mut length, mut chunked, mut te, mut host, mut websocket) = (None, false, false, false, false);
    for f in fields {
        let value = std::str::from_utf8(f.value).map(str::trim);
        if f.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err("the request has more than one Content-Length".into());
            }
            match value.ok().filter(|v| !v.starts_with('+')).and_then(|v| v.parse::<u64>().ok()) {
                Some(n) => length = Some(n),
                None => return Err("Content-Length must be the body's length in bytes (at most 2^64 - 1)".into()),
            }
        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
            if te {
                return Err("the request has more than one Transfer-Encoding".into());
            }
            te = true;
            if version == 1 {
                match value {
                    Ok(v) if v.eq_ignore_ascii_case("chunked") => chunked = true,
                    Ok(v) if v.eq_ignore_ascii_case("identity") => {}
                    _ => return Err("Transfer-Encoding must be chunked".into()),
                }
            }
        } else if f.name.eq_ignore_ascii_case("host") {
            if host {
                return Err("the request has more than one Host".into());
            }
            host = true;
        } else if f.name.eq_ignore_ascii_case("upgrade") {
            websocket = websocket || value.is_ok_and(|v| v.eq_ignore_ascii_case("websocket"));
        }
    }
    if version == 1 && !host {
        return Err("an HTTP/1.1 request needs a Host header".into());
    }
    if te && (version == 0 || !chunked || length.is_some()) {
        return Err("Transfer-Encoding must be chunked, on HTTP/1.1, without Content-Length".into());
    }
    if version == 0 && method == Method::POST && length.is_none() {
        return Err("an HTTP/1.0 POST needs a Content-Length".into());
    }
    Ok(match (chunked, websocket, length) {
        (true, _, _) => State::Chunked(Chunks::Size { value: 0, digits: 0 }),
        (false, true, _) => State::Through,
        (false, false, Some(n)) if n > 0 => State::Body(n),
        _ if method == Method::CONNECT => State::Through,
        _ => State::Head,
    })
}

/// Where a chunked body is (RFC 9112 §7.1).
#[derive(Debug)]
enum Chunks {
    Size { value: u64, digits: u32 },
    Extension { value: u64 },
    SizeLf { value: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
}

enum ChunkStep {
    More,
    Done,
    /// Not chunked encoding as the guard reads it: stop following it.
    Lost,
}

impl Chunks {
    fn after_size(value: u64) -> Chunks {
        if value == 0 {
            Chunks::TrailerStart
        } else {
            Chunks::Data(value)
        }
    }

    /// Follows `bytes`; returns how many belong to the body and whether it ended.
    fn feed(&mut self, bytes: &[u8]) -> (usize, ChunkStep) {
        let mut i = 0;
        while i < bytes.len() {
            if let Chunks::Data(left) = self {
                let take = (*left).min((bytes.len() - i) as u64);
                i += take as usize;
                *left -= take;
                if *left == 0 {
                    *self = Chunks::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            *self = match (&*self, b) {
                (Chunks::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                    let digit = u64::from((b as char).to_digit(16).expect("a hex digit"));
                    match value.checked_mul(16).and_then(|v| v.checked_add(digit)) {
                        Some(v) => Chunks::Size { value: v, digits: digits + 1 },
                        None => return (i, ChunkStep::Lost),
                    }
                }
                (Chunks::Size { value, digits }, b';' | b' ' | b'\t') if *digits > 0 => Chunks::Extension { value: *value },
                (Chunks::Size { value, digits }, b'\r') if *digits > 0 => Chunks::SizeLf { value: *value },
                (Chunks::Size { value, digits }, b'\n') if *digits > 0 => Chunks::after_size(*value),
                (Chunks::Extension { value }, b'\r') => Chunks::SizeLf { value: *value },
                (Chunks::Extension { value }, b'\n') => Chunks::after_size(*value),
                (Chunks::Extension { value }, _) => Chunks::Extension { value: *value },
                (Chunks::SizeLf { value }, b'\n') => Chunks::after_size(*value),
                (Chunks::DataCr, b'\r') => Chunks::DataLf,
                (Chunks::DataCr | Chunks::DataLf, b'\n') => Chunks::Size { value: 0, digits: 0 },
                (Chunks::TrailerStart, b'\r') => Chunks::EndLf,
                (Chunks::TrailerStart | Chunks::EndLf, b'\n') => return (i, ChunkStep::Done),
                (Chunks::TrailerLine, b'\r') => Chunks::TrailerLf,
                (Chunks::TrailerLf | Chunks::TrailerLine, b'\n') => Chunks::TrailerStart,
                (Chunks::TrailerStart | Chunks::TrailerLine, _) => Chunks::TrailerLine,
                _ => return (i, ChunkStep::Lost),
            };
        }
        (i, ChunkStep::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(bytes: &[u8]) -> Result<usize, String> {
        match check_head(bytes) {
            HeadCheck::Partial => Err("partial".into()),
            HeadCheck::Complete { len, .. } => Ok(len),
            HeadCheck::Refused(p) => Err(p.code.as_str().to_string()),
        }
    }

    #[test]
    fn heads_actix_would_refuse_are_refused_here_first() {
        let ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(code(ok), Ok(ok.len()));
        assert_eq!(code(&ok[..20]), Err("partial".into()));
        let cases: [(&[u8], &str); 9] = [
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", "invalid_request"),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", "invalid_request"),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", "invalid_request"),
            (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "invalid_request"),
            (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "invalid_request"),
            (b"GET /x HTTP/1.1\r\n\r\n", "invalid_request"),
            (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "invalid_request"),
            (b"POST /x HTTP/1.0\r\n\r\n", "invalid_request"),
            (b"GET /x HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", "invalid_request"),
        ];
        for (head, want) in cases {
            assert_eq!(code(head), Err(want.to_string()), "{}", String::from_utf8_lossy(head));
        }
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(URI_BYTES_MAX));
        assert_eq!(code(long.as_bytes()), Err("uri_too_long".into()), "refused before the head is in");
        let long = format!("GET /{}", "a".repeat(URI_BYTES_MAX + 100));
        assert_eq!(code(long.as_bytes()), Err("uri_too_long".into()), "refused before the line is in");
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "A: b\r\n".repeat(HEADERS_MAX));
        assert_eq!(code(many.as_bytes()), Err("headers_too_large".into()));
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nA: {}", "b".repeat(HEAD_BYTES_MAX));
        assert_eq!(code(big.as_bytes()), Err("headers_too_large".into()));
    }

    /// A request with a body framed by `Content-Length` or chunked (in chunks of the
    /// given sizes), as a client sends it.
    fn request(body: &[u8], chunks: Option<&[usize]>) -> Vec<u8> {
        let mut out = b"POST /v1/brands/b/imports?kind=stock HTTP/1.1\r\nHost: x\r\n".to_vec();
        match chunks {
            None => {
                out.extend(format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes());
                out.extend_from_slice(body);
            }
            Some(sizes) => {
                out.extend(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = body;
                for size in sizes.iter().copied().chain(std::iter::once(usize::MAX)) {
                    let n = size.clamp(1, rest.len().max(1)).min(rest.len());
                    if n == 0 {
                        break;
                    }
                    out.extend(format!("{n:x}\r\n").into_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend(b"\r\n");
                    rest = &rest[n..];
                }
                out.extend(b"0\r\n\r\n");
            }
        }
        out
    }

    /// Feeds a stream in `pieces` as the guard reads it: what is not passed is held and
    /// read again with what follows. Returns the bytes passed.
    fn through(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, State, bool) {
        let (mut state, mut refusal) = (State::Head, None);
        let (mut held, mut passed) = (Vec::new(), Vec::new());
        let mut at = 0;
        for cut in cuts.iter().map(|c| c % (stream.len() + 1)).chain([stream.len()]) {
            if cut <= at {
                continue;
            }
            held.extend_from_slice(&stream[at..cut]);
            at = cut;
            let n = scan(&mut state, &mut refusal, &held);
            passed.extend_from_slice(&held[..n]);
            held.drain(..n);
        }
        (passed, state, refusal.is_some())
    }

    proptest::proptest! {
        /// Pipelined requests with bodies of every framing, read in any pieces: every byte
        /// is passed, and the stream ends at a head. With a bad head after them, exactly
        /// the requests before it are passed.
        #[test]
        fn framing_is_followed_however_the_stream_is_split(
            bodies in proptest::collection::vec((proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), proptest::option::of(proptest::collection::vec(1usize..64, 0..6))), 1..5),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..12),
        ) {
            let mut stream = Vec::new();
            for (body, chunks) in &bodies {
                stream.extend(request(body, chunks.as_deref()));
            }
            let (passed, state, refused) = through(&stream, &cuts);
            proptest::prop_assert!(passed == stream && matches!(state, State::Head) && !refused);
            let good = stream.len();
            stream.extend(b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nGET / HTTP/1.1\r\n");
            let (passed, state, refused) = through(&stream, &cuts);
            proptest::prop_assert!(passed.len() == good && matches!(state, State::Refused) && refused);
        }
    }

    #[test]
    fn chunked_bodies_are_followed_to_their_end() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        // Whole, and a byte at a time.
        let mut c = Chunks::Size { value: 0, digits: 0 };
        assert!(matches!(c.feed(body), (n, ChunkStep::Done) if n == end));
        let mut c = Chunks::Size { value: 0, digits: 0 };
        let mut used = 0;
        for (i, b) in body.iter().enumerate() {
            match c.feed(std::slice::from_ref(b)) {
                (1, ChunkStep::More) => {}
                (1, ChunkStep::Done) => {
                    used = i + 1;
                    break;
                }
                _ => panic!("byte {i}"),
            }
        }
        assert_eq!(used, end);
        let mut c = Chunks::Size { value: 0, digits: 0 };
        assert!(matches!(c.feed(b"zz\r\n"), (_, ChunkStep::Lost)));
        let mut c = Chunks::Size { value: 0, digits: 0 };
        assert!(matches!(c.feed(b"fffffffffffffffff\r\n"), (_, ChunkStep::Lost)), "a size past u64");
    }
}
