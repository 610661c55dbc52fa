//! Trust for upstreams (MCP servers and the agent gateway's APIs): the system store plus an optional
//! operator CA bundle, and the settings key both gateways' clients are rebuilt by.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::TlsError;
use crate::config::GatewaySettings;

/// Settings the client is built from; a change rebuilds it on the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// `gateway.upstream_connect_timeout_ms`.
    pub connect_timeout: Duration,
    /// `gateway.upstream_ca_file`.
    pub ca_file: Option<PathBuf>,
}

impl ClientKey {
    /// The key for current settings.
    pub fn of(s: &GatewaySettings) -> Self {
        Self {
            connect_timeout: s.upstream_connect_timeout,
            ca_file: s.upstream_ca_file.clone(),
        }
    }

    /// Whether a client made for this key still fits the current settings (checked on every call, so it
    /// compares instead of building a key).
    pub fn fits(&self, s: &GatewaySettings) -> bool {
        self.connect_timeout == s.upstream_connect_timeout && self.ca_file == s.upstream_ca_file
    }
}

/// Build the upstream client config.
///
/// # Errors
/// Unreadable extra CA file or rustls errors.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    if let Some(p) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Cert(format!("{}: {e}", p.display())))?;
        if certs.is_empty() {
            return Err(TlsError::Cert(format!(
                "{}: no certificates found",
                p.display()
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| TlsError::Cert(format!("{}: {e}", p.display())))?;
        }
    }
    // ALPN (h2, http/1.1) is set by the upstream client (`mcp::upstream`).
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(cfg))
}
