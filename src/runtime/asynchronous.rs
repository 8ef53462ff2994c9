//! The asynchronous learning architecture of the paper (section IV-C, Fig. 2), with threads and
//! bounded channels. `runtime.mode = "async"` selects it.
//!
//! # Roles and what each thread owns
//! - **Optimizer** (the thread that calls [`AsyncTrainer::run`]): owns the latest parameters
//!   and Adam states ([`Agent`]), the receiving end of the gradient queue, the progress log and
//!   the checkpoints. Its update loop takes one gradient at a time, applies it
//!   ([`Agent::apply_step`]; the policy, temperature and targets update when the gradient carries
//!   a policy gradient), counts the iteration (iteration = gradients applied, or skipped as
//!   non-finite) and publishes a new parameter snapshot. It also plays the **Evaluator**: at
//!   every `train.eval_interval` iteration (and the last) it evaluates the parameters of exactly
//!   that iteration with its own evaluation environment, as the serial trainer does, so the
//!   learners keep computing (their gradients queue up) while it evaluates.
//! - **Actors** (`runtime.actors` threads): a local copy of the policy, their own vectorized
//!   environment (`task.num_agents` agents) and exploration RNG. Each collection of
//!   `algo.collect_steps` steps goes to a uniformly random buffer.
//! - **Buffers** (`runtime.buffers` threads): each owns a [`ReplayBuffer`] of capacity
//!   `algo.buffer_capacity` (per buffer, as in the reference), inserts what the actors send and
//!   keeps sampling batches of `algo.batch_size` into the experience queue once it holds
//!   `ceil(algo.warmup_samples / buffers)` transitions.
//! - **Learners** (`runtime.learners` threads): local parameters, their own prior model, true
//!   environment for n-step targets and RNG. Each takes a batch, computes its targets
//!   ([`Learner::targets`]) and `algo.batch_reuse` gradients from it ([`Learner::compute`], every
//!   `algo.policy_delay`-th with the policy gradient), refreshing the parameters between reuses,
//!   and sends them tagged with the parameter version they used. MPG's weights `(w_data,
//!   w_model)` are those of that version, i.e. of the optimizer's iteration at dispatch, as in the
//!   reference.
//!
//! # Channels (all bounded)
//! - actor → buffer `i`: capacity 4 experience blocks per buffer;
//! - buffers → learners, the experience queue: `runtime.experience_queue` batches;
//! - learners → optimizer, the gradient queue: `runtime.gradient_queue` gradients;
//! - optimizer → buffer `i` (control: replay snapshots for checkpoints), and every worker →
//!   optimizer (exit / panic reports) are small control channels.
//!
//! Every blocking wait has a timeout of at most [`POLL`] and then checks the stop flag, so no
//! role can block shutdown.
//!
//! # Snapshots
//! The optimizer publishes an `Arc` of an immutable [`Snapshot`] (host `f32` values of every
//! network plus its version = the iteration counter after the update) in a [`ParamStore`].
//! burn's `Tensor` is `Send` but the parameter tensor cache of a [`ParamSet`] is per thread by
//! design here: workers read the version (an atomic), and only when it changed clone the `Arc`
//! and rebuild their local [`Params`]. Staleness of a gradient is the optimizer's iteration when
//! it is applied minus the version it was computed from.
//!
//! # Rate limits
//! - Samples per insert: a buffer samples a batch only while `sampled + batch_size ≤
//!   runtime.samples_per_insert × inserted` (counted in transitions, per buffer; 0 disables), as
//!   Reverb's rate limiter does; otherwise it waits for actors (polling its inbox with a
//!   timeout) and counts a throttle event (reported on stderr the first time and in
//!   `runtime.csv`).
//! - Actors are paced by the optimizer like the serial loop: after the warm-up they start at most
//!   one collection per `algo.collect_interval` applied updates (plus one in flight per actor),
//!   so on few cores they do not take the learners' CPU. They run unpaced while a buffer is
//!   throttled, so the two limits cannot wait on each other.
//!
//! # Threads of burn's pool
//! burn-flex parallelises large matmuls and element-wise kernels with rayon. Every role's thread
//! runs inside its own one-thread rayon pool (`ThreadPool::install`), so intra-op parallelism
//! is off and learners do not oversubscribe the cores: parallelism comes from the learners.
//!
//! # Faults and shutdown
//! A worker that panics (or returns an error) is reported on stderr with its role and id; with
//! `runtime.on_panic = "restart"` a fresh worker with the same role and id starts (at most
//! [`MAX_RESTARTS`] times per worker; a restarted buffer starts empty), with `"stop"` the run
//! stops as below and [`AsyncTrainer::run`] returns an error naming the role and id.
//! Stopping (iteration budget reached, time limit, [`AsyncTrainer::stop_handle`] set, e.g. by
//! Ctrl-C, or a fault with `on_panic = "stop"`): the optimizer finishes the update in hand,
//! writes the progress row and a checkpoint of the current iteration (asking each buffer for a
//! copy of its replay contents), then sets the workers' stop flag and joins every thread.
//!
//! # Checkpoints and resume
//! A checkpoint holds the parameters, Adam states, counters, accumulated means and the contents
//! of every buffer (`replay/…` for buffer 0, `replay1/…`, … for the others), plus RNG entries,
//! so the serial [`super::Trainer::resume`] can also continue from it. [`AsyncTrainer::resume`]
//! restores buffer `i` from the saved buffer `i` when there is one (an extra buffer starts
//! empty); workers get fresh seeds derived from the seed and the iteration.
//!
//! # Reproducibility
//! Async mode is **not bit-reproducible**: which gradient is applied when, and from which
//! parameter version, depends on thread scheduling. Seeds still fix the initial parameters,
//! the environments' seeds and the evaluation episodes.
//!
//! # `runtime.csv`
//! About once a second and at the end the optimizer appends a row to `DIR/runtime.csv` with
//! [`RUNTIME_COLUMNS`]: `iteration`, `wall_s`, `grad_queue` and `experience_queue` (depths),
//! `stored` (transitions held by all buffers), `inserted` and `sampled` (transitions, this
//! session), `throttle_events` and `throttled_s` (samples-per-insert waits),
//! `actor_steps_per_s`, `batches_per_s`, `grads_per_s`, `updates_per_s` (since the previous
//! row), `staleness_mean` and `staleness_max` (since the previous row) and `restarts`.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, bounded, unbounded,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::evaluator::{EvalResult, evaluate};
use super::progress::{ProgressLog, Row};
use super::serial::{
    Accum, NonFinite, ProgressBar, STREAM_COLLECT, STREAM_ENV, STREAM_EVAL, STREAM_INIT,
    STREAM_LEARNER, STREAM_REPLAY, derive_seed, init_run_dir, latest_checkpoint, load_replay,
    prune_checkpoints, push, save_replay,
};
use crate::algo::{Agent, Grads, Learner, Nets, Params, act};
use crate::checkpoint::Checkpoint;
use crate::config::{AlgoName, Config, OnPanic};
use crate::env::{make_env, make_model, reset_after_collect, task_spec};
use crate::nn::ParamSet;
use crate::replay::{HostBatch, ReplayBuffer};

