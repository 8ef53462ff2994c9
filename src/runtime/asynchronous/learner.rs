//! The learner thread: a [`LearnerCore`] fed by the experience queue, refreshing its
//! parameters from the store before each gradient.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;

use super::POLL;
use super::shared::{Flow, Shared, Worker};
use super::snapshot::VariableSource;
use super::transport::{
    BatchSource, ChannelBatchSource, ChannelGradientSink, GradientSink, Polled,
};
use crate::config::FaultTarget;
use crate::runtime::roles::LearnerCore;
use crate::runtime::roles::WorkerStream;

/// A learner thread's state: the role object, its batch source and gradient sink.
pub(super) struct LearnerWorker {
    pub(super) sh: Arc<Shared>,
    pub(super) core: LearnerCore,
    pub(super) poison_at: Option<u64>,
    pub(super) source: Box<dyn BatchSource>,
    pub(super) sink: Box<dyn GradientSink>,
}

impl LearnerWorker {
    pub(super) fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        let seed = sh.seed(WorkerStream::Learner, id, inc);
        Ok(Self {
            core: LearnerCore::new(&sh.cfg, &sh.task, seed, &sh.store.latest())?,
            poison_at: sh
                .fault
                .filter(|f| f.target == FaultTarget::Learner && f.id == id && inc == 0)
                .filter(|f| f.non_finite)
                .map(|f| f.step),
            source: Box::new(ChannelBatchSource(sh.exp_rx.clone())),
            sink: Box::new(ChannelGradientSink(sh.grad_tx.clone())),
            sh,
        })
    }

    pub(super) fn sync(&mut self) {
        if self.sh.store.version() != self.core.version() {
            self.core.set_params(&self.sh.store.latest());
        }
    }
}

impl Worker for LearnerWorker {
    fn step(&mut self) -> Result<Flow> {
        let batch = match self.source.next_batch(POLL) {
            Polled::Item(b) => b,
            Polled::Empty => return Ok(Flow::Continue),
            Polled::Closed => return Ok(Flow::Stop),
        };
        self.sync();
        let tb = self.core.targets(batch)?;
        for r in 0..self.sh.cfg.algo.batch_reuse {
            if self.sh.stop.load(Ordering::Relaxed) {
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
            self.sh.stats.grads.fetch_add(1, Ordering::Relaxed);
            if !self.sink.send(g, &self.sh.stop) {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }
}
