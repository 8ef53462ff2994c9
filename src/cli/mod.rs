//! The `mixpg` command line.

pub mod bench;
pub mod bias;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::algo::{Agent, Nets};
use crate::config::{Config, Mode};
use crate::env::{StepOut, check_env, lookup, registered};
use crate::runtime::export::{ExportFormat, export};
use crate::runtime::rundir::load_latest_checkpoint;
use crate::runtime::{AsyncTrainer, Trainer, evaluate};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Mixed Policy Gradient: off-policy RL driven jointly by data and model.
#[derive(Debug, Parser)]
#[command(name = "mixpg", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one (task, algorithm, seed) run, in the mode of `runtime.mode`.
    ///
    /// `serial` is bit-reproducible from the seed. `async` runs the paper's asynchronous
    /// architecture (runtime.actors / buffers / learners threads) and is NOT bit-reproducible:
    /// the order in which gradients are applied depends on thread scheduling. In both modes
    /// Ctrl-C, SIGTERM and SIGHUP stop the run and write the progress row and a final
    /// checkpoint; a second signal exits at once.
    Train(TrainArgs),
    /// Continue a run from its newest checkpoint that loads (in the run's `runtime.mode`).
    ///
    /// An async run continues from its last checkpoint (parameters, optimiser states, the
    /// replay contents of every buffer, counters); it does not continue bit-identically.
    Resume(ResumeArgs),
    /// Measure MPG's update throughput: serial, async with 1 and 2 learners, and n-step DPG's
    /// serial update time (Fig. 6), plus TD3 and SAC serial iterations/s with fused and
    /// autodiff kernels, printed as a table.
    BenchThroughput(ThroughputArgs),
    /// Evaluate a run's newest saved policy that loads.
    Eval(EvalArgs),
    /// List the tasks with their dimensions and bounds.
    Tasks,
    /// Run a fixed policy in a task's simulator and print the episode returns.
    Rollout(RolloutArgs),
    /// Check a config file (with overrides) and print the resolved configuration.
    Config(ConfigArgs),
    /// Run a resumable (task, algorithm, seed) grid, then write its report.
    Bench(bench::BenchArgs),
    /// Write Table I and the figures from a runs directory.
    Report(bench::ReportArgs),
    /// Export a run's deterministic policy for a controller: an ONNX model, one C99 file or one
    /// Rust file (observation in, action in the task's units out, scaling and clipping
    /// included).
    Export(ExportArgs),
    /// Theorem 2 measured: at every checkpoint of a run, the relative bias of the data-driven
    /// and the model-driven PGs (per horizon) against a reference PG through the exact model;
    /// writes `bias.csv` and `bias.png`.
    AnalyzeBias(bias::BiasArgs),
}

/// Arguments of `mixpg resume`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run directory (as given to `train --out`).
    #[arg(long)]
    pub run: PathBuf,
}

/// Arguments of `mixpg eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Episodes (default: the run's train.eval_episodes).
    #[arg(long)]
    pub episodes: Option<usize>,
    /// Seed of the evaluation episodes' initial states.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Arguments of `mixpg export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The run directory (its newest checkpoint is exported).
    #[arg(long)]
    pub run: PathBuf,
    /// `onnx`, `c` (C99) or `rust`.
    #[arg(long, value_parser = ExportFormat::parse)]
    pub format: ExportFormat,
    /// The file to write (its directory must exist).
    #[arg(long)]
    pub out: PathBuf,
}

/// A fixed policy for `mixpg rollout`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FixedPolicy {
    /// Uniform random actions within the bounds.
    Random,
    /// The zero action.
    Zero,
}

