//! The experiment grid: a resumable set of (task, algorithm, seed) runs and its report, shared
//! by `mixpg bench` and the Python package's `mixpg.bench`.
//!
//! A grid run goes into `OUT/<task>/<algo>/seed<N>/`, each run with the serial [`Trainer`]
//! from `CONFIGS/<task>/<algo>.toml` (DDPG, which has no config file of its own, falls back
//! to `td3.toml` with `algo.name=ddpg` and `algo.policy_delay=1`). Re-running the same command
//! continues where it stopped: a run whose `progress.csv` already reaches the final iteration
//! is skipped, a run with a checkpoint is resumed from it, and a run directory without a
//! checkpoint is cleared and started again. Runs execute serially or on up to `--jobs`
//! threads, each run in its own one-thread rayon pool (so each run uses one core). A failed
//! run is reported and the others continue. At the end the report (Table I and the figures)
//! is written into `OUT/report/`.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::checkpoint::write_atomic;
use crate::config::{AlgoName, Config};
use crate::env::lookup;
use crate::report::{ReportSummary, parse_progress, write_report};
use crate::runtime::{Trainer, serial::latest_checkpoint};

/// The paper's benchmark tasks (what `--task all` means).
pub const PAPER_TASKS: [&str; 2] = ["path_tracking", "pendulum"];

/// The directory under `--configs` of the algorithms' generic configs, used for a task that
/// has no directory of its own (`task.name` set to the task).
pub const GENERIC: &str = "generic";

/// The algorithms of the paper's Table I (the default of `--algos`; `all` adds DDPG).
pub const PAPER_ALGOS: [&str; 6] = ["mpg_v1", "mpg_v2", "ndpg", "nadp", "td3", "sac"];

/// Overrides that turn `td3.toml` into DDPG when `<task>/ddpg.toml` does not exist.
pub const DDPG_FROM_TD3: [&str; 2] = ["algo.name=ddpg", "algo.policy_delay=1"];

/// Named grid settings; explicit flags override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Both tasks, the six Table I algorithms, 3 seeds × 6000 iterations, eval every 500
    /// (about 16 minutes with `--jobs 2` on a 2-core machine).
    Quick,
    /// Both tasks, the six Table I algorithms, 5 seeds × 100 000 iterations, eval every 3000
    /// (the paper's protocol).
    Paper,
    /// Both tasks, the six Table I algorithms, 5 seeds × 20 000 iterations, eval (5 episodes)
    /// and checkpoint every 1000: Table I's convergence columns with the paper's seed count.
    Table1,
}

/// The values a preset stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetValues {
    /// Tasks.
    pub tasks: Vec<String>,
    /// Algorithms.
    pub algos: Vec<String>,
    /// Number of seeds (0..seeds).
    pub seeds: u64,
    /// Iterations per run.
    pub iterations: u64,
    /// Config overrides, applied before the user's `--set`.
    pub sets: Vec<String>,
}

impl Preset {
    /// The preset named `name` (as on the command line, e.g. `quick`).
    pub fn parse(name: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(name, true).ok()
    }

    /// The names of the presets.
    pub fn names() -> Vec<String> {
        <Self as clap::ValueEnum>::value_variants()
            .iter()
            .filter_map(clap::ValueEnum::to_possible_value)
            .map(|v| v.get_name().to_string())
            .collect()
    }

    /// The preset's tasks, algorithms, seeds, iterations and config overrides.
    pub fn values(self) -> PresetValues {
        let (seeds, iterations, interval, checkpoint) = match self {
            Preset::Quick => (3, 6000, 500, 3000),
            Preset::Paper => (5, 100_000, 3000, 3000),
            Preset::Table1 => (5, 20_000, 1000, 1000),
        };
        PresetValues {
            tasks: PAPER_TASKS.iter().map(|s| s.to_string()).collect(),
            algos: PAPER_ALGOS.iter().map(|s| s.to_string()).collect(),
            seeds,
            iterations,
            sets: vec![
                format!("train.iterations={iterations}"),
                format!("train.eval_interval={interval}"),
                format!("train.checkpoint_interval={checkpoint}"),
                "train.eval_episodes=5".to_string(),
            ],
        }
    }
}

