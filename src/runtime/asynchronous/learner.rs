//! The learner thread: a [`LearnerCore`] fed by a batch source, refreshing its parameters from
//! a variable source before each gradient. The thread runtime wires it to its experience and
//! gradient queues; a [`super::LearnerGroup`] to its own feed and gradient channel.
//!
//! Batch reuse (`algo.batch_reuse`) computes a batch's targets once and its gradients with
//! successive parameter versions, never twice with the same one: the same batch and the same
//! parameters give the same gradient, which applied twice is one step taken twice. A learner
//! keeps up to `kept` batches; when each of them has had a gradient at the current version, it
//! takes a fresh batch while it holds fewer than `kept`, and otherwise waits for newer
//! parameters. The thread runtime keeps one (its optimizer publishes a version per update); a
//! thread of a learner group, whose parameters change only once per round, keeps its share of
//! the gradients the group may hold between rounds, so that it computes while a round is away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;

use super::POLL;
use super::shared::{Flow, Shared, Stats, Worker};
use super::snapshot::VariableSource;
use super::transport::{
    BatchSource, ChannelBatchSource, ChannelGradientSink, GradientSink, Polled,
};
use crate::algo::TargetBatch;
use crate::config::{Config, FaultTarget};
use crate::env::Task;
use crate::runtime::roles::LearnerCore;
use crate::runtime::roles::WorkerStream;

/// How long a learner whose kept batches all have a gradient at the current parameter version
/// sleeps before it looks for a newer version.
const VERSION_WAIT: Duration = Duration::from_micros(250);

/// A batch with its targets, the gradients it has left and the parameter version of its last.
struct KeptBatch {
    targets: TargetBatch,
    left: usize,
    version: u64,
}

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
    /// Batches whose reuse is not used up, oldest first; at most `max_kept`.
    kept: VecDeque<KeptBatch>,
    max_kept: usize,
    /// The gradient made non-finite (a test fault, `runtime.inject_panic = "learner:ID:STEP:nan"`).
    poison_at: Option<u64>,
}

impl LearnerWorker {
    /// A learner of `cfg` on `task` seeded with `seed`, computing from `links.params` and
    /// keeping up to `max_kept` batches for reuse (see the module docs).
    pub(super) fn new(
        cfg: &Config,
        task: &Task,
        seed: u64,
        links: LearnerLinks,
        max_kept: usize,
        poison_at: Option<u64>,
    ) -> Result<Self> {
        Ok(Self {
            core: LearnerCore::new(cfg, task, seed, &links.params.latest())?,
            links,
            batch_reuse: cfg.algo.batch_reuse,
            kept: VecDeque::with_capacity(max_kept),
            max_kept: max_kept.max(1),
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
        Self::new(&sh.cfg, &sh.task, seed, links, 1, poison_at)
    }

    fn sync(&mut self) {
        if self.links.params.version() != self.core.version() {
            self.core.set_params(&self.links.params.latest());
        }
    }
}

impl Worker for LearnerWorker {
    fn step(&mut self) -> Result<Flow> {
        self.sync();
        let version = self.core.version();
        let mut kb = match self.kept.iter().position(|k| k.version != version) {
            Some(i) => self
                .kept
                .remove(i)
                .expect("a kept batch at the found index"),
            None if self.kept.len() >= self.max_kept => {
                std::thread::sleep(VERSION_WAIT);
                return Ok(Flow::Continue);
            }
            None => {
                let batch = match self.links.source.next_batch(POLL) {
                    Polled::Item(b) => b,
                    Polled::Empty => return Ok(Flow::Continue),
                    Polled::Closed => return Ok(Flow::Stop),
                };
                self.sync();
                KeptBatch {
                    targets: self.core.targets(batch)?,
                    left: self.batch_reuse,
                    version: u64::MAX,
                }
            }
        };
        let made = self.core.made();
        let mut g = self.core.gradient(&kb.targets)?;
        if self.poison_at == Some(made) {
            g.grads.stats.q_loss = f64::NAN;
        }
        kb.left -= 1;
        kb.version = g.version;
        if kb.left > 0 {
            self.kept.push_back(kb);
        }
        self.links.stats.grads.fetch_add(1, Ordering::Relaxed);
        if !self.links.sink.send(g, &self.links.stop) {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }
}
