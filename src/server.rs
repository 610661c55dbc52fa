//! The gateway listener: accept (bounded by a semaphore), TLS handshake (bounded in time), then HTTP/1.1
//! or h2 by ALPN, all connections drained gracefully on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use arc_swap::ArcSwap;

use crate::config::Snapshot;
use crate::mcp::gateway::Gateway;

/// Time a client gets to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to send request headers (HTTP/1.1).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
    state: Arc<ArcSwap<Snapshot>>,
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
        let (state, opts, limit, mut stop) =
            (state.clone(), opts.clone(), limit.clone(), stop_rx.clone());
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
                    let gateway = Arc::new(Gateway::new(state));
                    serve(listener, gateway, opts, limit, async move {
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

/// Stage accept: wait for a connection slot, then a connection (nodelay set); `None` once `shutdown`
/// fires. Accept errors (EMFILE and friends) back off instead of spinning.
pub async fn accept<F: Future<Output = ()>>(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    mut shutdown: std::pin::Pin<&mut F>,
) -> Option<(
    tokio::sync::OwnedSemaphorePermit,
    tokio::net::TcpStream,
    SocketAddr,
)> {
    let permit = tokio::select! {
        () = shutdown.as_mut() => return None,
        p = limit.clone().acquire_owned() => p.ok()?,
    };
    loop {
        tokio::select! {
            () = shutdown.as_mut() => return None,
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    return Some((permit, tcp, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serve the gateway on `listener` until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    opts: ServeOptions,
    limit: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(opts.tls.clone());
    let graceful = GracefulShutdown::new();
    let h1 = Arc::new(http_builder().http1_only());
    let h2 = Arc::new(http_builder().http2_only());
    tokio::pin!(shutdown);
    while let Some((permit, tcp, peer)) = accept(&listener, &limit, shutdown.as_mut()).await {
        let acceptor = acceptor.clone();
        let gateway = gateway.clone();
        let (h1, h2) = (h1.clone(), h2.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(client.addr = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client.addr = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let builder = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                h2
            } else {
                h1
            };
            serve_connection(tls, peer, gateway, &builder, watcher).await;
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("All connections drained"),
        () = tokio::time::sleep(opts.grace) => tracing::warn!("Grace period over; closing remaining connections"),
    }
}

/// Serve one already-TLS-terminated connection (an intercepted devbox connection) with the gateway.
pub async fn serve_one<S>(
    tls: tokio_rustls::server::TlsStream<S>,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let builder = if h2 {
        http_builder().http2_only()
    } else {
        http_builder().http1_only()
    };
    let svc = service_fn(move |req| {
        let gateway = gateway.clone();
        async move { Ok::<_, std::convert::Infallible>(gateway.handle(req, peer).await) }
    });
    if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
        tracing::debug!(client.addr = %peer, error = %e, "Intercepted connection ended with error");
    }
}

/// HTTP settings shared by both protocols. ALPN picks the protocol, so each connection is served by an
/// `http1_only` or `http2_only` builder instead of sniffing for the h2 preface.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let gateway = gateway.clone();
        async move { Ok::<_, std::convert::Infallible>(gateway.handle(req, peer).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    crate::metrics::gateway_connections(1.0);
    let result = watcher.watch(conn.into_owned()).await;
    crate::metrics::gateway_connections(-1.0);
    if let Err(e) = result {
        tracing::debug!(client.addr = %peer, error = %e, "Connection ended with error");
    }
}
