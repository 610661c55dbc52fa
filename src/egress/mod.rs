//! The egress proxy: every devbox connection, transparent (nftables redirect) or explicit
//! (`HTTPS_PROXY`), goes through one pipeline:
//!
//! `accept -> identify (source address -> devbox) -> sniff (ClientHello / request head) -> target ->
//!  policy::decide -> resolve -> policy::admit -> dial (the admitted address only) -> tunnel -> audit`
//!
//! The MCP gateway host is never dialled: its TLS is terminated here with the hub's certificate and the
//! connection is served by the gateway in-process.

pub mod detect;
pub mod dns;
pub mod firewall;
pub mod forward;
pub mod io;
pub mod local;
pub mod resolve;
pub mod respond;
pub mod splice;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::front::Front;
use crate::policy::host::{Target, parse_host, split_host_port};
use crate::policy::{self, Allowance, Allowed, DenyReason, Verdict};
use crate::runtime::snapshot::{DevboxView, canonical_ip};
use crate::runtime::{Live, Snapshot};
use detect::{DetectError, RequestHead, Sniffed};
use io::Prefixed;

/// How long a client may stay silent before the connection is treated as server-speaks-first.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Concurrent proxied connections.
pub const MAX_CONNECTIONS: usize = 20_000;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redirected by nftables; the original destination is read from the socket.
    Transparent,
    /// `HTTPS_PROXY` / `HTTP_PROXY` clients.
    Explicit,
}

impl Mode {
    /// `transparent` or `explicit`, in audit lines and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transparent => "transparent",
            Self::Explicit => "explicit",
        }
    }
}

/// The proxy's shared state.
pub struct Egress {
    state: Arc<Live>,
    gateway: Arc<Front>,
    gateway_tls: Arc<rustls::ServerConfig>,
    /// Addresses the hub's listeners are actually bound to (loop guard, including port-0 binds).
    bound: Vec<SocketAddr>,
    limit: Arc<Semaphore>,
    /// Names to addresses, shared with the DNS responder.
    resolver: Arc<resolve::Resolver>,
    /// The host's addresses, kept current (`local::LocalAddrs::shared`).
    local: Arc<local::LocalAddrs>,
    /// `admit`'s view for the current snapshot: (the snapshot's view, it plus `bound`).
    admit_env: std::sync::Mutex<Option<AdmitEnv>>,
}

type AdmitEnv = (Arc<policy::Env>, Arc<policy::Env>);

/// Why no upstream connection was made.
enum Unreached {
    /// The policy refused the resolved addresses, or the address dialled turned out to be the host's
    /// own (the reason is in the connection's audit context).
    Refused(DenyReason),
    /// Every admitted address failed to connect.
    Unreachable,
}

/// How a connection ended: the one value its audit line (verdict and reason) and its metric come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ended before any stage decided (the client went away during its opening).
    Incomplete,
    /// The policy allowed it, and it was tunnelled or forwarded.
    Allowed(Allowance),
    /// Refused, with the reason the client was told.
    Denied(DenyReason),
    /// The opening could not be read (a timeout, a size cap, broken TLS): reset.
    MalformedOpening,
    /// Allowed, but every admitted address failed to connect.
    UpstreamUnreachable,
    /// The TLS handshake of an intercepted gateway connection failed.
    TlsHandshakeFailed,
    /// An allowed plain-HTTP request that was not relayed.
    Forward(forward::Outcome),
    /// A reload withdrew the allowance, and the tunnel was closed.
    PolicyWithdrawn,
}

impl Outcome {
    /// `allow`, `deny`, `error` (allowed, then failed) or `closed` (ended by the hub).
    pub fn verdict(self) -> &'static str {
        match self {
            Self::Allowed(_) => "allow",
            Self::Incomplete | Self::Denied(_) | Self::MalformedOpening => "deny",
            Self::UpstreamUnreachable | Self::TlsHandshakeFailed | Self::Forward(_) => "error",
            Self::PolicyWithdrawn => "closed",
        }
    }

    /// Stable snake_case reason: in the audit line, the metric and (for HTTP answers) `X-Proxy-Error`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Incomplete => "incomplete",
            Self::Allowed(a) => a.as_str(),
            Self::Denied(r) => r.as_str(),
            Self::MalformedOpening => "malformed_opening",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::TlsHandshakeFailed => "tls_handshake_failed",
            Self::Forward(o) => o.as_str(),
            Self::PolicyWithdrawn => "policy_withdrawn",
        }
    }
}

