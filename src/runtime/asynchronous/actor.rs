//! The actor role: collects experience with the latest policy, paced by the optimizer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::PACED_SLEEP;
use super::shared::{Flow, Shared, Worker};
use super::snapshot::VariableSource;
use super::transport::{ChannelExperienceSink, Experience, ExperienceSink};
use crate::algo::{Nets, act};
use crate::env::{make_env, reset_after_collect, task_spec};
use crate::nn::ParamSet;
use crate::runtime::seeds::{STREAM_ACTOR, STREAM_COLLECT, STREAM_ENV};

/// An actor: its environment, policy copy and exploration RNG.
pub(super) struct ActorWorker {
    pub(super) sh: Arc<Shared>,
    pub(super) nets: Nets,
    pub(super) env: Box<dyn crate::env::Env>,
    pub(super) obs: Vec<f32>,
    pub(super) out: crate::env::StepOut,
    pub(super) pi: ParamSet,
    pub(super) version: u64,
    pub(super) rng: Pcg64Mcg,
    pub(super) sink: Box<dyn ExperienceSink>,
}

impl ActorWorker {
    pub(super) fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        let cfg = &sh.cfg;
        let nets = Nets::new(cfg, &task_spec(&cfg.task.name)?);
        let env = make_env(
            &cfg.task.name,
            cfg.task.num_agents,
            sh.seed(STREAM_ENV, id, inc),
        )?;
        let mut obs = Vec::new();
        env.observe(&mut obs);
        let snap = sh.store.latest();
        let sink = Box::new(ChannelExperienceSink {
            inboxes: sh.inbox_tx.clone(),
            rng: Pcg64Mcg::seed_from_u64(sh.seed(STREAM_ACTOR, id, inc)),
        });
        Ok(Self {
            rng: Pcg64Mcg::seed_from_u64(sh.seed(STREAM_COLLECT, id, inc)),
            pi: snap.policy(),
            version: snap.version,
            nets,
            env,
            obs,
            out: Default::default(),
            sink,
            sh,
        })
    }

    /// Paced by the optimizer (see the module docs): free while a buffer is below its warm-up
    /// share or throttled, otherwise one collection per `algo.collect_interval` updates of this
    /// session (plus one in flight per actor); free collections do not use up the budget.
    pub(super) fn pace(&self) -> Pace {
        let st = &self.sh.stats;
        let cfg = &self.sh.cfg;
        if st.starving_now.load(Ordering::Relaxed) > 0
            || st.throttled_now.load(Ordering::Relaxed) > 0
        {
            return Pace::Free;
        }
        let updates = self
            .sh
            .store
            .version()
            .saturating_sub(self.sh.start_version);
        let allowed = updates / cfg.algo.collect_interval + cfg.runtime.actors as u64;
        if st.paced_collections.load(Ordering::Relaxed) < allowed {
            Pace::Paced
        } else {
            Pace::Wait
        }
    }
}

/// What an actor may do now.
pub(super) enum Pace {
    /// Collect outside the budget (warm-up, refill or a throttled buffer).
    Free,
    /// Collect within the budget.
    Paced,
    /// Wait for the optimizer.
    Wait,
}

impl Worker for ActorWorker {
    fn step(&mut self) -> Result<Flow> {
        match self.pace() {
            Pace::Wait => {
                std::thread::sleep(PACED_SLEEP);
                return Ok(Flow::Continue);
            }
            Pace::Paced => {
                self.sh
                    .stats
                    .paced_collections
                    .fetch_add(1, Ordering::Relaxed);
            }
            Pace::Free => {}
        }
        if self.sh.store.version() != self.version {
            let s = self.sh.store.latest();
            self.pi = s.policy();
            self.version = s.version;
        }
        let explore = Some(self.sh.cfg.algo.explore_noise);
        let mut e = Experience::default();
        for _ in 0..self.sh.cfg.algo.collect_steps {
            let a = act(&self.nets, &self.pi, &self.obs, explore, &mut self.rng);
            self.env.step(&a, &mut self.out);
            let o = &self.out;
            e.obs.extend_from_slice(&self.obs);
            e.act.extend_from_slice(&a);
            e.rew.extend_from_slice(&o.reward);
            e.next_obs.extend_from_slice(&o.next_obs);
            e.terminated.extend_from_slice(&o.terminated);
            e.truncated.extend_from_slice(&o.truncated);
            let mode = self.sh.cfg.train.collect_reset;
            reset_after_collect(self.env.as_mut(), mode, &mut self.rng);
            self.env.observe(&mut self.obs);
        }
        let n = e.rew.len() as u64;
        if !self.sink.insert(e, &self.sh.stop) {
            return Ok(Flow::Stop);
        }
        self.sh.stats.env_steps.fetch_add(n, Ordering::Relaxed);
        Ok(Flow::Continue)
    }
}
