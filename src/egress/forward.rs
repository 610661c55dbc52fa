//! Stage forward: exactly one plain-HTTP request, relayed by hyper on both sides.
//!
//! The head was already judged (`detect::RequestHead::check_framing`, then the policy); what is left is
//! to make sure the origin receives that request and nothing else. Raw copying after the head cannot
//! promise that: a second request pipelined behind the first (or hidden in a body framed one way for
//! the hub and another for the origin) would reach an origin that was never asked about it. hyper reads
//! the request with its own framing, sends it upstream in origin-form with `Connection: close`, streams
//! the response back, and then closes the client's connection, so nothing after the judged request is
//! ever forwarded. A client that wants another request opens another connection, which is judged anew.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::io::Counted;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the proxy's own: never forwarded in either direction.
const HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Drop hop-by-hop headers, including every header the `Connection` header names.
fn strip_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in HOP {
        h.remove(n);
    }
    for n in &named {
        h.remove(n);
    }
}

/// How the forwarded request ended, for the connection's audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response from the origin was relayed (whatever its status).
    Relayed,
    /// The origin failed before a response head (closed, reset, not HTTP): the client got a 502.
    UpstreamFailed,
    /// No response head within the deadline: the client got a 504.
    UpstreamTimeout,
    /// The client sent no complete request (or went away) before one could be forwarded.
    ClientGone,
}

impl Outcome {
    /// Stable reason code for audit and `X-Proxy-Error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relayed => "relayed",
            Self::UpstreamFailed => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::ClientGone => "client_gone",
        }
    }
}

type Body = Either<Incoming, Full<Bytes>>;

fn answer(status: u16, code: &str, text: String) -> http::Response<Body> {
    let mut r = http::Response::new(Either::Right(Full::new(Bytes::from(text))));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(code) {
        h.insert("x-proxy-error", v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Relay the one request `client` opens with (already judged; `path` is its origin-form target) to
/// `upstream`. `head_timeout` bounds how long the client may take to send the head hyper re-reads
/// (it is already buffered, so only a broken client hits it) and how long the origin may take to
/// start answering. Returns the outcome and the bytes read from and written to the client.
pub async fn one_request<C>(
    client: C,
    upstream: TcpStream,
    path: String,
    head_timeout: Duration,
) -> (Outcome, u64, u64)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (up_bytes, down_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = Counted::new(client, up_bytes.clone(), down_bytes.clone());
    // Header names keep the agent's spelling (and the origin's on the way back): a relay should not be
    // visible to servers that, wrongly, care about case.
    let Ok((sender, conn)) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake::<_, Incoming>(TokioIo::new(upstream))
        .await
    else {
        return (Outcome::UpstreamFailed, 0, 0);
    };
    let sender = std::sync::Mutex::new(Some(sender));
    let outcome = std::sync::Mutex::new(Outcome::ClientGone);
    let svc = hyper::service::service_fn(|mut req: http::Request<Incoming>| {
        let sender = sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let outcome = &outcome;
        let path = path.clone();
        async move {
            let set = |o: Outcome| {
                *outcome
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = o;
            };
            // keep_alive(false) serves one request per connection; a second call cannot happen, but
            // if it did it must not reach the origin.
            let Some(mut sender) = sender else {
                return Ok::<_, std::convert::Infallible>(answer(
                    421,
                    "host_mismatch",
                    "one request per connection\n".into(),
                ));
            };
            *req.uri_mut() = match path.parse() {
                Ok(u) => u,
                Err(_) => http::Uri::from_static("/"),
            };
            *req.version_mut() = http::Version::HTTP_11;
            strip_hop(req.headers_mut());
            req.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            match tokio::time::timeout(head_timeout, sender.send_request(req)).await {
                Ok(Ok(mut resp)) => {
                    set(Outcome::Relayed);
                    strip_hop(resp.headers_mut());
                    Ok(resp.map(Either::Left))
                }
                Ok(Err(_)) => {
                    set(Outcome::UpstreamFailed);
                    Ok(answer(
                        502,
                        Outcome::UpstreamFailed.as_str(),
                        "the origin closed or answered with something other than HTTP\n".into(),
                    ))
                }
                Err(_) => {
                    set(Outcome::UpstreamTimeout);
                    Ok(answer(
                        504,
                        Outcome::UpstreamTimeout.as_str(),
                        "the origin did not answer in time\n".into(),
                    ))
                }
            }
        }
    });
    let server = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .preserve_header_case(true)
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(client), svc);
    tokio::pin!(server, conn);
    // The origin's connection ends once the response body is read (or the sender is gone); the
    // client's once that body is written. The client side decides when the stage is over.
    let mut conn_done = false;
    loop {
        tokio::select! {
            _ = &mut server => break,
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
    let o = *outcome
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (
        o,
        up_bytes.load(Ordering::Relaxed),
        down_bytes.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("proxy-authorization", "Basic eA==".parse().unwrap());
        h.insert("host", "allowed.test".parse().unwrap());
        super::strip_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("host"));
    }
}
