//! Supervision: workers in one-thread pools, restarts, replay snapshots, shutdown.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError, bounded, unbounded};

use super::CTL_QUEUE;
use super::actor::ActorWorker;
use super::buffer::BufferWorker;
use super::learner::LearnerWorker;
use super::shared::{Ctl, Flow, Role, Shared, Stats, Worker};
use super::snapshot::ParamStore;
use super::transport::TaggedGrads;
use super::{
    BUFFER_INBOX, MAX_RESTARTS, MAX_SNAPSHOT_RESENDS, POLL, SNAPSHOT_REPLY_TIMEOUT,
    SNAPSHOT_REQUEST_TIMEOUT,
};
use crate::config::{Config, FaultSpec, OnPanic};
use crate::env::Task;
use crate::replay::ReplayBuffer;
use crate::runtime::roles::{RuntimeCounters, Snapshot};

/// How a worker thread ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Finished,
    Failed(String),
    Panicked(String),
}

/// A worker thread's exit report.
pub(super) struct Event {
    pub(super) role: Role,
    pub(super) id: usize,
    pub(super) incarnation: u32,
    pub(super) outcome: Outcome,
}

/// A fresh worker of `role` with id `id`, incarnation `inc`.
pub(super) fn build_worker(
    sh: &Arc<Shared>,
    role: Role,
    id: usize,
    inc: u32,
) -> Result<Box<dyn Worker>> {
    Ok(match role {
        Role::Actor => Box::new(ActorWorker::new(sh.clone(), id, inc)?),
        Role::Buffer => Box::new(BufferWorker::new(sh.clone(), id, inc)?),
        Role::Learner => Box::new(LearnerWorker::of_runtime(sh, id, inc)?),
    })
}

/// A rayon pool of one thread (no intra-op parallelism inside a role).
pub(super) fn one_thread_pool() -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("cannot build a one-thread rayon pool")
}

/// Start a worker thread named `name`: `build` makes the worker inside the thread's one-thread
/// rayon pool, and the loop steps it while `stop` is unset (panicking at step `panic_at`, a
/// test fault); `report` receives how the thread ended.
pub(super) fn spawn_loop(
    name: String,
    stop: Arc<AtomicBool>,
    panic_at: Option<u64>,
    build: impl FnOnce() -> Result<Box<dyn Worker>> + Send + 'static,
    report: impl FnOnce(Outcome) + Send + 'static,
) -> Result<JoinHandle<()>> {
    let context = format!("cannot spawn {name}");
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let body = || -> Result<()> {
                let pool = one_thread_pool()?;
                pool.install(|| {
                    let mut w = build()?;
                    let mut steps = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if panic_at == Some(steps) {
                            panic!("injected test fault (runtime.inject_panic) in {name}");
                        }
                        steps += 1;
                        if w.step()? == Flow::Stop {
                            break;
                        }
                    }
                    Ok(())
                })
            };
            report(match catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(())) => Outcome::Finished,
                Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
                Err(p) => Outcome::Panicked(crate::runtime::panic_message(p.as_ref())),
            });
        })
        .context(context)
}

/// Start worker `id` of `role` (incarnation `inc`) of the thread runtime; its end is reported
/// as an [`Event`].
pub(super) fn spawn_worker(
    sh: &Arc<Shared>,
    role: Role,
    id: usize,
    inc: u32,
) -> Result<JoinHandle<()>> {
    if role == Role::Buffer {
        sh.buffer_alive[id].store(true, Ordering::SeqCst);
    }
    let panic_at = sh
        .fault
        .filter(|f| role.is(f.target) && f.id == id && inc == 0 && !f.non_finite)
        .map(|f| f.step);
    let (build_sh, report_sh) = (sh.clone(), sh.clone());
    spawn_loop(
        format!("{role} #{id}"),
        sh.stop.clone(),
        panic_at,
        move || build_worker(&build_sh, role, id, inc),
        move |outcome| {
            if role == Role::Buffer {
                report_sh.buffer_alive[id].store(false, Ordering::SeqCst);
            }
            let _ = report_sh.events.send(Event {
                role,
                id,
                incarnation: inc,
                outcome,
            });
        },
    )
}

/// Owns the worker threads, the gradient queue's receiver and the restart bookkeeping.
pub(super) struct Supervisor {
    pub(super) sh: Arc<Shared>,
    pub(super) events: Receiver<Event>,
    pub(super) grad_rx: Receiver<TaggedGrads>,
    pub(super) handles: Vec<JoinHandle<()>>,
    pub(super) restarts: HashMap<(Role, usize), u32>,
    pub(super) faults: Vec<String>,
}

