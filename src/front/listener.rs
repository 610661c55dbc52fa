//! The front door's listener: accept (bounded by a semaphore), TLS handshake (bounded in time), then
//! HTTP/1.1 or h2 by ALPN, each request handed to [`Front`], idle connections closed by a
//! per-connection watchdog, all connections drained gracefully on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::{Conn, Front};
use crate::body::{Body, BoxError};
use crate::runtime::Live;

/// Time a client gets to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Listener settings fixed at start-up.
#[derive(Clone)]
pub struct ServeOptions {
    /// TLS for the gateway host.
    pub tls: Arc<ServerConfig>,
    /// Concurrent connections.
    pub max_connections: usize,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub grace: Duration,
}

/// Open gateway connections per worker, so that new connections go to the least loaded one.
///
/// Every worker accepts from the same listening socket, and whichever is awake when a burst of
/// connections arrives would take them all (measured: one worker with every connection, the other idle).
/// A worker therefore accepts only while it holds at most one connection more than the least loaded
/// worker. The least loaded one always may, so a waiting connection is never left unaccepted.
pub struct Balance {
    open: Vec<AtomicUsize>,
    /// Workers that are accepting. One that failed to start (or has stopped) must not count as the
    /// least loaded, or it would hold every other worker to one connection.
    serving: Vec<AtomicBool>,
    changed: tokio::sync::Notify,
}

impl Balance {
    /// Counters for `workers` workers, none serving yet.
    pub fn new(workers: usize) -> Self {
        Self {
            open: (0..workers.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            serving: (0..workers.max(1))
                .map(|_| AtomicBool::new(false))
                .collect(),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Worker `me` takes part until the returned guard drops.
    fn join(self: &Arc<Self>, me: usize) -> Held {
        if let Some(s) = self.serving.get(me) {
            s.store(true, Ordering::Relaxed);
        }
        self.hold(me, Slot::Serving)
    }

    /// Whether worker `me` may accept now.
    fn may_accept(&self, me: usize) -> bool {
        let mine = self.open.get(me).map_or(0, |c| c.load(Ordering::Relaxed));
        let least = self
            .open
            .iter()
            .zip(&self.serving)
            .filter(|(_, s)| s.load(Ordering::Relaxed))
            .map(|(c, _)| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(mine);
        mine <= least + 1
    }

    /// Wait until worker `me` may accept.
    async fn turn(&self, me: usize) {
        loop {
            // Created before the check: `notify_waiters` reaches it even before it is first polled.
            let changed = self.changed.notified();
            if self.may_accept(me) {
                return;
            }
            changed.await;
        }
    }

    /// Count a connection on worker `me` until the returned guard drops.
    fn open(self: &Arc<Self>, me: usize) -> Held {
        if let Some(c) = self.open.get(me) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.hold(me, Slot::Connection)
    }

    /// Tell waiting workers the counts changed (one may now be within one of the least loaded), and
    /// hand out the guard that undoes the change.
    fn hold(self: &Arc<Self>, me: usize, slot: Slot) -> Held {
        self.changed.notify_waiters();
        Held {
            balance: self.clone(),
            me,
            slot,
        }
    }
}

/// What a [`Held`] guard counts for its worker.
#[derive(Clone, Copy)]
enum Slot {
    /// The worker's membership in the balance.
    Serving,
    /// One open connection of the worker.
    Connection,
}

/// A worker's membership or one of its connections, undone (and waiting workers told) on drop.
struct Held {
    balance: Arc<Balance>,
    me: usize,
    slot: Slot,
}

impl Drop for Held {
    fn drop(&mut self) {
        let b = &self.balance;
        match self.slot {
            Slot::Serving => {
                if let Some(s) = b.serving.get(self.me) {
                    s.store(false, Ordering::Relaxed);
                }
            }
            Slot::Connection => {
                if let Some(c) = b.open.get(self.me) {
                    c.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        b.changed.notify_waiters();
    }
}

/// Serve the gateway with `workers` threads, each running a single-threaded runtime with its own accept
/// loop (on a duplicate of the listening socket) and its own upstream connection pool, until `shutdown`
/// resolves; then every worker drains.
///
/// Why not one multi-threaded runtime: a proxied request crosses from the client's connection task to the
/// upstream connection's task and back. On a work-stealing runtime those hops are often cross-thread
/// wake-ups, which dominated the profile once allocation was fixed. Keeping a connection, its upstream
/// pool and every task they spawn on one thread is how nginx's workers avoid the same cost.
pub async fn serve_workers(
    listener: TcpListener,
    state: Arc<Live>,
    opts: ServeOptions,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) {
    let std_listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "Cannot hand the listener to workers");
            return;
        }
    };
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let balance = Arc::new(Balance::new(workers.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut done = Vec::new();
    for i in 0..workers.max(1) {
        let l = match std_listener.try_clone() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "Cannot duplicate the listener; running fewer workers");
                break;
            }
        };
        let (state, opts, limit, balance, mut stop) = (
            state.clone(),
            opts.clone(),
            limit.clone(),
            balance.clone(),
            stop_rx.clone(),
        );
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("mcp-hub-w{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "Worker runtime failed to start");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(l) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "Worker cannot register the listener");
                            return;
                        }
                    };
                    let gateway = Arc::new(Front::new(state));
                    serve(listener, gateway, opts, limit, balance, i, async move {
                        let _ = stop.wait_for(|v| *v).await;
                    })
                    .await;
                });
                drop(done_tx);
            });
        match spawned {
            Ok(_) => done.push(done_rx),
            Err(e) => tracing::error!(error = %e, "Cannot start a worker thread"),
        }
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for d in done {
        let _ = d.await;
    }
}

