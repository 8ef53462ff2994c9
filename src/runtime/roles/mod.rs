//! The roles of the asynchronous architecture as step-wise objects without threads or
//! channels: [`ActorCore`] collects one block of experience from given parameters,
//! [`BufferCore`] inserts experience and samples batches under the samples-per-insert bound,
//! [`LearnerCore`] computes version-tagged gradients from a snapshot and a batch, and
//! [`Optimizer`] applies them, evaluates, logs and checkpoints. The thread runtime
//! ([`super::asynchronous`]) drives them from its worker threads; the Ray driver
//! (`python -m mixpg.ray`, through the Python package) drives them from Ray actors. The
//! objects that cross between roles ([`Snapshot`], [`Experience`], replayed batches,
//! [`TaggedGrads`], replay contents) have compact byte encodings (`to_bytes` / `from_bytes`).

mod actor;
mod buffer;
mod codec;
mod learner;
mod messages;
mod optimizer;
mod runtime_log;

pub use actor::ActorCore;
pub use buffer::BufferCore;
pub use learner::LearnerCore;
pub use messages::{
    Experience, Snapshot, TaggedGrads, batch_from_bytes, batch_to_bytes, replay_from_bytes,
    replay_to_bytes,
};
pub use optimizer::Optimizer;
pub use runtime_log::RuntimeCounters;

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

/// The random streams of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStream {
    /// An actor's environment.
    ActorEnv,
    /// An actor's exploration noise.
    ActorCollect,
    /// An actor's choice of buffer.
    ActorRoute,
    /// A buffer's sampling.
    Buffer,
    /// A learner (target noise, n-step environments).
    Learner,
}

/// The seed of `stream` for worker `id`'s `incarnation` (0, then one more per restart) in a
/// session that started at iteration `start` of a run seeded with `train_seed`; threads and
/// Ray derive their workers' seeds alike.
pub fn worker_seed(
    train_seed: u64,
    start: u64,
    stream: WorkerStream,
    id: usize,
    incarnation: u32,
) -> u64 {
    use crate::runtime::seeds::{
        STREAM_ACTOR, STREAM_BUFFER, STREAM_COLLECT, STREAM_ENV, STREAM_LEARNER, derive_seed,
    };
    let stream = match stream {
        WorkerStream::ActorEnv => STREAM_ENV,
        WorkerStream::ActorCollect => STREAM_COLLECT,
        WorkerStream::ActorRoute => STREAM_ACTOR,
        WorkerStream::Buffer => STREAM_BUFFER,
        WorkerStream::Learner => STREAM_LEARNER,
    };
    let base = derive_seed(train_seed ^ 0xA5A5, start);
    derive_seed(
        derive_seed(base, stream),
        ((id as u64) << 16) | incarnation as u64,
    )
}
