//! The optimizer role without its loop: applies tagged gradients, evaluates, writes
//! `progress.csv` / `runtime.csv` rows and checkpoints (with every buffer's contents).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::messages::{Snapshot, TaggedGrads};
use super::runtime_log::{RuntimeCounters, RuntimeLog};
use crate::algo::{Agent, Nets};
use crate::config::{Config, FaultSpec, FaultTarget};
use crate::env::Task;
use crate::replay::ReplayBuffer;
use crate::runtime::core::RunCore;
use crate::runtime::evaluator::EvalResult;
use crate::runtime::metrics::push;
use crate::runtime::progress::{ProgressBar, truncate_csv_after};
use crate::runtime::seeds::{STREAM_COLLECT, STREAM_LEARNER, STREAM_REPLAY, derive_seed};

/// Checkpoint prefix of buffer `i` (`replay`, `replay1`, …).
fn replay_prefix(i: usize) -> String {
    if i == 0 {
        "replay".to_string()
    } else {
        format!("replay{i}")
    }
}

/// What is open while a session runs.
struct Session {
    start: Instant,
    iteration_start: Instant,
    runtime_log: RuntimeLog,
    bar: ProgressBar,
    last_row: Option<u64>,
    last_checkpoint: Option<u64>,
}

/// The optimizer: the latest parameters and Adam states, the counters, the logs and the
/// checkpoints of an asynchronous run (threads or Ray).
pub struct Optimizer {
    core: RunCore,
    /// Environment steps of the earlier sessions.
    env_steps0: u64,
    staleness_acc: (f64, u64),
    pg_time: (f64, u64),
    restored: Vec<Option<ReplayBuffer>>,
    session: Option<Session>,
}

impl Optimizer {
    /// A new run of `task` writing to `out` (which must not already hold a run).
    pub fn create(cfg: Config, task: Task, out: &Path) -> Result<Self> {
        Ok(Self::build(RunCore::create(cfg, task, out)?))
    }

    /// Continue the run of `task` in `run` from its newest checkpoint that loads (async, Ray
    /// or serial); the buffers' saved contents are kept for
    /// [`Optimizer::take_restored_replay`].
    pub fn resume(run: &Path, task: Task) -> Result<Self> {
        let (core, ck) = RunCore::resume(run, task)?;
        let mut t = Self::build(core);
        t.env_steps0 = ck.counter("env_steps")?;
        let (o, a) = (t.core.nets.spec.obs_dim, t.core.nets.spec.act_dim);
        let cap = t.core.cfg.algo.buffer_capacity;
        for i in 0..t.core.cfg.runtime.buffers {
            let prefix = replay_prefix(i);
            if ck.counter(&format!("{prefix}/len")).is_ok() {
                t.restored[i] = Some(ReplayBuffer::restore_from(&ck, &prefix, cap, o, a)?);
            }
        }
        let runtime_csv = run.join("runtime.csv");
        if runtime_csv.exists() {
            truncate_csv_after(&runtime_csv, t.core.k)?;
        }
        Ok(t)
    }

    fn build(core: RunCore) -> Self {
        Self {
            env_steps0: 0,
            staleness_acc: (0.0, 0),
            pg_time: (0.0, 0),
            restored: vec![None; core.cfg.runtime.buffers],
            session: None,
            core,
        }
    }

    /// The run's configuration.
    pub fn config(&self) -> &Config {
        &self.core.cfg
    }

    /// The run's task.
    pub fn task(&self) -> &Task {
        &self.core.task
    }

