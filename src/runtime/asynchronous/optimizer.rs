//! The optimizer role: [`AsyncTrainer`] applies gradients, evaluates, logs and checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::super::evaluator::{EvalResult, evaluate};
use super::super::metrics::{Accum, NonFinite, push};
use super::super::progress::{ProgressBar, ProgressLog, Row, truncate_csv_after};
use super::super::rundir::{RunLock, init_run_dir, load_latest_checkpoint, prune_checkpoints};
use super::super::seeds::{
    STREAM_COLLECT, STREAM_EVAL, STREAM_INIT, STREAM_LEARNER, STREAM_REPLAY, derive_seed,
};
use super::POLL;
use super::runtime_log::RuntimeLog;
use super::snapshot::Snapshot;
use super::supervisor::{Supervisor, one_thread_pool};
use super::transport::TaggedGrads;
use crate::algo::{Agent, Nets};
use crate::checkpoint::Checkpoint;
use crate::config::{Config, FaultSpec, FaultTarget};
use crate::env::task_spec;
use crate::replay::ReplayBuffer;

/// What an asynchronous run did (this session).
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Iterations applied in this session.
    pub iterations: u64,
    /// The run stopped before `train.iterations` (stop request or time limit).
    pub stopped_early: bool,
    /// Applied updates per second from the first applied update to the last.
    pub updates_per_s: f64,
    /// Staleness of every applied gradient of this session (capped at 1 000 000 entries).
    pub staleness: Vec<u64>,
    /// Worker restarts.
    pub restarts: u64,
    /// Faults reported (role, id, message).
    pub faults: Vec<String>,
    /// Mean policy-gradient computation time on the learners, ms.
    pub pg_time_ms: Option<f64>,
}

/// The asynchronous trainer: the optimizer role plus the supervisor of the other roles.
pub struct AsyncTrainer {
    pub(super) cfg: Config,
    pub(super) out: PathBuf,
    pub(super) nets: Nets,
    pub(super) agent: Agent,
    pub(super) k: u64,
    pub(super) env_steps0: u64,
    pub(super) wall_offset: f64,
    pub(super) acc: Accum,
    pub(super) staleness_acc: (f64, u64),
    pub(super) nonfinite: NonFinite,
    pub(super) log: Option<ProgressLog>,
    pub(super) resumed: bool,
    pub(super) quiet: bool,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) time_limit: Option<Duration>,
    pub(super) replay: Vec<Option<ReplayBuffer>>,
    pub(super) lock: Option<RunLock>,
}

impl AsyncTrainer {
    /// A new run writing to `out` (which must not already hold a run).
    pub fn new(cfg: Config, out: &Path) -> Result<Self> {
        init_run_dir(&cfg, out)?;
        let lock = RunLock::acquire(out)?;
        let mut t = Self::build(cfg, out)?;
        t.lock = Some(lock);
        t.log = Some(ProgressLog::create(&out.join("progress.csv"))?);
        Ok(t)
    }

    /// Continue the run in `run` from its newest checkpoint that loads (async or serial).
    pub fn resume(run: &Path) -> Result<Self> {
        let cfg = Config::load(&run.join("config.toml"), &[])?;
        let lock = RunLock::acquire(run)?;
        let (_, ck) = load_latest_checkpoint(run)?
            .with_context(|| format!("{} has no checkpoint to resume from", run.display()))?;
        let mut t = Self::build(cfg, run)?;
        t.lock = Some(lock);
        t.agent.load(&ck)?;
        t.k = ck.counter("iteration")?;
        t.env_steps0 = ck.counter("env_steps")?;
        t.nonfinite.total = ck.counter("nonfinite_total")?;
        t.nonfinite.streak = ck.counter("nonfinite_streak")?;
        t.wall_offset = ck.json("wall_s")?;
        t.acc = ck.json("accum")?;
        let (o, a) = (t.nets.spec.obs_dim, t.nets.spec.act_dim);
        let cap = t.cfg.algo.buffer_capacity;
        for i in 0..t.cfg.runtime.buffers {
            let prefix = replay_prefix(i);
            if ck.counter(&format!("{prefix}/len")).is_ok() {
                t.replay[i] = Some(ReplayBuffer::restore_from(&ck, &prefix, cap, o, a)?);
            }
        }
        t.log = Some(ProgressLog::truncate_after(&run.join("progress.csv"), t.k)?);
        let runtime_csv = run.join("runtime.csv");
        if runtime_csv.exists() {
            truncate_csv_after(&runtime_csv, t.k)?;
        }
        t.resumed = true;
        Ok(t)
    }

