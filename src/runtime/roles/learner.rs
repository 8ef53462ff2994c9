//! The learner role without its thread: version-tagged gradients from a snapshot and a batch.

use anyhow::Result;

use super::messages::{Snapshot, TaggedGrads};
use crate::algo::{Learner, Nets, Params, TargetBatch};
use crate::config::Config;
use crate::env::Task;
use crate::replay::HostBatch;

/// A learner: its parameter copy (and version), its targets / gradients engine (own prior
/// model, true environment for n-step targets, RNG) and its gradient counter.
pub struct LearnerCore {
    learner: Learner,
    params: Params,
    version: u64,
    made: u64,
    policy_delay: u64,
    batch_reuse: usize,
    /// The batch of [`LearnerCore::step`] with its targets and the gradients left from it.
    kept: Option<(TargetBatch, usize)>,
}

impl LearnerCore {
    /// A learner of `cfg` on `task` seeded with `seed`, holding `snapshot`'s parameters.
    pub fn new(cfg: &Config, task: &Task, seed: u64, snapshot: &Snapshot) -> Result<Self> {
        let nets = Nets::new(cfg, task.spec());
        Ok(Self {
            learner: Learner::for_task(nets, cfg, task, seed, seed)?,
            params: snapshot.params(),
            version: snapshot.version,
            made: 0,
            policy_delay: cfg.algo.policy_delay,
            batch_reuse: cfg.algo.batch_reuse,
            kept: None,
        })
    }

    /// The parameter version in use.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Gradients computed so far.
    pub fn made(&self) -> u64 {
        self.made
    }

    /// Compute with `snapshot`'s parameters from now on.
    pub fn set_params(&mut self, snapshot: &Snapshot) {
        self.params = snapshot.params();
        self.version = snapshot.version;
    }

    /// The value targets of a fresh batch with the current parameters.
    pub fn targets(&mut self, batch: HostBatch) -> Result<TargetBatch> {
        self.learner.targets(&self.params, batch)
    }

    /// The next gradient on `tb` with the current parameters, tagged with their version
    /// (every `algo.policy_delay`-th carries the policy gradient).
    pub fn gradient(&mut self, tb: &TargetBatch) -> Result<TaggedGrads> {
        let policy_step = self.made.is_multiple_of(self.policy_delay);
        let grads = self
            .learner
            .compute(&self.params, tb, self.version, policy_step);
        self.learner.check_model()?;
        self.made += 1;
        Ok(TaggedGrads {
            grads,
            version: self.version,
        })
    }

    /// One gradient, the step-wise form used when parameters arrive with each call (Ray):
    /// with a `batch`, its targets are computed and kept for `algo.batch_reuse` gradients;
    /// without one, the next gradient of the kept batch, or `None` once it is used up. A newer
    /// `snapshot` is taken up first, so each reuse sees the parameters it is sent.
    pub fn step(
        &mut self,
        snapshot: Option<&Snapshot>,
        batch: Option<HostBatch>,
    ) -> Result<Option<TaggedGrads>> {
        if let Some(s) = snapshot.filter(|s| s.version != self.version) {
            self.set_params(s);
        }
        if let Some(b) = batch {
            self.kept = Some((self.targets(b)?, self.batch_reuse));
        }
        let Some((tb, left)) = self.kept.take().filter(|(_, left)| *left > 0) else {
            return Ok(None);
        };
        let g = self.gradient(&tb)?;
        self.kept = Some((tb, left - 1));
        Ok(Some(g))
    }
}
