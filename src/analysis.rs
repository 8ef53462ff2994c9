//! Theorem 2 measured: the data-driven and model-driven policy gradients' bias against a
//! reference gradient at every saved checkpoint of a run (see [`crate::algo::bias`]), written as
//! `bias.csv` and `bias.png`. `mixpg analyze-bias` and the Python package call this.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::algo::bias::{BiasSetup, gradient_bias};
use crate::algo::learned::{CHECKPOINT_PREFIX, LearnedModel, Selection};
use crate::algo::schedule::configured_weights;
use crate::algo::{Agent, Nets};
use crate::checkpoint::Checkpoint;
use crate::config::{Config, ModelKind};
use crate::env::{PriorModel, Task, lookup};
use crate::replay::ReplayBuffer;
use crate::report::bias::{BiasRow, plot_bias, write_bias_csv};
use crate::runtime::rundir::checkpoints_newest_first;

/// What [`analyze_bias`] measures.
#[derive(Debug, Clone)]
pub struct BiasOptions {
    /// Model rollout horizons n of the model-driven PG.
    pub horizons: Vec<usize>,
    /// Number K of replayed states (sampled once from the latest checkpoint's replay buffer
    /// and used at every checkpoint).
    pub states: usize,
    /// Horizon N of the reference PG through the exact model.
    pub reference_horizon: usize,
    /// Seed of the state sample and of the model noise.
    pub seed: u64,
}

impl Default for BiasOptions {
    fn default() -> Self {
        Self {
            horizons: vec![0, 1, 2, 5, 10, 25, 50],
            states: 256,
            reference_horizon: 200,
            seed: 0,
        }
    }
}

/// Measure the bias at every checkpoint of `run` (of a registered task); write `bias.csv` and
/// `bias.png` into `out`.
pub fn analyze_bias(run: &Path, opts: &BiasOptions, out: &Path) -> Result<Vec<BiasRow>> {
    let cfg = Config::load(&run.join("config.toml"), &[])?;
    analyze_bias_task(run, &lookup(&cfg.task.name)?, opts, out)
}

/// [`analyze_bias`] for a run of `task`, which needs an exact model of its simulator (the
/// reference gradient runs through it). The model-driven gradients run through the run's prior
/// model or, with `task.model = "learned"`, through the learned ensemble saved with each
/// checkpoint (its mean).
pub fn analyze_bias_task(
    run: &Path,
    task: &Task,
    opts: &BiasOptions,
    out: &Path,
) -> Result<Vec<BiasRow>> {
    ensure!(opts.states >= 1, "--states must be at least 1");
    ensure!(
        !opts.horizons.is_empty(),
        "--horizons needs at least one value"
    );
    ensure!(
        opts.reference_horizon >= 1,
        "--reference-horizon must be at least 1"
    );
    let cfg = Config::load(&run.join("config.toml"), &[])?;
    let mut ckpts = checkpoints_newest_first(run)?;
    ckpts.reverse();
    let Some((_, latest)) = ckpts.last() else {
        bail!(
            "{} has no checkpoint (train with train.checkpoint_interval set, and \
             train.keep_checkpoints > 1 to see several training stages)",
            run.display()
        );
    };
    ensure!(
        task.has_exact_model(),
        "analyze-bias takes its reference gradient through an exact model of the simulator, \
         and task `{}` has none (Task::with_exact_model)",
        task.name()
    );
    let spec = task.spec();
    let nets = Nets::new(&cfg, spec);
    let ck = Checkpoint::load(latest)?;
    let replay = ReplayBuffer::restore_from(
        &ck,
        "replay",
        cfg.algo.buffer_capacity,
        spec.obs_dim,
        spec.act_dim,
    )
    .with_context(|| {
        format!(
            "{} holds no serial replay buffer (analyze-bias reads serial runs)",
            latest.display()
        )
    })?;
    ensure!(
        !replay.is_empty(),
        "the replay buffer of {} is empty",
        latest.display()
    );
    let states = replay
        .sample(opts.states, &mut Pcg64Mcg::seed_from_u64(opts.seed))
        .obs;
    // A learned model is the one saved with each checkpoint, taken as the ensemble mean.
    let mut learned =
        (cfg.task.model == ModelKind::Learned).then(|| LearnedModel::new(spec, &cfg.model, 0));
    let prior = match learned {
        Some(_) => None,
        None => Some(task.make_model(cfg.task.model_mismatch)?),
    };
    let exact = task.make_model(false)?;
    let mut agent = Agent::new(&nets, &cfg, &mut Pcg64Mcg::seed_from_u64(0));
    let mut rows = Vec::new();
    for (k, dir) in &ckpts {
        let ck = Checkpoint::load(dir)?;
        agent.load(&ck)?;
        if let Some(m) = learned.as_mut() {
            m.load(&ck, CHECKPOINT_PREFIX)?;
            m.select(Selection::Mean);
        }
        let model: &dyn PriorModel = match (&learned, &prior) {
            (Some(m), _) => m,
            (None, Some(p)) => p.as_ref(),
            (None, None) => unreachable!("a learned or a prior model"),
        };
        let setup = BiasSetup {
            nets: &nets,
            cfg: &cfg,
            model,
            exact: exact.as_ref(),
            states: &states,
            reference_horizon: opts.reference_horizon,
            seed: opts.seed,
        };
        let (ref_norm, biases) = gradient_bias(&setup, &agent.params, &opts.horizons);
        let (w_data, w_model) = configured_weights(&cfg, *k);
        for b in biases {
            rows.push(BiasRow {
                iteration: *k,
                estimator: b.estimator.to_string(),
                horizon: b.horizon,
                relative_bias: b.relative_bias,
                cosine: b.cosine,
                grad_norm: b.norm,
                reference_norm: ref_norm,
                w_data,
                w_model,
            });
        }
        eprintln!("analyze-bias: checkpoint {k} done");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_bias_csv(&out.join("bias.csv"), &rows)?;
    let shown = if opts.horizons.contains(&cfg.algo.horizon) {
        cfg.algo.horizon
    } else {
        *opts.horizons.iter().max().expect("horizons is not empty")
    };
    plot_bias(&out.join("bias.png"), &rows, shown)?;
    Ok(rows)
}