    pub(super) fn build(cfg: Config, out: &Path) -> Result<Self> {
        let spec = task_spec(&cfg.task.name)?;
        let nets = Nets::new(&cfg, &spec);
        let agent = Agent::new(
            &nets,
            &cfg,
            &mut Pcg64Mcg::seed_from_u64(derive_seed(cfg.train.seed, STREAM_INIT)),
        );
        Ok(Self {
            out: out.to_path_buf(),
            nets,
            agent,
            k: 0,
            env_steps0: 0,
            wall_offset: 0.0,
            acc: Accum::default(),
            staleness_acc: (0.0, 0),
            nonfinite: NonFinite::default(),
            log: None,
            resumed: false,
            quiet: false,
            stop: Arc::new(AtomicBool::new(false)),
            time_limit: None,
            replay: vec![None; cfg.runtime.buffers],
            lock: None,
            cfg,
        })
    }

    /// Suppress the progress display.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Stop after this much wall time (with a final row and checkpoint).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Setting this flag stops the run cleanly (Ctrl-C handler, tests).
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
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

    /// Run until `train.iterations`, a stop request or the time limit; the final row and
    /// checkpoint are written in every case (also when a fault stops the run, whose error is
    /// then returned).
    /// The run directory is locked while it runs.
    pub fn run(&mut self) -> Result<RunSummary> {
        if self.lock.is_none() {
            self.lock = Some(RunLock::acquire(&self.out)?);
        }
        let pool = one_thread_pool()?;
        let result = pool.install(|| self.run_inner());
        self.lock = None;
        result
    }

