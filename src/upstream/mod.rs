//! The HTTP(S) client both gateways send upstream with: pooled per worker (see [`pool`]), h2 or
//! HTTP/1.1 by ALPN, with connect and response-header timeouts, and failures classified so the agent
//! learns what went wrong (never how the credential looked). Generic over the request body: complete
//! bodies for the MCP gateway, streamed ones for the agent gateway.

mod io;
pub mod pool;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;

use self::io::Io;
use self::pool::{Checkout, H1, Pool, SendBody, UpstreamBody};
use crate::config::origin::Origin;
use crate::tls::TlsError;

/// Why an upstream exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// No response headers within `upstream_response_timeout` (or connect timeout).
    Timeout,
    /// TCP connect failed (refused, unreachable, DNS).
    Unreachable(String),
    /// TLS handshake or certificate verification failed.
    Tls(String),
    /// The upstream broke the HTTP exchange.
    Protocol(String),
}

impl UpstreamError {
    /// Stable reason code for audit and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Timeout => "upstream_timeout",
            Self::Unreachable(_) => "upstream_unreachable",
            Self::Tls(_) => "upstream_tls_error",
            Self::Protocol(_) => "upstream_protocol_error",
        }
    }

    /// Human explanation for the agent, naming the server.
    pub fn describe(&self, server: &str) -> String {
        match self {
            Self::Timeout => format!("upstream MCP server {server:?} timed out"),
            Self::Unreachable(d) => format!("upstream MCP server {server:?} is unreachable ({d})"),
            Self::Tls(d) => format!("TLS with upstream MCP server {server:?} failed ({d})"),
            Self::Protocol(d) => {
                format!("upstream MCP server {server:?} broke the HTTP exchange ({d})")
            }
        }
    }

    /// A failed HTTP exchange on an established connection.
    fn protocol(e: &hyper::Error) -> Self {
        if e.is_timeout() {
            return Self::Timeout;
        }
        Self::Protocol(e.to_string())
    }

    /// A failed TCP connect.
    fn connect(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::TimedOut => Self::Timeout,
            k => Self::Unreachable(k.to_string()),
        }
    }

    /// A failed TLS handshake: the certificate or protocol problem when rustls names one.
    fn tls(e: &std::io::Error) -> Self {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(t) => Self::Tls(t.to_string()),
            None => Self::Tls(e.kind().to_string()),
        }
    }
}

pub use crate::tls::client::ClientKey;

/// A new connection, by the protocol ALPN chose.
enum Fresh<B: SendBody> {
    H1(H1<B>),
    H2(http2::SendRequest<B>),
}

/// How an exchange on an HTTP/1.1 connection ended.
enum H1Outcome<B: SendBody> {
    Response(Response<Incoming>, H1<B>),
    /// The pooled connection closed before the request was written: safe to send again elsewhere.
    NotSent(Request<B>),
    Failed(UpstreamError),
}

/// The upstream client of one gateway worker.
pub struct Upstream<B: SendBody = Full<Bytes>> {
    tls: TlsConnector,
    connect_timeout: Duration,
    pool: Arc<Pool<B>>,
}

