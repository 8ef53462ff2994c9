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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::evaluator::{EvalResult, evaluate};
use super::metrics::{Accum, NonFinite, mean, push};
use super::progress::{ProgressBar, ProgressLog, Row};
pub use super::rundir::latest_checkpoint;
use super::rundir::{RunLock, init_run_dir, load_latest_checkpoint, prune_checkpoints};
use super::seeds::{
    STREAM_COLLECT, STREAM_ENV, STREAM_EVAL, STREAM_INIT, STREAM_LEARNER, STREAM_REPLAY,
    derive_seed,
};
use crate::algo::{Agent, Grads, Learner, Nets, TargetBatch, act};
use crate::checkpoint::Checkpoint;
use crate::config::{AlgoName, Config};
use crate::env::{Env, StepOut, make_env, make_model, task_spec};
use crate::replay::ReplayBuffer;

/// A training run.
pub struct Trainer {
    cfg: Config,
    out: PathBuf,
    nets: Nets,
    agent: Agent,
    learner: Learner,
    env: Box<dyn Env>,
    obs: Vec<f32>,
    step_out: StepOut,
    replay: ReplayBuffer,
    collect_rng: Pcg64Mcg,
    replay_rng: Pcg64Mcg,
    k: u64,
    env_steps: u64,
    wall_offset: f64,
    cached: Option<TargetBatch>,
    reuse_left: usize,
    acc: Accum,
    nonfinite: NonFinite,
    log: Option<ProgressLog>,
    resumed: bool,
    quiet: bool,
    time_limit: Option<Duration>,
    stop: Arc<AtomicBool>,
    lock: Option<RunLock>,
}

impl Trainer {
    /// A new run writing to `out` (which must not already hold a run).
    pub fn new(cfg: Config, out: &Path) -> Result<Self> {
        init_run_dir(&cfg, out)?;
        let lock = RunLock::acquire(out)?;
        let mut t = Self::build(cfg, out)?;
        t.lock = Some(lock);
        t.log = Some(ProgressLog::create(&out.join("progress.csv"))?);
        t.warm_up();
        Ok(t)
    }

    /// Continue the run in `run` from its newest checkpoint that loads.
    pub fn resume(run: &Path) -> Result<Self> {
        let cfg = Config::load(&run.join("config.toml"), &[])?;
        let lock = RunLock::acquire(run)?;
        let (_, ck) = load_latest_checkpoint(run)?
            .with_context(|| format!("{} has no checkpoint to resume from", run.display()))?;
        let mut t = Self::build(cfg, run)?;
        t.lock = Some(lock);
        t.restore(&ck)?;
        t.log = Some(ProgressLog::truncate_after(&run.join("progress.csv"), t.k)?);
        t.resumed = true;
        Ok(t)
    }

