//! [`RunCore`]: what the serial and the asynchronous trainer share: the run directory and its
//! lock, the agent, the counters, evaluation, progress rows, the schedule of iteration `k` and
//! the common part of checkpoints, and the TensorBoard event file beside `progress.csv`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::evaluator::{EvalResult, evaluate};
use super::limits::check_run;
use super::metrics::{Accum, NonFinite};
use super::progress::{ProgressLog, Row};
use super::rundir::{
    RunLock, init_run_dir, load_latest_checkpoint, prune_checkpoints, read_task_spec,
};
use super::seeds::{STREAM_EVAL, STREAM_INIT, derive_seed};
use super::tensorboard::TensorBoardLog;
use crate::algo::{Agent, Nets};
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::env::Task;

/// The state both trainers embed.
pub(super) struct RunCore {
    pub(super) cfg: Config,
    pub(super) task: Task,
    pub(super) out: PathBuf,
    pub(super) nets: Nets,
    pub(super) agent: Agent,
    /// The iteration (updates applied or skipped as non-finite).
    pub(super) k: u64,
    /// Wall seconds of the earlier sessions.
    pub(super) wall_offset: f64,
    pub(super) acc: Accum,
    pub(super) nonfinite: NonFinite,
    log: Option<ProgressLog>,
    /// The session's TensorBoard event file (`train.tensorboard`).
    events: Option<TensorBoardLog>,
    /// The run was just resumed: iteration `k`'s row and checkpoint exist already.
    pub(super) resumed: bool,
    pub(super) quiet: bool,
    pub(super) time_limit: Option<Duration>,
    pub(super) stop: Arc<AtomicBool>,
    lock: Option<RunLock>,
}

/// What is due at an iteration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Due {
    pub(super) eval: bool,
    pub(super) row: bool,
    pub(super) checkpoint: bool,
}