/// Everything one connection's audit line needs, filled in as the pipeline advances.
#[derive(Debug)]
pub struct ConnCtx {
    mode: Mode,
    started: Instant,
    source: SocketAddr,
    devbox: Option<Arc<DevboxView>>,
    sni: Option<String>,
    host: Option<String>,
    connect: Option<String>,
    original_dst: Option<SocketAddr>,
    dialled: Option<SocketAddr>,
    outcome: Outcome,
    up: u64,
    down: u64,
}

impl ConnCtx {
    fn new(mode: Mode, source: SocketAddr) -> Self {
        Self {
            mode,
            started: Instant::now(),
            source,
            devbox: None,
            sni: None,
            host: None,
            connect: None,
            original_dst: None,
            dialled: None,
            outcome: Outcome::Incomplete,
            up: 0,
            down: 0,
        }
    }

    fn deny(&mut self, r: DenyReason) -> DenyReason {
        self.outcome = Outcome::Denied(r);
        r
    }

    fn allow(&mut self, a: Allowance) {
        self.outcome = Outcome::Allowed(a);
    }

    fn names(&self) -> (Option<&str>, Option<&str>) {
        let d = self.devbox.as_deref();
        (
            d.map(|d| &*d.name),
            d.and_then(|d| d.policy.as_deref()).map(|p| p.name.as_str()),
        )
    }

    fn emit(&self) {
        crate::telemetry::metrics::connection(
            self.mode.as_str(),
            self.outcome.verdict(),
            self.outcome.reason(),
        );
        let (devbox, policy) = self.names();
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let addr = |v: &Option<SocketAddr>| v.map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(
            target: crate::telemetry::audit::TARGET,
            event = "connection",
            mode = self.mode.as_str(),
            client.addr = %self.source,
            devbox = devbox.unwrap_or(""),
            policy = policy.unwrap_or(""),
            sni = %opt(&self.sni),
            host = %opt(&self.host),
            connect = %opt(&self.connect),
            original_dst = %addr(&self.original_dst),
            dialled = %addr(&self.dialled),
            verdict = self.outcome.verdict(),
            reason = self.outcome.reason(),
            bytes_up = self.up,
            bytes_down = self.down,
            duration_ms = crate::telemetry::audit::millis(self.started),
            "connection"
        );
    }
}

/// Original destination of a redirected connection (`SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST`).
/// Needs no capability: the kernel records it when nftables redirects.
pub fn original_dst(s: &TcpStream) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let local = s.local_addr().ok()?;
    // On a dual-stack listener ([::]), IPv4 connections show up as ::ffff:a.b.c.d; their original
    // destination is recorded by the IPv4 NAT table.
    if canonical_ip(local.ip()).is_ipv4() {
        let sa = getsockopt(s, sockopt::OriginalDst).ok()?;
        let ip = std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sa.sin_port)))
    } else {
        let sa = getsockopt(s, sockopt::Ip6tOriginalDst).ok()?;
        let ip = std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr);
        Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sa.sin6_port)))
    }
}

/// The devbox side of an egress connection is a link on this host (veth, bridge, tap): no loss and no
/// bottleneck queue to pace for. The host's default congestion control may pace anyway (BBR does, with
/// a timer per burst of segments), which on this link only costs CPU on the cores the devboxes share
/// (`scripts/bench-egress`, figures in BENCHMARKS.md). The upstream side keeps the host's choice, which
/// is made for the real network. Best effort: if cubic is unavailable the default stays.
fn tune_local_link(s: &TcpStream) {
    let _ = nix::sys::socket::setsockopt(
        s,
        nix::sys::socket::sockopt::TcpCongestion,
        &std::ffi::OsString::from("cubic"),
    );
}

impl Egress {
    /// A proxy serving from `state`, intercepting the gateway host with `gateway_tls`.
    pub fn new(
        state: Arc<Live>,
        gateway_tls: Arc<rustls::ServerConfig>,
        bound: Vec<SocketAddr>,
        resolver: Arc<resolve::Resolver>,
    ) -> Self {
        let gateway = Arc::new(Front::new(state.clone()));
        Self {
            state,
            gateway,
            gateway_tls,
            bound,
            limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            resolver,
            local: local::LocalAddrs::shared(),
            admit_env: std::sync::Mutex::new(None),
        }
    }