    /// Setting this flag stops [`Trainer::run`] with a final progress row and checkpoint
    /// (Ctrl-C, SIGTERM and SIGHUP handler).
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Suppress the progress display.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Stop [`Trainer::run`] after this much wall time, without a final checkpoint (used by
    /// `mixpg bench-throughput`).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Mean time per iteration (collect, compute, apply) since the last progress row, ms.
    pub fn mean_update_time_ms(&self) -> Option<f64> {
        mean(self.acc.update_time)
    }

    fn build(cfg: Config, out: &Path) -> Result<Self> {
        let spec = task_spec(&cfg.task.name)?;
        let seed = cfg.train.seed;
        let nets = Nets::new(&cfg, &spec);
        let agent = Agent::new(
            &nets,
            &cfg,
            &mut Pcg64Mcg::seed_from_u64(derive_seed(seed, STREAM_INIT)),
        );
        let model = make_model(&cfg.task.name, cfg.task.model_mismatch)?;
        let n_step_env = match cfg.algo.name {
            AlgoName::MpgV1 | AlgoName::Ndpg | AlgoName::Nadp => {
                Some(make_env(&cfg.task.name, cfg.algo.batch_size, seed)?)
            }
            _ => None,
        };
        let learner = Learner::new(
            nets.clone(),
            &cfg,
            model,
            n_step_env,
            derive_seed(seed, STREAM_LEARNER),
        );
        let env = make_env(
            &cfg.task.name,
            cfg.task.num_agents,
            derive_seed(seed, STREAM_ENV),
        )?;
        let mut obs = Vec::new();
        env.observe(&mut obs);
        let replay = ReplayBuffer::new(cfg.algo.buffer_capacity, spec.obs_dim, spec.act_dim);
        Ok(Self {
            out: out.to_path_buf(),
            nets,
            agent,
            learner,
            env,
            obs,
            step_out: StepOut::default(),
            replay,
            collect_rng: Pcg64Mcg::seed_from_u64(derive_seed(seed, STREAM_COLLECT)),
            replay_rng: Pcg64Mcg::seed_from_u64(derive_seed(seed, STREAM_REPLAY)),
            k: 0,
            env_steps: 0,
            wall_offset: 0.0,
            cached: None,
            reuse_left: 0,
            acc: Accum::default(),
            nonfinite: NonFinite::default(),
            log: None,
            resumed: false,
            quiet: false,
            time_limit: None,
            stop: Arc::new(AtomicBool::new(false)),
            lock: None,
            cfg,
        })
    }

    /// The current iteration.
    pub fn iteration(&self) -> u64 {
        self.k
    }

    /// The agent (parameters and optimisers).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The network architectures.
    pub fn nets(&self) -> &Nets {
        &self.nets
    }

    fn warm_up(&mut self) {
        while self.replay.len() < self.cfg.algo.warmup_samples {
            self.collect(1);
        }
    }

    /// Step the actor environment `steps` times with exploration and store the transitions.
    fn collect(&mut self, steps: usize) {
        let explore = Some(self.cfg.algo.explore_noise);
        for _ in 0..steps {
            let a = act(
                &self.nets,
                &self.agent.params.pi,
                &self.obs,
                explore,
                &mut self.collect_rng,
            );
            self.env.step(&a, &mut self.step_out);
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
            self.env.reset_done();
            self.env.observe(&mut self.obs);
        }
    }

    /// Run until `train.iterations`, the time limit or a stop request (which writes the
    /// progress row and a checkpoint of the iteration reached). The run directory is locked
    /// while it runs.
    pub fn run(&mut self) -> Result<()> {
        if self.lock.is_none() {
            self.lock = Some(RunLock::acquire(&self.out)?);
        }
        let result = self.run_locked();
        self.lock = None;
        result
    }

    fn run_locked(&mut self) -> Result<()> {
        let n = self.cfg.train.iterations;
        let start = Instant::now();
        let mut bar = ProgressBar::new(n, self.quiet);
        let (mut last_row, mut last_ckpt) = (None, None);
        loop {
            let k = self.k;
            let wall = self.wall_offset + start.elapsed().as_secs_f64();
            if self.stop.load(Ordering::Relaxed) {
                if last_row != Some(k) {
                    self.write_row(k, wall, None)?;
                }
                if last_ckpt != Some(k) {
                    self.boundary();
                    self.save_checkpoint(wall)?;
                }
                break;
            }
            if !self.resumed {
                let tr = self.cfg.train.clone();
                let eval = if k.is_multiple_of(tr.eval_interval) || k == n {
                    Some(self.evaluate(k)?)
                } else {
                    None
                };
                if k.is_multiple_of(tr.log_interval) || eval.is_some() || k == n {
                    self.write_row(k, wall, eval)?;
                    last_row = Some(k);
                }
                if let Some(e) = eval {
                    bar.eval(k, e);
                }
                if (k > 0 && k.is_multiple_of(tr.checkpoint_interval)) || k == n {
                    self.boundary();
                    self.save_checkpoint(wall)?;
                    last_ckpt = Some(k);
                }
            } else {
                self.boundary();
                self.resumed = false;
                (last_row, last_ckpt) = (Some(k), Some(k));
            }
            if k >= n || self.time_limit.is_some_and(|l| start.elapsed() >= l) {
                break;
            }
            self.iterate(k)?;
            self.k += 1;
            bar.tick(self.k);
        }
        bar.finish();
        Ok(())
    }

    /// Checkpoint boundary: reset the actor environment from a derived seed and drop the
    /// cached batch, so that a resumed run continues exactly as an uninterrupted one.
    fn boundary(&mut self) {
        let s = derive_seed(derive_seed(self.cfg.train.seed, STREAM_ENV), self.k);
        self.env.reset(s);
        self.env.observe(&mut self.obs);
        self.cached = None;
        self.reuse_left = 0;
    }

    fn evaluate(&self, k: u64) -> Result<EvalResult> {
        let seed = derive_seed(derive_seed(self.cfg.train.seed, STREAM_EVAL), k);
        evaluate(
            &self.nets,
            &self.agent.params.pi,
            self.cfg.train.eval_episodes,
            seed,
        )
    }

    fn write_row(&mut self, k: u64, wall: f64, eval: Option<EvalResult>) -> Result<()> {
        let acc = std::mem::take(&mut self.acc);
        let staleness = (acc.update_time.1 > 0).then_some(0.0);
        let row = Row {
            nonfinite_skipped: self.nonfinite.total,
            staleness,
            ..acc.row(&self.cfg, k, wall, self.env_steps, eval)
        };
        self.log
            .as_mut()
            .expect("the log is open while running")
            .write(&row)
    }

    /// One iteration of Algorithm 1.
    fn iterate(&mut self, k: u64) -> Result<()> {
        if k.is_multiple_of(self.cfg.algo.collect_interval) {
            self.collect(self.cfg.algo.collect_steps);
        }
        let t0 = Instant::now();
        if self.reuse_left == 0 || self.cached.is_none() {
            let batch = self
                .replay
                .sample(self.cfg.algo.batch_size, &mut self.replay_rng);
            self.cached = Some(self.learner.targets(&self.agent.params, batch));
            self.reuse_left = self.cfg.algo.batch_reuse;
        }
        self.reuse_left -= 1;
        let policy_step = self.agent.is_policy_iteration(k);
        let tb = self.cached.as_ref().expect("a batch is cached");
        let grads = self.learner.compute(&self.agent.params, tb, k, policy_step);
        self.apply(grads, k)?;
        push(&mut self.acc.update_time, t0.elapsed().as_secs_f64() * 1e3);
        Ok(())
    }

    fn apply(&mut self, grads: Grads, k: u64) -> Result<()> {
        if !self
            .nonfinite
            .check(&grads, k, self.cfg.train.max_nonfinite_streak)?
        {
            return Ok(());
        }
        self.acc.record(&grads.stats);
        self.agent.apply(grads, k);
        Ok(())
    }

    fn save_checkpoint(&mut self, wall: f64) -> Result<()> {
        let mut ck = Checkpoint::new();
        self.agent.save(&mut ck);
        ck.set_counter("iteration", self.k);
        ck.set_counter("env_steps", self.env_steps);
        ck.set_counter("nonfinite_total", self.nonfinite.total);
        ck.set_counter("nonfinite_streak", self.nonfinite.streak);
        ck.set_json("wall_s", &wall)?;
        ck.set_json("accum", &self.acc)?;
        ck.set_json("rng/collect", &self.collect_rng)?;
        ck.set_json("rng/replay", &self.replay_rng)?;
        ck.set_json("rng/learner", self.learner.rng())?;
        self.replay.save_to(&mut ck, "replay");
        self.log
            .as_ref()
            .expect("the log is open while running")
            .sync()?;
        let dir = self.out.join("checkpoints");
        ck.save(&dir.join(format!("ckpt-{:09}", self.k)))?;
        prune_checkpoints(&dir, self.cfg.train.keep_checkpoints)
    }

    fn restore(&mut self, ck: &Checkpoint) -> Result<()> {
        self.agent.load(ck)?;
        self.k = ck.counter("iteration")?;
        self.env_steps = ck.counter("env_steps")?;
        self.nonfinite.total = ck.counter("nonfinite_total")?;
        self.nonfinite.streak = ck.counter("nonfinite_streak")?;
        self.wall_offset = ck.json("wall_s")?;
        self.acc = ck.json("accum")?;
        self.collect_rng = ck.json("rng/collect")?;
        self.replay_rng = ck.json("rng/replay")?;
        self.learner.set_rng(ck.json("rng/learner")?);
        let (o, a) = (self.nets.spec.obs_dim, self.nets.spec.act_dim);
        self.replay =
            ReplayBuffer::restore_from(ck, "replay", self.cfg.algo.buffer_capacity, o, a)?;
        Ok(())
    }
}