impl RunCore {
    fn build(cfg: Config, task: Task, out: &Path) -> Result<Self> {
        let nets = Nets::new(&cfg, task.spec());
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
            wall_offset: 0.0,
            acc: Accum::default(),
            nonfinite: NonFinite::default(),
            log: None,
            events: None,
            resumed: false,
            quiet: false,
            time_limit: None,
            stop: Arc::new(AtomicBool::new(false)),
            lock: None,
            cfg,
            task,
        })
    }

    /// A new run of `task` in `out` (which must not already hold a run), locked.
    pub(super) fn create(cfg: Config, task: Task, out: &Path) -> Result<Self> {
        super::check_task(&cfg, &task)?;
        check_run(&cfg, &task)?;
        init_run_dir(&cfg, task.spec(), out)?;
        let lock = RunLock::acquire(out)?;
        let mut core = Self::build(cfg, task, out)?;
        core.lock = Some(lock);
        core.log = Some(ProgressLog::create(&out.join("progress.csv"))?);
        if core.cfg.train.tensorboard {
            core.events = Some(TensorBoardLog::create(out, &core.cfg)?);
        }
        Ok(core)
    }

    /// The run in `run` at its newest checkpoint that loads, locked, with the agent, counters
    /// and means restored and `progress.csv` cut after that iteration; the checkpoint is
    /// returned for the trainer's own state.
    pub(super) fn resume(run: &Path, task: Task) -> Result<(Self, Checkpoint)> {
        let cfg = Config::load(&run.join("config.toml"), &[])?;
        check_same_task(run, &task)?;
        super::check_task(&cfg, &task)?;
        check_run(&cfg, &task)?;
        let lock = RunLock::acquire(run)?;
        let (_, ck) = load_latest_checkpoint(run)?
            .with_context(|| format!("{} has no checkpoint to resume from", run.display()))?;
        let mut core = Self::build(cfg, task, run)?;
        core.lock = Some(lock);
        core.agent.load(&ck)?;
        core.k = ck.counter("iteration")?;
        core.nonfinite.total = ck.counter("nonfinite_total")?;
        core.nonfinite.streak = ck.counter("nonfinite_streak")?;
        core.wall_offset = ck.json("wall_s")?;
        core.acc = ck.json("accum")?;
        core.log = Some(ProgressLog::truncate_after(
            &run.join("progress.csv"),
            core.k,
        )?);
        if core.cfg.train.tensorboard {
            core.events = Some(TensorBoardLog::resume(run, core.k, &core.cfg)?);
        }
        core.resumed = true;
        Ok((core, ck))
    }

    /// Take the run's lock for a run (again, after an earlier run released it).
    pub(super) fn lock(&mut self) -> Result<()> {
        if self.lock.is_none() {
            self.lock = Some(RunLock::acquire(&self.out)?);
        }
        Ok(())
    }

    /// Release the run's lock (the run ended).
    pub(super) fn unlock(&mut self) {
        self.lock = None;
    }

    /// What is due at iteration `k` of `train.iterations`.
    pub(super) fn due(&self, k: u64) -> Due {
        let tr = &self.cfg.train;
        let n = tr.iterations;
        let eval = k.is_multiple_of(tr.eval_interval) || k == n;
        Due {
            eval,
            row: k.is_multiple_of(tr.log_interval) || eval || k == n,
            checkpoint: (k > 0 && k.is_multiple_of(tr.checkpoint_interval)) || k == n,
        }
    }

    /// Evaluate the current policy with the evaluation seed of iteration `k`.
    pub(super) fn evaluate(&self, k: u64) -> Result<EvalResult> {
        let seed = derive_seed(derive_seed(self.cfg.train.seed, STREAM_EVAL), k);
        evaluate(
            &self.task,
            &self.nets,
            &self.agent.params.pi,
            self.cfg.train.eval_episodes,
            seed,
        )
    }

    /// Write the progress row of iteration `k` from the means since the previous row.
    pub(super) fn write_row(
        &mut self,
        k: u64,
        wall: f64,
        env_steps: u64,
        eval: Option<EvalResult>,
        staleness: Option<f64>,
    ) -> Result<()> {
        let acc = std::mem::take(&mut self.acc);
        let row = Row {
            nonfinite_skipped: self.nonfinite.total,
            staleness,
            ..acc.row(&self.cfg, k, wall, env_steps, eval)
        };
        self.log
            .as_mut()
            .expect("the log is open while running")
            .write(&row)?;
        if let Some(events) = &mut self.events {
            events.write(&row)?;
        }
        Ok(())
    }

    /// A checkpoint holding the agent, the counters and the means (the common part).
    pub(super) fn checkpoint(&self, env_steps: u64, wall: f64) -> Result<Checkpoint> {
        let mut ck = Checkpoint::new();
        self.agent.save(&mut ck);
        ck.set_counter("iteration", self.k);
        ck.set_counter("env_steps", env_steps);
        ck.set_counter("nonfinite_total", self.nonfinite.total);
        ck.set_counter("nonfinite_streak", self.nonfinite.streak);
        ck.set_json("wall_s", &wall)?;
        ck.set_json("accum", &self.acc)?;
        Ok(ck)
    }

    /// Flush the progress rows to disk, write `ck` as the checkpoint of iteration `k` and
    /// prune the older ones.
    pub(super) fn save(&self, ck: &Checkpoint) -> Result<()> {
        self.log
            .as_ref()
            .expect("the log is open while running")
            .sync()?;
        if let Some(events) = &self.events {
            events.sync()?;
        }
        let dir = self.out.join("checkpoints");
        ck.save(&dir.join(format!("ckpt-{:09}", self.k)))?;
        prune_checkpoints(&dir, self.cfg.train.keep_checkpoints)
    }
}

/// An error unless `task` is the task the run in `run` was created with (its `task.toml`).
fn check_same_task(run: &Path, task: &Task) -> Result<()> {
    if let Some(stored) = read_task_spec(run)?
        && &stored != task.spec()
    {
        anyhow::bail!(
            "{} was trained on a task `{}` described differently from the task `{}` given to \
             resume it (compare its task.toml); resume it with the same task",
            run.display(),
            stored.name,
            task.name()
        );
    }
    Ok(())
}
