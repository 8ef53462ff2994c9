//! The learner thread: a [`LearnerCore`] fed by a batch source, refreshing its parameters from
//! a variable source before each gradient. The thread runtime wires it to its experience and
//! gradient queues; a [`super::LearnerGroup`] to its own feed and gradient channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use super::POLL;
use super::shared::{Flow, Shared, Stats, Worker};
use super::snapshot::VariableSource;
use super::transport::{
    BatchSource, ChannelBatchSource, ChannelGradientSink, GradientSink, Polled,
};
use crate::config::{Config, FaultTarget};
use crate::env::Task;
use crate::runtime::roles::LearnerCore;
use crate::runtime::roles::WorkerStream;

/// What a learner thread is connected to: its parameters, batches, gradients, stop flag and
/// the counters it adds its gradients to.
pub(super) struct LearnerLinks {
    pub(super) params: Arc<dyn VariableSource>,
    pub(super) source: Box<dyn BatchSource>,
    pub(super) sink: Box<dyn GradientSink>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) stats: Arc<Stats>,
}

/// A learner thread's state: the role object and its links.
pub(super) struct LearnerWorker {
    core: LearnerCore,
    links: LearnerLinks,
    batch_reuse: usize,
    /// The gradient made non-finite (a test fault, `runtime.inject_panic = "learner:ID:STEP:nan"`).
    poison_at: Option<u64>,
}

impl LearnerWorker {
    /// A learner of `cfg` on `task` seeded with `seed`, computing from `links.params`.
    pub(super) fn new(
        cfg: &Config,
        task: &Task,
        seed: u64,
        links: LearnerLinks,
        poison_at: Option<u64>,
    ) -> Result<Self> {
        Ok(Self {
            core: LearnerCore::new(cfg, task, seed, &links.params.latest())?,
            links,
            batch_reuse: cfg.algo.batch_reuse,
            poison_at,
        })
    }

    /// Learner `id` (incarnation `inc`) of the thread runtime: the experience queue in, the
    /// gradient queue out.
    pub(super) fn of_runtime(sh: &Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        let poison_at = sh
            .fault
            .filter(|f| f.target == FaultTarget::Learner && f.id == id && inc == 0)
            .filter(|f| f.non_finite)
            .map(|f| f.step);
        let links = LearnerLinks {
            params: sh.store.clone(),
            source: Box::new(ChannelBatchSource(sh.exp_rx.clone())),
            sink: Box::new(ChannelGradientSink(sh.grad_tx.clone())),
            stop: sh.stop.clone(),
            stats: sh.stats.clone(),
        };
        let seed = sh.seed(WorkerStream::Learner, id, inc);
        Self::new(&sh.cfg, &sh.task, seed, links, poison_at)
    }

    fn sync(&mut self) {
        if self.links.params.version() != self.core.version() {
            self.core.set_params(&self.links.params.latest());
        }
    }
}

impl Worker for LearnerWorker {
    fn step(&mut self) -> Result<Flow> {
        let batch = match self.links.source.next_batch(POLL) {
            Polled::Item(b) => b,
            Polled::Empty => return Ok(Flow::Continue),
            Polled::Closed => return Ok(Flow::Stop),
        };
        self.sync();
        let tb = self.core.targets(batch)?;
        for r in 0..self.batch_reuse {
            if self.links.stop.load(Ordering::Relaxed) {
                return Ok(Flow::Stop);
            }
            if r > 0 {
                self.sync();
            }
            let made = self.core.made();
            let mut g = self.core.gradient(&tb)?;
            if self.poison_at == Some(made) {
                g.grads.stats.q_loss = f64::NAN;
            }
            self.links.stats.grads.fetch_add(1, Ordering::Relaxed);
            if !self.links.sink.send(g, &self.links.stop) {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }
}