/// Longest blocking wait before a role re-checks the stop flag.
pub const POLL: Duration = Duration::from_millis(20);
/// Restarts allowed per worker (role, id) before the run stops.
pub const MAX_RESTARTS: u32 = 5;
/// Capacity of each buffer's inbox (experience blocks from the actors).
pub const BUFFER_INBOX: usize = 4;
/// Columns of `runtime.csv`.
pub const RUNTIME_COLUMNS: [&str; 17] = [
    "iteration",
    "wall_s",
    "grad_queue",
    "experience_queue",
    "stored",
    "inserted",
    "sampled",
    "throttle_events",
    "throttled_s",
    "actor_steps_per_s",
    "batches_per_s",
    "grads_per_s",
    "updates_per_s",
    "staleness_mean",
    "staleness_max",
    "restarts",
    "spi",
];
const STREAM_ACTOR: u64 = 7;
const STREAM_BUFFER: u64 = 8;

// ---------------------------------------------------------------------------------------------
// Snapshots

/// Host copy of one parameter set.
#[derive(Debug, Clone)]
struct HostSet {
    shapes: Vec<[usize; 2]>,
    values: Vec<Vec<f32>>,
}

impl HostSet {
    fn of(p: &ParamSet) -> Self {
        Self {
            shapes: p.shapes().to_vec(),
            values: p.values().to_vec(),
        }
    }

    fn build(&self) -> ParamSet {
        ParamSet::new(self.shapes.clone(), self.values.clone())
    }
}

/// An immutable snapshot of every parameter at one optimizer iteration.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The optimizer's iteration counter when the snapshot was taken.
    pub version: u64,
    pi: HostSet,
    q1: HostSet,
    q2: Option<HostSet>,
    pi_t: HostSet,
    q1_t: HostSet,
    q2_t: Option<HostSet>,
    log_alpha: HostSet,
}

