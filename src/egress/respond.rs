//! How a refused connection is told so, immediately and with the reason, so agents stop retrying:
//! HTTP and CONNECT get 403 with `X-Proxy-Error`; TLS gets an `access_denied` alert (no certificate is
//! minted for a denied name); anything else gets a TCP reset.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::policy::DenyReason;

/// A TLS 1.2-framed fatal `access_denied` (49) alert record: type 21, version 3.3, length 2.
/// Written raw because no TLS session exists yet; every TLS client understands it before the handshake.
const TLS_ACCESS_DENIED: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31];

/// The explanation sent to the agent.
pub fn explain(
    reason: DenyReason,
    host: &str,
    devbox: Option<&str>,
    policy: Option<&str>,
) -> String {
    let who = match (devbox, policy) {
        (Some(d), Some(p)) => format!("devbox {d:?} (network policy {p:?})"),
        (Some(d), None) => format!("devbox {d:?} (no network policy)"),
        _ => "this source address (not a registered devbox)".to_string(),
    };
    format!(
        "{host}: blocked by network policy for {who}: {}\n",
        reason.as_str()
    )
}

/// `status` with `X-Proxy-Error: code`, then close. `code` is the reason the audit line records: a
/// `DenyReason`'s code for refusals, or an error code (`upstream_unreachable`) for failures.
pub async fn http(s: &mut TcpStream, status: u16, code: &str, body: &str) {
    let text = match status {
        400 => "Bad Request",
        421 => "Misdirected Request",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Forbidden",
    };
    let msg = format!(
        "HTTP/1.1 {status} {text}\r\nX-Proxy-Error: {code}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(msg.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// TLS `access_denied` alert, then close.
pub async fn tls(s: &mut TcpStream) {
    let _ = s.write_all(&TLS_ACCESS_DENIED).await;
    let _ = s.shutdown().await;
}

/// Close with a TCP reset (SO_LINGER 0), so the client fails at once instead of waiting.
pub fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}
