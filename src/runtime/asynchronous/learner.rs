//! The learner role: computes tagged gradients from batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;

use super::POLL;
use super::shared::{Flow, Shared, Worker};
use super::snapshot::VariableSource;
use super::transport::{
    BatchSource, ChannelBatchSource, ChannelGradientSink, GradientSink, Polled, TaggedGrads,
};
use crate::algo::{Learner, Nets, Params};
use crate::config::{AlgoName, FaultTarget};
use crate::env::{make_env, make_model, task_spec};
use crate::runtime::seeds::STREAM_LEARNER;

/// A learner: its parameter copy, targets/gradients engine and batch counter.
pub(super) struct LearnerWorker {
    pub(super) sh: Arc<Shared>,
    pub(super) learner: Learner,
    pub(super) params: Params,
    pub(super) version: u64,
    pub(super) made: u64,
    pub(super) poison_at: Option<u64>,
    pub(super) source: Box<dyn BatchSource>,
    pub(super) sink: Box<dyn GradientSink>,
}

impl LearnerWorker {
    pub(super) fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        let cfg = &sh.cfg;
        let nets = Nets::new(cfg, &task_spec(&cfg.task.name)?);
        let model = make_model(&cfg.task.name, cfg.task.model_mismatch)?;
        let seed = sh.seed(STREAM_LEARNER, id, inc);
        let n_step_env = match cfg.algo.name {
            AlgoName::MpgV1 | AlgoName::Ndpg | AlgoName::Nadp => {
                Some(make_env(&cfg.task.name, cfg.algo.batch_size, seed)?)
            }
            _ => None,
        };
        let learner = Learner::new(nets, cfg, model, n_step_env, seed);
        let snap = sh.store.latest();
        Ok(Self {
            params: snap.params(),
            version: snap.version,
            learner,
            made: 0,
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
        if self.sh.store.version() != self.version {
            let s = self.sh.store.latest();
            self.params = s.params();
            self.version = s.version;
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
        let tb = self.learner.targets(&self.params, batch);
        let delay = self.sh.cfg.algo.policy_delay;
        for r in 0..self.sh.cfg.algo.batch_reuse {
            if self.sh.stop.load(Ordering::Relaxed) {
                return Ok(Flow::Stop);
            }
            if r > 0 {
                self.sync();
            }
            let policy_step = self.made.is_multiple_of(delay);
            let mut grads = self
                .learner
                .compute(&self.params, &tb, self.version, policy_step);
            if self.poison_at == Some(self.made) {
                grads.stats.q_loss = f64::NAN;
            }
            self.made += 1;
            self.sh.stats.grads.fetch_add(1, Ordering::Relaxed);
            let g = TaggedGrads {
                grads,
                version: self.version,
            };
            if !self.sink.send(g, &self.sh.stop) {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }
}
