//! Trust for upstream MCP servers: the system store plus an optional operator CA bundle.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::TlsError;

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
