//! The optimizer publishes an immutable parameter [`Snapshot`] per update in a [`ParamStore`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::runtime::roles::Snapshot;

/// Where workers get the latest parameters (Acme's `VariableSource`).
pub(super) trait VariableSource: Send + Sync {
    /// The latest version (cheap: an atomic load).
    fn version(&self) -> u64;
    /// The latest snapshot.
    fn latest(&self) -> Arc<Snapshot>;
}

/// The optimizer's published snapshot: an `Arc` swapped under a lock, plus its version.
pub(super) struct ParamStore {
    pub(super) version: AtomicU64,
    pub(super) current: RwLock<Arc<Snapshot>>,
}

impl ParamStore {
    /// A store holding `s`.
    pub fn new(s: Snapshot) -> Self {
        Self {
            version: AtomicU64::new(s.version),
            current: RwLock::new(Arc::new(s)),
        }
    }

    /// Replace the snapshot (optimizer only).
    pub fn publish(&self, s: Snapshot) {
        let v = s.version;
        *self.current.write().expect("snapshot lock") = Arc::new(s);
        self.version.store(v, Ordering::Release);
    }
}

impl VariableSource for ParamStore {
    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn latest(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock").clone()
    }
}