/// Serve the gateway on `listener` as worker `me` of `balance` until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Front>,
    opts: ServeOptions,
    limit: Arc<Semaphore>,
    balance: Arc<Balance>,
    me: usize,
    shutdown: impl Future<Output = ()>,
) {
    let _serving = balance.join(me);
    let acceptor = TlsAcceptor::from(opts.tls.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns `None` once the last one has ended.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = shutdown.as_mut() => break,
            () = balance.turn(me) => {}
        }
        let Some((permit, tcp, peer)) =
            crate::listen::accept(&listener, &limit, shutdown.as_mut()).await
        else {
            break;
        };
        let counted = balance.open(me);
        let acceptor = acceptor.clone();
        let gateway = gateway.clone();
        let (stop, open) = (stop_rx.clone(), open_tx.clone());
        // Every line logged while serving this connection carries its client address.
        let span = tracing::info_span!("accept", client.addr = %peer);
        let conn = async move {
            let _permit = permit;
            let _open = open;
            let _counted = counted;
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            crate::telemetry::metrics::gateway_connections(1);
            let result = BUILDERS.serve(tls, peer, gateway, stop).await;
            crate::telemetry::metrics::gateway_connections(-1);
            if let Err(e) = result {
                tracing::debug!(error = %e, "Connection ended with error");
            }
        };
        tokio::spawn(conn.instrument(span));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    tokio::select! {
        _ = open_rx.recv() => tracing::info!("All connections drained"),
        () = tokio::time::sleep(opts.grace) => tracing::warn!("Grace period over; closing remaining connections"),
    }
}

/// Serve one already-TLS-terminated connection (an intercepted devbox connection) with the gateways.
pub async fn serve_one<S>(
    tls: tokio_rustls::server::TlsStream<S>,
    peer: SocketAddr,
    gateway: Arc<Front>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Never stopped from here (the sender is dropped at once): on shutdown the egress listener's drain
    // waits for it like for its other connections, up to the grace period, and then the process exits.
    let (_, stop) = watch::channel(false);
    if let Err(e) = BUILDERS.serve(tls, peer, gateway, stop).await {
        tracing::debug!(error = %e, "Intercepted connection ended with error");
    }
}