/// What a grid runs: the options of `mixpg bench` (its flags) and of `mixpg.bench` in Python.
#[derive(Debug, Clone, clap::Args)]
pub struct GridOptions {
    /// Task(s): path_tracking, pendulum, lqr (test task), a comma-separated list, or `all`
    /// (= path_tracking,pendulum). Required unless a preset is given.
    #[arg(long)]
    pub task: Option<String>,
    /// Comma-separated algorithms (mpg_v1, mpg_v2, ndpg, nadp, ddpg, td3, sac) or `all`.
    /// Default: the preset's, else the six Table I algorithms (all but ddpg).
    #[arg(long, value_delimiter = ',')]
    pub algos: Vec<String>,
    /// Number of seeds K: runs seed0 … seed{K-1} (train.seed = N). Default: preset's, else 1.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Iterations per run (overrides train.iterations). Default: preset's, else the config's.
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Output directory: runs go to OUT/<task>/<algo>/seed<N>/, the report to OUT/report/.
    #[arg(long)]
    pub out: PathBuf,
    /// Runs executed in parallel (threads; each run uses one core).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Named settings (see `docs/experiments.md`); explicit flags override them.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Override a config value in every run, e.g. --set train.eval_interval=500 (repeatable;
    /// applied after the preset's, before --seeds/--iterations).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Directory of the configs, laid out as <task>/<algo>.toml.
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    /// Do not write OUT/report/ at the end.
    #[arg(long)]
    pub no_report: bool,
    /// Start runs whose estimated memory exceeds the memory available (sets
    /// train.skip_memory_check = true).
    #[arg(long)]
    pub force: bool,
}

/// One planned run of the grid.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Task name.
    pub task: String,
    /// Algorithm key (`mpg_v1`, ..., `ddpg`).
    pub algo: String,
    /// Seed (`train.seed` and the `seed<N>` directory).
    pub seed: u64,
    /// The run directory.
    pub dir: PathBuf,
    /// The config file it was built from.
    pub config_path: PathBuf,
    /// The resolved configuration.
    pub cfg: Config,
}

impl RunSpec {
    /// `task/algo/seedN`.
    pub fn label(&self) -> String {
        format!("{}/{}/seed{}", self.task, self.algo, self.seed)
    }
}

/// The resolved grid.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Runs in execution order (seed-major, so that a partial grid is balanced).
    pub runs: Vec<RunSpec>,
    /// Parallel runs.
    pub jobs: usize,
    /// The output directory.
    pub out: PathBuf,
    /// Whether to write the report at the end.
    pub report: bool,
}

/// What happened to one run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// Already finished: `progress.csv` reaches `iteration` ≥ the final iteration.
    Skipped {
        /// Last logged iteration.
        iteration: u64,
    },
    /// Trained to the end in this invocation.
    Finished {
        /// `Some(k)`: continued from the checkpoint at iteration `k`; `None`: from scratch.
        resumed_from: Option<u64>,
        /// An unfinished run without checkpoint was found and cleared first.
        restarted: bool,
        /// Wall-clock seconds spent in this invocation.
        wall_s: f64,
        /// The last evaluation `(iteration, mean return)` in `progress.csv`.
        final_eval: Option<(u64, f64)>,
    },
    /// Failed (error or panic); the other runs went on.
    Failed {
        /// The error chain.
        error: String,
    },
}

/// One run of the grid and its status.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Task name.
    pub task: String,
    /// Algorithm key.
    pub algo: String,
    /// Seed.
    pub seed: u64,
    /// Run directory.
    pub dir: PathBuf,
    /// What happened.
    pub status: RunStatus,
}

