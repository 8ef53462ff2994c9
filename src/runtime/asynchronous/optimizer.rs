//! [`AsyncTrainer`]: the optimizer role's loop (the [`Optimizer`] fed by the gradient queue).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::POLL;
use super::supervisor::{Supervisor, one_thread_pool};
use super::transport::TaggedGrads;
use crate::algo::{Agent, Nets};
use crate::config::Config;
use crate::env::{Task, lookup};
use crate::runtime::roles::Optimizer;

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

/// The optimizer's source of gradients: fresh ones from the gradient queue or, while it is
/// empty, the last finite fresh one again (at most `runtime.grad_max_reuse` times in a row).
struct GradientFeed {
    last: Option<TaggedGrads>,
    reuse_left: u64,
    max_reuse: u64,
}

impl GradientFeed {
    fn new(max_reuse: u64) -> Self {
        Self {
            last: None,
            reuse_left: 0,
            max_reuse,
        }
    }

    /// The next gradient and whether it is a reuse, or `None` when nothing came within
    /// [`POLL`].
    fn poll(&mut self, rx: &Receiver<TaggedGrads>) -> Result<Option<(TaggedGrads, bool)>> {
        if self.reuse_left > 0
            && let Some(prev) = &self.last
        {
            return match rx.try_recv() {
                Ok(g) => Ok(Some((g, false))),
                Err(TryRecvError::Empty) => {
                    self.reuse_left -= 1;
                    Ok(Some((prev.clone(), true)))
                }
                Err(TryRecvError::Disconnected) => bail!("the gradient queue closed"),
            };
        }
        match rx.recv_timeout(POLL) {
            Ok(g) => Ok(Some((g, false))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => bail!("the gradient queue closed"),
        }
    }

    /// Record a fresh gradient after its finiteness check: only a finite one is re-applied.
    fn fresh(&mut self, g: &TaggedGrads, finite: bool) {
        self.last = (finite && self.max_reuse > 0).then(|| g.clone());
        self.reuse_left = self.max_reuse;
    }
}

/// The asynchronous trainer: the [`Optimizer`] role on this thread plus the supervisor of the
/// other roles' threads.
pub struct AsyncTrainer {
    opt: Optimizer,
    /// `run` was called: the replay contents went to the buffers, which are gone.
    ran: bool,
}

impl AsyncTrainer {
    /// A new run of the registered task `task.name`, writing to `out` (which must not
    /// already hold a run).
    pub fn new(cfg: Config, out: &Path) -> Result<Self> {
        let task = lookup(&cfg.task.name)?;
        Self::with_task(cfg, task, out)
    }

    /// A new run of `task`, writing to `out` (which must not already hold a run).
    pub fn with_task(cfg: Config, task: Task, out: &Path) -> Result<Self> {
        Ok(Self::build(Optimizer::create(cfg, task, out)?))
    }

    /// Continue the run in `run` (of a registered task) from its newest checkpoint that loads
    /// (async, Ray or serial).
    pub fn resume(run: &Path) -> Result<Self> {
        let cfg = Config::load(&run.join("config.toml"), &[])?;
        Self::resume_task(run, lookup(&cfg.task.name)?)
    }

    /// Continue the run of `task` in `run` from its newest checkpoint that loads.
    pub fn resume_task(run: &Path, task: Task) -> Result<Self> {
        Ok(Self::build(Optimizer::resume(run, task)?))
    }

    fn build(opt: Optimizer) -> Self {
        Self { opt, ran: false }
    }

    /// Suppress the progress display.
    pub fn quiet(mut self) -> Self {
        self.opt.set_quiet(true);
        self
    }

    /// Stop after this much wall time (with a final row and checkpoint).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.opt.set_time_limit(limit);
        self
    }

