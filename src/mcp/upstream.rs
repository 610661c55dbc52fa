//! The HTTP(S) client for upstream MCP servers: pooled, h2/HTTP/1.1 by ALPN, with connect and
//! response-header timeouts, and failures classified so the agent learns what went wrong (never how the
//! credential looked).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::GatewaySettings;
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

    fn classify(e: &hyper_util::client::legacy::Error) -> Self {
        let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        let mut detail = None;
        while let Some(s) = src {
            if let Some(t) = s.downcast_ref::<rustls::Error>() {
                return Self::Tls(t.to_string());
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return Self::Timeout;
                }
                if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    return Self::Tls(t.to_string());
                }
                detail = Some(io.kind().to_string());
            }
            src = s.source();
        }
        let d = detail.unwrap_or_else(|| "connection failed".into());
        if e.is_connect() {
            Self::Unreachable(d)
        } else {
            Self::Protocol(d)
        }
    }
}

/// Settings the client is built from; a change rebuilds it on the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    connect_timeout: Duration,
    ca_file: Option<PathBuf>,
}

impl ClientKey {
    /// The key for current settings.
    pub fn of(s: &GatewaySettings) -> Self {
        Self {
            connect_timeout: s.upstream_connect_timeout,
            ca_file: s.upstream_ca_file.clone(),
        }
    }
}

/// A pooled upstream client.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Upstream {
    /// Build from settings.
    ///
    /// # Errors
    /// Unreadable extra CA file.
    pub fn new(key: &ClientKey) -> Result<Self, TlsError> {
        let tls = crate::tls::client::client_config(key.ca_file.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(key.connect_timeout));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(https);
        Ok(Self { client })
    }

    /// Send a request and wait for response headers.
    ///
    /// # Errors
    /// Classified failure.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(UpstreamError::classify(&e)),
            Ok(Ok(r)) => Ok(r),
        }
    }
}
