//! Start-up: load and validate everything, make sure the state directory, token key and CA exist, build
//! the gateway's TLS config, then serve until shutdown while watching the files for live reload.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::config::{ConfigError, Snapshot};
use crate::server::{self, ServeOptions};
use crate::tls::{self, TlsError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration (exit 78).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// CA or certificate problem.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Files or sockets.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Everything needed to serve, ready before any listener accepts.
pub struct Prepared {
    /// The live snapshot, swapped by reload.
    pub state: Arc<ArcSwap<Snapshot>>,
    /// TLS for the gateway host.
    pub tls: Arc<rustls::ServerConfig>,
    /// Path of the CA certificate devboxes must trust.
    pub ca_file: PathBuf,
    /// The operator's config file.
    pub config_file: PathBuf,
}

/// Install the process-wide rustls crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Load config and state, create the token key and CA on first start, and build TLS.
///
/// # Errors
/// Invalid config, unusable CA, or file errors.
pub fn prepare(config_file: &Path) -> Result<Prepared, StartError> {
    install_crypto_provider();
    let cfg = crate::config::load(config_file)?;
    crate::state::init(&cfg.paths).map_err(|source| StartError::Io {
        context: format!(
            "initialising state directory {}",
            cfg.paths.state_dir.display()
        ),
        source,
    })?;
    if tls::ca::init(&cfg.paths.ca_dir, &cfg.gateway.host)? {
        tracing::info!(ca = %tls::ca::cert_path(&cfg.paths.ca_dir).display(), "Created the hub CA");
    }
    let snap = Snapshot::load(config_file)?;
    let ca = tls::ca::load(&snap.config.paths.ca_dir)?;
    ca.check_host(&snap.config.paths.ca_dir, &snap.config.gateway.host)?;
    let tls = ca.server_config(&snap.config.gateway.host)?;
    Ok(Prepared {
        ca_file: tls::ca::cert_path(&snap.config.paths.ca_dir),
        state: Arc::new(ArcSwap::from_pointee(snap)),
        tls,
        config_file: config_file.to_path_buf(),
    })
}

/// Bind the configured gateway address.
///
/// # Errors
/// If the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Io {
            context: format!("binding {addr}"),
            source,
        })
}

/// Serve until `shutdown`; `hup` forces a reload.
pub async fn serve(
    prepared: Prepared,
    listener: TcpListener,
    grace: Duration,
    hup: tokio::sync::mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) {
    let snap = prepared.state.load_full();
    let opts = ServeOptions {
        tls: prepared.tls,
        max_connections: snap.config.gateway.max_connections,
        grace,
    };
    let watcher = tokio::spawn(crate::reload::watch(
        prepared.config_file.clone(),
        prepared.state.clone(),
        hup,
    ));
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    server::serve_workers(listener, prepared.state.clone(), opts, workers, shutdown).await;
    watcher.abort();
}
