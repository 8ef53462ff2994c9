//! Execution: the serial trainer (seed-reproducible), the evaluator and the progress log.

pub mod evaluator;
pub mod progress;
pub mod serial;

pub use evaluator::{EvalResult, evaluate};
pub use serial::Trainer;
