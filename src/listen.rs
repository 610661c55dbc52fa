//! Taking connections: the one accept loop with backoff that every listener uses.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The one way every listener (gateway, egress, DNS over TCP, admin, admin socket) takes its next
/// connection: an accept error (EMFILE or ENFILE when descriptors run out, ENOBUFS, ECONNABORTED) is
/// logged and retried after a pause that doubles from 10 ms up to 1 s, instead of spinning on a
/// listener whose pending connection cannot be taken. Connections already open keep being served,
/// and accepting resumes by itself once descriptors free up.
pub async fn accept_retrying<T, Fut>(mut accept: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = std::io::Result<T>>,
{
    let mut pause = Duration::from_millis(10);
    loop {
        match accept().await {
            Ok(x) => return x,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "Accept failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Stage accept: wait for a connection slot, then a connection (nodelay set); `None` once `shutdown`
/// fires. Accept errors back off (`accept_retrying`).
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
    tokio::select! {
        () = shutdown.as_mut() => None,
        (tcp, peer) = accept_retrying(|| listener.accept()) => {
            let _ = tcp.set_nodelay(true);
            Some((permit, tcp, peer))
        }
    }
}
