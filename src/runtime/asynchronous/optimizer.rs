//! The optimizer role: [`AsyncTrainer`] applies gradients, evaluates, logs and checkpoints.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::POLL;
use super::runtime_log::RuntimeLog;
use super::snapshot::Snapshot;
use super::supervisor::{Supervisor, one_thread_pool};
use super::transport::TaggedGrads;
use crate::algo::{Agent, Nets};
use crate::config::{Config, FaultSpec, FaultTarget};
use crate::replay::ReplayBuffer;
use crate::runtime::core::RunCore;
use crate::runtime::evaluator::EvalResult;
use crate::runtime::metrics::push;
use crate::runtime::progress::{ProgressBar, truncate_csv_after};
use crate::runtime::seeds::{STREAM_COLLECT, STREAM_LEARNER, STREAM_REPLAY, derive_seed};

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

/// The asynchronous trainer: the optimizer role plus the supervisor of the other roles.
pub struct AsyncTrainer {
    core: RunCore,
    /// Environment steps of the earlier sessions.
    env_steps0: u64,
    staleness_acc: (f64, u64),
    /// Replay contents restored from the checkpoint, handed to the buffers at the start.
    replay: Vec<Option<ReplayBuffer>>,
    /// `run` was called: the replay contents went to the buffers, which are gone.
    ran: bool,
}

impl AsyncTrainer {
    /// A new run writing to `out` (which must not already hold a run).
    pub fn new(cfg: Config, out: &Path) -> Result<Self> {
        Ok(Self::build(RunCore::create(cfg, out)?))
    }

    /// Continue the run in `run` from its newest checkpoint that loads (async or serial).
    pub fn resume(run: &Path) -> Result<Self> {
        let (core, ck) = RunCore::resume(run)?;
        let mut t = Self::build(core);
        t.env_steps0 = ck.counter("env_steps")?;
        let (o, a) = (t.core.nets.spec.obs_dim, t.core.nets.spec.act_dim);
        let cap = t.core.cfg.algo.buffer_capacity;
        for i in 0..t.core.cfg.runtime.buffers {
            let prefix = replay_prefix(i);
            if ck.counter(&format!("{prefix}/len")).is_ok() {
                t.replay[i] = Some(ReplayBuffer::restore_from(&ck, &prefix, cap, o, a)?);
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
            replay: vec![None; core.cfg.runtime.buffers],
            ran: false,
            core,
        }
    }

    /// Suppress the progress display.
    pub fn quiet(mut self) -> Self {
        self.core.quiet = true;
        self
    }

    /// Stop after this much wall time (with a final row and checkpoint).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.core.time_limit = Some(limit);
        self
    }