/// Result of [`run_grid`].
#[derive(Debug, Clone)]
pub struct GridSummary {
    /// Every run of the plan, in plan order.
    pub runs: Vec<RunOutcome>,
    /// The report, if written.
    pub report: Option<ReportSummary>,
    /// Why the report could not be written, if it was asked for and failed.
    pub report_error: Option<String>,
    /// Wall-clock seconds of the whole invocation.
    pub wall_s: f64,
}

impl GridSummary {
    /// Runs that failed.
    pub fn failed(&self) -> Vec<&RunOutcome> {
        self.runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Failed { .. }))
            .collect()
    }

    /// Runs that were skipped as already finished.
    pub fn skipped(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Skipped { .. }))
            .count()
    }

    /// Runs trained to the end in this invocation (fresh or resumed).
    pub fn finished(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Finished { .. }))
            .count()
    }

    /// `Ok` if no run failed and the report (if asked for) was written.
    pub fn check(&self) -> Result<()> {
        let failed = self.failed();
        if !failed.is_empty() {
            let names: Vec<String> = failed
                .iter()
                .map(|r| format!("{}/{}/seed{}", r.task, r.algo, r.seed))
                .collect();
            bail!(
                "{} of {} runs failed: {}",
                failed.len(),
                self.runs.len(),
                names.join(", ")
            );
        }
        if let Some(e) = &self.report_error {
            bail!("the report could not be written: {e}");
        }
        Ok(())
    }
}

fn split_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Known algorithm keys.
fn known_algos() -> Vec<&'static str> {
    AlgoName::ALL.iter().map(|a| a.as_str()).collect()
}

impl GridOptions {
    /// Arguments for `task`, `algos` and `out`, everything else at its default.
    pub fn new(task: &str, algos: &[&str], out: &Path) -> Self {
        Self {
            task: Some(task.to_string()),
            algos: algos.iter().map(|s| s.to_string()).collect(),
            seeds: None,
            iterations: None,
            out: out.to_path_buf(),
            jobs: 1,
            preset: None,
            set: Vec::new(),
            configs: PathBuf::from("configs"),
            no_report: false,
            force: false,
        }
    }

    /// Resolve the preset, the flags and every run's configuration. Fails before anything
    /// runs on an unknown task or algorithm, a missing config file or an invalid override.
    pub fn plan(&self) -> Result<BenchPlan> {
        let preset = self.preset.map(Preset::values);
        anyhow::ensure!(self.jobs >= 1, "--jobs must be at least 1");

        let tasks: Vec<String> = match (&self.task, &preset) {
            (Some(t), _) => {
                let list = split_list(std::slice::from_ref(t));
                if list.iter().any(|t| t == "all") {
                    PAPER_TASKS.iter().map(|s| s.to_string()).collect()
                } else {
                    list
                }
            }
            (None, Some(p)) => p.tasks.clone(),
            (None, None) => bail!("--task is required (or give a --preset)"),
        };
        anyhow::ensure!(!tasks.is_empty(), "--task names no task");
        let tasks = tasks
            .iter()
            .map(|t| Ok(lookup(t)?.name().to_string()))
            .collect::<Result<Vec<String>>>()?;

        let listed = split_list(&self.algos);
        let algos: Vec<String> = if listed.iter().any(|a| a == "all") {
            known_algos().iter().map(|s| s.to_string()).collect()
        } else if !listed.is_empty() {
            listed
        } else if let Some(p) = &preset {
            p.algos.clone()
        } else {
            PAPER_ALGOS.iter().map(|s| s.to_string()).collect()
        };
        let algos = algos
            .iter()
            .map(|a| match AlgoName::parse(a) {
                Some(c) => Ok(c.as_str().to_string()),
                None => bail!(
                    "unknown algorithm `{a}` (known: {}, or `all`)",
                    known_algos().join(", ")
                ),
            })
            .collect::<Result<Vec<String>>>()?;
        let algos = dedup(algos);
        let tasks = dedup(tasks);

        let seeds = self.seeds.or(preset.as_ref().map(|p| p.seeds)).unwrap_or(1);
        anyhow::ensure!(seeds >= 1, "--seeds must be at least 1");

        let mut runs = Vec::new();
        for seed in 0..seeds {
            for task in &tasks {
                for algo in &algos {
                    runs.push(self.resolve_run(task, algo, seed, preset.as_ref())?);
                }
            }
        }
        Ok(BenchPlan {
            runs,
            jobs: self.jobs,
            out: self.out.clone(),
            report: !self.no_report,
        })
    }

