//! What a new connection speaks, read without guessing: a TLS ClientHello (parsed by rustls's own
//! `Acceptor`, reassembled across segments, size-capped), an HTTP/1 request head (httparse), or neither.
//! Every byte read is kept so it can be replayed to whoever handles the connection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest ClientHello accepted (post-quantum key shares make them a few KiB; 64 KiB is generous).
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;
/// Largest HTTP request head accepted.
pub const MAX_HTTP_HEAD: usize = 32 * 1024;

/// A parsed HTTP/1 request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method, e.g. `CONNECT`, `GET`.
    pub method: String,
    /// Request target as sent (authority-form, absolute-form or origin-form).
    pub target: String,
    /// Minor version (HTTP/1.x).
    pub version: u8,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RequestHead {
    /// First value of a header (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// What the client opened with.
#[derive(Debug)]
pub enum Sniffed {
    /// A complete TLS ClientHello (`bytes` holds every byte read so far).
    Tls {
        /// Bytes read, to replay.
        bytes: Bytes,
        /// The SNI host name, if sent.
        sni: Option<String>,
    },
    /// An HTTP/1 request head.
    Http {
        /// The parsed head.
        head: RequestHead,
        /// Bytes read: the head and whatever followed it.
        bytes: Bytes,
        /// Length of the head within `bytes`.
        head_len: usize,
    },
    /// Anything else (or nothing within the timeout): opaque bytes already read.
    Opaque(Bytes),
}

/// Why a connection's opening could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// It took too long.
    #[error("timed out reading the opening bytes")]
    Timeout,
    /// Larger than the caps.
    #[error("opening message too large")]
    TooLarge,
    /// Malformed TLS or HTTP.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The socket failed or closed early.
    #[error("connection closed: {0}")]
    Io(#[from] std::io::Error),
}

async fn read_more(s: &mut TcpStream, buf: &mut BytesMut) -> Result<(), DetectError> {
    buf.reserve(4096);
    if s.read_buf(buf).await? == 0 {
        return Err(DetectError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

fn looks_like_http(b: &[u8]) -> bool {
    let method_end = b.iter().position(|&c| c == b' ');
    match method_end {
        Some(n) => n > 0 && n <= 16 && b[..n].iter().all(u8::is_ascii_uppercase),
        None => b.len() <= 16 && b.iter().all(u8::is_ascii_uppercase),
    }
}

/// Read the client's opening. If nothing arrives within `first_byte` the connection is opaque (a
/// server-speaks-first protocol); once it starts, the whole ClientHello or head must arrive in `timeout`.
///
/// # Errors
/// Timeouts, caps, malformed openings, I/O.
pub async fn sniff(
    s: &mut TcpStream,
    first_byte: Duration,
    timeout: Duration,
) -> Result<Sniffed, DetectError> {
    let mut buf = BytesMut::with_capacity(4096);
    match tokio::time::timeout(first_byte, read_more(s, &mut buf)).await {
        Err(_) => return Ok(Sniffed::Opaque(Bytes::new())),
        Ok(r) => r?,
    }
    let fut = async {
        if buf[0] == 0x16 {
            client_hello(s, buf).await
        } else if looks_like_http(&buf) {
            http_head(s, buf).await
        } else {
            Ok(Sniffed::Opaque(buf.freeze()))
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| DetectError::Timeout)?
}

/// Read until rustls has a complete ClientHello.
async fn client_hello(s: &mut TcpStream, mut buf: BytesMut) -> Result<Sniffed, DetectError> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut fed = 0;
    loop {
        let mut rd = &buf[fed..];
        while !rd.is_empty() {
            acceptor
                .read_tls(&mut rd)
                .map_err(|_| DetectError::Malformed("TLS record"))?;
        }
        fed = buf.len();
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_string);
                return Ok(Sniffed::Tls {
                    bytes: buf.freeze(),
                    sni,
                });
            }
            Ok(None) => {}
            Err(_) => return Err(DetectError::Malformed("TLS ClientHello")),
        }
        if buf.len() > MAX_CLIENT_HELLO {
            return Err(DetectError::TooLarge);
        }
        read_more(s, &mut buf).await?;
    }
}

/// Parse an HTTP/1 head from `buf`, if complete.
///
/// # Errors
/// Malformed heads.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, DetectError> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let head = RequestHead {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                version: req.version.unwrap_or(1),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect(),
            };
            Ok(Some((head, n)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(DetectError::Malformed("HTTP request head")),
    }
}

async fn http_head(s: &mut TcpStream, mut buf: BytesMut) -> Result<Sniffed, DetectError> {
    loop {
        if let Some((head, head_len)) = parse_head(&buf)? {
            return Ok(Sniffed::Http {
                head,
                bytes: buf.freeze(),
                head_len,
            });
        }
        if buf.len() > MAX_HTTP_HEAD {
            return Err(DetectError::TooLarge);
        }
        read_more(s, &mut buf).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_heads() {
        let (h, n) =
            parse_head(b"CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\nrest")
                .unwrap()
                .unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str(), n),
            ("CONNECT", "github.com:443", 57)
        );
        assert_eq!(h.header("host"), Some("github.com:443"));
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x").unwrap().is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").is_err());
        assert!(looks_like_http(b"GET / HTTP/1.1"));
        assert!(looks_like_http(b"CONN"));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH"));
        assert!(!looks_like_http(&[0x16, 3, 1]));
    }
}
