//! Execution: the serial trainer (seed-reproducible), the asynchronous trainer (the paper's
//! Optimizer / Actors / Buffers / Learners architecture, not bit-reproducible), the evaluator,
//! the progress log, the throughput benchmark and a saved policy loaded for inference.

pub mod asynchronous;
pub mod bench;
mod core;
pub mod evaluator;
pub mod export;
pub mod limits;
mod metrics;
pub mod progress;
mod protobuf;
pub mod roles;
pub mod rundir;
mod seeds;
pub mod serial;
pub mod tensorboard;

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
/// `on_start` receives the trainer's stop flag before it starts (the CLI hooks it to Ctrl-C,
/// SIGTERM and SIGHUP); the result is the iteration reached when the run was stopped before
/// its last iteration (a final row and checkpoint are written then), `None` when it finished.
pub fn train(
    cfg: Config,
    out: &Path,
    on_start: impl FnOnce(Arc<AtomicBool>),
) -> Result<Option<u64>> {
    match cfg.runtime.mode {
        Mode::Serial => {
            let mut trainer = Trainer::new(cfg, out)?;
            let stop = trainer.stop_handle();
            on_start(stop.clone());
            trainer.run()?;
            Ok(stop
                .load(std::sync::atomic::Ordering::SeqCst)
                .then(|| trainer.iteration()))
        }
        Mode::Async => {
            let mut trainer = AsyncTrainer::new(cfg, out)?;
            on_start(trainer.stop_handle());
            let summary = trainer.run()?;
            Ok(summary.stopped_early.then(|| trainer.iteration()))
        }
        Mode::Ray => Err(ray_mode_error()),
    }
}

/// The error of a `runtime.mode = "ray"` run started outside the Ray driver.
pub fn ray_mode_error() -> anyhow::Error {
    anyhow::anyhow!(
        "runtime.mode = \"ray\" runs on Ray, driven from Python: use `python -m mixpg.ray train \
         --config FILE --out DIR` (or `python -m mixpg.ray resume --run DIR`), or set \
         runtime.mode = \"async\" for the thread runtime"
    )
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
