//! The serial trainer: Algorithm 1 of the paper in one thread, reproducible from the seed.
//!
//! One loop, top to bottom: at iteration `k` it evaluates (every `train.eval_interval`,
//! including 0 and the last iteration), logs a row, checkpoints, then collects experience
//! (every `algo.collect_interval` iterations), samples or reuses a batch with its targets,
//! computes the gradients and applies them.
//!
//! Resume is exact: at every checkpoint iteration the actor environment is reset from a seed
//! derived from `(seed, k)` and the batch cache is dropped, in uninterrupted and resumed runs
//! alike, and the replay buffer, RNG states, optimiser states and counters are saved.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::core::RunCore;
use super::evaluator::EvalResult;
use super::metrics::{mean, push};
use super::progress::ProgressBar;
pub use super::rundir::latest_checkpoint;
use super::seeds::{STREAM_COLLECT, STREAM_ENV, STREAM_LEARNER, STREAM_REPLAY, derive_seed};
use crate::algo::{Agent, Grads, Learner, Nets, TargetBatch, act, replay_window, uniform_actions};
use crate::checkpoint::Checkpoint;
use crate::config::{Config, WarmupActions};
use crate::env::{Env, StepOut, Task, check_env, lookup, reset_after_collect};
use crate::replay::{NStepWindow, ReplayBuffer};

/// A training run.
pub struct Trainer {
    core: RunCore,
    learner: Learner,
    env: Box<dyn Env>,
    obs: Vec<f32>,
    step_out: StepOut,
    replay: ReplayBuffer,
    /// n-step returns along stored trajectories (`algo.value_target = "replay"`).
    window: Option<NStepWindow>,
    collect_rng: Pcg64Mcg,
    replay_rng: Pcg64Mcg,
    env_steps: u64,
    cached: Option<TargetBatch>,
    reuse_left: usize,
}

impl Trainer {
    /// A new run of the registered task `task.name`, writing to `out` (which must not
    /// already hold a run).
    pub fn new(cfg: Config, out: &Path) -> Result<Self> {
        let task = lookup(&cfg.task.name)?;
        Self::with_task(cfg, task, out)
    }

    /// A new run of `task`, writing to `out` (which must not already hold a run).
    pub fn with_task(cfg: Config, task: Task, out: &Path) -> Result<Self> {
        let mut t = Self::build(RunCore::create(cfg, task, out)?)?;
        t.warm_up()?;
        Ok(t)
    }

    /// Continue the run in `run` (of a registered task) from its newest checkpoint that loads.
    pub fn resume(run: &Path) -> Result<Self> {
        let cfg = Config::load(&run.join("config.toml"), &[])?;
        Self::resume_task(run, lookup(&cfg.task.name)?)
    }

    /// Continue the run of `task` in `run` from its newest checkpoint that loads.
    pub fn resume_task(run: &Path, task: Task) -> Result<Self> {
        let (core, ck) = RunCore::resume(run, task)?;
        let mut t = Self::build(core)?;
        t.restore(&ck)?;
        Ok(t)
    }

