//! The agent gateway's upstream client: hyper-util's pooled client over hyper-rustls, h2 or HTTP/1.1
//! by ALPN, trusting the system store and `gateway.upstream_ca_file`. Request bodies stream through it
//! as the devbox sends them.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::BoxError;
use crate::config::GatewaySettings;
use crate::tls::TlsError;
use crate::tls::client::ClientKey;

/// Body of upstream requests: the devbox's body as it arrives, or the bytes read to check its model.
pub type UpBody = UnsyncBoxBody<Bytes, BoxError>;

/// One worker's client, with the settings it was built from.
pub struct Client {
    /// Settings it was built for (rebuilt when they change).
    pub key: ClientKey,
    /// The pooled client.
    pub inner: Pooled<HttpsConnector<HttpConnector>, UpBody>,
}

impl Client {
    /// Build for the `[gateway]` upstream settings (connect timeout, extra CA), which both gateways
    /// share.
    ///
    /// # Errors
    /// Unreadable extra CA file.
    pub fn new(s: &GatewaySettings) -> Result<Self, TlsError> {
        let tls = crate::tls::client::client_config(s.upstream_ca_file.as_deref())?;
        let key = ClientKey::of(s);
        let connect_timeout = s.upstream_connect_timeout;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(std::sync::Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Pooled::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Self { key, inner })
    }
}

/// A failed exchange, as a stable reason.
pub fn classify(e: &hyper_util::client::legacy::Error) -> &'static str {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return "upstream_tls_error";
        }
        src = s.source();
    }
    if e.is_connect() {
        "upstream_unreachable"
    } else {
        "upstream_protocol_error"
    }
}