    /// Accept on `listener` until `shutdown`, then drain: no new connections, and the open ones
    /// (tunnels, requests in flight) get `grace` to end by themselves before this returns (and the
    /// process exits, ending them).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mode: Mode,
        grace: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // Every connection task holds a clone; `recv` returns `None` once the last one has ended.
        let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
        while let Some((permit, tcp, peer)) =
            crate::listen::accept(&listener, &self.limit, shutdown.as_mut()).await
        {
            let me = self.clone();
            let open = open_tx.clone();
            tune_local_link(&tcp);
            // Every line logged for this connection (and the gateway's, when intercepted) carries its
            // client address; the audit line names it itself, for pipelines that drop spans.
            let span = tracing::info_span!("accept", client.addr = %peer);
            let conn = async move {
                let _permit = permit;
                let _open = open;
                let mut ctx = ConnCtx::new(mode, peer);
                match mode {
                    Mode::Transparent => me.transparent(&mut ctx, tcp).await,
                    Mode::Explicit => me.explicit(&mut ctx, tcp).await,
                }
                ctx.emit();
            };
            tokio::spawn(tracing::Instrument::instrument(conn, span));
        }
        drop(listener);
        drop(open_tx);
        let open = self.limit.available_permits() < MAX_CONNECTIONS;
        if open {
            tracing::info!(mode = ?mode, grace_secs = grace.as_secs(), "Egress draining: open connections get the grace period");
        }
        match tokio::time::timeout(grace, open_rx.recv()).await {
            Ok(_) if open => tracing::info!(mode = ?mode, "Egress drained"),
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(mode = ?mode, "Egress grace period over: closing the connections still open")
            }
        }
    }

    /// Stage: which devbox is this? Unknown sources get nothing.
    fn identify(&self, snap: &Snapshot, ctx: &mut ConnCtx) -> Result<(), DenyReason> {
        match snap.devbox_by_addr.get(&canonical_ip(ctx.source.ip())) {
            Some(d) => {
                ctx.devbox = Some(d.clone());
                Ok(())
            }
            None => Err(ctx.deny(DenyReason::UnknownDevbox)),
        }
    }

    fn decide(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        target: &Target,
        port: u16,
    ) -> Result<Allowance, DenyReason> {
        let policy = ctx.devbox.as_ref().and_then(|d| d.policy.as_deref());
        match policy::decide(policy, &snap.policy_env, target, port) {
            Verdict::Allow(a) => {
                ctx.allow(a);
                Ok(a)
            }
            Verdict::Deny(r) => Err(ctx.deny(r)),
        }
    }

    /// Stages resolve + admit: the hub resolves names itself and admits only checked addresses.
    async fn resolve_admit(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        a: Allowance,
        target: &Target,
        port: u16,
    ) -> Result<Allowed, DenyReason> {
        let addrs: Vec<IpAddr> = match target {
            Target::Ip(ip) => vec![*ip],
            Target::Name(n) => match self.resolver.lookup(&snap.config, ctx.source.ip(), n).await {
                Ok(addrs) => addrs,
                Err(resolve::ResolveError::Busy) => return Err(ctx.deny(DenyReason::ResolveBusy)),
                Err(resolve::ResolveError::Failed) => {
                    return Err(ctx.deny(DenyReason::ResolveFailed));
                }
            },
        };
        let env = self.admit_env(&snap.policy_env);
        policy::admit(a, &env, &self.local.current(), &addrs, port).map_err(|r| ctx.deny(r))
    }

    /// The snapshot's policy view plus this proxy's own bound listeners (port 0 resolved), for the loop
    /// guard; built once per snapshot rather than copied (with every devbox address) per connection.
    fn admit_env(&self, base: &Arc<policy::Env>) -> Arc<policy::Env> {
        let mut cache = self
            .admit_env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((b, env)) = cache.as_ref() {
            if Arc::ptr_eq(b, base) {
                return env.clone();
            }
        }
        let mut env = policy::Env::clone(base);
        env.self_addrs.extend(self.bound.iter().copied());
        env.self_ports
            .extend(self.bound.iter().map(SocketAddr::port));
        let env = Arc::new(env);
        // Holding `base` keeps its address from being reused by a later snapshot's view.
        *cache = Some((base.clone(), env.clone()));
        env
    }

    /// Stage dial: the admitted addresses in order, nothing else.
    ///
    /// SECURITY: a connection that landed on the host itself (an address added after the last refresh
    /// of the host's address set) is closed before a byte is sent, and the address is judged again
    /// with a fresh set.
    async fn dial(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        allowed: &Allowed,
    ) -> Result<TcpStream, Unreached> {
        let timeout = snap.config.egress.connect_timeout;
        for a in allowed.addrs() {
            if let Ok(Ok(s)) = tokio::time::timeout(timeout, TcpStream::connect(a)).await {
                if local::is_local_connection(&s) {
                    self.local.refresh();
                    let env = self.admit_env(&snap.policy_env);
                    let host = self.local.current();
                    if let Err(r) =
                        policy::admit(allowed.allowance(), &env, &host, &[a.ip()], a.port())
                    {
                        respond::reset(s);
                        return Err(Unreached::Refused(ctx.deny(r)));
                    }
                }
                let _ = s.set_nodelay(true);
                ctx.dialled = Some(*a);
                return Ok(s);
            }
        }
        ctx.outcome = Outcome::UpstreamUnreachable;
        Err(Unreached::Unreachable)
    }

    async fn tunnel(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        client: TcpStream,
        mut upstream: TcpStream,
        replay: &[u8],
        (target, port): (&Target, u16),
    ) {
        if !replay.is_empty() && upstream.write_all(replay).await.is_err() {
            return;
        }
        // SECURITY: a reload that no longer allows this destination (hostname removed, policy changed,
        // devbox deleted) closes the tunnel too, not only new connections.
        let mut generation = self.state.subscribe();
        let source = ctx.source.ip();
        let withdrawn = std::sync::atomic::AtomicBool::new(false);
        let stop = async {
            while generation.changed().await.is_ok() {
                let snap = self.state.load();
                let policy = snap
                    .devbox_by_addr
                    .get(&canonical_ip(source))
                    .and_then(|d| d.policy.clone());
                if !matches!(
                    policy::decide(policy.as_deref(), &snap.policy_env, target, port),
                    Verdict::Allow(_)
                ) {
                    withdrawn.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        crate::telemetry::metrics::tunnels(1);
        let (up, down) =
            splice::tunnel(&client, &upstream, snap.config.egress.idle_timeout, stop).await;
        crate::telemetry::metrics::tunnels(-1);
        if withdrawn.load(std::sync::atomic::Ordering::Relaxed) {
            ctx.outcome = Outcome::PolicyWithdrawn;
        }
        ctx.up = up + replay.len() as u64;
        ctx.down = down;
    }

    /// Serve an intercepted gateway connection: TLS with the hub's certificate, then the front door
    /// (the MCP or the agent gateway, by host), with the devbox's own source address as the peer.
    async fn intercept<S>(&self, ctx: &mut ConnCtx, io: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.gateway_tls.clone());
        match tokio::time::timeout(
            crate::front::listener::TLS_HANDSHAKE_TIMEOUT,
            acceptor.accept(io),
        )
        .await
        {
            Ok(Ok(tls)) => {
                crate::front::listener::serve_one(tls, ctx.source, self.gateway.clone()).await
            }
            _ => {
                ctx.outcome = Outcome::TlsHandshakeFailed;
            }
        }
    }

    async fn transparent(&self, ctx: &mut ConnCtx, mut s: TcpStream) {
        let snap = self.state.load_full();
        ctx.original_dst = original_dst(&s);
        let Some(dst) = ctx.original_dst else {
            // Not redirected by nftables: nothing to proxy to.
            ctx.deny(DenyReason::NoHostname);
            return respond::reset(s);
        };
        if self.identify(&snap, ctx).is_err() {
            return respond::reset(s);
        }
        let eg = &snap.config.egress;
        let sniffed = match detect::sniff(&mut s, FIRST_BYTE_TIMEOUT, eg.client_hello_timeout).await
        {
            Ok(x) => x,
            Err(e) => return refuse_opening(ctx, s, e).await,
        };
        match sniffed {
            Sniffed::Tls { bytes, sni } => {
                ctx.sni = sni.clone();
                let target = match sni.as_deref().map(parse_host) {
                    Some(Ok(t)) => t,
                    Some(Err(_)) => {
                        ctx.deny(DenyReason::InvalidHost);
                        return respond::tls(&mut s).await;
                    }
                    // No SNI: all we know is the address it dialled.
                    None => Target::Ip(dst.ip()),
                };
                let a = match self.decide(&snap, ctx, &target, dst.port()) {
                    Ok(a) => a,
                    Err(_) => return respond::tls(&mut s).await,
                };
                if a.served_by_hub() {
                    return self.intercept(ctx, Prefixed::new(bytes, s)).await;
                }
                // SECURITY: the name is resolved by the hub; the address the devbox dialled is ignored.
                match self.reach_raw(&snap, ctx, a, &target, dst.port()).await {
                    Ok(up) => {
                        self.tunnel(&snap, ctx, s, up, &bytes, (&target, dst.port()))
                            .await;
                    }
                    Err(Unreached::Refused(_)) => respond::tls(&mut s).await,
                    Err(Unreached::Unreachable) => respond::reset(s),
                }
            }
            Sniffed::Http {
                head,
                bytes,
                head_len: _,
            } => {
                if let Err(a) = head.check_framing() {
                    return refuse_http(ctx, &mut s, ambiguous(a)).await;
                }
                let Some(host) = head.header("host").map(str::to_string) else {
                    let r =
                        Refusal::new(400, DenyReason::NoHostname, "a Host header is required\n");
                    return refuse_http(ctx, &mut s, r).await;
                };
                ctx.host = Some(host.clone());
                self.plain_http(&snap, ctx, s, head, &host, bytes, dst.port())
                    .await;
            }
            Sniffed::Opaque(bytes) => {
                let target = Target::Ip(dst.ip());
                let Ok(a) = self.decide(&snap, ctx, &target, dst.port()) else {
                    return respond::reset(s);
                };
                if a.served_by_hub() {
                    return respond::reset(s);
                }
                match self.reach_raw(&snap, ctx, a, &target, dst.port()).await {
                    Ok(up) => {
                        self.tunnel(&snap, ctx, s, up, &bytes, (&target, dst.port()))
                            .await;
                    }
                    Err(_) => respond::reset(s),
                }
            }
        }
    }

    async fn explicit(&self, ctx: &mut ConnCtx, mut s: TcpStream) {
        let snap = self.state.load_full();
        if let Err(r) = self.identify(&snap, ctx) {
            return refuse_http(ctx, &mut s, Refusal::policy(403, r, "*")).await;
        }
        let eg = &snap.config.egress;
        let (head, bytes, head_len) =
            match detect::sniff(&mut s, eg.client_hello_timeout, eg.client_hello_timeout).await {
                Ok(Sniffed::Http {
                    head,
                    bytes,
                    head_len,
                }) => (head, bytes, head_len),
                Err(DetectError::BadHttp) => return refuse_http(ctx, &mut s, bad_http()).await,
                _ => {
                    let r = Refusal::new(
                        400,
                        DenyReason::NoHostname,
                        "expected an HTTP proxy request (CONNECT or absolute-form)\n",
                    );
                    return refuse_http(ctx, &mut s, r).await;
                }
            };
        if let Err(a) = head.check_framing() {
            return refuse_http(ctx, &mut s, ambiguous(a)).await;
        }
        if head.method.eq_ignore_ascii_case("CONNECT") {
            ctx.connect = Some(head.target.clone());
            return self
                .connect(&snap, ctx, s, &head, bytes.slice(head_len..))
                .await;
        }
        // Absolute-form: GET http://host[:port]/path
        let Ok(uri) = head.target.parse::<http::Uri>() else {
            let r = Refusal::new(
                400,
                DenyReason::InvalidHost,
                "request target is not a URL\n",
            );
            return refuse_http(ctx, &mut s, r).await;
        };
        let (Some("http"), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
            let r = Refusal::new(
                400,
                DenyReason::NoHostname,
                "use CONNECT for https, or an absolute http:// URL\n",
            );
            return refuse_http(ctx, &mut s, r).await;
        };
        let auth = auth.as_str().to_string();
        ctx.host = Some(auth.clone());
        self.plain_http(&snap, ctx, s, head, &auth, bytes, 80).await;
    }

    /// Stages resolve, admit and dial for the HTTP-speaking paths (CONNECT, plain HTTP). On failure the
    /// client has been answered (403 with the reason, or 502) and `None` comes back.
    async fn reach(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        s: &mut TcpStream,
        a: Allowance,
        (target, host, port): (&Target, &str, u16),
    ) -> Option<TcpStream> {
        match self.reach_raw(snap, ctx, a, target, port).await {
            Ok(up) => Some(up),
            Err(Unreached::Refused(r)) => {
                refuse_http(ctx, s, Refusal::policy(403, r, host)).await;
                None
            }
            Err(Unreached::Unreachable) => {
                let body = format!("{host}:{port}: upstream unreachable\n");
                respond::http(s, 502, ctx.outcome.reason(), &body).await;
                None
            }
        }
    }

    /// Stages resolve, admit and dial for the transparent non-HTTP paths (TLS, opaque TCP), which
    /// cannot answer in HTTP: the caller refuses with a TLS alert or a reset. `reach` is the HTTP twin.
    async fn reach_raw(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        a: Allowance,
        target: &Target,
        port: u16,
    ) -> Result<TcpStream, Unreached> {
        let allowed = self
            .resolve_admit(snap, ctx, a, target, port)
            .await
            .map_err(Unreached::Refused)?;
        self.dial(snap, ctx, &allowed).await
    }

    /// CONNECT host:port.
    async fn connect(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        mut s: TcpStream,
        head: &RequestHead,
        rest: Bytes,
    ) {
        let Some((host, port)) = split_host_port(&head.target, 443) else {
            let r = Refusal::new(400, DenyReason::InvalidHost, "CONNECT needs host:port\n");
            return refuse_http(ctx, &mut s, r).await;
        };
        let target = match parse_host(host) {
            Ok(t) => t,
            Err(_) => {
                return refuse_http(
                    ctx,
                    &mut s,
                    Refusal::policy(400, DenyReason::InvalidHost, host),
                )
                .await;
            }
        };
        let a = match self.decide(snap, ctx, &target, port) {
            Ok(a) => a,
            Err(r) => return refuse_http(ctx, &mut s, Refusal::policy(403, r, host)).await,
        };
        if a.served_by_hub() {
            if s.write_all(CONNECT_OK).await.is_err() {
                return;
            }
            return self.intercept(ctx, Prefixed::new(rest, s)).await;
        }
        let Some(up) = self
            .reach(snap, ctx, &mut s, a, (&target, host, port))
            .await
        else {
            return;
        };
        if s.write_all(CONNECT_OK).await.is_err() {
            return;
        }
        // SECURITY: whatever the tunnel starts with is judged as the transparent path judges it, including
        // bytes sent in the same segment as the CONNECT: TLS must name the CONNECT host in its SNI,
        // plain HTTP must carry it in Host and target (and only that one request is forwarded), and
        // anything else is raw TCP, allowed only where the policy allows raw TCP to the address dialled.
        let eg = &snap.config.egress;
        let sniffed =
            match detect::sniff_after(&mut s, &rest, FIRST_BYTE_TIMEOUT, eg.client_hello_timeout)
                .await
            {
                Ok(x) => x,
                Err(e) => return refuse_opening(ctx, s, e).await,
            };
        match sniffed {
            Sniffed::Tls { bytes, sni } => {
                if let Some(sni) = &sni {
                    ctx.sni = Some(sni.clone());
                    if parse_host(sni).ok().as_ref() != Some(&target) {
                        ctx.deny(DenyReason::HostMismatch);
                        return respond::tls(&mut s).await;
                    }
                }
                self.tunnel(snap, ctx, s, up, &bytes, (&target, port)).await;
            }
            Sniffed::Http { head, bytes, .. } => {
                let inner = match head.header("host") {
                    Some(h) => h.to_string(),
                    None if head.check_framing().is_ok() => {
                        let r = Refusal::new(
                            400,
                            DenyReason::NoHostname,
                            "a Host header is required\n",
                        );
                        return refuse_http(ctx, &mut s, r).await;
                    }
                    None => String::new(),
                };
                ctx.host = Some(inner.clone());
                let path = match judge_head(&head, &inner, port) {
                    Ok((t, p, path)) if t == target && p == port => path,
                    Ok(_) => {
                        return refuse_http(
                            ctx,
                            &mut s,
                            Refusal::policy(421, DenyReason::HostMismatch, &inner),
                        )
                        .await;
                    }
                    Err(r) => return refuse_http(ctx, &mut s, r.about(&inner)).await,
                };
                self.forward(snap, ctx, Prefixed::new(bytes, s), up, path)
                    .await;
            }
            Sniffed::Opaque(bytes) => {
                // Bytes the hub cannot read a host from (another protocol, or HTTP spelled so that
                // only some origins take it, like a lowercase method) are raw TCP, and raw TCP is
                // judged by the address dialled, as for an opaque transparent connection: a name in
                // `allowed_hostnames` covers the protocols whose host the hub checks, not any.
                let policy = ctx.devbox.as_ref().and_then(|d| d.policy.as_deref());
                let raw = ctx.dialled.map(|d| Target::Ip(d.ip()));
                let ok = raw.is_some_and(|t| {
                    matches!(
                        policy::decide(policy, &snap.policy_env, &t, port),
                        Verdict::Allow(a) if !a.served_by_hub()
                    )
                });
                if !ok {
                    ctx.deny(DenyReason::OpaqueNotAllowed);
                    return respond::reset(s);
                }
                self.tunnel(snap, ctx, s, up, &bytes, (&target, port)).await;
            }
        }
    }

    /// One plain-HTTP request (transparent, or absolute-form through the explicit proxy): checked against
    /// its Host, and only that request is forwarded (`forward`), so a second request on the same
    /// connection can never be routed anywhere else.
    #[allow(clippy::too_many_arguments)] // one pipeline stage; the parts are what was sniffed
    async fn plain_http(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        mut s: TcpStream,
        head: RequestHead,
        authority: &str,
        bytes: Bytes,
        default_port: u16,
    ) {
        let (target, port, path) = match judge_head(&head, authority, default_port) {
            Ok(x) => x,
            Err(r) => return refuse_http(ctx, &mut s, r.about(authority)).await,
        };
        let host = authority_host(authority, default_port);
        let a = match self.decide(snap, ctx, &target, port) {
            Ok(a) => a,
            Err(r) => return refuse_http(ctx, &mut s, Refusal::policy(403, r, host)).await,
        };
        if a.served_by_hub() {
            let (reason, what) = match a {
                Allowance::AgentGateway => (DenyReason::AgentGatewayNotAllowed, "agent gateway"),
                _ => (DenyReason::McpGatewayNotAllowed, "MCP gateway"),
            };
            let r = Refusal::new(
                403,
                reason,
                &format!("{host}: the {what} is served over https only\n"),
            );
            return refuse_http(ctx, &mut s, r).await;
        }
        let Some(up) = self
            .reach(snap, ctx, &mut s, a, (&target, host, port))
            .await
        else {
            return;
        };
        self.forward(snap, ctx, Prefixed::new(bytes, s), up, path)
            .await;
    }

    /// Stage forward for both plain-HTTP paths; the outcome goes into the audit context.
    async fn forward(
        &self,
        snap: &Snapshot,
        ctx: &mut ConnCtx,
        client: Prefixed<TcpStream>,
        up: TcpStream,
        path: String,
    ) {
        let timeout = snap.config.egress.idle_timeout;
        let (outcome, up_bytes, down_bytes) = forward::one_request(client, up, path, timeout).await;
        if outcome != forward::Outcome::Relayed {
            ctx.outcome = Outcome::Forward(outcome);
        }
        ctx.up = up_bytes;
        ctx.down = down_bytes;
    }
}

const CONNECT_OK: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// A refusal answered in HTTP: the status, the reason (sent as `X-Proxy-Error` and audited, the same
/// value) and the text for the agent.
struct Refusal {
    status: u16,
    reason: DenyReason,
    /// The body, or `None` for the policy explanation (`respond::explain`) about the host.
    body: Option<String>,
    host: String,
}

impl Refusal {
    fn new(status: u16, reason: DenyReason, body: &str) -> Self {
        Self {
            status,
            reason,
            body: Some(body.to_string()),
            host: String::new(),
        }
    }

    fn policy(status: u16, reason: DenyReason, host: &str) -> Self {
        Self {
            status,
            reason,
            body: None,
            host: host.to_string(),
        }
    }

    fn about(mut self, host: &str) -> Self {
        self.host = host.to_string();
        self
    }
}

/// The one exit for HTTP refusals: the audit context and the answer get the same reason.
async fn refuse_http(ctx: &mut ConnCtx, s: &mut TcpStream, r: Refusal) {
    ctx.deny(r.reason);
    let body = match r.body {
        Some(b) => b,
        None => {
            let (devbox, policy) = ctx.names();
            respond::explain(r.reason, &r.host, devbox, policy)
        }
    };
    respond::http(s, r.status, r.reason.as_str(), &body).await;
}

/// The one answer to an opening that could not be read, for the transparent path and the inside
/// of a CONNECT tunnel alike: a 400 for broken HTTP, an `access_denied` alert for a server name that
/// is not a host name, a reset for anything else (a timeout, a cap, broken TLS).
async fn refuse_opening(ctx: &mut ConnCtx, mut s: TcpStream, e: DetectError) {
    match e {
        DetectError::BadHttp => refuse_http(ctx, &mut s, bad_http()).await,
        DetectError::BadServerName => {
            ctx.deny(DenyReason::InvalidHost);
            respond::tls(&mut s).await;
        }
        _ => {
            ctx.outcome = Outcome::MalformedOpening;
            respond::reset(s);
        }
    }
}

fn bad_http() -> Refusal {
    Refusal::new(
        400,
        DenyReason::MalformedRequest,
        "malformed HTTP request head (obs-fold, a bare CR, or an invalid header)\n",
    )
}

fn ambiguous(a: detect::Ambiguity) -> Refusal {
    Refusal::new(400, DenyReason::AmbiguousRequest, &format!("{a}\n"))
}

/// The host part of an authority, for messages.
fn authority_host(authority: &str, default_port: u16) -> &str {
    split_host_port(authority, default_port).map_or(authority, |(h, _)| h)
}

/// Judge a plain-HTTP head against the authority it will be routed by (its `Host`, or the absolute
/// target's authority): unambiguous framing, a parseable host, and the request target and `Host`
/// naming the same host. Returns the destination, its port and the origin-form path to forward.
///
/// SECURITY: Host, the request target and (in a tunnel) the CONNECT authority may not disagree.
fn judge_head(
    head: &RequestHead,
    authority: &str,
    default_port: u16,
) -> Result<(Target, u16, String), Refusal> {
    if let Err(a) = head.check_framing() {
        return Err(ambiguous(a));
    }
    let invalid = || Refusal::policy(400, DenyReason::InvalidHost, authority);
    let (host, port) = split_host_port(authority, default_port).ok_or_else(invalid)?;
    let target = parse_host(host).map_err(|_| invalid())?;
    let mismatch = || Refusal::policy(421, DenyReason::HostMismatch, host);
    let path = match head.target.parse::<http::Uri>() {
        Ok(u) if u.authority().is_some() => {
            let same = u.host().map(parse_host).and_then(Result::ok).as_ref() == Some(&target)
                && u.port_u16().unwrap_or(default_port) == port;
            let host_hdr = head.header("host").map(|h| {
                split_host_port(h, default_port).and_then(|(h, p)| Some((parse_host(h).ok()?, p)))
            });
            if !same || host_hdr.is_some_and(|h| h != Some((target.clone(), port))) {
                return Err(mismatch());
            }
            u.path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string())
        }
        _ if head.target.starts_with('/') => head.target.clone(),
        // `*` (OPTIONS) is origin-form enough; anything else is not a target an origin reads alike.
        _ if head.target == "*" => head.target.clone(),
        _ => {
            return Err(Refusal::new(
                400,
                DenyReason::MalformedRequest,
                "request target is not a path or an http:// URL\n",
            ));
        }
    };
    Ok((target, port, path))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn devbox_side_sockets_do_not_pace() {
        use nix::sys::socket::{getsockopt, sockopt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        super::tune_local_link(&s);
        let cc = getsockopt(&s, sockopt::TcpCongestion).unwrap();
        assert_eq!(cc.to_str(), Some("cubic"));
    }
}
