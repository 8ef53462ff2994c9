//! Parameter snapshots: the optimizer publishes an immutable copy of every network per update.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::algo::Params;
use crate::nn::ParamSet;

/// Host copy of one parameter set.
#[derive(Debug, Clone)]
pub(super) struct HostSet {
    pub(super) shapes: Vec<[usize; 2]>,
    pub(super) values: Vec<Vec<f32>>,
}

impl HostSet {
    pub(super) fn of(p: &ParamSet) -> Self {
        Self {
            shapes: p.shapes().to_vec(),
            values: p.values().to_vec(),
        }
    }

    pub(super) fn build(&self) -> ParamSet {
        ParamSet::new(self.shapes.clone(), self.values.clone())
    }
}

/// An immutable snapshot of every parameter at one optimizer iteration.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    /// The optimizer's iteration counter when the snapshot was taken.
    pub version: u64,
    pub(super) pi: HostSet,
    pub(super) q1: HostSet,
    pub(super) q2: Option<HostSet>,
    pub(super) pi_t: HostSet,
    pub(super) q1_t: HostSet,
    pub(super) q2_t: Option<HostSet>,
    pub(super) log_alpha: HostSet,
}

impl Snapshot {
    /// Copy the host values of `p`.
    pub fn of(version: u64, p: &Params) -> Self {
        Self {
            version,
            pi: HostSet::of(&p.pi),
            q1: HostSet::of(&p.q1),
            q2: p.q2.as_ref().map(HostSet::of),
            pi_t: HostSet::of(&p.pi_t),
            q1_t: HostSet::of(&p.q1_t),
            q2_t: p.q2_t.as_ref().map(HostSet::of),
            log_alpha: HostSet::of(&p.log_alpha),
        }
    }

    /// Rebuild every parameter set (with this thread's tensor caches).
    pub fn params(&self) -> Params {
        Params {
            pi: self.pi.build(),
            q1: self.q1.build(),
            q2: self.q2.as_ref().map(HostSet::build),
            pi_t: self.pi_t.build(),
            q1_t: self.q1_t.build(),
            q2_t: self.q2_t.as_ref().map(HostSet::build),
            log_alpha: self.log_alpha.build(),
        }
    }

    /// Rebuild the policy only (actors).
    pub fn policy(&self) -> ParamSet {
        self.pi.build()
    }
}

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
