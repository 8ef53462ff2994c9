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

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use super::evaluator::{EvalResult, evaluate};
use super::progress::{ProgressLog, Row};
use crate::algo::{
    Agent, GradStats, Grads, Learner, Nets, TargetBatch, act, schedule::mpg_weights,
};
use crate::checkpoint::{Checkpoint, write_atomic};
use crate::config::{AlgoName, Config};
use crate::env::{Env, StepOut, make_env, make_model, task_spec};
use crate::replay::ReplayBuffer;

/// Derive a sub-seed (SplitMix64 of `seed` and a stream id).
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) const STREAM_INIT: u64 = 1;
pub(crate) const STREAM_COLLECT: u64 = 2;
pub(crate) const STREAM_REPLAY: u64 = 3;
pub(crate) const STREAM_LEARNER: u64 = 4;
pub(crate) const STREAM_ENV: u64 = 5;
pub(crate) const STREAM_EVAL: u64 = 6;

/// Running means between two log rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Accum {
    pub(crate) q_loss: (f64, u64),
    pub(crate) policy_loss: (f64, u64),
    pub(crate) pg_time: (f64, u64),
    pub(crate) update_time: (f64, u64),
}

impl Accum {
    /// Record the losses and policy-gradient time of an applied gradient.
    pub(crate) fn record(&mut self, s: &GradStats) {
        push(&mut self.q_loss, s.q_loss);
        if let Some(l) = s.policy_loss {
            push(&mut self.policy_loss, l);
        }
        if let Some(t) = s.pg_time_ms {
            push(&mut self.pg_time, t);
        }
    }

    /// A progress row from these means (taken since the previous row); the caller fills in
    /// `nonfinite_skipped` and `staleness`.
    pub(crate) fn row(
        self,
        cfg: &Config,
        k: u64,
        wall: f64,
        env_steps: u64,
        eval: Option<EvalResult>,
    ) -> Row {
        let (w_data, w_model) = weights(cfg, k);
        Row {
            iteration: k,
            wall_s: wall,
            env_steps,
            eval_mean: eval.map(|e| e.mean),
            eval_std: eval.map(|e| e.std),
            w_data,
            w_model,
            q_loss: mean(self.q_loss),
            policy_loss: mean(self.policy_loss),
            pg_time_ms: mean(self.pg_time),
            update_time_ms: mean(self.update_time),
            nonfinite_skipped: 0,
            staleness: None,
        }
    }
}

/// Consecutive and total non-finite steps; aborts the run after too long a streak.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NonFinite {
    pub(crate) total: u64,
    pub(crate) streak: u64,
}

impl NonFinite {
    /// `Ok(true)` when `grads` may be applied, `Ok(false)` to skip it, an error to abort.
    pub(crate) fn check(&mut self, grads: &Grads, k: u64, max_streak: u64) -> Result<bool> {
        if grads.is_finite() {
            self.streak = 0;
            return Ok(true);
        }
        self.total += 1;
        self.streak += 1;
        if self.streak >= max_streak {
            bail!(
                "aborting at iteration {k}: {} consecutive steps had non-finite losses or gradients \
                 (last q_loss {}, policy_loss {:?}); lower the learning rates or check the task",
                self.streak,
                grads.stats.q_loss,
                grads.stats.policy_loss
            );
        }
        Ok(false)
    }
}

/// Store a replay buffer's storage and counters under `prefix` (e.g. `replay`).
pub(crate) fn save_replay(ck: &mut Checkpoint, prefix: &str, replay: &ReplayBuffer) {
    for (name, data) in replay.arrays() {
        ck.set_array(&format!("{prefix}/{name}"), vec![data.len()], data.to_vec());
    }
    let (len, next, inserted) = replay.counters();
    ck.set_counter(&format!("{prefix}/len"), len as u64);
    ck.set_counter(&format!("{prefix}/next"), next as u64);
    ck.set_counter(&format!("{prefix}/inserted"), inserted);
}

/// Restore a replay buffer saved by [`save_replay`].
pub(crate) fn load_replay(
    ck: &Checkpoint,
    prefix: &str,
    capacity: usize,
    obs_dim: usize,
    act_dim: usize,
) -> Result<ReplayBuffer> {
    let counters = (
        ck.counter(&format!("{prefix}/len"))? as usize,
        ck.counter(&format!("{prefix}/next"))? as usize,
        ck.counter(&format!("{prefix}/inserted"))?,
    );
    ReplayBuffer::restore(capacity, obs_dim, act_dim, counters, |name, n| {
        ck.array(&format!("{prefix}/{name}"), &[n])
    })
}

pub(crate) fn push(a: &mut (f64, u64), x: f64) {
    a.0 += x;
    a.1 += 1;
}

pub(crate) fn mean(a: (f64, u64)) -> Option<f64> {
    (a.1 > 0).then(|| a.0 / a.1 as f64)
}

/// The `(w_data, w_model)` an algorithm uses at iteration `k`.
pub fn weights(cfg: &Config, k: u64) -> (f64, f64) {
    match cfg.algo.name {
        AlgoName::MpgV1 | AlgoName::MpgV2 => mpg_weights(
            k,
            cfg.algo.schedule_iterations,
            cfg.algo.eta,
            cfg.schedule_exponent(),
        ),
        AlgoName::Nadp => (0.0, 1.0),
        _ => (1.0, 0.0),
    }
}

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
}