impl Snapshot {
    /// Copy the host values of `p`.
    pub fn of(version: u64, p: &Params) -> Self {
        Self {
            version,
            pi: HostSet::of(&p.pi),
            q1: HostSet::of(&p.q1),
            q2: p.q2.as_ref().map(HostSet::of),
            pi_t: HostSet::of(&p.pi_t),
            q1_t: HostSet::of(&p.q1_t),
            q2_t: p.q2_t.as_ref().map(HostSet::of),
            log_alpha: HostSet::of(&p.log_alpha),
        }
    }

    /// Rebuild every parameter set (with this thread's tensor caches).
    pub fn params(&self) -> Params {
        Params {
            pi: self.pi.build(),
            q1: self.q1.build(),
            q2: self.q2.as_ref().map(HostSet::build),
            pi_t: self.pi_t.build(),
            q1_t: self.q1_t.build(),
            q2_t: self.q2_t.as_ref().map(HostSet::build),
            log_alpha: self.log_alpha.build(),
        }
    }

    /// Rebuild the policy only (actors).
    pub fn policy(&self) -> ParamSet {
        self.pi.build()
    }
}

/// Where workers get the latest parameters (Acme's `VariableSource`).
pub trait VariableSource: Send + Sync {
    /// The latest version (cheap: an atomic load).
    fn version(&self) -> u64;
    /// The latest snapshot.
    fn latest(&self) -> Arc<Snapshot>;
}

/// The optimizer's published snapshot: an `Arc` swapped under a lock, plus its version.
pub struct ParamStore {
    version: AtomicU64,
    current: RwLock<Arc<Snapshot>>,
}

impl ParamStore {
    /// A store holding `s`.
    pub fn new(s: Snapshot) -> Self {
        Self {
            version: AtomicU64::new(s.version),
            current: RwLock::new(Arc::new(s)),
        }
    }

    /// Replace the snapshot (optimizer only).
    pub fn publish(&self, s: Snapshot) {
        let v = s.version;
        *self.current.write().expect("snapshot lock") = Arc::new(s);
        self.version.store(v, Ordering::Release);
    }
}

impl VariableSource for ParamStore {
    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn latest(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock").clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Messages and transports

/// A block of transitions from one actor collection (row-major, one row per agent-step).
#[derive(Debug, Clone, Default)]
pub struct Experience {
    /// Observations.
    pub obs: Vec<f32>,
    /// Actions taken (with exploration).
    pub act: Vec<f32>,
    /// Unscaled rewards.
    pub rew: Vec<f32>,
    /// Next observations.
    pub next_obs: Vec<f32>,
    /// Failure flags.
    pub terminated: Vec<bool>,
    /// Time-limit flags.
    pub truncated: Vec<bool>,
}

/// A gradient tagged with the parameter version it was computed from.
#[derive(Debug, Clone)]
pub struct TaggedGrads {
    /// The gradients and their stats.
    pub grads: Grads,
    /// Version of the snapshot used.
    pub version: u64,
    /// Which learner computed it.
    pub learner: usize,
}

/// Outcome of a blocking receive with a timeout.
#[derive(Debug)]
pub enum Polled<T> {
    /// An item arrived.
    Item(T),
    /// Nothing within the timeout.
    Empty,
    /// The other side is gone.
    Closed,
}

/// Where an actor sends experience (to a random buffer).
pub trait ExperienceSink {
    /// Deliver a block; waits (re-checking `stop`) while the target is full. False when
    /// stopping or closed.
    fn insert(&mut self, e: Experience, stop: &AtomicBool) -> bool;
}

/// Where a learner takes batches from.
pub trait BatchSource {
    /// The next batch, waiting at most `timeout`.
    fn next_batch(&mut self, timeout: Duration) -> Polled<HostBatch>;
}

/// Where a learner sends gradients.
pub trait GradientSink {
    /// Deliver a gradient; waits (re-checking `stop`) while the queue is full. False when
    /// stopping or closed.
    fn send(&mut self, g: TaggedGrads, stop: &AtomicBool) -> bool;
}

fn send_until<T>(tx: &Sender<T>, mut item: T, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        match tx.send_timeout(item, POLL) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(back)) => item = back,
            Err(SendTimeoutError::Disconnected(_)) => return false,
        }
    }
}

fn recv_polled<T>(rx: &Receiver<T>, timeout: Duration) -> Polled<T> {
    match rx.recv_timeout(timeout) {
        Ok(x) => Polled::Item(x),
        Err(RecvTimeoutError::Timeout) => Polled::Empty,
        Err(RecvTimeoutError::Disconnected) => Polled::Closed,
    }
}