impl<B: SendBody> Upstream<B> {
    /// Build from settings.
    ///
    /// # Errors
    /// Unreadable extra CA file.
    pub fn new(key: &ClientKey) -> Result<Self, TlsError> {
        let mut tls =
            Arc::unwrap_or_clone(crate::tls::client::client_config(key.ca_file.as_deref())?);
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout: key.connect_timeout,
            pool: Pool::new(),
        })
    }

    /// Send a request (absolute URI, at `origin`) and wait for response headers, connecting if no
    /// pooled connection is usable.
    ///
    /// # Errors
    /// Classified failure.
    pub async fn send(
        &self,
        req: Request<B>,
        origin: &Arc<Origin>,
        timeout: Duration,
    ) -> Result<Response<UpstreamBody<B>>, UpstreamError> {
        // Not boxed: the gateway's whole request future is boxed once per request, and the exchange's
        // state shares its room with the relay stage that follows it (about the same size), so a box
        // here would cost an allocation and a copy per call and save nothing.
        let deadline = tokio::time::Instant::now() + timeout;
        self.exchange(origin.clone(), req, deadline).await
    }

    /// Stage exchange: a pooled connection if one is usable, else a new one; an HTTP/1.1 request that a
    /// pooled connection closed on before sending it gets one fresh attempt. Everything up to the
    /// response head, connecting included, ends by `deadline`.
    ///
    /// One await per protocol: every await of a sub-future reserves its own room in this future, which
    /// the gateway's request future embeds and moves, so the shape here is also a matter of speed.
    async fn exchange(
        &self,
        key: Arc<Origin>,
        req: Request<B>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<UpstreamBody<B>>, UpstreamError> {
        let mut req = req;
        let late = |_| UpstreamError::Timeout;
        let mut pooled = self.pool.checkout(&key);
        loop {
            let fresh = pooled.is_none();
            let h1 = match pooled.take() {
                Some(Checkout::H2(tx)) => {
                    return timeout_at(deadline, send_h2(tx, req)).await.map_err(late)?;
                }
                Some(Checkout::H1(h1)) => h1,
                // Boxed: the connect state (TCP, then a TLS handshake) is large and needed only for a
                // new connection; inline, every pooled exchange's future would carry (and move) it.
                None => match Box::pin(timeout_at(deadline, self.connect(&key)))
                    .await
                    .map_err(late)??
                {
                    Fresh::H2(tx) => {
                        self.pool.put_h2(key.clone(), tx.clone());
                        pooled = Some(Checkout::H2(tx));
                        continue;
                    }
                    Fresh::H1(h1) => h1,
                },
            };
            match send_h1(h1, &key.host_header, req, deadline).await {
                H1Outcome::Response(r, h1) => return Ok(self.pooled(r, h1, key)),
                H1Outcome::Failed(e) => return Err(e),
                H1Outcome::NotSent(_) if fresh => {
                    return Err(UpstreamError::Protocol(
                        "connection closed before the request was sent".into(),
                    ));
                }
                // The server closed the idle connection just as it was reused: one fresh attempt.
                H1Outcome::NotSent(r) => req = r,
            }
        }
    }

    fn pooled(
        &self,
        r: Response<Incoming>,
        h1: H1<B>,
        key: Arc<Origin>,
    ) -> Response<UpstreamBody<B>> {
        r.map(|b| UpstreamBody::pooled(b, h1, self.pool.clone(), key))
    }

    /// Stage connect: TCP (bounded by the connect timeout), then TLS with ALPN for `https`.
    async fn connect(&self, key: &Origin) -> Result<Fresh<B>, UpstreamError> {
        let (host, port) = (&*key.host, key.port);
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
        {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => return Err(UpstreamError::connect(&e)),
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        let (io, h2) = if key.https {
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| UpstreamError::Tls(format!("{host:?} is not a valid server name")))?;
            let tls = match tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
                .await
            {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Err(e)) => return Err(UpstreamError::tls(&e)),
                Ok(Ok(s)) => s,
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            (Io::Tls(Box::new(tls)), h2)
        } else {
            (Io::Plain(tcp), false)
        };
        let io = TokioIo::new(io);
        if h2 {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| UpstreamError::protocol(&e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "Upstream h2 connection ended with error");
                }
            });
            Ok(Fresh::H2(tx))
        } else {
            let (tx, conn) = http1::handshake(io)
                .await
                .map_err(|e| UpstreamError::protocol(&e))?;
            Ok(Fresh::H1(H1::new(tx, conn)))
        }
    }
}

/// Send on an HTTP/1.1 connection, driving it in this task until the response head arrives or
/// `deadline` passes (the connection, with its request in flight, is then dropped). The request goes in
/// origin form with `Host` set to the endpoint's authority.
async fn send_h1<B: SendBody>(
    mut h1: H1<B>,
    host: &HeaderValue,
    mut req: Request<B>,
    deadline: tokio::time::Instant,
) -> H1Outcome<B> {
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    req.headers_mut().insert(header::HOST, host.clone());
    h1.arm(deadline);
    let mut sent = pin!(h1.tx.try_send_request(req));
    let result = poll_fn(|cx| {
        h1.drive(cx);
        if let Poll::Ready(r) = sent.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if h1.expired(cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    match result {
        None => H1Outcome::Failed(UpstreamError::Timeout),
        Some(Ok(resp)) => H1Outcome::Response(resp, h1),
        Some(Err(mut e)) => match e.take_message() {
            Some(req) => H1Outcome::NotSent(req),
            None => H1Outcome::Failed(UpstreamError::protocol(e.error())),
        },
    }
}

/// Send on a shared HTTP/2 connection.
async fn send_h2<B: SendBody>(
    mut tx: http2::SendRequest<B>,
    req: Request<B>,
) -> Result<Response<UpstreamBody<B>>, UpstreamError> {
    poll_fn(|cx| tx.poll_ready(cx))
        .await
        .map_err(|e| UpstreamError::protocol(&e))?;
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| UpstreamError::protocol(&e))?;
    Ok(resp.map(UpstreamBody::shared))
}
