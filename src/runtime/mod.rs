//! Execution: the serial trainer (seed-reproducible), the asynchronous trainer (the paper's
//! Optimizer / Actors / Buffers / Learners architecture, not bit-reproducible), the evaluator,
//! the progress log and the throughput benchmark.

pub mod asynchronous;
pub mod bench;
pub mod evaluator;
pub mod progress;
pub mod serial;

pub use asynchronous::{AsyncTrainer, RunSummary};
pub use evaluator::{EvalResult, evaluate};
pub use serial::Trainer;