impl Trainer {
    /// A new run writing to `out` (which must not already hold a run).
    pub fn new(cfg: Config, out: &Path) -> Result<Self> {
        init_run_dir(&cfg, out)?;
        let mut t = Self::build(cfg, out)?;
        t.log = Some(ProgressLog::create(&out.join("progress.csv"))?);
        t.warm_up();
        Ok(t)
    }

    /// Continue the run in `run` from its latest checkpoint.
    pub fn resume(run: &Path) -> Result<Self> {
        let cfg = Config::load(&run.join("config.toml"), &[])?;
        let ckpt_dir = latest_checkpoint(run)?
            .with_context(|| format!("{} has no checkpoint to resume from", run.display()))?;
        let ck = Checkpoint::load(&ckpt_dir)?;
        let mut t = Self::build(cfg, run)?;
        t.restore(&ck)?;
        t.log = Some(ProgressLog::truncate_after(&run.join("progress.csv"), t.k)?);
        t.resumed = true;
        Ok(t)
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

    /// Run until `train.iterations`, on a rayon pool of `train.threads` threads.
    pub fn run(&mut self) -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.cfg.train.threads)
            .build()
            .context("cannot build the learning core's thread pool")?;
        pool.install(|| self.run_loop())
    }

    fn run_loop(&mut self) -> Result<()> {
        let n = self.cfg.train.iterations;
        let start = Instant::now();
        let mut bar = ProgressBar::new(n, self.quiet);
        loop {
            let k = self.k;
            let wall = self.wall_offset + start.elapsed().as_secs_f64();
            if !self.resumed {
                let tr = self.cfg.train.clone();
                let eval = if k.is_multiple_of(tr.eval_interval) || k == n {
                    Some(self.evaluate(k)?)
                } else {
                    None
                };
                if k.is_multiple_of(tr.log_interval) || eval.is_some() || k == n {
                    self.write_row(k, wall, eval)?;
                }
                if let Some(e) = eval {
                    bar.eval(k, e);
                }
                if (k > 0 && k.is_multiple_of(tr.checkpoint_interval)) || k == n {
                    self.boundary();
                    self.save_checkpoint(wall)?;
                }
            } else {
                self.boundary();
                self.resumed = false;
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
        save_replay(&mut ck, "replay", &self.replay);
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
        self.replay = load_replay(ck, "replay", self.cfg.algo.buffer_capacity, o, a)?;
        Ok(())
    }
}

/// Create a new run directory (refusing one that already holds a run) and write its config.
pub(crate) fn init_run_dir(cfg: &Config, out: &Path) -> Result<()> {
    if out.join("progress.csv").exists() {
        bail!(
            "{} already holds a run (progress.csv exists); use `mixpg resume --run {}` or another --out",
            out.display(),
            out.display()
        );
    }
    fs::create_dir_all(out.join("checkpoints"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(&out.join("config.toml"), cfg.to_toml().as_bytes())
}

/// The newest complete checkpoint directory of a run, if any.
pub fn latest_checkpoint(run: &Path) -> Result<Option<PathBuf>> {
    let dir = run.join("checkpoints");
    if !dir.exists() {
        return Ok(None);
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for e in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(k) = name
            .strip_prefix("ckpt-")
            .and_then(|s| s.parse::<u64>().ok())
            && best.as_ref().is_none_or(|(b, _)| k > *b)
        {
            best = Some((k, e.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

pub(crate) fn prune_checkpoints(dir: &Path, keep: usize) -> Result<()> {
    let mut all: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("ckpt-")
                .and_then(|s| s.parse::<u64>().ok())
                .map(|k| (k, e.path()))
        })
        .collect();
    all.sort();
    let excess = all.len().saturating_sub(keep);
    for (_, p) in all.into_iter().take(excess) {
        fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// A progress bar on a terminal (stderr); plain lines at evaluations otherwise.
pub(crate) struct ProgressBar {
    total: u64,
    tty: bool,
    quiet: bool,
    last_eval: Option<(u64, EvalResult)>,
    started: Instant,
    last_draw: Instant,
}

impl ProgressBar {
    pub(crate) fn new(total: u64, quiet: bool) -> Self {
        Self {
            total,
            tty: std::io::stderr().is_terminal(),
            quiet,
            last_eval: None,
            started: Instant::now(),
            last_draw: Instant::now(),
        }
    }

    pub(crate) fn tick(&mut self, k: u64) {
        if self.quiet || !self.tty || self.last_draw.elapsed().as_millis() < 200 {
            return;
        }
        self.last_draw = Instant::now();
        let width = 30usize;
        let filled = (k as f64 / self.total as f64 * width as f64) as usize;
        let rate = k as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let eval = self
            .last_eval
            .map(|(i, e)| format!(" | eval@{i}: {:.2} ± {:.2}", e.mean, e.std))
            .unwrap_or_default();
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r[{}{}] {k}/{} ({rate:.1} it/s){eval}   ",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            self.total
        );
        let _ = err.flush();
    }

    pub(crate) fn eval(&mut self, k: u64, e: EvalResult) {
        self.last_eval = Some((k, e));
        if !self.quiet && !self.tty {
            eprintln!(
                "iteration {k}/{}: eval return {:.3} ± {:.3} ({:.1} s)",
                self.total,
                e.mean,
                e.std,
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    pub(crate) fn finish(&self) {
        if !self.quiet && self.tty {
            eprintln!();
        }
    }
}
