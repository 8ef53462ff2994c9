//! Execution: the serial trainer (seed-reproducible), the asynchronous trainer (the paper's
//! Optimizer / Actors / Buffers / Learners architecture, not bit-reproducible), the evaluator,
//! the progress log, the throughput benchmark and a saved policy loaded for inference.

pub mod asynchronous;
pub mod bench;
pub mod evaluator;
pub mod progress;
pub mod serial;

pub mod saved_policy;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Result;

pub use asynchronous::{AsyncTrainer, RunSummary};
pub use evaluator::{EvalResult, evaluate};
pub use saved_policy::SavedPolicy;
pub use serial::Trainer;

use crate::config::{Config, Mode};

/// Train one run into `out` in the config's `runtime.mode`, as `mixpg train` does.
/// `on_async` receives an asynchronous trainer's stop flag before it starts (the CLI hooks it
/// to Ctrl-C); the summary is `None` for a serial run.
pub fn train(
    cfg: Config,
    out: &Path,
    on_async: impl FnOnce(Arc<AtomicBool>),
) -> Result<Option<RunSummary>> {
    match cfg.runtime.mode {
        Mode::Serial => {
            Trainer::new(cfg, out)?.run()?;
            Ok(None)
        }
        Mode::Async => {
            let mut trainer = AsyncTrainer::new(cfg, out)?;
            on_async(trainer.stop_handle());
            Ok(Some(trainer.run()?))
        }
    }
}

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
