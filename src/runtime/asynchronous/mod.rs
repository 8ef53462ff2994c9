//! The asynchronous learning architecture of the paper (section IV-C, Fig. 2), with threads and
//! bounded channels. `runtime.mode = "async"` selects it.
//!
//! # Roles and what each thread owns
//! Each worker thread drives a step-wise role object of [`crate::runtime::roles`] (the Ray
//! driver, `python -m mixpg.ray`, drives the same ones); the thread adds the channels, pacing
//! and supervision below.
//! - **Optimizer** (the thread that calls [`AsyncTrainer::run`]): owns the latest parameters
//!   and Adam states ([`Agent`](crate::algo::Agent)), the receiving end of the gradient queue, the progress log and
//!   the checkpoints. Its update loop takes one gradient at a time, applies it
//!   ([`Agent::apply_step`](crate::algo::Agent::apply_step); the policy, temperature and targets update when the gradient carries
//!   a policy gradient), counts the iteration (iteration = gradients applied, or skipped as
//!   non-finite) and publishes a new parameter snapshot. It also plays the **Evaluator**: at
//!   every `train.eval_interval` iteration (and the last) it evaluates the parameters of exactly
//!   that iteration with its own evaluation environment, as the serial trainer does, so the
//!   learners keep computing (their gradients queue up) while it evaluates.
//! - **Actors** (`runtime.actors` threads): a local copy of the policy, their own vectorized
//!   environment (`task.num_agents` agents) and exploration RNG. Each collection of
//!   `algo.collect_steps` steps goes to a uniformly random buffer.
//! - **Buffers** (`runtime.buffers` threads): each owns a [`ReplayBuffer`](crate::replay::ReplayBuffer) of capacity
//!   `algo.buffer_capacity` (per buffer, as in the reference), inserts what the actors send and
//!   keeps sampling batches of `algo.batch_size` into the experience queue once it holds
//!   `ceil(algo.warmup_samples / buffers)` transitions.
//! - **Learners** (`runtime.learners` threads): local parameters, their own prior model, true
//!   environment for n-step targets and RNG. Each takes a batch, computes its targets
//!   ([`Learner::targets`](crate::algo::Learner::targets)) and `algo.batch_reuse` gradients from it ([`Learner::compute`](crate::algo::Learner::compute), every
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
//! The optimizer publishes an `Arc` of an immutable `Snapshot` (host `f32` values of every
//! network plus its version = the iteration counter after the update) in a `ParamStore`.
//! burn's `Tensor` is `Send` but the parameter tensor cache of a [`ParamSet`](crate::nn::ParamSet) is per thread by
//! design here: workers read the version (an atomic), and only when it changed clone the `Arc`
//! and rebuild their local [`Params`](crate::algo::Params). Staleness of a gradient is the optimizer's iteration when
//! it is applied minus the version it was computed from.
//!
//! # Rate limits
//! - Samples per insert: a buffer samples a batch only while `sampled + batch_size ≤
//!   runtime.samples_per_insert × inserted` (counted in transitions, per buffer; 0 disables), as
//!   Reverb's rate limiter does; otherwise it waits for actors (polling its inbox with a
//!   timeout) and counts a throttle event (reported on stderr the first time and in
//!   `runtime.csv`).
//! - Actors are paced by the optimizer like the serial loop: they start at most one collection
//!   per `algo.collect_interval` updates applied in this session (plus one in flight per actor),
//!   so on few cores they do not take the learners' CPU. They run unpaced while a buffer is
//!   throttled (so the two limits cannot wait on each other) or holds less than its warm-up
//!   share (the warm-up, a restarted empty buffer); unpaced collections do not use up the
//!   budget. A resumed run whose restored buffers hold their share is paced from the start.
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
//! writes the progress row and a checkpoint of the current iteration (asking each running
//! buffer for a copy of its replay contents; a buffer stopped by a fault is left out and
//! starts empty after a resume), then sets the workers' stop flag and joins every thread.
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

mod actor;
mod buffer;
mod group;
mod learner;
mod optimizer;
mod shared;
mod snapshot;
mod supervisor;
mod transport;

use std::time::Duration;

pub use super::roles::RUNTIME_COLUMNS;
pub use group::LearnerGroup;
pub use optimizer::{AsyncTrainer, RunSummary};

/// Longest blocking wait before a role re-checks the stop flag.
pub const POLL: Duration = Duration::from_millis(20);
/// Restarts allowed per worker (role, id) before the run stops.
pub const MAX_RESTARTS: u32 = 5;
/// Capacity of each buffer's inbox (experience blocks from the actors).
pub const BUFFER_INBOX: usize = 4;
/// Capacity of each buffer's control queue (replay snapshot requests).
pub(super) const CTL_QUEUE: usize = 4;
/// How long a buffer offers a batch to a full experience queue before it serves its inbox.
pub(super) const BATCH_OFFER: Duration = Duration::from_millis(5);
/// How long a paced actor sleeps before it asks the optimizer again.
pub(super) const PACED_SLEEP: Duration = Duration::from_millis(2);
/// Longest wait for a buffer to accept a replay snapshot request.
pub(super) const SNAPSHOT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a running buffer's replay contents.
pub(super) const SNAPSHOT_REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a snapshot request is sent again after its reader died (a buffer restarted).
pub(super) const MAX_SNAPSHOT_RESENDS: u32 = 3;
