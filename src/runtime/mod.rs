//! The runtime view every product reads: `hub.toml`, secrets, devboxes and issued tokens joined into
//! one immutable [`Snapshot`], swapped atomically on reload, with what the gateways ask of it: token
//! authentication and the credential each binding injects (and scrubs from responses).

pub mod conn_auth;
pub mod credentials;
pub mod ledger;
pub mod pins;
pub mod snapshot;

pub use snapshot::Snapshot;

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

/// The snapshot that is live now, and a generation that advances with every swap.
///
/// Requests load the snapshot once and keep it to the end, so a reload never changes a request midway.
/// Long-lived tunnels and event streams subscribe to the generation instead, re-check themselves against
/// each new snapshot, and end if it no longer allows them.
pub struct Live {
    current: ArcSwap<Snapshot>,
    generation: watch::Sender<u64>,
    /// Per-binding usage, kept across snapshots.
    pub ledger: ledger::Ledger,
    /// Tool pinning: approvals (from each snapshot) joined with what the upstreams listed.
    pub pins: pins::Pins,
}

impl Live {
    /// A live view starting at `snap`.
    pub fn new(snap: Snapshot) -> Arc<Self> {
        let pins = pins::Pins::load(&snap.config.paths.tools_seen_file, snap.approvals.clone());
        Arc::new(Self {
            pins,
            current: ArcSwap::from_pointee(snap),
            generation: watch::channel(0).0,
            ledger: ledger::Ledger::default(),
        })
    }

    /// The current snapshot, cheaply (no reference count taken); for a lookup that ends at once.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot, to keep across awaits.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swap in `snap` (and its tool approvals), then wake every subscriber.
    pub fn store(&self, snap: Snapshot) {
        self.pins.set_approvals(snap.approvals.clone());
        self.current.store(Arc::new(snap));
        self.touch();
    }

    /// Wake every subscriber without a new snapshot: the pinned tools changed, so open event streams
    /// tell their clients to list again.
    pub fn touch(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// A receiver that wakes after every swap.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