    fn resolve_run(
        &self,
        task: &str,
        algo: &str,
        seed: u64,
        preset: Option<&PresetValues>,
    ) -> Result<RunSpec> {
        let own = self.configs.join(task).join(format!("{algo}.toml"));
        let generic = self.configs.join(GENERIC).join(format!("{algo}.toml"));
        let mut sets: Vec<String> = Vec::new();
        let config_path = if own.is_file() {
            own
        } else if algo == "ddpg" && self.configs.join(task).join("td3.toml").is_file() {
            sets.extend(DDPG_FROM_TD3.iter().map(|s| s.to_string()));
            self.configs.join(task).join("td3.toml")
        } else if !self.configs.join(task).is_dir() && generic.is_file() {
            // A task without configs of its own: the algorithm's generic config.
            sets.push(format!("task.name={task}"));
            generic
        } else {
            own
        };
        if !config_path.is_file() {
            bail!(
                "no config for {task}/{algo}: {} does not exist (--configs {})",
                config_path.display(),
                self.configs.display()
            );
        }
        if let Some(p) = preset {
            sets.extend(p.sets.iter().cloned());
        }
        sets.extend(self.set.iter().cloned());
        if self.force {
            sets.push("train.skip_memory_check=true".to_string());
        }
        sets.push(format!("train.seed={seed}"));
        if let Some(n) = self.iterations {
            sets.push(format!("train.iterations={n}"));
        }
        let cfg = Config::load(&config_path, &sets)?;
        if cfg.task.name != task || cfg.algo.name.as_str() != algo {
            bail!(
                "{} resolves to {}/{}, not {task}/{algo}",
                config_path.display(),
                cfg.task.name,
                cfg.algo.name.as_str()
            );
        }
        Ok(RunSpec {
            task: task.to_string(),
            algo: algo.to_string(),
            seed,
            dir: self.out.join(task).join(algo).join(format!("seed{seed}")),
            config_path,
            cfg,
        })
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// What to do with a run directory.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Skip(u64),
    Resume(u64),
    Fresh { cleared: bool },
}

/// The last iteration logged in a `progress.csv` (None: absent or no data row).
pub fn last_logged_iteration(progress: &Path) -> Result<Option<u64>> {
    if !progress.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(progress)
        .with_context(|| format!("cannot read {}", progress.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.trim().parse::<u64>().ok())
        .max())
}

/// Dotted keys whose values differ between two configs.
fn config_diff(a: &Config, b: &Config) -> Vec<String> {
    fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut fa = Vec::new();
    let mut fb = Vec::new();
    flatten(
        "",
        &toml::Value::try_from(a).expect("config serialises"),
        &mut fa,
    );
    flatten(
        "",
        &toml::Value::try_from(b).expect("config serialises"),
        &mut fb,
    );
    let mut keys: Vec<String> = fa.iter().chain(&fb).map(|(k, _)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| {
            let va = fa.iter().find(|(x, _)| x == k).map(|(_, v)| v);
            let vb = fb.iter().find(|(x, _)| x == k).map(|(_, v)| v);
            va != vb
        })
        .collect()
}

fn checkpoint_iteration(dir: &Path) -> Option<u64> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("ckpt-")?
        .parse()
        .ok()
}

