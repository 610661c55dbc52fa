//! Start-up: load and validate everything, make sure the state directory, token key and CA exist, build
//! the gateway's TLS config, then serve until shutdown while watching the files for live reload.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::ConfigError;
use crate::front::listener::{self, ServeOptions};
use crate::runtime::{Live, Snapshot};
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
    pub state: Arc<Live>,
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
    if tls::ca::init(&cfg.paths.ca_dir, &cfg.hub_hosts())? {
        tracing::info!(ca = %tls::ca::cert_path(&cfg.paths.ca_dir).display(), "Created the hub CA");
        if cfg.gateway.host.parse::<std::net::IpAddr>().is_ok() {
            tracing::warn!(
                host = %cfg.gateway.host,
                "gateway.url uses an IP address: the CA carries an IP name constraint, which some clients \
                 (Claude Code's TLS stack) reject; prefer a DNS name"
            );
        }
    }
    let snap = Snapshot::load(config_file)?;
    let ca = tls::ca::load(&snap.config.paths.ca_dir)?;
    let hosts = snap.config.hub_hosts();
    ca.check_hosts(&snap.config.paths.ca_dir, &hosts)?;
    let tls = ca.server_config(&hosts)?;
    Ok(Prepared {
        ca_file: tls::ca::cert_path(&snap.config.paths.ca_dir),
        state: Live::new(snap),
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

/// The egress proxy's listeners (each optional: `[egress]` may enable none).
#[derive(Debug, Default)]
pub struct EgressListeners {
    /// For connections redirected by nftables.
    pub transparent: Option<TcpListener>,
    /// For `HTTPS_PROXY`/`HTTP_PROXY` clients.
    pub explicit: Option<TcpListener>,
    /// DNS responder, UDP and TCP on the same address.
    pub dns: Option<(tokio::net::UdpSocket, TcpListener)>,
    /// The loopback admin listener.
    pub admin: Option<TcpListener>,
    /// The admin Unix socket for the CLI.
    pub control: Option<tokio::net::UnixListener>,
}

impl EgressListeners {
    /// Bound addresses, for the loop guard and for tests.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        [
            self.transparent.as_ref(),
            self.explicit.as_ref(),
            self.dns.as_ref().map(|d| &d.1),
        ]
        .into_iter()
        .flatten()
        .filter_map(|l| l.local_addr().ok())
        .collect()
    }
}

/// Bind DNS on UDP and TCP at the same port. With port 0 the port UDP gets may be taken on TCP (separate
/// port spaces), so that case retries with a fresh port.
///
/// `0.0.0.0:PORT` is bound as `[::]:PORT` (dual-stack): the ruleset redirects devboxes' IPv6 DNS to the
/// same port, and an IPv4-only responder would answer those queries with "connection refused".
async fn bind_dns(a: SocketAddr) -> Result<(tokio::net::UdpSocket, TcpListener), StartError> {
    let a = match a {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), v4.port())
        }
        a => a,
    };
    let io = |what: &str, source| StartError::Io {
        context: format!("binding DNS {what}"),
        source,
    };
    let mut attempts = 0;
    loop {
        let udp = tokio::net::UdpSocket::bind(a)
            .await
            .map_err(|e| io(&format!("{a}/udp"), e))?;
        let got = udp.local_addr().map_err(|e| io(&format!("{a}/udp"), e))?;
        match TcpListener::bind(got).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e)
                if a.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse && attempts < 20 =>
            {
                attempts += 1
            }
            Err(e) => return Err(io(&format!("{got}/tcp"), e)),
        }
    }
}

/// Bind the egress listeners `[egress]` configures.
///
/// # Errors
/// If an address cannot be bound.
pub async fn bind_egress(prepared: &Prepared) -> Result<EgressListeners, StartError> {
    let eg = prepared.state.load().config.egress.clone();
    let transparent = match eg.transparent_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let explicit = match eg.explicit_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let dns = match eg.dns_listen {
        Some(a) => Some(bind_dns(a).await?),
        None => None,
    };
    let admin = match prepared.state.load().config.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let control = match prepared.state.load().config.admin_socket.clone() {
        Some(p) => Some(
            crate::ops::socket::bind(&p).map_err(|source| StartError::Io {
                context: format!("binding {}", p.display()),
                source,
            })?,
        ),
        None => None,
    };
    Ok(EgressListeners {
        transparent,
        explicit,
        dns,
        admin,
        control,
    })
}

/// Serve until `shutdown`; `hup` forces a reload.
pub async fn serve(
    prepared: Prepared,
    listener: TcpListener,
    egress: EgressListeners,
    grace: Duration,
    hup: tokio::sync::mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) {
    let snap = prepared.state.load_full();
    let opts = ServeOptions {
        tls: prepared.tls.clone(),
        max_connections: snap.config.gateway.max_connections,
        grace,
    };
    let watcher = tokio::spawn(crate::ops::reload::watch(
        prepared.config_file.clone(),
        prepared.state.clone(),
        hup,
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut bound = egress.addrs();
    bound.extend(listener.local_addr().ok());
    let resolver = crate::egress::resolve::Resolver::new(&snap.config.egress.resolvers);
    let proxy = Arc::new(crate::egress::Egress::new(
        prepared.state.clone(),
        prepared.tls.clone(),
        bound,
        resolver.clone(),
    ));
    let mut tasks = Vec::new();
    for (l, mode) in [
        (egress.transparent, crate::egress::Mode::Transparent),
        (egress.explicit, crate::egress::Mode::Explicit),
    ] {
        if let Some(l) = l {
            let mut stop = stop_rx.clone();
            tracing::info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), mode = ?mode, "Egress proxy ready");
            tasks.push(tokio::spawn(proxy.clone().serve(
                l,
                mode,
                grace,
                async move {
                    let _ = stop.wait_for(|v| *v).await;
                },
            )));
        }
    }
    let health = Arc::new(crate::ops::admin::Health::default());
    let mut dns_tasks = Vec::new();
    if let Some(l) = egress.control {
        tracing::info!("Admin socket ready");
        dns_tasks.push(tokio::spawn(crate::ops::socket::serve(
            l,
            prepared.config_file.clone(),
            prepared.state.clone(),
        )));
    }
    if let Some(l) = egress.admin {
        tracing::info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "Admin listener ready (/healthz /readyz /metrics)");
        dns_tasks.push(tokio::spawn(crate::ops::admin::serve(l, health.clone())));
    }
    if let Some((udp, tcp)) = egress.dns {
        tracing::info!(listen = %udp.local_addr().map(|a| a.to_string()).unwrap_or_default(), "DNS responder ready");
        dns_tasks.push(tokio::spawn(crate::egress::dns::serve_udp(
            udp,
            prepared.state.clone(),
            resolver.clone(),
        )));
        dns_tasks.push(tokio::spawn(crate::egress::dns::serve_tcp(
            tcp,
            prepared.state.clone(),
            resolver.clone(),
        )));
    }
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let shutdown = async move {
        shutdown.await;
        // Readiness turns 503 before systemd (or anyone watching it) hears STOPPING=1: whoever acts on the
        // notification must already see the drain.
        health.set_draining();
        crate::ops::systemd::stopping();
        let _ = stop_tx.send(true);
    };
    // Every listener is bound and the CA and configuration are loaded.
    crate::ops::systemd::ready();
    listener::serve_workers(listener, prepared.state.clone(), opts, workers, shutdown).await;
    for t in tasks {
        let _ = t.await;
    }
    for t in dns_tasks {
        t.abort();
    }
    watcher.abort();
    // The last tool observations (timestamps) go to disk with the service.
    prepared.state.pins.flush_logged();
}
