//! The loopback admin listener: `/healthz` (the process is up), `/readyz` (serving, not draining) and
//! `/metrics` (Prometheus text). Plain HTTP, bound to loopback only (enforced by config validation).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Shared readiness: false once the drain starts.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
}

impl Health {
    /// Mark the drain as started (`/readyz` turns 503).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

fn reply(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}

/// Time a client of the admin listener gets to send a request head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    loop {
        let (tcp, _) = crate::listen::accept_retrying(|| listener.accept()).await;
        let health = health.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let health = health.clone();
                async move {
                    Ok::<_, Infallible>(match req.uri().path() {
                        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
                        "/readyz" if health.draining.load(Ordering::SeqCst) => {
                            reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
                        }
                        "/readyz" => reply(StatusCode::OK, "text/plain", "ready\n"),
                        "/metrics" => reply(
                            StatusCode::OK,
                            crate::telemetry::metrics::CONTENT_TYPE,
                            crate::telemetry::metrics::render(),
                        ),
                        _ => reply(
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "try /healthz, /readyz or /metrics\n",
                        ),
                    })
                }
            });
            // A head that never ends is closed, as on every other listener (slow-loris).
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
