//! `mixpg analyze-bias`: a thin shell over [`crate::analysis::analyze_bias`].

use std::path::PathBuf;

use anyhow::Result;

use crate::analysis::{BiasOptions, analyze_bias};
use crate::report::bias::BiasRow;

/// Arguments of `mixpg analyze-bias`.
#[derive(Debug, Clone, clap::Args)]
pub struct BiasArgs {
    /// The run directory (its `config.toml` and `checkpoints/`).
    #[arg(long)]
    pub run: PathBuf,
    /// Model rollout horizons n of the model-driven PG, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,5,10,25,50")]
    pub horizons: Vec<usize>,
    /// Number K of replayed states (sampled once from the latest checkpoint's replay buffer
    /// and used at every checkpoint).
    #[arg(long, default_value_t = 256)]
    pub states: usize,
    /// Horizon N of the reference PG through the exact model.
    #[arg(long, default_value_t = 200)]
    pub reference_horizon: usize,
    /// Seed of the state sample and of the model noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory for `bias.csv` and `bias.png` (default: the run directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Run `mixpg analyze-bias`.
pub fn run(args: &BiasArgs) -> Result<Vec<BiasRow>> {
    let opts = BiasOptions {
        horizons: args.horizons.clone(),
        states: args.states,
        reference_horizon: args.reference_horizon,
        seed: args.seed,
    };
    analyze_bias(&args.run, &opts, args.out.as_ref().unwrap_or(&args.run))
}