    /// Setting this flag stops the run cleanly (Ctrl-C handler, tests).
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
        self.core.lock()?;
        let pool = one_thread_pool()?;
        let result = pool.install(|| self.run_inner());
        self.core.unlock();
        result
    }

    pub(super) fn run_inner(&mut self) -> Result<RunSummary> {
        let n = self.core.cfg.train.iterations;
        let start = Instant::now();
        let replay = std::mem::replace(&mut self.replay, vec![None; self.core.cfg.runtime.buffers]);
        let mut sup = Supervisor::start(
            &self.core.cfg,
            Snapshot::of(self.core.k, &self.core.agent.params),
            replay,
        )?;
        let mut rt_log = RuntimeLog::open(&self.core.out.join("runtime.csv"), self.core.k)?;
        let mut bar = ProgressBar::new(n, self.core.quiet);
        let mut summary = RunSummary::default();
        let (mut last_row, mut last_ckpt) = (None, None);
        let mut first_update: Option<Instant> = None;
        let mut last_update = Instant::now();
        let k0 = self.core.k;
        let mut pg = (0.0, 0u64);
        let mut feed = GradientFeed::new(self.core.cfg.runtime.grad_max_reuse);
        let result: Result<()> = (|| {
            loop {
                let k = self.core.k;
                let wall = self.core.wall_offset + start.elapsed().as_secs_f64();
                if !self.core.resumed {
                    let due = self.core.due(k);
                    let eval = if due.eval {
                        Some(self.core.evaluate(k)?)
                    } else {
                        None
                    };
                    if due.row {
                        self.write_row(k, wall, eval, &sup)?;
                        last_row = Some(k);
                    }
                    if let Some(e) = eval {
                        bar.eval(k, e);
                    }
                    if due.checkpoint {
                        self.save_checkpoint(&sup, wall)?;
                        last_ckpt = Some(k);
                    }
                } else {
                    self.core.resumed = false;
                    last_row = Some(k);
                    last_ckpt = Some(k);
                }
                if k >= n {
                    return Ok(());
                }
                let t0 = Instant::now();
                let (g, reused) = loop {
                    if self.core.stop.load(Ordering::Relaxed)
                        || self.core.time_limit.is_some_and(|l| start.elapsed() >= l)
                    {
                        summary.stopped_early = true;
                        return Ok(());
                    }
                    sup.poll_events()?;
                    rt_log.maybe_write(
                        self.core.k,
                        self.core.wall_offset + start.elapsed().as_secs_f64(),
                        &sup,
                        false,
                    )?;
                    if let Some(got) = feed.poll(&sup.grad_rx)? {
                        break got;
                    }
                };
                let stale = k.saturating_sub(g.version);
                let finite = self.core.nonfinite.check(
                    &g.grads,
                    k,
                    self.core.cfg.train.max_nonfinite_streak,
                )?;
                if !reused {
                    feed.fresh(&g, finite);
                }
                if finite {
                    if !reused {
                        self.core.acc.record(&g.grads.stats);
                        if let Some(t) = g.grads.stats.pg_time_ms {
                            push(&mut pg, t);
                        }
                    }
                    let policy = g.grads.pi.is_some();
                    self.core.agent.apply_step(g.grads, policy);
                }
                sup.sh
                    .store
                    .publish(Snapshot::of(k + 1, &self.core.agent.params));
                push(
                    &mut self.core.acc.update_time,
                    t0.elapsed().as_secs_f64() * 1e3,
                );
                push(&mut self.staleness_acc, stale as f64);
                rt_log.staleness(stale);
                if summary.staleness.len() < 1_000_000 {
                    summary.staleness.push(stale);
                }
                first_update.get_or_insert_with(Instant::now);
                last_update = Instant::now();
                self.core.k += 1;
                bar.tick(self.core.k);
            }
        })();
        bar.finish();
        // Final row and checkpoint of the iteration reached (stop request, time limit, fault).
        let wall = self.core.wall_offset + start.elapsed().as_secs_f64();
        let mut finish = || -> Result<()> {
            if last_row != Some(self.core.k) {
                self.write_row(self.core.k, wall, None, &sup)?;
            }
            if last_ckpt != Some(self.core.k) {
                self.save_checkpoint(&sup, wall)?;
            }
            rt_log.maybe_write(self.core.k, wall, &sup, true)
        };
        let finished = finish();
        sup.shutdown();
        summary.iterations = self.core.k - k0;
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
        let st = std::mem::take(&mut self.staleness_acc);
        let staleness = (st.1 > 0).then(|| st.0 / st.1 as f64);
        let env_steps = self.env_steps(sup);
        self.core.write_row(k, wall, env_steps, eval, staleness)
    }

    pub(super) fn save_checkpoint(&mut self, sup: &Supervisor, wall: f64) -> Result<()> {
        let mut ck = self.core.checkpoint(self.env_steps(sup), wall)?;
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
        let buffers = sup.replay_snapshots()?;
        ck.set_counter("async/buffers", buffers.len() as u64);
        for (i, rb) in buffers.iter().enumerate() {
            if let Some(rb) = rb {
                rb.save_to(&mut ck, &replay_prefix(i));
            }
        }
        self.core.save(&ck)
    }
}

/// Checkpoint prefix of buffer `i` (`replay`, `replay1`, …).
pub(super) fn replay_prefix(i: usize) -> String {
    if i == 0 {
        "replay".to_string()
    } else {
        format!("replay{i}")
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