    pub(super) fn run_inner(&mut self) -> Result<RunSummary> {
        let n = self.cfg.train.iterations;
        let start = Instant::now();
        let replay = std::mem::replace(&mut self.replay, vec![None; self.cfg.runtime.buffers]);
        let mut sup =
            Supervisor::start(&self.cfg, Snapshot::of(self.k, &self.agent.params), replay)?;
        let mut rt_log = RuntimeLog::open(&self.out.join("runtime.csv"), self.k)?;
        let mut bar = ProgressBar::new(n, self.quiet);
        let mut summary = RunSummary::default();
        let (mut last_row, mut last_ckpt) = (None, None);
        let mut first_update: Option<Instant> = None;
        let mut last_update = Instant::now();
        let k0 = self.k;
        let mut pg = (0.0, 0u64);
        let max_reuse = self.cfg.runtime.grad_max_reuse;
        let (mut last_grads, mut reuse_left): (Option<TaggedGrads>, u64) = (None, 0);
        let result: Result<()> = (|| {
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
                        self.write_row(k, wall, eval, &sup)?;
                        last_row = Some(k);
                    }
                    if let Some(e) = eval {
                        bar.eval(k, e);
                    }
                    if (k > 0 && k.is_multiple_of(tr.checkpoint_interval)) || k == n {
                        self.save_checkpoint(&sup, wall)?;
                        last_ckpt = Some(k);
                    }
                } else {
                    self.resumed = false;
                    last_row = Some(k);
                    last_ckpt = Some(k);
                }
                if k >= n {
                    return Ok(());
                }
                let t0 = Instant::now();
                let (g, reused) = loop {
                    if self.stop.load(Ordering::Relaxed)
                        || self.time_limit.is_some_and(|l| start.elapsed() >= l)
                    {
                        summary.stopped_early = true;
                        return Ok(());
                    }
                    sup.poll_events()?;
                    rt_log.maybe_write(
                        self.k,
                        self.wall_offset + start.elapsed().as_secs_f64(),
                        &sup,
                        false,
                    )?;
                    if reuse_left > 0
                        && let Some(prev) = &last_grads
                    {
                        match sup.grad_rx.try_recv() {
                            Ok(g) => break (g, false),
                            Err(TryRecvError::Empty) => {
                                reuse_left -= 1;
                                break (prev.clone(), true);
                            }
                            Err(TryRecvError::Disconnected) => bail!("the gradient queue closed"),
                        }
                    }
                    match sup.grad_rx.recv_timeout(POLL) {
                        Ok(g) => break (g, false),
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => bail!("the gradient queue closed"),
                    }
                };
                let stale = k.saturating_sub(g.version);
                let finite =
                    self.nonfinite
                        .check(&g.grads, k, self.cfg.train.max_nonfinite_streak)?;
                if !reused {
                    // Only a finite fresh gradient may be re-applied.
                    last_grads = (finite && max_reuse > 0).then(|| g.clone());
                    reuse_left = max_reuse;
                }
                if finite {
                    if !reused {
                        self.acc.record(&g.grads.stats);
                        if let Some(t) = g.grads.stats.pg_time_ms {
                            push(&mut pg, t);
                        }
                    }
                    let policy = g.grads.pi.is_some();
                    self.agent.apply_step(g.grads, policy);
                }
                sup.sh
                    .store
                    .publish(Snapshot::of(k + 1, &self.agent.params));
                push(&mut self.acc.update_time, t0.elapsed().as_secs_f64() * 1e3);
                push(&mut self.staleness_acc, stale as f64);
                rt_log.staleness(stale);
                if summary.staleness.len() < 1_000_000 {
                    summary.staleness.push(stale);
                }
                first_update.get_or_insert_with(Instant::now);
                last_update = Instant::now();
                self.k += 1;
                bar.tick(self.k);
            }
        })();
        bar.finish();
        // Final row and checkpoint of the iteration reached (stop request, time limit, fault).
        let wall = self.wall_offset + start.elapsed().as_secs_f64();
        let mut finish = || -> Result<()> {
            if last_row != Some(self.k) {
                self.write_row(self.k, wall, None, &sup)?;
            }
            if last_ckpt != Some(self.k) {
                self.save_checkpoint(&sup, wall)?;
            }
            rt_log.maybe_write(self.k, wall, &sup, true)
        };
        let finished = finish();
        sup.shutdown();
        summary.iterations = self.k - k0;
        summary.restarts = sup.sh.stats.restarts.load(Ordering::Relaxed);
        summary.faults = std::mem::take(&mut sup.faults);
        summary.pg_time_ms = (pg.1 > 0).then(|| pg.0 / pg.1 as f64);
        if let Some(f) = first_update {
            let n = summary.iterations.saturating_sub(1) as f64;
            summary.updates_per_s = n / (last_update - f).as_secs_f64().max(1e-9);
        }
        match (result, finished) {
            (Ok(()), Ok(())) => Ok(summary),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Err(e), Err(f)) => Err(anyhow!(
                "{e:#}; the final progress row or checkpoint also failed: {f:#}"
            )),
        }
    }

    pub(super) fn evaluate(&self, k: u64) -> Result<EvalResult> {
        let seed = derive_seed(derive_seed(self.cfg.train.seed, STREAM_EVAL), k);
        evaluate(
            &self.nets,
            &self.agent.params.pi,
            self.cfg.train.eval_episodes,
            seed,
        )
    }

    pub(super) fn env_steps(&self, sup: &Supervisor) -> u64 {
        self.env_steps0 + sup.sh.stats.env_steps.load(Ordering::Relaxed)
    }

    pub(super) fn write_row(
        &mut self,
        k: u64,
        wall: f64,
        eval: Option<EvalResult>,
        sup: &Supervisor,
    ) -> Result<()> {
        let acc = std::mem::take(&mut self.acc);
        let st = std::mem::take(&mut self.staleness_acc);
        let staleness = (st.1 > 0).then(|| st.0 / st.1 as f64);
        let row = Row {
            nonfinite_skipped: self.nonfinite.total,
            staleness,
            ..acc.row(&self.cfg, k, wall, self.env_steps(sup), eval)
        };
        self.log
            .as_mut()
            .expect("the log is open while running")
            .write(&row)
    }

    pub(super) fn save_checkpoint(&mut self, sup: &Supervisor, wall: f64) -> Result<()> {
        let mut ck = Checkpoint::new();
        self.agent.save(&mut ck);
        ck.set_counter("iteration", self.k);
        ck.set_counter("env_steps", self.env_steps(sup));
        ck.set_counter("nonfinite_total", self.nonfinite.total);
        ck.set_counter("nonfinite_streak", self.nonfinite.streak);
        ck.set_json("wall_s", &wall)?;
        ck.set_json("accum", &self.acc)?;
        // Fresh RNG states, so that the serial trainer can also resume from this checkpoint.
        let seed = derive_seed(self.cfg.train.seed, self.k);
        for (name, stream) in [
            ("rng/collect", STREAM_COLLECT),
            ("rng/replay", STREAM_REPLAY),
            ("rng/learner", STREAM_LEARNER),
        ] {
            ck.set_json(name, &Pcg64Mcg::seed_from_u64(derive_seed(seed, stream)))?;
        }
        if let Some(f) = self
            .cfg
            .runtime
            .inject_panic
            .as_deref()
            .and_then(FaultSpec::parse)
            && f.target == FaultTarget::Checkpoint
            && self.k >= f.step
        {
            bail!(
                "cannot write the checkpoint of iteration {}: injected test fault \
                 (runtime.inject_panic)",
                self.k
            );
        }
        let buffers = sup.replay_snapshots()?;
        ck.set_counter("async/buffers", buffers.len() as u64);
        for (i, rb) in buffers.iter().enumerate() {
            if let Some(rb) = rb {
                rb.save_to(&mut ck, &replay_prefix(i));
            }
        }
        self.log
            .as_ref()
            .expect("the log is open while running")
            .sync()?;
        let dir = self.out.join("checkpoints");
        ck.save(&dir.join(format!("ckpt-{:09}", self.k)))?;
        prune_checkpoints(&dir, self.cfg.train.keep_checkpoints)
    }
}

pub(super) fn replay_prefix(i: usize) -> String {
    if i == 0 {
        "replay".to_string()
    } else {
        format!("replay{i}")
    }
}
