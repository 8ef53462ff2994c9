//! Execution: the serial trainer (seed-reproducible), the asynchronous trainer (the paper's
//! Optimizer / Actors / Buffers / Learners architecture, not bit-reproducible), the evaluator,
//! the progress log and the throughput benchmark.

pub mod asynchronous;
pub mod bench;
mod core;
pub mod evaluator;
mod metrics;
pub mod progress;
pub mod rundir;
mod seeds;
pub mod serial;

pub use asynchronous::{AsyncTrainer, RunSummary};
pub use evaluator::{EvalResult, evaluate};
pub use serial::Trainer;

/// The message of a caught panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}
