//! The token a connection last presented and verified, so the next request on the same connection
//! that presents the same bytes skips decoding and MAC verification (most of the token check's cost;
//! an agent sends every request of a session with one token on one keep-alive connection). Both
//! gateways keep one per connection, for their own kind of binding.
//!
//! SECURITY: a hit requires the snapshot the token was verified against to still be the live one. Any
//! reload (revocation, rotation, config edit) publishes a new snapshot, so the next request verifies in
//! full against it: a revoked token stops on a reused connection exactly as on a new one. The address
//! check needs no repeat (a connection's peer never changes). Only weak references are kept, so a
//! cached entry keeps neither an old snapshot's contents nor a binding's credential alive; the weak
//! reference does keep the old snapshot's allocation, so no later snapshot can take its address and
//! pass the pointer test. The presented bytes are compared in constant time.

use std::sync::{Arc, Mutex, Weak};

use subtle::ConstantTimeEq;

use super::Snapshot;

/// A connection's verified token, for bindings of type `B`.
pub struct ConnAuth<B>(Mutex<Option<Verified<B>>>);

impl<B> Default for ConnAuth<B> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

struct Verified<B> {
    /// The credential header's value as presented (a copy: hyper's read buffer must not be pinned).
    presented: Box<[u8]>,
    snap: Weak<Snapshot>,
    binding: Weak<B>,
}

impl<B> ConnAuth<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Verified<B>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The binding `presented` verified to on this connection, if that was under `snap`.
    pub fn hit(&self, snap: &Arc<Snapshot>, presented: &[u8]) -> Option<Arc<B>> {
        let g = self.lock();
        let v = g.as_ref()?;
        if !std::ptr::eq(v.snap.as_ptr(), Arc::as_ptr(snap)) {
            return None;
        }
        // SECURITY: constant time; these are the bytes of a verified token.
        if !bool::from(v.presented.ct_eq(presented)) {
            return None;
        }
        v.binding.upgrade()
    }

    /// Remember that `presented` verified to `binding` under `snap`.
    pub fn remember(&self, snap: &Arc<Snapshot>, presented: &[u8], binding: &Arc<B>) {
        *self.lock() = Some(Verified {
            presented: presented.into(),
            snap: Arc::downgrade(snap),
            binding: Arc::downgrade(binding),
        });
    }
}