    /// Suppress the progress display.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.core.quiet = quiet;
    }

    /// Stop after this much wall time of the session.
    pub fn set_time_limit(&mut self, limit: Duration) {
        self.core.time_limit = Some(limit);
    }

    /// Setting this flag makes [`Optimizer::should_stop`] true.
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.core.stop.clone()
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

    /// The replay contents restored from the checkpoint, one entry per buffer (left empty).
    pub fn take_restored_replay(&mut self) -> Vec<Option<ReplayBuffer>> {
        let n = self.core.cfg.runtime.buffers;
        std::mem::replace(&mut self.restored, vec![None; n])
    }

    /// The parameters of the current iteration.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(self.core.k, &self.core.agent.params)
    }

    /// The byte encoding of [`Optimizer::snapshot`], without the copy in between.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        Snapshot::encode(self.core.k, &self.core.agent.params)
    }

    /// Lock the run directory and start the session's clock, `runtime.csv` and progress bar.
    pub fn start_session(&mut self) -> Result<()> {
        self.core.lock()?;
        let runtime_log = RuntimeLog::open(&self.core.out.join("runtime.csv"), self.core.k)?;
        self.session = Some(Session {
            start: Instant::now(),
            iteration_start: Instant::now(),
            runtime_log,
            bar: ProgressBar::new(self.core.cfg.train.iterations, self.core.quiet),
            last_row: None,
            last_checkpoint: None,
        });
        Ok(())
    }

    fn session(&mut self) -> Result<&mut Session> {
        self.session
            .as_mut()
            .ok_or_else(|| anyhow!("the optimizer's session has not started"))
    }

    /// Wall seconds of the run (earlier sessions included).
    pub fn wall(&self) -> f64 {
        self.core.wall_offset
            + self
                .session
                .as_ref()
                .map_or(0.0, |s| s.start.elapsed().as_secs_f64())
    }

    /// Whether `train.iterations` is reached.
    pub fn finished(&self) -> bool {
        self.core.k >= self.core.cfg.train.iterations
    }

    /// Whether a stop was requested or the session's time limit passed.
    pub fn should_stop(&self) -> bool {
        self.core.stop.load(Ordering::Relaxed)
            || self.core.time_limit.is_some_and(|l| {
                self.session
                    .as_ref()
                    .is_some_and(|s| s.start.elapsed() >= l)
            })
    }

    /// Whether [`Optimizer::at_iteration`] will write a checkpoint now (the caller then
    /// gathers the buffers' contents).
    pub fn checkpoint_due(&self) -> bool {
        !self.core.resumed && self.core.due(self.core.k).checkpoint
    }

    /// Whether [`Optimizer::at_iteration`] will evaluate or checkpoint now (more than a
    /// progress row).
    pub fn evaluation_or_checkpoint_due(&self) -> bool {
        let due = self.core.due(self.core.k);
        !self.core.resumed && (due.eval || due.checkpoint)
    }

    /// What is due at the current iteration, before its update: the evaluation, the progress
    /// row and the checkpoint (`replays` gives every buffer's contents, `None` for a buffer
    /// that is not running; called only when a checkpoint is due). `env_steps` counts this
    /// session's steps. Right after a resume nothing is due (it exists already).
    pub fn at_iteration(
        &mut self,
        env_steps: u64,
        replays: impl FnOnce() -> Result<Vec<Option<ReplayBuffer>>>,
    ) -> Result<Option<EvalResult>> {
        let k = self.core.k;
        let wall = self.wall();
        let mut eval = None;
        if self.core.resumed {
            self.core.resumed = false;
            let s = self.session()?;
            s.last_row = Some(k);
            s.last_checkpoint = Some(k);
        } else {
            let due = self.core.due(k);
            if due.eval {
                eval = Some(self.core.evaluate(k)?);
            }
            if due.row {
                self.write_row(wall, env_steps, eval)?;
                self.session()?.last_row = Some(k);
            }
            if let Some(e) = eval {
                self.session()?.bar.eval(k, e);
            }
            if due.checkpoint {
                self.save_checkpoint(wall, env_steps, replays()?)?;
                self.session()?.last_checkpoint = Some(k);
            }
        }
        self.session()?.iteration_start = Instant::now();
        Ok(eval)
    }

    /// Apply a gradient (or skip it when non-finite; an error after
    /// `train.max_nonfinite_streak` in a row) and count the iteration. A `reused` gradient
    /// (re-applied while no fresh one came) does not enter the means. Returns the gradient's
    /// staleness: iterations between its parameter version and the update it went into.
    pub fn apply(&mut self, g: TaggedGrads, reused: bool) -> Result<u64> {
        let k = self.core.k;
        let staleness = k.saturating_sub(g.version);
        let max_streak = self.core.cfg.train.max_nonfinite_streak;
        let finite = self.core.nonfinite.check(&g.grads, k, max_streak)?;
        if finite {
            if !reused {
                self.core.acc.record(&g.grads.stats);
                if let Some(t) = g.grads.stats.pg_time_ms {
                    push(&mut self.pg_time, t);
                }
            }
            let policy = g.grads.pi.is_some();
            self.core.agent.apply_step(g.grads, policy);
        }
        let s = self.session()?;
        let took = s.iteration_start.elapsed().as_secs_f64() * 1e3;
        s.runtime_log.staleness(staleness);
        push(&mut self.core.acc.update_time, took);
        push(&mut self.staleness_acc, staleness as f64);
        self.core.k += 1;
        let k = self.core.k;
        self.session()?.bar.tick(k);
        Ok(staleness)
    }

    /// Write a `runtime.csv` row when one is due (about once a second, or `force`);
    /// `counters` is called only then.
    pub fn log_runtime(
        &mut self,
        force: bool,
        counters: impl FnOnce() -> RuntimeCounters,
    ) -> Result<()> {
        let (k, wall) = (self.core.k, self.wall());
        let log = &mut self.session()?.runtime_log;
        if log.due(force) {
            log.write(k, wall, &counters())?;
        }
        Ok(())
    }

    /// End the session: the progress row and checkpoint of the iteration reached unless
    /// written already, a last `runtime.csv` row, and the run directory unlocked.
    pub fn finish(
        &mut self,
        env_steps: u64,
        replays: impl FnOnce() -> Result<Vec<Option<ReplayBuffer>>>,
        counters: impl FnOnce() -> RuntimeCounters,
    ) -> Result<()> {
        let k = self.core.k;
        let wall = self.wall();
        let result = (|| {
            let s = self.session()?;
            s.bar.finish();
            let (row, ckpt) = (s.last_row != Some(k), s.last_checkpoint != Some(k));
            if row {
                self.write_row(wall, env_steps, None)?;
            }
            if ckpt {
                self.save_checkpoint(wall, env_steps, replays()?)?;
            }
            self.log_runtime(true, counters)
        })();
        self.session = None;
        self.core.unlock();
        result
    }

    /// Mean policy-gradient computation time on the learners this session, ms.
    pub fn pg_time_ms(&self) -> Option<f64> {
        (self.pg_time.1 > 0).then(|| self.pg_time.0 / self.pg_time.1 as f64)
    }

    fn write_row(&mut self, wall: f64, env_steps: u64, eval: Option<EvalResult>) -> Result<()> {
        let st = std::mem::take(&mut self.staleness_acc);
        let staleness = (st.1 > 0).then(|| st.0 / st.1 as f64);
        let k = self.core.k;
        self.core
            .write_row(k, wall, self.env_steps0 + env_steps, eval, staleness)
    }

    fn save_checkpoint(
        &mut self,
        wall: f64,
        env_steps: u64,
        buffers: Vec<Option<ReplayBuffer>>,
    ) -> Result<()> {
        let mut ck = self.core.checkpoint(self.env_steps0 + env_steps, wall)?;
        // Fresh RNG states, so that the serial trainer can also resume from this checkpoint.
        let seed = derive_seed(self.core.cfg.train.seed, self.core.k);
        for (name, stream) in [
            ("rng/collect", STREAM_COLLECT),
            ("rng/replay", STREAM_REPLAY),
            ("rng/learner", STREAM_LEARNER),
        ] {
            ck.set_json(name, &Pcg64Mcg::seed_from_u64(derive_seed(seed, stream)))?;
        }
        if let Some(f) = self
            .core
            .cfg
            .runtime
            .inject_panic
            .as_deref()
            .and_then(FaultSpec::parse)
            && f.target == FaultTarget::Checkpoint
            && self.core.k >= f.step
        {
            bail!(
                "cannot write the checkpoint of iteration {}: injected test fault \
                 (runtime.inject_panic)",
                self.core.k
            );
        }
        ck.set_counter("async/buffers", buffers.len() as u64);
        for (i, rb) in buffers.iter().enumerate() {
            if let Some(rb) = rb {
                rb.save_to(&mut ck, &replay_prefix(i));
            }
        }
        self.core.save(&ck)
    }
}