/// Decide what to do with `spec.dir` (see the module docs).
fn inspect(spec: &RunSpec) -> Result<Action> {
    let dir = &spec.dir;
    let n = spec.cfg.train.iterations;
    let ckpt = latest_checkpoint(dir)?;
    let last = last_logged_iteration(&dir.join("progress.csv"))?;
    let has_run = ckpt.is_some() || last.is_some_and(|l| l >= n);
    if has_run {
        // Never continue or count a run of a different configuration (the number of
        // iterations may differ: a longer grid extends its shorter runs).
        let path = dir.join("config.toml");
        let mut existing = Config::load(&path, &[]).with_context(|| {
            format!(
                "{} holds a run whose config.toml cannot be used; remove the directory to start it again",
                dir.display()
            )
        })?;
        existing.train.iterations = n;
        let diff = config_diff(&existing, &spec.cfg);
        if !diff.is_empty() {
            bail!(
                "{} holds a run with a different configuration (differs in {}); remove it or use another --out",
                dir.display(),
                diff.join(", ")
            );
        }
    }
    if let Some(l) = last
        && l >= n
    {
        return Ok(Action::Skip(l));
    }
    if let Some(c) = ckpt {
        let k = checkpoint_iteration(&c).unwrap_or(0);
        return Ok(Action::Resume(k));
    }
    let mut cleared = false;
    for f in ["progress.csv", "config.toml"] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            cleared = true;
        }
    }
    let ck = dir.join("checkpoints");
    if ck.exists() {
        std::fs::remove_dir_all(&ck).with_context(|| format!("cannot remove {}", ck.display()))?;
        cleared = true;
    }
    Ok(Action::Fresh { cleared })
}

fn final_eval(dir: &Path) -> Option<(u64, f64)> {
    let text = std::fs::read_to_string(dir.join("progress.csv")).ok()?;
    parse_progress(&text).ok()?.evals.last().copied()
}

/// Execute one run in the calling thread; `log` receives the start line.
fn execute(spec: &RunSpec, log: &(dyn Fn(String) + Sync)) -> Result<RunStatus> {
    let n = spec.cfg.train.iterations;
    let action = inspect(spec)?;
    let started = Instant::now();
    let (mut trainer, resumed_from, restarted) = match action {
        Action::Skip(iteration) => return Ok(RunStatus::Skipped { iteration }),
        Action::Resume(k) => {
            log(format!(
                "resume   {}: from iteration {k} to {n}",
                spec.label()
            ));
            // The run's config may name fewer iterations (an extended grid): rewrite it.
            write_atomic(&spec.dir.join("config.toml"), spec.cfg.to_toml().as_bytes())?;
            (Trainer::resume(&spec.dir)?, Some(k), false)
        }
        Action::Fresh { cleared } => {
            let note = if cleared {
                " (cleared an unfinished run without checkpoint)"
            } else {
                ""
            };
            log(format!("start    {}: {n} iterations{note}", spec.label()));
            (Trainer::new(spec.cfg.clone(), &spec.dir)?, None, cleared)
        }
    };
    trainer = trainer.quiet();
    trainer.run()?;
    Ok(RunStatus::Finished {
        resumed_from,
        restarted,
        wall_s: started.elapsed().as_secs_f64(),
        final_eval: final_eval(&spec.dir),
    })
}

/// Stack size of the threads that run training (deep autodiff graphs).
const RUN_STACK: usize = 64 << 20;

/// One run in a one-thread rayon pool, errors and panics turned into `Failed`.
fn run_isolated(spec: &RunSpec, log: &(dyn Fn(String) + Sync)) -> RunStatus {
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .stack_size(RUN_STACK)
        .thread_name(|_| "mixpg-run".to_string())
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            return RunStatus::Failed {
                error: format!("cannot create the run's thread pool: {e}"),
            };
        }
    };
    pool.install(
        || match std::panic::catch_unwind(AssertUnwindSafe(|| execute(spec, log))) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => RunStatus::Failed {
                error: format!("{e:#}"),
            },
            Err(p) => RunStatus::Failed {
                error: format!("panicked: {}", crate::runtime::panic_message(p.as_ref())),
            },
        },
    )
}

/// Run the grid, printing one line per event to stdout.
pub fn run_grid(args: &GridOptions) -> Result<GridSummary> {
    run_grid_with(args, &|line: &str| println!("{line}"))
}