/// Channel transport: a random buffer's inbox.
struct ChannelExperienceSink {
    inboxes: Vec<Sender<Experience>>,
    rng: Pcg64Mcg,
}

impl ExperienceSink for ChannelExperienceSink {
    fn insert(&mut self, e: Experience, stop: &AtomicBool) -> bool {
        let i = self.rng.random_range(0..self.inboxes.len());
        send_until(&self.inboxes[i], e, stop)
    }
}

struct ChannelBatchSource(Receiver<HostBatch>);

impl BatchSource for ChannelBatchSource {
    fn next_batch(&mut self, timeout: Duration) -> Polled<HostBatch> {
        recv_polled(&self.0, timeout)
    }
}

struct ChannelGradientSink(Sender<TaggedGrads>);

impl GradientSink for ChannelGradientSink {
    fn send(&mut self, g: TaggedGrads, stop: &AtomicBool) -> bool {
        send_until(&self.0, g, stop)
    }
}

// ---------------------------------------------------------------------------------------------
// Roles

/// Worker roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Collects experience.
    Actor,
    /// Stores experience and samples batches.
    Buffer,
    /// Computes gradients.
    Learner,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Actor => "actor",
            Self::Buffer => "buffer",
            Self::Learner => "learner",
        })
    }
}

/// Whether a worker's loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Call `step` again.
    Continue,
    /// Leave the loop (stop requested or a channel closed).
    Stop,
}

/// A role's unit of work, driven by its thread's loop (Acme-style `Actor::update` /
/// `Learner::step`); the transport is behind the traits above.
pub trait Worker {
    /// Do one unit of work (a collection, a buffer round, a batch).
    fn step(&mut self) -> Result<Flow>;
}

/// Test-only fault injection parsed from `runtime.inject_panic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    /// Role to fail.
    pub role: Role,
    /// Its id.
    pub id: usize,
    /// Panic at this step (0-based) of the first incarnation.
    pub step: u64,
}

impl FaultSpec {
    /// Parse `ROLE:ID:STEP`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(':');
        let role = match it.next()? {
            "actor" => Role::Actor,
            "buffer" => Role::Buffer,
            "learner" => Role::Learner,
            _ => return None,
        };
        let id = it.next()?.parse().ok()?;
        let step = it.next()?.parse().ok()?;
        it.next().is_none().then_some(Self { role, id, step })
    }
}

/// Counters shared by every role (relaxed atomics; diagnostics only).
#[derive(Debug, Default)]
struct Stats {
    env_steps: AtomicU64,
    collections: AtomicU64,
    inserted: AtomicU64,
    sampled: AtomicU64,
    batches: AtomicU64,
    grads: AtomicU64,
    throttle_events: AtomicU64,
    throttled_us: AtomicU64,
    throttled_now: AtomicU64,
    restarts: AtomicU64,
}

enum Ctl {
    Snapshot(Sender<ReplayBuffer>),
}

/// What every worker thread shares.
struct Shared {
    cfg: Config,
    stop: AtomicBool,
    store: ParamStore,
    stats: Stats,
    stored: Vec<AtomicU64>,
    inbox_tx: Vec<Sender<Experience>>,
    inbox_rx: Vec<Receiver<Experience>>,
    ctl_tx: Vec<Sender<Ctl>>,
    ctl_rx: Vec<Receiver<Ctl>>,
    exp_tx: Sender<HostBatch>,
    exp_rx: Receiver<HostBatch>,
    grad_tx: Sender<TaggedGrads>,
    events: Sender<Event>,
    initial_replay: Mutex<Vec<Option<ReplayBuffer>>>,
    fault: Option<FaultSpec>,
    seed_base: u64,
}

impl Shared {
    fn seed(&self, stream: u64, id: usize, incarnation: u32) -> u64 {
        derive_seed(
            derive_seed(self.seed_base, stream),
            ((id as u64) << 16) | incarnation as u64,
        )
    }
}

struct ActorWorker {
    sh: Arc<Shared>,
    nets: Nets,
    env: Box<dyn crate::env::Env>,
    obs: Vec<f32>,
    out: crate::env::StepOut,
    pi: ParamSet,
    version: u64,
    rng: Pcg64Mcg,
    sink: Box<dyn ExperienceSink>,
}

impl ActorWorker {
    fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
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

