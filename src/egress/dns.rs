//! DNS responder for devboxes (UDP and TCP), built on hickory-proto's wire format.
//!
//! SECURITY: DNS must not become a way out. A query is answered only for a registered devbox and only
//! for a name its policy allows: the gateway hosts (MCP and agent) get `egress.gateway_addresses`; an allowed name is
//! resolved by the hub and answered only if every address passes the same classification as a
//! connection would. Everything else is REFUSED and never forwarded anywhere, so data encoded into
//! names of an attacker's domain never leaves the host.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::egress::resolve::{ResolveError, Resolver};
use crate::policy::host::{Target, parse_host};
use crate::policy::{self, DenyReason, Verdict};
use crate::runtime::snapshot::canonical_ip;
use crate::runtime::{Live, Snapshot};

/// TTL of answers: short, so policy changes reach devboxes quickly.
pub const TTL: u32 = 30;
/// Time a TCP client gets to send its query.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the responder decided for one query, for the audit line.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (possibly with no records of the asked type).
    Answered(Vec<IpAddr>),
    /// Refused, with the reason code.
    Refused(&'static str),
}

/// Answer one query message from `source`.
pub async fn answer(
    snap: &Snapshot,
    resolver: &Resolver,
    source: IpAddr,
    query: &[u8],
) -> (Option<Vec<u8>>, Outcome, String) {
    let Ok(req) = Message::from_vec(query) else {
        return (None, Outcome::Refused("malformed"), String::new());
    };
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true);
    for q in req.queries() {
        resp.add_query(q.clone());
    }
    let (outcome, name) = match req.queries() {
        [q] => {
            let name = q.name().to_ascii();
            let outcome = resolve(snap, resolver, source, &name, q.query_type()).await;
            if let Outcome::Answered(addrs) = &outcome {
                for ip in addrs {
                    let rdata = match ip {
                        IpAddr::V4(v4) if q.query_type() == RecordType::A => RData::A(A(*v4)),
                        IpAddr::V6(v6) if q.query_type() == RecordType::AAAA => {
                            RData::AAAA(AAAA(*v6))
                        }
                        _ => continue,
                    };
                    resp.add_answer(Record::from_rdata(q.name().clone(), TTL, rdata));
                }
            }
            (outcome, name)
        }
        _ => (Outcome::Refused("not_one_question"), String::new()),
    };
    match outcome {
        // Busy is temporary: SERVFAIL tells a resolver to try again later, REFUSED that it never will.
        Outcome::Refused(r) if r == DenyReason::ResolveBusy.as_str() => {
            resp.set_response_code(ResponseCode::ServFail);
        }
        Outcome::Refused(_) => {
            resp.set_response_code(ResponseCode::Refused);
        }
        Outcome::Answered(_) => {}
    }
    (resp.to_vec().ok(), outcome, name)
}

async fn resolve(
    snap: &Snapshot,
    resolver: &Resolver,
    source: IpAddr,
    name: &str,
    qtype: RecordType,
) -> Outcome {
    let Some(devbox) = snap.devbox_by_addr.get(&canonical_ip(source)) else {
        return Outcome::Refused("unknown_devbox");
    };
    let Ok(target @ Target::Name(_)) = parse_host(name) else {
        return Outcome::Refused("invalid_host");
    };
    let a = match policy::decide_name(devbox.policy.as_deref(), &snap.policy_env, &target) {
        Verdict::Allow(a) => a,
        Verdict::Deny(r) => return Outcome::Refused(r.as_str()),
    };
    if a.served_by_hub() {
        return Outcome::Answered(snap.config.egress.gateway_addresses.clone());
    }
    if !matches!(qtype, RecordType::A | RecordType::AAAA) {
        return Outcome::Answered(Vec::new());
    }
    let Target::Name(n) = &target else {
        return Outcome::Refused("invalid_host");
    };
    let want_v4 = qtype == RecordType::A;
    let addrs: Vec<IpAddr> = match resolver.lookup(&snap.config, source, n).await {
        Ok(all) => all
            .into_iter()
            .filter(|ip| ip.is_ipv4() == want_v4)
            .collect(),
        Err(ResolveError::Busy) => return Outcome::Refused(DenyReason::ResolveBusy.as_str()),
        Err(ResolveError::Failed) => return Outcome::Refused(DenyReason::ResolveFailed.as_str()),
    };
    if addrs.is_empty() {
        return Outcome::Answered(Vec::new());
    }
    // The same admission a connection gets: one private address of the asked family refuses the name.
    // (The connection itself admits every address the hub resolves, so rebinding is refused there too.)
    match policy::admit_addresses(a, &snap.policy_env, &addrs) {
        Ok(ips) => Outcome::Answered(ips),
        Err(r) => Outcome::Refused(r.as_str()),
    }
}

fn audit(source: SocketAddr, name: &str, outcome: &Outcome) {
    let (verdict, reason) = match outcome {
        Outcome::Answered(_) => ("allow", "answered"),
        Outcome::Refused(r) => ("deny", *r),
    };
    crate::telemetry::metrics::dns(verdict, reason);
    tracing::info!(target: crate::telemetry::audit::TARGET, event = "dns", client.addr = %source, name = %name, verdict, reason, "dns query");
}

/// Serve UDP queries until the task is dropped.
pub async fn serve_udp(sock: UdpSocket, state: Arc<Live>, resolver: Arc<Resolver>) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let q = buf[..n].to_vec();
        let (sock, state, resolver) = (sock.clone(), state.clone(), resolver.clone());
        tokio::spawn(async move {
            let snap = state.load_full();
            let (resp, outcome, name) = answer(&snap, &resolver, src.ip(), &q).await;
            audit(src, &name, &outcome);
            if let Some(r) = resp {
                let _ = sock.send_to(&r, src).await;
            }
        });
    }
}

/// Serve TCP queries (length-prefixed) until the task is dropped.
pub async fn serve_tcp(listener: TcpListener, state: Arc<Live>, resolver: Arc<Resolver>) {
    loop {
        let (mut s, src) = crate::listen::accept_retrying(|| listener.accept()).await;
        let (state, resolver) = (state.clone(), resolver.clone());
        tokio::spawn(async move {
            let read = async {
                let len = s.read_u16().await.ok()? as usize;
                let mut q = vec![0u8; len];
                s.read_exact(&mut q).await.ok()?;
                Some(q)
            };
            let Ok(Some(q)) = tokio::time::timeout(TCP_TIMEOUT, read).await else {
                return;
            };
            let snap = state.load_full();
            let (resp, outcome, name) = answer(&snap, &resolver, src.ip(), &q).await;
            audit(src, &name, &outcome);
            if let Some(r) = resp {
                let len = u16::try_from(r.len()).unwrap_or(u16::MAX);
                let _ = s.write_u16(len).await;
                let _ = s.write_all(&r).await;
            }
        });
    }
}
