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

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether every origin reads this head the way the hub does: one `Host`, and one unambiguous body
    /// length (RFC 9112 §3.2, §6.1, §6.3). Obs-fold and bare CRs never get here: httparse refuses them.
    ///
    /// SECURITY: the hub decides on this head; an origin that picked another `Host`, or framed the body
    /// differently (and so read part of it as a second request), would serve what was never checked.
    ///
    /// # Errors
    /// The first ambiguity found.
    pub fn check_framing(&self) -> Result<(), Ambiguity> {
        if self.all("host").count() > 1 {
            return Err(Ambiguity::DuplicateHost);
        }
        let mut lengths = self.all("content-length");
        let length = lengths.next();
        if lengths.next().is_some()
            || length.is_some_and(|v| v.is_empty() || !v.iter().all(u8::is_ascii_digit))
        {
            return Err(Ambiguity::ContentLength);
        }
        let mut codings = self.all("transfer-encoding");
        if let Some(te) = codings.next() {
            if length.is_some() {
                return Err(Ambiguity::TransferEncodingWithLength);
            }
            let last = te.rsplit(|&b| b == b',').next().unwrap_or_default();
            if codings.next().is_some()
                || self.version == 0
                || !last.trim_ascii().eq_ignore_ascii_case(b"chunked")
            {
                return Err(Ambiguity::TransferEncoding);
            }
        }
        Ok(())
    }
}

/// A request head an origin could read differently from the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguity {
    /// RFC 9112 §3.2: more than one `Host`.
    #[error("more than one Host header")]
    DuplicateHost,
    /// More than one `Content-Length`, or one that is not a plain decimal number.
    #[error("more than one Content-Length, or one that is not a decimal number")]
    ContentLength,
    /// Both framings at once (RFC 9112 §6.1: a request smuggling vector).
    #[error("Transfer-Encoding together with Content-Length")]
    TransferEncodingWithLength,
    /// A `Transfer-Encoding` whose final coding is not `chunked`, repeated, or sent with HTTP/1.0.
    #[error("Transfer-Encoding must be one header ending in chunked, and HTTP/1.1")]
    TransferEncoding,
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
    /// Malformed TLS.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// It started like an HTTP request, and is not one httparse accepts (obs-fold, a bare CR, a bad
    /// header name): answerable with a 400, unlike the other failures.
    #[error("malformed HTTP request head")]
    BadHttp,
    /// A ClientHello whose server name is not a host name (a numeric one, two of them, bad bytes):
    /// answerable with an `access_denied` alert, like any refused name.
    #[error("invalid TLS server name")]
    BadServerName,
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

/// Whether the opening is an HTTP/1 request line as any origin might take it: after the empty lines
/// RFC 9112 §2.2 lets servers skip, a method made of token characters (any case: some servers accept
/// `get`) and a space. Read wider than the methods the hub knows, because whatever this misses is
/// treated as opaque bytes, which only a raw-TCP allowance lets through. A first segment that ends
/// before the space must be a prefix of an uppercase method, or an opaque protocol that opens with a
/// short word (`ping`) would wait here for a request line that never comes.
fn looks_like_http(b: &[u8]) -> bool {
    let start = b.iter().position(|&c| c != b'\r' && c != b'\n');
    let Some(start) = start else {
        return !b.is_empty();
    };
    let b = &b[start..];
    let tchar = |c: &u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c);
    match b.iter().position(|&c| c == b' ') {
        Some(n) => n > 0 && n <= 16 && b[..n].iter().all(tchar),
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
    sniff_after(s, &[], first_byte, timeout).await
}

/// `sniff` for a stream whose first bytes (`already`) were read with something else, e.g. the bytes
/// a client sent in the same segment as its CONNECT request: they are judged with the rest, and kept.
///
/// # Errors
/// Timeouts, caps, malformed openings, I/O.
pub async fn sniff_after(
    s: &mut TcpStream,
    already: &[u8],
    first_byte: Duration,
    timeout: Duration,
) -> Result<Sniffed, DetectError> {
    let mut buf = BytesMut::with_capacity(4096.max(already.len()));
    buf.extend_from_slice(already);
    if buf.is_empty() {
        match tokio::time::timeout(first_byte, read_more(s, &mut buf)).await {
            Err(_) => return Ok(Sniffed::Opaque(Bytes::new())),
            Ok(r) => r?,
        }
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
    loop {
        if let Some(sni) = parse_client_hello(&buf)? {
            return Ok(Sniffed::Tls {
                bytes: buf.freeze(),
                sni,
            });
        }
        if buf.len() > MAX_CLIENT_HELLO {
            return Err(DetectError::TooLarge);
        }
        read_more(s, &mut buf).await?;
    }
}

/// The server name of the ClientHello at the start of `buf`, read by rustls's own `Acceptor`:
/// `Ok(None)` while it is incomplete, `Ok(Some(None))` for a ClientHello without SNI. Each call
/// parses from the start (a ClientHello spans a segment or two, so re-reading is cheaper than
/// keeping an acceptor across reads), which also makes it a pure function for the fuzzer.
///
/// # Errors
/// Malformed TLS records or ClientHello; `BadServerName` for a server name that is not a host name.
pub fn parse_client_hello(buf: &[u8]) -> Result<Option<Option<String>>, DetectError> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd = buf;
    while !rd.is_empty() {
        // Ok(0) with bytes left: rustls's buffer is full; never loop on it.
        match acceptor.read_tls(&mut rd) {
            Ok(0) => return Err(DetectError::TooLarge),
            Ok(_) => {}
            Err(_) => return Err(DetectError::Malformed("TLS record")),
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Ok(Some(
            accepted.client_hello().server_name().map(str::to_string),
        )),
        Ok(None) => Ok(None),
        Err((
            rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::ServerNameMustContainOneHostName)
            | rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidServerName),
            _,
        )) => Err(DetectError::BadServerName),
        Err(_) => Err(DetectError::Malformed("TLS ClientHello")),
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
        Err(_) => Err(DetectError::BadHttp),
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
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH_9.2p1 Debian-2"));
        assert!(looks_like_http(b"\r\nGET / HTTP/1.1"));
        assert!(looks_like_http(b"get / HTTP/1.1"));
        assert!(!looks_like_http(&[0x16, 3, 1]));
    }

    fn framing(head: &str) -> Result<(), Ambiguity> {
        let (h, _) = parse_head(head.as_bytes()).unwrap().unwrap();
        h.check_framing()
    }

    #[test]
    fn ambiguous_heads_are_named() {
        use Ambiguity::*;
        let cases: &[(&str, Result<(), Ambiguity>)] = &[
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                Ok(()),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                Ok(()),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                Ok(()),
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
                Err(DuplicateHost),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Err(ContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
                Err(ContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
                Err(ContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(TransferEncodingWithLength),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Err(TransferEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(TransferEncoding),
            ),
            (
                "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(TransferEncoding),
            ),
        ];
        for (head, want) in cases {
            assert_eq!(framing(head), *want, "{head:?}");
        }
        // Obs-fold and a bare CR do not parse at all: the caller answers 400 malformed_request.
        for head in [
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\rHost: b\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(head.as_bytes()), Err(DetectError::BadHttp)),
                "{head:?}"
            );
        }
    }
}