    /// Paced by the optimizer (see the module docs).
    fn may_collect(&self) -> bool {
        let st = &self.sh.stats;
        let cfg = &self.sh.cfg;
        if st.env_steps.load(Ordering::Relaxed) < cfg.algo.warmup_samples as u64
            || st.throttled_now.load(Ordering::Relaxed) > 0
        {
            return true;
        }
        let allowed =
            self.sh.store.version() / cfg.algo.collect_interval + cfg.runtime.actors as u64;
        st.collections.load(Ordering::Relaxed) < allowed
    }
}

impl Worker for ActorWorker {
    fn step(&mut self) -> Result<Flow> {
        if !self.may_collect() {
            std::thread::sleep(Duration::from_millis(2));
            return Ok(Flow::Continue);
        }
        self.sh.stats.collections.fetch_add(1, Ordering::Relaxed);
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

struct BufferWorker {
    sh: Arc<Shared>,
    id: usize,
    replay: ReplayBuffer,
    rng: Pcg64Mcg,
    pending: Option<HostBatch>,
    inserted: u64,
    sampled: u64,
    start: usize,
    throttled_since: Option<Instant>,
    warned: bool,
}

impl BufferWorker {
    fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        let cfg = &sh.cfg;
        let spec = task_spec(&cfg.task.name)?;
        let restored = sh.initial_replay.lock().expect("replay lock")[id].take();
        let replay = restored.unwrap_or_else(|| {
            ReplayBuffer::new(cfg.algo.buffer_capacity, spec.obs_dim, spec.act_dim)
        });
        let start = cfg.algo.warmup_samples.div_ceil(cfg.runtime.buffers).max(1);
        Ok(Self {
            rng: Pcg64Mcg::seed_from_u64(sh.seed(STREAM_BUFFER, id, inc)),
            inserted: replay.len() as u64,
            replay,
            pending: None,
            sampled: 0,
            start,
            throttled_since: None,
            warned: false,
            sh,
            id,
        })
    }

    fn insert(&mut self, e: Experience) {
        self.replay.push_rows(
            &e.obs,
            &e.act,
            &e.rew,
            &e.next_obs,
            &e.terminated,
            &e.truncated,
        );
        let n = e.rew.len() as u64;
        self.inserted += n;
        self.sh.stats.inserted.fetch_add(n, Ordering::Relaxed);
        self.sh.stored[self.id].store(self.replay.len() as u64, Ordering::Relaxed);
    }

    /// Whether the samples-per-insert bound allows another batch.
    fn rate_ok(&self) -> bool {
        let spi = self.sh.cfg.runtime.samples_per_insert;
        spi <= 0.0
            || (self.sampled + self.sh.cfg.algo.batch_size as u64) as f64
                <= spi * self.inserted as f64
    }

    fn set_throttled(&mut self, on: bool) {
        let st = &self.sh.stats;
        match (on, self.throttled_since) {
            (true, None) => {
                self.throttled_since = Some(Instant::now());
                st.throttled_now.fetch_add(1, Ordering::Relaxed);
                st.throttle_events.fetch_add(1, Ordering::Relaxed);
                if !self.warned {
                    self.warned = true;
                    eprintln!(
                        "async: buffer #{} throttled: replayed {} / inserted {} transitions would exceed \
                         runtime.samples_per_insert = {}; waiting for actors",
                        self.id,
                        self.sampled,
                        self.inserted,
                        self.sh.cfg.runtime.samples_per_insert
                    );
                }
            }
            (false, Some(t)) => {
                self.throttled_since = None;
                st.throttled_now.fetch_sub(1, Ordering::Relaxed);
                st.throttled_us
                    .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl Drop for BufferWorker {
    fn drop(&mut self) {
        self.set_throttled(false);
    }
}

impl Worker for BufferWorker {
    fn step(&mut self) -> Result<Flow> {
        match self.sh.ctl_rx[self.id].try_recv() {
            Ok(Ctl::Snapshot(reply)) => {
                let _ = reply.send(self.replay.clone());
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Ok(Flow::Stop),
        }
        let inbox = self.sh.inbox_rx[self.id].clone();
        while let Ok(e) = inbox.try_recv() {
            self.insert(e);
        }
        if self.pending.is_none() && self.replay.len() >= self.start {
            if self.rate_ok() {
                self.set_throttled(false);
                let b = self
                    .replay
                    .sample(self.sh.cfg.algo.batch_size, &mut self.rng);
                self.pending = Some(b);
            } else {
                self.set_throttled(true);
            }
        }
        match self.pending.take() {
            Some(b) => match self.sh.exp_tx.send_timeout(b, Duration::from_millis(5)) {
                Ok(()) => {
                    let n = self.sh.cfg.algo.batch_size as u64;
                    self.sampled += n;
                    self.sh.stats.sampled.fetch_add(n, Ordering::Relaxed);
                    self.sh.stats.batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(SendTimeoutError::Timeout(b)) => self.pending = Some(b),
                Err(SendTimeoutError::Disconnected(_)) => return Ok(Flow::Stop),
            },
            None => match recv_polled(&inbox, POLL) {
                Polled::Item(e) => self.insert(e),
                Polled::Empty => {}
                Polled::Closed => return Ok(Flow::Stop),
            },
        }
        Ok(Flow::Continue)
    }
}

struct LearnerWorker {
    sh: Arc<Shared>,
    id: usize,
    learner: Learner,
    params: Params,
    version: u64,
    made: u64,
    source: Box<dyn BatchSource>,
    sink: Box<dyn GradientSink>,
}

impl LearnerWorker {
    fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        let cfg = &sh.cfg;
        let nets = Nets::new(cfg, &task_spec(&cfg.task.name)?);
        let model = make_model(&cfg.task.name, cfg.task.model_mismatch)?;
        let seed = sh.seed(STREAM_LEARNER, id, inc);
        let n_step_env = match cfg.algo.name {
            AlgoName::MpgV1 | AlgoName::Ndpg | AlgoName::Nadp => {
                Some(make_env(&cfg.task.name, cfg.algo.batch_size, seed)?)
            }
            _ => None,
        };
        let learner = Learner::new(nets, cfg, model, n_step_env, seed);
        let snap = sh.store.latest();
        Ok(Self {
            params: snap.params(),
            version: snap.version,
            learner,
            made: 0,
            source: Box::new(ChannelBatchSource(sh.exp_rx.clone())),
            sink: Box::new(ChannelGradientSink(sh.grad_tx.clone())),
            sh,
            id,
        })
    }

    fn sync(&mut self) {
        if self.sh.store.version() != self.version {
            let s = self.sh.store.latest();
            self.params = s.params();
            self.version = s.version;
        }
    }
}

impl Worker for LearnerWorker {
    fn step(&mut self) -> Result<Flow> {
        let batch = match self.source.next_batch(POLL) {
            Polled::Item(b) => b,
            Polled::Empty => return Ok(Flow::Continue),
            Polled::Closed => return Ok(Flow::Stop),
        };
        self.sync();
        let tb = self.learner.targets(&self.params, batch);
        let delay = self.sh.cfg.algo.policy_delay;
        for r in 0..self.sh.cfg.algo.batch_reuse {
            if self.sh.stop.load(Ordering::Relaxed) {
                return Ok(Flow::Stop);
            }
            if r > 0 {
                self.sync();
            }
            let policy_step = self.made.is_multiple_of(delay);
            self.made += 1;
            let grads = self
                .learner
                .compute(&self.params, &tb, self.version, policy_step);
            self.sh.stats.grads.fetch_add(1, Ordering::Relaxed);
            let g = TaggedGrads {
                grads,
                version: self.version,
                learner: self.id,
            };
            if !self.sink.send(g, &self.sh.stop) {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }
}

// ---------------------------------------------------------------------------------------------
// Supervision

#[derive(Debug)]
enum Outcome {
    Finished,
    Failed(String),
    Panicked(String),
}

struct Event {
    role: Role,
    id: usize,
    incarnation: u32,
    outcome: Outcome,
}

fn build_worker(sh: &Arc<Shared>, role: Role, id: usize, inc: u32) -> Result<Box<dyn Worker>> {
    Ok(match role {
        Role::Actor => Box::new(ActorWorker::new(sh.clone(), id, inc)?),
        Role::Buffer => Box::new(BufferWorker::new(sh.clone(), id, inc)?),
        Role::Learner => Box::new(LearnerWorker::new(sh.clone(), id, inc)?),
    })
}

fn one_thread_pool() -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("cannot build a one-thread rayon pool")
}

fn spawn_worker(sh: &Arc<Shared>, role: Role, id: usize, inc: u32) -> Result<JoinHandle<()>> {
    let sh = sh.clone();
    std::thread::Builder::new()
        .name(format!("{role}-{id}"))
        .spawn(move || {
            let fault = sh
                .fault
                .filter(|f| f.role == role && f.id == id && inc == 0);
            let body = || -> Result<()> {
                let pool = one_thread_pool()?;
                pool.install(|| {
                    let mut w = build_worker(&sh, role, id, inc)?;
                    let mut steps = 0u64;
                    while !sh.stop.load(Ordering::Relaxed) {
                        if fault.is_some_and(|f| f.step == steps) {
                            panic!("injected test fault (runtime.inject_panic) in {role} #{id}");
                        }
                        steps += 1;
                        if w.step()? == Flow::Stop {
                            break;
                        }
                    }
                    Ok(())
                })
            };
            let outcome = match catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(())) => Outcome::Finished,
                Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
                Err(p) => Outcome::Panicked(super::panic_message(p.as_ref())),
            };
            let _ = sh.events.send(Event {
                role,
                id,
                incarnation: inc,
                outcome,
            });
        })
        .with_context(|| format!("cannot spawn {role} #{id}"))
}

struct Supervisor {
    sh: Arc<Shared>,
    events: Receiver<Event>,
    grad_rx: Receiver<TaggedGrads>,
    handles: Vec<JoinHandle<()>>,
    restarts: HashMap<(Role, usize), u32>,
    faults: Vec<String>,
}

impl Supervisor {
    fn start(cfg: &Config, snapshot: Snapshot, replay: Vec<Option<ReplayBuffer>>) -> Result<Self> {
        let r = &cfg.runtime;
        let (grad_tx, grad_rx) = bounded(r.gradient_queue);
        let (exp_tx, exp_rx) = bounded(r.experience_queue);
        let (ev_tx, ev_rx) = unbounded();
        let (mut inbox_tx, mut inbox_rx, mut ctl_tx, mut ctl_rx) = (vec![], vec![], vec![], vec![]);
        for _ in 0..r.buffers {
            let (t, rx) = bounded(BUFFER_INBOX);
            inbox_tx.push(t);
            inbox_rx.push(rx);
            let (t, rx) = bounded(4);
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
            stop: AtomicBool::new(false),
            store: ParamStore::new(snapshot),
            stats: Stats::default(),
            inbox_tx,
            inbox_rx,
            ctl_tx,
            ctl_rx,
            exp_tx,
            exp_rx,
            grad_tx,
            events: ev_tx,
            initial_replay: Mutex::new(replay),
            fault: r.inject_panic.as_deref().and_then(FaultSpec::parse),
            seed_base: derive_seed(cfg.train.seed ^ 0xA5A5, k),
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
    fn poll_events(&mut self) -> Result<()> {
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

    /// Copies of every buffer's replay contents (for a checkpoint).
    fn replay_snapshots(&self) -> Result<Vec<ReplayBuffer>> {
        let mut replies = Vec::new();
        for (i, tx) in self.sh.ctl_tx.iter().enumerate() {
            let (rt, rr) = bounded(1);
            tx.send_timeout(Ctl::Snapshot(rt), Duration::from_secs(10))
                .map_err(|_| anyhow!("buffer #{i} does not take requests"))?;
            replies.push(rr);
        }
        replies
            .into_iter()
            .enumerate()
            .map(|(i, rr)| {
                rr.recv_timeout(Duration::from_secs(60))
                    .map_err(|_| anyhow!("buffer #{i} did not send its replay contents"))
            })
            .collect()
    }

    /// Stop every worker and join the threads.
    fn shutdown(&mut self) {
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

// ---------------------------------------------------------------------------------------------
// The optimizer

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
    cfg: Config,
    out: PathBuf,
    nets: Nets,
    agent: Agent,
    k: u64,
    env_steps0: u64,
    wall_offset: f64,
    acc: Accum,
    staleness_acc: (f64, u64),
    nonfinite: NonFinite,
    log: Option<ProgressLog>,
    resumed: bool,
    quiet: bool,
    stop: Arc<AtomicBool>,
    time_limit: Option<Duration>,
    replay: Vec<Option<ReplayBuffer>>,
}

impl AsyncTrainer {
    /// A new run writing to `out` (which must not already hold a run).
    pub fn new(cfg: Config, out: &Path) -> Result<Self> {
        init_run_dir(&cfg, out)?;
        let mut t = Self::build(cfg, out)?;
        t.log = Some(ProgressLog::create(&out.join("progress.csv"))?);
        Ok(t)
    }

    /// Continue the run in `run` from its latest checkpoint (async or serial).
    pub fn resume(run: &Path) -> Result<Self> {
        let cfg = Config::load(&run.join("config.toml"), &[])?;
        let ckpt_dir = latest_checkpoint(run)?
            .with_context(|| format!("{} has no checkpoint to resume from", run.display()))?;
        let ck = Checkpoint::load(&ckpt_dir)?;
        let mut t = Self::build(cfg, run)?;
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
                t.replay[i] = Some(load_replay(&ck, &prefix, cap, o, a)?);
            }
        }
        t.log = Some(ProgressLog::truncate_after(&run.join("progress.csv"), t.k)?);
        t.resumed = true;
        Ok(t)
    }

    fn build(cfg: Config, out: &Path) -> Result<Self> {
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
    pub fn run(&mut self) -> Result<RunSummary> {
        let pool = one_thread_pool()?;
        pool.install(|| self.run_inner())
    }

    fn run_inner(&mut self) -> Result<RunSummary> {
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
                if !reused {
                    last_grads = (max_reuse > 0).then(|| g.clone());
                    reuse_left = max_reuse;
                }
                let stale = k.saturating_sub(g.version);
                if self
                    .nonfinite
                    .check(&g.grads, k, self.cfg.train.max_nonfinite_streak)?
                {
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
        result?;
        finished?;
        Ok(summary)
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

    fn env_steps(&self, sup: &Supervisor) -> u64 {
        self.env_steps0 + sup.sh.stats.env_steps.load(Ordering::Relaxed)
    }

    fn write_row(
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

    fn save_checkpoint(&mut self, sup: &Supervisor, wall: f64) -> Result<()> {
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
        let buffers = sup.replay_snapshots()?;
        ck.set_counter("async/buffers", buffers.len() as u64);
        for (i, rb) in buffers.iter().enumerate() {
            save_replay(&mut ck, &replay_prefix(i), rb);
        }
        let dir = self.out.join("checkpoints");
        ck.save(&dir.join(format!("ckpt-{:09}", self.k)))?;
        prune_checkpoints(&dir, self.cfg.train.keep_checkpoints)
    }
}

fn replay_prefix(i: usize) -> String {
    if i == 0 {
        "replay".to_string()
    } else {
        format!("replay{i}")
    }
}

/// `runtime.csv` writer (see the module docs for the columns).
struct RuntimeLog {
    file: File,
    last: Instant,
    prev: [u64; 3],
    prev_k: u64,
    stale: (u64, u64, u64),
}

impl RuntimeLog {
    fn open(path: &Path, k: u64) -> Result<Self> {
        let fresh = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if fresh {
            writeln!(file, "{}", RUNTIME_COLUMNS.join(","))?;
        }
        Ok(Self {
            file,
            last: Instant::now(),
            prev: [0; 3],
            prev_k: k,
            stale: (0, 0, 0),
        })
    }

    fn staleness(&mut self, s: u64) {
        self.stale.0 += s;
        self.stale.1 += 1;
        self.stale.2 = self.stale.2.max(s);
    }

    fn maybe_write(&mut self, k: u64, wall: f64, sup: &Supervisor, force: bool) -> Result<()> {
        let dt = self.last.elapsed().as_secs_f64();
        if !force && dt < 1.0 {
            return Ok(());
        }
        let st = &sup.sh.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let now = [get(&st.env_steps), get(&st.batches), get(&st.grads)];
        let rate = |i: usize| (now[i] - self.prev[i]) as f64 / dt.max(1e-9);
        let (inserted, sampled) = (get(&st.inserted), get(&st.sampled));
        let stored: u64 = sup.sh.stored.iter().map(get).sum();
        let (s_sum, s_n, s_max) = std::mem::take(&mut self.stale);
        let row = [
            k.to_string(),
            format!("{wall:.3}"),
            sup.grad_rx.len().to_string(),
            sup.sh.exp_rx.len().to_string(),
            stored.to_string(),
            inserted.to_string(),
            sampled.to_string(),
            get(&st.throttle_events).to_string(),
            format!("{:.3}", get(&st.throttled_us) as f64 * 1e-6),
            format!("{:.1}", rate(0)),
            format!("{:.2}", rate(1)),
            format!("{:.2}", rate(2)),
            format!("{:.2}", (k - self.prev_k) as f64 / dt.max(1e-9)),
            if s_n > 0 {
                format!("{:.3}", s_sum as f64 / s_n as f64)
            } else {
                String::new()
            },
            if s_n > 0 {
                s_max.to_string()
            } else {
                String::new()
            },
            get(&st.restarts).to_string(),
            if inserted > 0 {
                format!("{:.4}", sampled as f64 / inserted as f64)
            } else {
                String::new()
            },
        ];
        writeln!(self.file, "{}", row.join(","))?;
        self.file.flush()?;
        self.prev = now;
        self.prev_k = k;
        self.last = Instant::now();
        Ok(())
    }
}
