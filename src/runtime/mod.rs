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

use anyhow::{Result, bail};

pub use asynchronous::{AsyncTrainer, RunSummary};
pub use evaluator::{EvalResult, evaluate};
pub use saved_policy::SavedPolicy;
pub use serial::Trainer;

use crate::config::{Config, Mode, ModelKind, ValueTarget};
use crate::env::Task;
use crate::nn::Kernels;

/// Train one run into `out` in the config's `runtime.mode`, as `mixpg train` does, on the
/// registered task `task.name`. `on_start` receives the trainer's stop flag before it starts
/// (the CLI hooks it to Ctrl-C, SIGTERM and SIGHUP); the result is the iteration reached when
/// the run was stopped before its last iteration (a final row and checkpoint are written
/// then), `None` when it finished.
pub fn train(
    cfg: Config,
    out: &Path,
    on_start: impl FnOnce(Arc<AtomicBool>),
) -> Result<Option<u64>> {
    let task = crate::env::lookup(&cfg.task.name)?;
    train_task(cfg, task, out, on_start)
}

/// [`train`] on the task `task` (a value: registered or not; `cfg.task.name` must be its name).
pub fn train_task(
    cfg: Config,
    task: Task,
    out: &Path,
    on_start: impl FnOnce(Arc<AtomicBool>),
) -> Result<Option<u64>> {
    match cfg.runtime.mode {
        Mode::Serial => {
            let mut trainer = Trainer::with_task(cfg, task, out)?;
            let stop = trainer.stop_handle();
            on_start(stop.clone());
            trainer.run()?;
            Ok(stop
                .load(std::sync::atomic::Ordering::SeqCst)
                .then(|| trainer.iteration()))
        }
        Mode::Async => {
            let mut trainer = AsyncTrainer::with_task(cfg, task, out)?;
            on_start(trainer.stop_handle());
            let summary = trainer.run()?;
            Ok(summary.stopped_early.then(|| trainer.iteration()))
        }
        Mode::Ray => Err(ray_mode_error()),
    }
}

/// Continue the run of `task` in `run` from its newest checkpoint that loads, in the run's
/// `runtime.mode` (a Ray run continues on threads); the result is as [`train_task`]'s.
pub fn resume_task(
    run: &Path,
    task: Task,
    on_start: impl FnOnce(Arc<AtomicBool>),
) -> Result<Option<u64>> {
    let cfg = Config::load(&run.join("config.toml"), &[])?;
    match cfg.runtime.mode {
        Mode::Serial => {
            let mut trainer = Trainer::resume_task(run, task)?;
            let stop = trainer.stop_handle();
            on_start(stop.clone());
            trainer.run()?;
            Ok(stop
                .load(std::sync::atomic::Ordering::SeqCst)
                .then(|| trainer.iteration()))
        }
        Mode::Async | Mode::Ray => {
            let mut trainer = AsyncTrainer::resume_task(run, task)?;
            on_start(trainer.stop_handle());
            let summary = trainer.run()?;
            Ok(summary.stopped_early.then(|| trainer.iteration()))
        }
    }
}

/// Check that `cfg` can run on `task` before anything is built: the config names the task,
/// a model-driven algorithm has a prior model, n-step targets have where to be rolled out.
/// The error names the key to change.
pub fn check_task(cfg: &Config, task: &Task) -> Result<()> {
    let spec = task.spec();
    let algo = cfg.algo.name;
    if cfg.task.name != spec.name {
        bail!(
            "task.name = {:?} but the run is given the task `{}`",
            cfg.task.name,
            spec.name
        );
    }
    let model_kind = if cfg.task.model_mismatch {
        "prior model"
    } else {
        "exact model (task.model_mismatch = false)"
    };
    let has_model = if cfg.task.model_mismatch {
        task.has_model()
    } else {
        task.has_exact_model()
    };
    let learned = cfg.task.model == ModelKind::Learned;
    if algo.needs_model() && !has_model && !learned {
        bail!(
            "algo.name = {:?} learns through a differentiable {model_kind}, and task `{}` has \
             none; give the task one, or use a model-free algorithm (td3, sac, ddpg, ndpg)",
            algo.as_str(),
            spec.name
        );
    }
    if algo.needs_model() && !learned && cfg.network.kernels == Kernels::Autodiff {
        let model = task.make_model(cfg.task.model_mismatch)?;
        if model.tensor().is_none() {
            bail!(
                "network.kernels = \"autodiff\" differentiates the prior model with burn, and the \
                 model of task `{}` has no burn-tensor step; use network.kernels = \"fused\"",
                spec.name
            );
        }
    }
    match crate::algo::n_step_source(cfg) {
        Some(ValueTarget::Env) if !spec.settable => bail!(
            "algo.value_target = \"env\" rolls {}'s n-step targets out in the true environment \
             reset to replayed states, and task `{}`'s environment cannot be set to a state; \
             use algo.value_target = \"replay\" (the replay's stored trajectories) or \"model\"",
            algo.as_str(),
            spec.name
        ),
        Some(ValueTarget::Model) if !has_model => bail!(
            "algo.value_target = \"model\" rolls n-step targets out in the {model_kind}, and \
             task `{}` has none; use algo.value_target = \"replay\"",
            spec.name
        ),
        _ => {}
    }
    Ok(())
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