/// What a connection's idle watchdog sees: requests started, and requests still being answered.
#[derive(Default)]
struct Activity {
    started: AtomicU64,
    in_flight: AtomicUsize,
}

/// Counts a request as in flight from the moment its headers are read until its response body has
/// been sent (or abandoned).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>) -> Self {
        a.started.fetch_add(1, Ordering::Relaxed);
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until hyper is done with it, so a long SSE stream
/// is never mistaken for an idle connection.
struct Tracked {
    inner: Body,
    _request: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// HTTP settings for both protocols. ALPN picks the protocol, so each connection is served by the
/// HTTP/1.1 or the h2 connection type directly instead of sniffing for the h2 preface.
/// One set of protocol settings for every gateway connection, listened for or intercepted.
static BUILDERS: std::sync::LazyLock<Builders> = std::sync::LazyLock::new(Builders::new);

struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new() -> Self {
        let mut h1 = http1::Builder::new();
        // No per-request header timer: re-arming one on every request woke the runtime through its
        // eventfd each time. The connection's idle watchdog (`supervise`) covers slow and idle clients.
        h1.keep_alive(true).header_read_timeout(None);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Self { h1, h2 }
    }

    /// Serve `io` by its negotiated protocol until the client leaves, it idles out, or `stop` fires.
    async fn serve<S>(
        &self,
        io: tokio_rustls::server::TlsStream<S>,
        peer: SocketAddr,
        gateway: Arc<Front>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), hyper::Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let h2 = io.get_ref().1.alpn_protocol() == Some(b"h2");
        let idle = gateway.client_timeout();
        let activity = Arc::new(Activity::default());
        let a = activity.clone();
        let auth = Arc::new(Conn::default());
        let svc = service_fn(move |req| {
            let request = InFlight::start(&a);
            let gateway = gateway.clone();
            let auth = auth.clone();
            async move {
                // Boxed: hyper's HTTP/1.1 dispatcher keeps the service future in a box it allocates
                // once per connection; unboxed, the whole request state (~2.7 KB) would stay there
                // while the connection idles (megabytes at a thousand open sessions), to save one
                // allocation and copy per request (both measured in BENCHMARKS.md).
                let resp = Box::pin(gateway.handle(req, peer, &auth)).await;
                Ok::<_, std::convert::Infallible>(resp.map(|inner| Tracked {
                    inner,
                    _request: request,
                }))
            }
        });
        let io = TokioIo::new(io);
        if h2 {
            let conn = std::pin::pin!(self.h2.serve_connection(io, svc));
            supervise(conn, |c| c.graceful_shutdown(), &activity, idle, stop).await
        } else {
            let conn = std::pin::pin!(self.h1.serve_connection(io, svc));
            supervise(conn, |c| c.graceful_shutdown(), &activity, idle, stop).await
        }
    }
}

