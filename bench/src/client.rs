//! A lean HTTP/1.1 keep-alive client over a tokio `TcpStream`: one request in flight
//! per connection, requests written by hand, responses parsed by hand (status line,
//! `Content-Length` or chunked bodies, `Connection: close`).
//!
//! It does only what a closed-loop load generator needs, so that the client costs as
//! little CPU as possible on a machine it shares with the server.

use std::fmt::Write as _;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted; a longer one is a broken server.
const HEAD_BYTES_MAX: usize = 64 << 10;
/// Largest response body accepted.
const BODY_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad response: {0}")]
    Parse(String),
    #[error("the server closed the connection")]
    Closed,
}

fn bad(detail: impl Into<String>) -> ClientError {
    ClientError::Parse(detail.into())
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, up to and including the blank line.
    pub head_len: usize,
    pub framing: Framing,
    /// The server will close the connection after this response.
    pub close: bool,
    /// The response carries a `Retry-After` header (what every 429/503 must have).
    pub retry_after: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` until it is complete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ClientError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > HEAD_BYTES_MAX { Err(bad("response head too long")) } else { Ok(None) };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1 status line: {status_line:?}")));
    }
    let status = parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut framing = None;
    let mut close = version == "HTTP/1.0";
    let mut retry_after = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value.parse::<usize>().map_err(|_| bad(format!("bad content-length {value:?}")))?;
            if n > BODY_BYTES_MAX {
                return Err(bad(format!("body of {n} bytes is too large")));
            }
            framing = Some(Framing::Length(n));
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            framing = Some(Framing::Chunked);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = !value.is_empty();
        }
    }
    // Without a length a 1xx/204/304 has no body; anything else would be read to EOF,
    // which a keep-alive load generator does not support.
    let framing = match framing {
        Some(f) => f,
        None if status == 204 || status == 304 || status < 200 => Framing::Length(0),
        None => return Err(bad("response without content-length or chunked encoding")),
    };
    Ok(Some(Head { status, head_len: end + 4, framing, close, retry_after }))
}

/// Decodes a chunked body at the start of `buf` into `out`. Returns the bytes it
/// spans (trailers included) once complete, `Ok(None)` while more is needed.
pub fn decode_chunked(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, ClientError> {
    out.clear();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&buf[pos..], b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&buf[pos..pos + line_end]).map_err(|_| bad("chunk size is not UTF-8"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad(format!("bad chunk size {size_hex:?}")))?;
        pos += line_end + 2;
        if size == 0 {
            // Trailer lines (usually none), then an empty line.
            loop {
                let Some(e) = find(&buf[pos..], b"\r\n") else { return Ok(None) };
                pos += e + 2;
                if e == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        if out.len() + size > BODY_BYTES_MAX {
            return Err(bad("chunked body too large"));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        pos += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends a complete request to `out`. `headers` are written as given; `Host`,
/// `Content-Length` (when there is a body) are added.
pub fn write_request(out: &mut Vec<u8>, method: &str, path: &str, host: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = String::with_capacity(256);
    // Writing into a String cannot fail.
    let _ = write!(head, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        let _ = write!(head, "Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
}

/// A response borrowed from the connection's buffers until the next request.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a [u8],
    pub retry_after: bool,
}

/// One keep-alive connection.
pub struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    /// Received bytes; `buf[..filled]` is valid.
    buf: Vec<u8>,
    filled: usize,
    /// The decoded body of a chunked response.
    chunked_body: Vec<u8>,
    /// Answers received on the current TCP connection, and when the last one came:
    /// what a connection error is reported with.
    answered: u64,
    last_answer: Option<std::time::Instant>,
}

impl Conn {
    pub fn new(addr: &str) -> Conn {
        Conn {
            addr: addr.to_string(),
            stream: None,
            buf: vec![0; 16 << 10],
            filled: 0,
            chunked_body: Vec::new(),
            answered: 0,
            last_answer: None,
        }
    }

    async fn stream(&mut self) -> Result<&mut TcpStream, ClientError> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.filled = 0;
            self.answered = 0;
            self.last_answer = None;
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// Sends one complete request (as built by [`write_request`]) and reads the
    /// response. On any error the connection is dropped and the next call reconnects.
    pub async fn send(&mut self, request: &[u8]) -> Result<Response<'_>, ClientError> {
        match self.exchange(request).await {
            Ok((head, body_at, body_len)) => {
                self.answered += 1;
                self.last_answer = Some(std::time::Instant::now());
                if head.close {
                    self.stream = None;
                }
                let body = match body_at {
                    Some(at) => &self.buf[at..at + body_len],
                    None => &self.chunked_body[..],
                };
                Ok(Response { status: head.status, body, retry_after: head.retry_after })
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    /// Where the connection stood: for reporting a connection error.
    pub fn describe(&self) -> String {
        let idle = self.last_answer.map_or("-".to_string(), |t| format!("{} ms", t.elapsed().as_millis()));
        format!("{} answers on the connection before, last one {idle} ago", self.answered)
    }

    /// Returns (status, where the body starts in `buf` or `None` for a decoded chunked
    /// body, body length, close).
    async fn exchange(&mut self, request: &[u8]) -> Result<(Head, Option<usize>, usize), ClientError> {
        // The previous response was consumed whole (one request in flight), so whatever
        // is left would be a protocol error; start clean.
        self.filled = 0;
        self.stream().await?.write_all(request).await?;
        let head = loop {
            if let Some(h) = parse_head(&self.buf[..self.filled])? {
                break h;
            }
            self.read_more().await?;
        };
        match head.framing {
            Framing::Length(n) => {
                let total = head.head_len + n;
                while self.filled < total {
                    self.read_more().await?;
                }
                Ok((head, Some(head.head_len), n))
            }
            Framing::Chunked => loop {
                if decode_chunked(&self.buf[head.head_len..self.filled], &mut self.chunked_body)?.is_some() {
                    return Ok((head, None, self.chunked_body.len()));
                }
                self.read_more().await?;
            },
        }
    }

    async fn read_more(&mut self) -> Result<(), ClientError> {
        if self.filled == self.buf.len() {
            let grown = (self.buf.len() * 2).min(BODY_BYTES_MAX + HEAD_BYTES_MAX);
            if grown == self.buf.len() {
                return Err(bad("response larger than the client accepts"));
            }
            self.buf.resize(grown, 0);
        }
        let stream = self.stream.as_mut().ok_or(ClientError::Closed)?;
        let n = stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        self.filled += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_with_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!(h, Head { status: 200, head_len: raw.len() - 2, framing: Framing::Length(2), close: false, retry_after: false });
    }

    #[test]
    fn head_incomplete_then_complete() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        for cut in [0, 10, raw.len() - 1] {
            assert_eq!(parse_head(&raw[..cut]).unwrap(), None, "cut at {cut}");
        }
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!((h.status, h.close, h.framing, h.retry_after), (503, true, Framing::Length(0), true));
    }

    #[test]
    fn head_errors() {
        assert!(parse_head(b"HTTP/2 200\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno-colon\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "a 200 without framing is refused");
        assert_eq!(parse_head(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap().framing, Framing::Length(0));
        assert!(parse_head(&vec![b'a'; HEAD_BYTES_MAX + 1]).is_err());
    }

    #[test]
    fn chunked_bodies_decode_across_partial_reads() {
        let body = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
        let mut out = Vec::new();
        for cut in 0..body.len() {
            assert_eq!(decode_chunked(&body[..cut], &mut out).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(decode_chunked(body, &mut out).unwrap(), Some(body.len()));
        assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.");
        let with_trailer = b"1\r\na\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(decode_chunked(with_trailer, &mut out).unwrap(), Some(with_trailer.len()));
        assert!(decode_chunked(b"zz\r\n", &mut out).is_err());
        assert!(decode_chunked(b"1\r\nab\r\n", &mut out).is_err());
    }

    #[test]
    fn requests_carry_host_and_length() {
        let mut out = Vec::new();
        write_request(&mut out, "POST", "/v1/x", "127.0.0.1:1", &[("Idempotency-Key", "k1")], b"{}");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\nIdempotency-Key: k1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let mut get = Vec::new();
        write_request(&mut get, "GET", "/healthz", "h", &[], b"");
        assert_eq!(get, b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n");
    }

    #[tokio::test]
    async fn conn_talks_to_a_local_server_and_reconnects_after_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            // First connection: two keep-alive answers, the second split in two writes
            // and closing. Second connection: a chunked answer.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await.unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 201 Created\r\nconnection: close\r\ncontent-le").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            s.write_all(b"ngth: 3\r\n\r\nabc").await.unwrap();
            drop(s);
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n").await.unwrap();
        });
        let mut conn = Conn::new(&addr);
        let mut req = Vec::new();
        write_request(&mut req, "GET", "/", &addr, &[], b"");
        let r = conn.send(&req).await.unwrap();
        assert_eq!((r.status, r.body), (200, &b"hello"[..]));
        let r = conn.send(&req).await.unwrap();
        assert_eq!((r.status, r.body), (201, &b"abc"[..]));
        let r = conn.send(&req).await.unwrap();
        assert_eq!((r.status, r.body), (200, &b"xyz"[..]));
    }
}
