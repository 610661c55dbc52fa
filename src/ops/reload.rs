//! Live reload: the state files are polled every `POLL_INTERVAL` (and re-read on SIGHUP); a change is
//! loaded and validated in full, then swapped in atomically. On any error the old snapshot keeps serving
//! and every problem is logged. Requests in flight keep the snapshot they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::ConfigError;
use crate::runtime::{Live, Snapshot};

/// How often files are checked for changes; bounds how fast a revoked token stops working.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How often tool observations that are only newer timestamps are written (changes are written at once).
const SEEN_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, PartialEq, Eq, Clone)]
struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

fn stamp(files: &[PathBuf]) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp(
        files
            .iter()
            .map(|f| {
                std::fs::metadata(f).ok().map(|m| {
                    (
                        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        m.len(),
                        m.ino(),
                    )
                })
            })
            .collect(),
    )
}

fn watched(snap: &Snapshot) -> Vec<PathBuf> {
    let p = &snap.config.paths;
    vec![
        p.config_file.clone(),
        p.secrets_file.clone(),
        p.devboxes_file.clone(),
        p.tokens_file.clone(),
        p.token_key_file.clone(),
        p.tool_approvals_file.clone(),
    ]
}

/// Load and swap in a new snapshot now.
///
/// # Errors
/// The validation problems; the old snapshot stays in place.
pub fn reload_now(config_file: &Path, state: &Live) -> Result<(), ConfigError> {
    crate::ops::systemd::reloading();
    let result = swap(config_file, state);
    crate::ops::systemd::ready();
    crate::telemetry::metrics::reload(result.is_ok());
    result
}

fn swap(config_file: &Path, state: &Live) -> Result<(), ConfigError> {
    let old = state.load();
    let new = Snapshot::load(config_file)?;
    if new.config.gateway.listen != old.config.gateway.listen
        || new.config.hub_hosts() != old.config.hub_hosts()
    {
        // The listener is bound and the certificate issued for the hosts at start-up.
        tracing::warn!(
            "gateway.listen, or the host of gateway.url or agent_gateway.url, changed; restart the service to apply"
        );
    }
    tracing::info!(
        bindings = new.live_bindings(),
        mcp_configs = new.config.mcp_configs.len(),
        "Configuration reloaded"
    );
    state.store(new);
    Ok(())
}

/// Log every problem of a failed reload.
pub fn log_failure(e: &ConfigError) {
    for i in e.issues() {
        tracing::error!(file = %i.file, key = %i.path, problem = %i.message, "Reload rejected; keeping the previous configuration");
    }
}

/// Watch the files forever, reloading on change or when `hup` fires.
pub async fn watch(
    config_file: PathBuf,
    state: Arc<Live>,
    mut hup: tokio::sync::mpsc::Receiver<()>,
) {
    let mut files = watched(&state.load());
    let mut last = stamp(&files);
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flushed = tokio::time::Instant::now();
    loop {
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            m = hup.recv() => { if m.is_none() { return; } true }
        };
        if flushed.elapsed() >= SEEN_FLUSH_INTERVAL {
            flushed = tokio::time::Instant::now();
            let s = state.clone();
            tokio::task::spawn_blocking(move || s.pins.flush_logged());
        }
        let now = stamp(&files);
        if !forced && now == last {
            continue;
        }
        last = now;
        match reload_now(&config_file, &state) {
            Ok(()) => {
                files = watched(&state.load());
                last = stamp(&files);
            }
            Err(e) => log_failure(&e),
        }
    }
}