/// Arguments of `mixpg rollout`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// Task name (see `mixpg tasks`).
    #[arg(long)]
    pub task: String,
    /// The policy.
    #[arg(long, value_enum, default_value_t = FixedPolicy::Random)]
    pub policy: FixedPolicy,
    /// Episodes, run in parallel as agents.
    #[arg(long, default_value_t = 5)]
    pub episodes: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Arguments of `mixpg train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Config file (TOML), e.g. configs/path_tracking/mpg_v1.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Output directory of the run.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed (overrides train.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of iterations (overrides train.iterations).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Override a config value, e.g. --set algo.gamma=0.99 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Start even if the run's estimated memory exceeds the memory available (sets
    /// train.skip_memory_check = true, kept for `mixpg resume`).
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `mixpg bench-throughput`.
#[derive(Debug, clap::Args)]
pub struct ThroughputArgs {
    /// MPG config file.
    #[arg(long, default_value = "configs/path_tracking/mpg_v1.toml")]
    pub config: PathBuf,
    /// n-step DPG config file (default: ndpg.toml next to --config).
    #[arg(long)]
    pub ndpg_config: Option<PathBuf>,
    /// Wall seconds per setting.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Learner counts of the async settings (repeatable).
    #[arg(long = "learners", default_values_t = [1usize, 2])]
    pub learners: Vec<usize>,
    /// Add a setting with the most learners and the optimizer re-applying the last gradient
    /// up to this many times while the queue is empty (reference code: 25; 0 skips it).
    #[arg(long, default_value_t = 25)]
    pub grad_reuse: u64,
    /// Directory of the TD3 / SAC configs timed with both `network.kernels` settings.
    #[arg(long, default_value = "configs/pendulum")]
    pub baselines: PathBuf,
    /// Wall seconds per TD3 / SAC setting (0 skips them).
    #[arg(long, default_value_t = 10.0)]
    pub baseline_seconds: f64,
    /// Override a config value of all configs (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Arguments of `mixpg config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Config file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl TrainArgs {
    /// The config with the file, `--set`, `--force`, `--seed` and `--iterations` applied, in
    /// that order.
    pub fn resolve(&self) -> Result<Config> {
        let mut sets = self.set.clone();
        if self.force {
            sets.push("train.skip_memory_check=true".to_string());
        }
        Config::load_for_run(&self.config, &sets, self.seed, self.iterations)
    }
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let stopped = crate::runtime::train(args.resolve()?, &args.out, stop_on_signals)?;
            if let Some(k) = stopped {
                eprintln!(
                    "stopped at iteration {k} (checkpoint written; `mixpg resume` continues)"
                );
            }
            eprintln!("run written to {}", args.out.display());
            show_run(&args.out);
            Ok(())
        }
        Command::Resume(args) => {
            let cfg = Config::load(&args.run.join("config.toml"), &[])?;
            match cfg.runtime.mode {
                Mode::Serial => {
                    let trainer = Trainer::resume(&args.run)?;
                    eprintln!(
                        "resuming {} at iteration {}",
                        args.run.display(),
                        trainer.iteration()
                    );
                    run_serial(trainer)
                }
                Mode::Async | Mode::Ray => {
                    let trainer = AsyncTrainer::resume(&args.run)?;
                    let how = if cfg.runtime.mode == Mode::Ray {
                        "a Ray run, continued by the thread runtime"
                    } else {
                        "async"
                    };
                    eprintln!(
                        "resuming {} ({how}) at iteration {}",
                        args.run.display(),
                        trainer.iteration()
                    );
                    run_async(trainer)
                }
            }
        }
        Command::BenchThroughput(args) => {
            let rows = crate::runtime::bench::run(&crate::runtime::bench::BenchOptions {
                config: args.config,
                ndpg_config: args.ndpg_config,
                set: args.set,
                seconds: args.seconds,
                learners: args.learners,
                grad_reuse: args.grad_reuse,
                baselines: (args.baseline_seconds > 0.0).then_some(args.baselines),
                baseline_seconds: args.baseline_seconds,
            })?;
            print!("{}", crate::runtime::bench::table(&rows));
            Ok(())
        }
        Command::Eval(args) => eval(&args),
        Command::Tasks => {
            println!(
                "{:<14} {:>7} {:>7} {:>8}  action bounds",
                "task", "obs_dim", "act_dim", "episode"
            );
            for task in registered() {
                let s = task.spec();
                let bounds: Vec<String> = s
                    .action_low
                    .iter()
                    .zip(&s.action_high)
                    .map(|(l, h)| format!("[{l}, {h}]"))
                    .collect();
                println!(
                    "{:<14} {:>7} {:>7} {:>8}  {}",
                    s.name,
                    s.obs_dim,
                    s.act_dim,
                    s.episode_len,
                    bounds.join(" ")
                );
            }
            Ok(())
        }
        Command::Rollout(args) => rollout(&args),
        Command::Config(args) => {
            let cfg = Config::load(&args.config, &args.set)?;
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Command::Bench(args) => bench::run_grid(&args)?.check(),
        Command::Report(args) => bench::report(&args).map(|_| ()),
        Command::Export(args) => {
            export(&args.run, args.format, &args.out)?;
            eprintln!(
                "policy of {} written to {}",
                args.run.display(),
                args.out.display()
            );
            Ok(())
        }
        Command::AnalyzeBias(args) => bias::run(&args).map(|_| ()),
    }
}