    /// Setting this flag stops [`Trainer::run`] with a final progress row and checkpoint
    /// (Ctrl-C, SIGTERM and SIGHUP handler).
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.core.stop.clone()
    }

    /// Suppress the progress display.
    pub fn quiet(mut self) -> Self {
        self.core.quiet = true;
        self
    }

    /// Stop [`Trainer::run`] after this much wall time, without a final checkpoint (used by
    /// `mixpg bench-throughput`).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.core.time_limit = Some(limit);
        self
    }

    /// Mean time per iteration (collect, compute, apply) since the last progress row, ms.
    pub fn mean_update_time_ms(&self) -> Option<f64> {
        mean(self.core.acc.update_time)
    }

    fn build(core: RunCore) -> Result<Self> {
        let (cfg, task) = (&core.cfg, &core.task);
        let spec = task.spec();
        let seed = cfg.train.seed;
        let learner_seed = derive_seed(seed, STREAM_LEARNER);
        let learner = Learner::for_task(core.nets.clone(), cfg, task, seed, learner_seed)?;
        let mut env = task.make_env(cfg.task.num_agents, derive_seed(seed, STREAM_ENV))?;
        check_env(env.as_mut())?;
        let mut obs = Vec::new();
        env.observe(&mut obs);
        let replay = ReplayBuffer::new(cfg.algo.buffer_capacity, spec.obs_dim, spec.act_dim);
        Ok(Self {
            learner,
            env,
            obs,
            step_out: StepOut::default(),
            replay,
            window: replay_window(cfg, spec),
            collect_rng: Pcg64Mcg::seed_from_u64(derive_seed(seed, STREAM_COLLECT)),
            replay_rng: Pcg64Mcg::seed_from_u64(derive_seed(seed, STREAM_REPLAY)),
            env_steps: 0,
            cached: None,
            reuse_left: 0,
            core,
        })
    }

    /// The current iteration.
    pub fn iteration(&self) -> u64 {
        self.core.k
    }

    /// The agent (parameters and optimisers).
    pub fn agent(&self) -> &Agent {
        &self.core.agent
    }

    /// The network architectures.
    pub fn nets(&self) -> &Nets {
        &self.core.nets
    }

    fn warm_up(&mut self) -> Result<()> {
        while self.replay.len() < self.core.cfg.algo.warmup_samples {
            self.collect(1)?;
        }
        Ok(())
    }

    /// Step the actor environment `steps` times with exploration and store the transitions;
    /// an error (nothing of the failed step stored) if the environment failed.
    fn collect(&mut self, steps: usize) -> Result<()> {
        let explore = Some(self.core.cfg.algo.explore_noise);
        for _ in 0..steps {
            let uniform = self.core.cfg.algo.warmup_actions == WarmupActions::Uniform
                && self.env_steps < self.core.cfg.algo.warmup_samples as u64;
            let a = if uniform {
                let n = self.env.num_agents();
                uniform_actions(&self.core.nets.spec, n, &mut self.collect_rng)
            } else {
                act(
                    &self.core.nets,
                    &self.core.agent.params.pi,
                    &self.obs,
                    explore,
                    &mut self.collect_rng,
                )
            };
            self.env.step(&a, &mut self.step_out);
            check_env(self.env.as_mut())?;
            let o = &self.step_out;
            self.replay.push_rows(
                &self.obs,
                &a,
                &o.reward,
                &o.next_obs,
                &o.terminated,
                &o.truncated,
            );
            self.env_steps += o.reward.len() as u64;
            let mode = self.core.cfg.train.collect_reset;
            reset_after_collect(self.env.as_mut(), mode, &mut self.collect_rng);
            check_env(self.env.as_mut())?;
            self.env.observe(&mut self.obs);
        }
        Ok(())
    }

    /// Run until `train.iterations`, the time limit or a stop request (which writes the
    /// progress row and a checkpoint of the iteration reached), on a rayon pool of
    /// `train.threads` threads. The run directory is locked while it runs.
    pub fn run(&mut self) -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.core.cfg.train.threads)
            .build()
            .context("cannot build the learning core's thread pool")?;
        self.core.lock()?;
        let result = pool.install(|| self.run_locked());
        self.core.unlock();
        result
    }

    fn run_locked(&mut self) -> Result<()> {
        if let Some(m) = self.learner.model().filter(|_| !self.core.quiet) {
            let name = &self.core.task.spec().name;
            match self.learner.learned() {
                Some(l) => eprintln!(
                    "task {name}: learned model, an ensemble of {} MLPs fitted to the replay \
                     (fused kernels)",
                    l.ensemble()
                ),
                None => eprintln!("task {name}: prior model runs as a {}", m.path().describe()),
            }
        }
        let n = self.core.cfg.train.iterations;
        let start = Instant::now();
        let mut bar = ProgressBar::new(n, self.core.quiet);
        let (mut last_row, mut last_ckpt) = (None, None);
        loop {
            let k = self.core.k;
            let wall = self.core.wall_offset + start.elapsed().as_secs_f64();
            if self.core.stop.load(Ordering::Relaxed) {
                if last_row != Some(k) {
                    self.write_row(k, wall, None)?;
                }
                if last_ckpt != Some(k) {
                    self.boundary()?;
                    self.save_checkpoint(wall)?;
                }
                break;
            }
            if !self.core.resumed {
                let due = self.core.due(k);
                let eval = match due.eval.then(|| self.core.evaluate(k)).transpose() {
                    Ok(e) => e,
                    Err(e) => {
                        bar.finish();
                        return Err(self.stop_on_failure(e, k, wall, last_row));
                    }
                };
                if due.row {
                    self.write_row(k, wall, eval)?;
                    last_row = Some(k);
                }
                if let Some(e) = eval {
                    bar.eval(k, e);
                }
                if due.checkpoint {
                    self.boundary()?;
                    self.save_checkpoint(wall)?;
                    last_ckpt = Some(k);
                }
            } else {
                self.boundary()?;
                self.core.resumed = false;
                (last_row, last_ckpt) = (Some(k), Some(k));
            }
            if k >= n || self.core.time_limit.is_some_and(|l| start.elapsed() >= l) {
                break;
            }
            if let Err(e) = self.iterate(k) {
                let wall = self.core.wall_offset + start.elapsed().as_secs_f64();
                bar.finish();
                return Err(self.stop_on_failure(e, k, wall, last_row));
            }
            self.core.k += 1;
            bar.tick(self.core.k);
        }
        bar.finish();
        Ok(())
    }

    /// An environment or model that failed at iteration `k` (e.g. raised in Python): keep what
    /// the run has learnt in a final row and checkpoint, and return the failure saying so.
    fn stop_on_failure(
        &mut self,
        e: anyhow::Error,
        k: u64,
        wall: f64,
        last_row: Option<u64>,
    ) -> anyhow::Error {
        let saved = (|| {
            if last_row != Some(k) {
                self.write_row(k, wall, None)?;
            }
            self.save_checkpoint(wall)
        })();
        match saved {
            Ok(()) => e.context(format!(
                "the run stopped at iteration {k} (a checkpoint was written; `mixpg resume` \
                 continues once the cause is fixed)"
            )),
            Err(s) => e.context(format!(
                "the run stopped at iteration {k}, and its final checkpoint failed too: {s:#}"
            )),
        }
    }

    /// Checkpoint boundary: reset the actor environment from a derived seed and drop the
    /// cached batch, so that a resumed run continues exactly as an uninterrupted one.
    fn boundary(&mut self) -> Result<()> {
        let s = derive_seed(
            derive_seed(self.core.cfg.train.seed, STREAM_ENV),
            self.core.k,
        );
        self.env.reset(s);
        check_env(self.env.as_mut())?;
        self.env.observe(&mut self.obs);
        self.cached = None;
        self.reuse_left = 0;
        Ok(())
    }

    fn write_row(&mut self, k: u64, wall: f64, eval: Option<EvalResult>) -> Result<()> {
        let staleness = (self.core.acc.update_time.1 > 0).then_some(0.0);
        self.core
            .write_row(k, wall, self.env_steps, eval, staleness)
    }

    /// One iteration of Algorithm 1.
    fn iterate(&mut self, k: u64) -> Result<()> {
        if k.is_multiple_of(self.core.cfg.algo.collect_interval) {
            self.collect(self.core.cfg.algo.collect_steps)?;
        }
        if let Some(s) = self.learner.fit_model(k, &self.replay) {
            push(&mut self.core.acc.model_fit_ms, s.fit_ms);
        }
        if let Some(s) = self.learner.learned().and_then(|m| m.stats()) {
            push(&mut self.core.acc.model_disagreement, s.disagreement);
        }
        let t0 = Instant::now();
        if self.reuse_left == 0 || self.cached.is_none() {
            let (n, rng) = (self.core.cfg.algo.batch_size, &mut self.replay_rng);
            let batch = match &self.window {
                Some(w) => self.replay.sample_n_step(n, rng, w),
                None => self.replay.sample(n, rng),
            };
            self.cached = Some(self.learner.targets(&self.core.agent.params, batch)?);
            self.reuse_left = self.core.cfg.algo.batch_reuse;
        }
        self.reuse_left -= 1;
        let policy_step = self.core.agent.is_policy_iteration(k);
        let tb = self.cached.as_ref().expect("a batch is cached");
        let grads = self
            .learner
            .compute(&self.core.agent.params, tb, k, policy_step);
        self.learner.check_model()?;
        self.apply(grads, k)?;
        push(
            &mut self.core.acc.update_time,
            t0.elapsed().as_secs_f64() * 1e3,
        );
        Ok(())
    }

    fn apply(&mut self, grads: Grads, k: u64) -> Result<()> {
        let max_streak = self.core.cfg.train.max_nonfinite_streak;
        if !self.core.nonfinite.check(&grads, k, max_streak)? {
            return Ok(());
        }
        self.core.acc.record(&grads.stats);
        self.core.agent.apply(grads, k);
        Ok(())
    }

    fn save_checkpoint(&mut self, wall: f64) -> Result<()> {
        let mut ck = self.core.checkpoint(self.env_steps, wall)?;
        ck.set_json("rng/collect", &self.collect_rng)?;
        ck.set_json("rng/replay", &self.replay_rng)?;
        ck.set_json("rng/learner", self.learner.rng())?;
        self.learner.save_model(&mut ck)?;
        self.replay.save_to(&mut ck, "replay");
        self.core.save(&ck)
    }

    /// Restore the serial trainer's own state (the core restored the rest).
    fn restore(&mut self, ck: &Checkpoint) -> Result<()> {
        self.env_steps = ck.counter("env_steps")?;
        self.collect_rng = ck.json("rng/collect")?;
        self.replay_rng = ck.json("rng/replay")?;
        self.learner.set_rng(ck.json("rng/learner")?);
        self.learner.load_model(ck)?;
        let (o, a) = (self.core.nets.spec.obs_dim, self.core.nets.spec.act_dim);
        self.replay =
            ReplayBuffer::restore_from(ck, "replay", self.core.cfg.algo.buffer_capacity, o, a)?;
        Ok(())
    }
}