/// Run the grid, sending one line per event to `log`. Errors only if the plan cannot be
/// resolved (nothing has run then); failed runs are in the summary (see
/// [`GridSummary::check`]).
pub fn run_grid_with(args: &GridOptions, log: &(dyn Fn(&str) + Sync)) -> Result<GridSummary> {
    let plan = args.plan()?;
    Ok(run_plan(&plan, log))
}

/// Execute a resolved plan (see [`run_grid_with`]).
pub fn run_plan(plan: &BenchPlan, log: &(dyn Fn(&str) + Sync)) -> GridSummary {
    let started = Instant::now();
    let total = plan.runs.len();
    let jobs = plan.jobs.clamp(1, total.max(1));
    log(&format!(
        "bench: {total} runs into {} ({} parallel job{})",
        plan.out.display(),
        jobs,
        if jobs == 1 { "" } else { "s" }
    ));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<RunStatus>>> = Mutex::new(vec![None; total]);
    let worker = || {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= total {
                break;
            }
            let spec = &plan.runs[i];
            let tag = format!("[{}/{total}]", i + 1);
            let line = |s: String| log(&format!("{tag} {s}"));
            let status = run_isolated(spec, &line);
            line(match &status {
                RunStatus::Skipped { iteration } => format!(
                    "skip     {}: finished (progress.csv reaches iteration {iteration})",
                    spec.label()
                ),
                RunStatus::Finished {
                    wall_s, final_eval, ..
                } => format!(
                    "done     {}: {wall_s:.1} s, final eval return {}",
                    spec.label(),
                    final_eval
                        .map(|(k, r)| format!("{r:.4} (iteration {k})"))
                        .unwrap_or_else(|| "n/a".to_string())
                ),
                RunStatus::Failed { error } => format!("FAILED   {}: {error}", spec.label()),
            });
            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(status);
        }
    };
    std::thread::scope(|s| {
        for j in 0..jobs {
            if let Err(e) = std::thread::Builder::new()
                .name(format!("mixpg-bench-{j}"))
                .spawn_scoped(s, worker)
            {
                log(&format!("bench: cannot start worker thread {j}: {e}"));
            }
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let runs: Vec<RunOutcome> = plan
        .runs
        .iter()
        .zip(results)
        .map(|(spec, st)| RunOutcome {
            task: spec.task.clone(),
            algo: spec.algo.clone(),
            seed: spec.seed,
            dir: spec.dir.clone(),
            status: st.unwrap_or(RunStatus::Failed {
                error: "not executed (no worker thread)".to_string(),
            }),
        })
        .collect();

    let mut summary = GridSummary {
        runs,
        report: None,
        report_error: None,
        wall_s: 0.0,
    };
    let resumed = summary
        .runs
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                RunStatus::Finished {
                    resumed_from: Some(_),
                    ..
                }
            )
        })
        .count();
    log(&format!(
        "bench: {} finished ({resumed} of them resumed), {} skipped, {} failed, in {:.1} s",
        summary.finished(),
        summary.skipped(),
        summary.failed().len(),
        started.elapsed().as_secs_f64()
    ));
    if plan.report {
        let out = plan.out.join("report");
        match write_report(&plan.out, &out) {
            Ok(r) => {
                for l in report_lines(&r) {
                    log(&l);
                }
                summary.report = Some(r);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                log(&format!("report: FAILED: {msg}"));
                summary.report_error = Some(msg);
            }
        }
    }
    summary.wall_s = started.elapsed().as_secs_f64();
    summary
}

/// The summary lines `mixpg report` prints.
pub fn report_lines(r: &ReportSummary) -> Vec<String> {
    let mut lines = vec![format!(
        "report: {} runs used, {} skipped",
        r.runs_used,
        r.skipped.len()
    )];
    for s in &r.skipped {
        lines.push(format!("  skipped {}: {}", s.dir.display(), s.reason));
    }
    for w in &r.warnings {
        lines.push(format!("  warning: {w}"));
    }
    for f in &r.files {
        lines.push(format!("  wrote {}", f.display()));
    }
    lines
}