/// After a run: how it did, and where its curves and policy are (the curves are written to
/// `RUN/report/`). Nothing here fails the command: a problem is a warning.
fn show_run(run: &Path) {
    match crate::report::load_runs(run).map(|l| l.runs) {
        Ok(runs) if runs.len() == 1 => eprintln!("{}", crate::report::run_digest(&runs[0])),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot read the run back: {e:#}"),
    }
    let report = run.join("report");
    match crate::report::write_report(run, &report) {
        Ok(_) => eprintln!(
            "curves:  {}  (table: {})",
            report.join("curves.png").display(),
            report.join("table1.md").display()
        ),
        Err(e) => eprintln!("warning: no curves written: {e:#}"),
    }
    eprintln!(
        "policy:  {}/checkpoints/  (`mixpg eval --run {0}` replays it; in Python, \
         `mixpg.load_policy(\"{0}\")`)",
        run.display()
    );
}

/// Make Ctrl-C, SIGTERM and SIGHUP set `stop` (the trainer then writes its final row and
/// checkpoint); a second signal exits at once.
fn stop_on_signals(stop: Arc<AtomicBool>) {
    let handler = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting without a final checkpoint");
            std::process::exit(130);
        }
        eprintln!("interrupt: stopping, writing the progress row and a checkpoint");
    });
    if let Err(e) = handler {
        eprintln!(
            "warning: cannot install the signal handler ({e}); Ctrl-C, SIGTERM and SIGHUP will \
             not checkpoint"
        );
    }
}

/// Run a serial trainer that stops cleanly on Ctrl-C, SIGTERM or SIGHUP.
fn run_serial(mut trainer: Trainer) -> Result<()> {
    stop_on_signals(trainer.stop_handle());
    trainer.run()?;
    if trainer.stop_handle().load(Ordering::SeqCst) {
        eprintln!(
            "stopped at iteration {} (checkpoint written; `mixpg resume` continues)",
            trainer.iteration()
        );
    }
    Ok(())
}

/// Run an async trainer that stops every role cleanly on Ctrl-C, SIGTERM or SIGHUP.
fn run_async(mut trainer: AsyncTrainer) -> Result<()> {
    stop_on_signals(trainer.stop_handle());
    let s = trainer.run()?;
    if s.stopped_early {
        eprintln!(
            "stopped at iteration {} (checkpoint written; `mixpg resume` continues)",
            trainer.iteration()
        );
    }
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let cfg = Config::load(&args.run.join("config.toml"), &[])?;
    let (ckpt, ck) = load_latest_checkpoint(&args.run)?
        .ok_or_else(|| anyhow::anyhow!("{} has no checkpoint to evaluate", args.run.display()))?;
    let task = lookup(&cfg.task.name)?;
    let spec = task.spec();
    let nets = Nets::new(&cfg, spec);
    let mut agent = Agent::new(&nets, &cfg, &mut rand_pcg::Pcg64Mcg::seed_from_u64(0));
    agent.load(&ck)?;
    let episodes = args.episodes.unwrap_or(cfg.train.eval_episodes);
    anyhow::ensure!(episodes >= 1, "--episodes must be at least 1");
    let e = evaluate(&task, &nets, &agent.params.pi, episodes, args.seed)?;
    println!(
        "{} ({} on {}, iteration {}): return {:.4} ± {:.4} over {episodes} episodes of {} steps",
        ckpt.display(),
        cfg.algo.name.as_str(),
        cfg.task.name,
        ck.counter("iteration")?,
        e.mean,
        e.std,
        spec.episode_len
    );
    Ok(())
}

fn rollout(args: &RolloutArgs) -> Result<()> {
    anyhow::ensure!(args.episodes >= 1, "--episodes must be at least 1");
    let task = lookup(&args.task)?;
    let spec = task.spec();
    let mut env = task.make_env(args.episodes, args.seed)?;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(args.seed);
    let mut out = StepOut::default();
    let mut returns = vec![0.0f64; args.episodes];
    let mut actions = vec![0.0f32; args.episodes * spec.act_dim];
    for _ in 0..spec.episode_len {
        if let FixedPolicy::Random = args.policy {
            for (i, a) in actions.iter_mut().enumerate() {
                let d = i % spec.act_dim;
                *a = rng.random_range(spec.action_low[d]..=spec.action_high[d]);
            }
        }
        env.step(&actions, &mut out);
        check_env(env.as_mut())?;
        for (g, r) in returns.iter_mut().zip(&out.reward) {
            *g += *r as f64;
        }
    }
    for (i, g) in returns.iter().enumerate() {
        println!("episode {i}: return {g:.4}");
    }
    let mean = returns.iter().sum::<f64>() / returns.len() as f64;
    println!(
        "mean return over {} episodes of {} steps: {mean:.4}",
        args.episodes, spec.episode_len
    );
    Ok(())
}