/// Drive a connection to its end. It is asked to finish gracefully (in-flight requests complete, no new
/// ones start) when the server stops, or when no request has been in progress for a whole `idle`
/// (checked every `idle / 2`, so an idle client is closed after 1 to 1.5 × `idle`; the check costs
/// nothing per request). A client still quiet one check later is holding only a partial request head
/// (slowloris), which a graceful close waits on forever: the connection is dropped.
///
/// The connection is polled on every wake of its task; the watchdog (timer and stop signal) only when
/// one of those woke it. A `select!` over all three polled the timer and the stop signal on every read
/// and write of every request.
async fn supervise<C, E>(
    mut conn: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    activity: &Activity,
    idle: Duration,
    stop: watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let orders = AtomicU8::new(0);
    let mut dog = std::pin::pin!(watchdog(activity, idle, stop, &orders));
    let mut dog_done = false;
    // Fired from the start, so the first poll arms the watchdog's timer and stop signal.
    let flag = Arc::new(WatchdogWake {
        fired: AtomicBool::new(true),
        task: AtomicWaker::new(),
    });
    let dog_waker = Waker::from(flag.clone());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        flag.task.register(cx.waker());
        if dog_done || !flag.fired.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        dog_done = dog
            .as_mut()
            .poll(&mut Context::from_waker(&dog_waker))
            .is_ready();
        let o = orders.swap(0, Ordering::AcqRel);
        if o & CLOSE != 0 {
            return Poll::Ready(Ok(()));
        }
        if o & GRACEFUL != 0 {
            shutdown(conn.as_mut());
            // A graceful shutdown takes effect when the connection is next polled.
            return conn.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

/// Watchdog orders to the connection.
const GRACEFUL: u8 = 1;
const CLOSE: u8 = 2;

/// The watchdog's waker: notes that the watchdog has something to see, then wakes the connection's task.
struct WatchdogWake {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl std::task::Wake for WatchdogWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Decide when a connection should finish (`GRACEFUL`) or be dropped (`CLOSE`); see [`supervise`]. Ends
/// once the server stops (the drain's grace period takes over) or after ordering a close.
async fn watchdog(
    activity: &Activity,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
    orders: &AtomicU8,
) {
    let period = (idle / 2).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity.started.load(Ordering::Relaxed);
    let mut quiet_ticks = 0;
    let mut stop_armed = true;
    loop {
        tokio::select! {
            biased;
            r = stop.wait_for(|s| *s), if stop_armed => {
                stop_armed = false;
                // A dropped sender only means nobody can stop this connection; the watchdog goes on.
                if r.is_ok() {
                    orders.fetch_or(GRACEFUL, Ordering::AcqRel);
                    return;
                }
            }
            _ = tick.tick() => {
                let now = activity.started.load(Ordering::Relaxed);
                if now != seen || activity.in_flight.load(Ordering::Relaxed) > 0 {
                    seen = now;
                    quiet_ticks = 0;
                    continue;
                }
                quiet_ticks += 1;
                match quiet_ticks {
                    0 | 1 => {}
                    2 => {
                        orders.fetch_or(GRACEFUL, Ordering::AcqRel);
                    }
                    _ => {
                        orders.fetch_or(CLOSE, Ordering::AcqRel);
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_least_loaded_worker() {
        let b = Arc::new(Balance::new(2));
        let (_w0, _w1) = (b.join(0), b.join(1));
        assert!(b.may_accept(0) && b.may_accept(1));
        let first = b.open(0);
        let _second = b.open(0);
        // The least loaded worker may always accept, so no connection waits for a worker that is
        // not allowed to take it.
        assert!(!b.may_accept(0), "two ahead of the idle worker");
        assert!(b.may_accept(1));
        // A waiting worker is released as soon as the counts allow it, by a close or by the other
        // worker's accept.
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.turn(0).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let _other = b.open(1);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released by the other worker's accept")
            .expect("joined");
        drop(first);
        assert!(b.may_accept(0));
        // One worker: always its turn.
        let one = Arc::new(Balance::new(1));
        let _w = one.join(0);
        let _held: Vec<_> = (0..5).map(|_| one.open(0)).collect();
        assert!(one.may_accept(0));
    }

    #[test]
    fn a_worker_that_is_not_serving_holds_no_one_back() {
        // Worker 1 never started (its thread or listener failed): worker 0 takes every connection.
        let b = Arc::new(Balance::new(2));
        let _w0 = b.join(0);
        let _held: Vec<_> = (0..5).map(|_| b.open(0)).collect();
        assert!(b.may_accept(0));
        // Once worker 1 serves, worker 0 waits for it to catch up; once it stops, no longer.
        let w1 = b.join(1);
        assert!(!b.may_accept(0));
        drop(w1);
        assert!(b.may_accept(0));
    }
}