impl Supervisor {
    pub(super) fn start(
        cfg: &Config,
        task: &Task,
        snapshot: Snapshot,
        replay: Vec<Option<ReplayBuffer>>,
    ) -> Result<Self> {
        let r = &cfg.runtime;
        let (grad_tx, grad_rx) = bounded(r.gradient_queue);
        let (exp_tx, exp_rx) = bounded(r.experience_queue);
        let (ev_tx, ev_rx) = unbounded();
        let (mut inbox_tx, mut inbox_rx, mut ctl_tx, mut ctl_rx) = (vec![], vec![], vec![], vec![]);
        for _ in 0..r.buffers {
            let (t, rx) = bounded(BUFFER_INBOX);
            inbox_tx.push(t);
            inbox_rx.push(rx);
            let (t, rx) = bounded(CTL_QUEUE);
            ctl_tx.push(t);
            ctl_rx.push(rx);
        }
        let k = snapshot.version;
        let sh = Arc::new(Shared {
            stored: replay
                .iter()
                .map(|b| AtomicU64::new(b.as_ref().map_or(0, |b| b.len() as u64)))
                .collect(),
            cfg: cfg.clone(),
            task: task.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            store: Arc::new(ParamStore::new(snapshot)),
            stats: Arc::new(Stats::default()),
            inbox_tx,
            inbox_rx,
            ctl_tx,
            ctl_rx,
            exp_tx,
            exp_rx,
            grad_tx,
            events: ev_tx,
            initial_replay: Mutex::new(replay),
            buffer_alive: (0..r.buffers).map(|_| AtomicBool::new(false)).collect(),
            fault: r.inject_panic.as_deref().and_then(FaultSpec::parse),
            train_seed: cfg.train.seed,
            start_version: k,
        });
        let mut sup = Self {
            sh,
            events: ev_rx,
            grad_rx,
            handles: Vec::new(),
            restarts: HashMap::new(),
            faults: Vec::new(),
        };
        for (role, n) in [
            (Role::Buffer, r.buffers),
            (Role::Learner, r.learners),
            (Role::Actor, r.actors),
        ] {
            for id in 0..n {
                sup.handles.push(spawn_worker(&sup.sh, role, id, 0)?);
            }
        }
        Ok(sup)
    }

    /// Handle worker exits: restart or fail according to `runtime.on_panic`.
    pub(super) fn poll_events(&mut self) -> Result<()> {
        while let Ok(ev) = self.events.try_recv() {
            let what = match &ev.outcome {
                Outcome::Finished => {
                    if self.sh.stop.load(Ordering::Relaxed) {
                        continue;
                    }
                    "exited unexpectedly".to_string()
                }
                Outcome::Failed(m) => format!("failed: {m}"),
                Outcome::Panicked(m) => format!("panicked: {m}"),
            };
            let msg = format!("{} #{} {what}", ev.role, ev.id);
            eprintln!("async: {msg}");
            self.faults.push(msg.clone());
            let n = self.restarts.entry((ev.role, ev.id)).or_insert(0);
            match self.sh.cfg.runtime.on_panic {
                OnPanic::Restart if *n < MAX_RESTARTS => {
                    *n += 1;
                    self.sh.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    eprintln!("async: restarting {} #{} (restart {n})", ev.role, ev.id);
                    let h = spawn_worker(&self.sh, ev.role, ev.id, ev.incarnation + 1)?;
                    self.handles.push(h);
                }
                OnPanic::Restart => {
                    bail!("{msg}; giving up after {MAX_RESTARTS} restarts of this worker")
                }
                OnPanic::Stop => bail!("{msg} (runtime.on_panic = \"stop\")"),
            }
        }
        Ok(())
    }

    /// Copies of every live buffer's replay contents (for a checkpoint); `None` for a buffer
    /// that is not running (stopped by a fault), which a resume starts empty. A request whose
    /// reader died (a buffer restarted meanwhile) is sent again to the new incarnation.
    pub(super) fn replay_snapshots(&self) -> Result<Vec<Option<ReplayBuffer>>> {
        let alive = |i: usize| self.sh.buffer_alive[i].load(Ordering::SeqCst);
        let request = |i: usize| -> Result<Option<Receiver<ReplayBuffer>>> {
            if !alive(i) {
                return Ok(None);
            }
            let (rt, rr) = bounded(1);
            self.sh.ctl_tx[i]
                .send_timeout(Ctl::Snapshot(rt), SNAPSHOT_REQUEST_TIMEOUT)
                .map_err(|_| anyhow!("buffer #{i} does not take requests"))?;
            Ok(Some(rr))
        };
        let mut replies = Vec::new();
        for i in 0..self.sh.ctl_tx.len() {
            replies.push(request(i)?);
        }
        let deadline = Instant::now() + SNAPSHOT_REPLY_TIMEOUT;
        let mut out = Vec::new();
        for (i, mut rr) in replies.into_iter().enumerate() {
            let mut resent = 0;
            let got = loop {
                let Some(r) = &rr else { break None };
                match r.recv_timeout(POLL) {
                    Ok(b) => break Some(b),
                    Err(RecvTimeoutError::Timeout) if alive(i) && Instant::now() < deadline => {}
                    Err(_) if !alive(i) => break None,
                    Err(RecvTimeoutError::Disconnected) if resent < MAX_SNAPSHOT_RESENDS => {
                        resent += 1;
                        rr = request(i)?;
                    }
                    Err(_) => bail!("buffer #{i} did not send its replay contents"),
                }
            };
            if got.is_none() {
                eprintln!(
                    "async: buffer #{i} is not running; the checkpoint holds no replay contents \
                     for it (it starts empty after a resume)"
                );
            }
            out.push(got);
        }
        Ok(out)
    }

    /// Environment steps collected in this session.
    pub(super) fn env_steps(&self) -> u64 {
        self.sh.stats.env_steps.load(Ordering::Relaxed)
    }

    /// Queue depths and counters for `runtime.csv`.
    pub(super) fn counters(&self) -> RuntimeCounters {
        let st = &self.sh.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RuntimeCounters {
            grad_queue: self.grad_rx.len() as u64,
            experience_queue: self.sh.exp_rx.len() as u64,
            stored: self.sh.stored.iter().map(get).sum(),
            env_steps: get(&st.env_steps),
            inserted: get(&st.inserted),
            sampled: get(&st.sampled),
            batches: get(&st.batches),
            grads: get(&st.grads),
            throttle_events: get(&st.throttle_events),
            throttled_s: get(&st.throttled_us) as f64 * 1e-6,
            restarts: get(&st.restarts),
        }
    }

    /// Stop every worker and join the threads.
    pub(super) fn shutdown(&mut self) {
        self.sh.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}