    /// Setting this flag stops the run cleanly (Ctrl-C handler, tests).
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.opt.stop_handle()
    }

    /// The current iteration.
    pub fn iteration(&self) -> u64 {
        self.opt.iteration()
    }

    /// The agent (parameters and optimisers).
    pub fn agent(&self) -> &Agent {
        self.opt.agent()
    }

    /// The network architectures.
    pub fn nets(&self) -> &Nets {
        self.opt.nets()
    }

    /// Run until `train.iterations`, a stop request or the time limit; the final row and
    /// checkpoint are written in every case (also when a fault stops the run, whose error is
    /// then returned).
    /// The run directory is locked while it runs.
    /// A trainer runs once (its replay contents end with the run): resume to continue.
    pub fn run(&mut self) -> Result<RunSummary> {
        anyhow::ensure!(
            !self.ran,
            "this async trainer has already run (its buffers are gone); resume the run from \
             its checkpoint to continue"
        );
        self.ran = true;
        let pool = one_thread_pool()?;
        pool.install(|| self.run_inner())
    }

    fn run_inner(&mut self) -> Result<RunSummary> {
        let opt = &mut self.opt;
        let replay = opt.take_restored_replay();
        let mut sup = Supervisor::start(opt.config(), opt.task(), opt.snapshot(), replay)?;
        opt.start_session()?;
        let mut summary = RunSummary::default();
        let mut first_update: Option<Instant> = None;
        let mut last_update = Instant::now();
        let k0 = opt.iteration();
        let mut feed = GradientFeed::new(opt.config().runtime.grad_max_reuse);
        let result: Result<()> = (|| {
            loop {
                opt.at_iteration(sup.env_steps(), || sup.replay_snapshots())?;
                if opt.finished() {
                    return Ok(());
                }
                let (g, reused) = loop {
                    if opt.should_stop() {
                        summary.stopped_early = true;
                        return Ok(());
                    }
                    sup.poll_events()?;
                    opt.log_runtime(false, || sup.counters())?;
                    if let Some(got) = feed.poll(&sup.grad_rx)? {
                        break got;
                    }
                };
                if !reused {
                    feed.fresh(&g, g.grads.is_finite());
                }
                let staleness = opt.apply(g, reused)?;
                sup.sh.store.publish(opt.snapshot());
                if summary.staleness.len() < 1_000_000 {
                    summary.staleness.push(staleness);
                }
                first_update.get_or_insert_with(Instant::now);
                last_update = Instant::now();
            }
        })();
        // Final row and checkpoint of the iteration reached (stop request, time limit, fault).
        let finished = opt.finish(
            sup.env_steps(),
            || sup.replay_snapshots(),
            || sup.counters(),
        );
        sup.shutdown();
        summary.iterations = opt.iteration() - k0;
        summary.restarts = sup.sh.stats.restarts.load(Ordering::Relaxed);
        summary.faults = std::mem::take(&mut sup.faults);
        summary.pg_time_ms = opt.pg_time_ms();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::Grads;
    use crossbeam_channel::bounded;

    fn grads(x: f32) -> TaggedGrads {
        TaggedGrads {
            grads: Grads {
                q1: vec![vec![x]],
                q2: None,
                pi: None,
                log_alpha: None,
                stats: Default::default(),
            },
            version: 0,
        }
    }

    #[test]
    fn only_a_finite_fresh_gradient_is_reused() {
        let (tx, rx) = bounded(4);
        let mut feed = GradientFeed::new(2);
        tx.send(grads(1.0)).unwrap();
        let (g, reused) = feed.poll(&rx).unwrap().unwrap();
        assert!(!reused);
        feed.fresh(&g, true);
        for _ in 0..2 {
            let (g, reused) = feed.poll(&rx).unwrap().unwrap();
            assert!(reused && g.grads.q1[0][0] == 1.0);
        }
        assert!(
            feed.poll(&rx).unwrap().is_none(),
            "reused more than grad_max_reuse"
        );
        tx.send(grads(f32::NAN)).unwrap();
        let (g, _) = feed.poll(&rx).unwrap().unwrap();
        feed.fresh(&g, false);
        assert!(
            feed.poll(&rx).unwrap().is_none(),
            "a non-finite gradient was reused"
        );
    }
}
