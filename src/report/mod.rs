//! Results report in the form of the paper's Table I and Figs. 4–6.
//!
//! [`write_report`] walks a runs directory laid out as `RUNS/<task>/<algo>/seed<N>/` (any
//! directory that contains `progress.csv` or `config.toml` is taken as one run, at any depth),
//! and writes into the output directory:
//!
//! * `table1.md`, `table1.csv` — asymptotic performance and convergence speed per task and
//!   algorithm (see [`table`] for the exact layout and the statistics used);
//! * `curves.png`, `curves.svg` — learning curves, one panel per task (Fig. 4(a)/5(a));
//! * `convergence.png` — iterations needed to reach each goal return (Fig. 4(b)/5(b)), for the
//!   tasks that have goals;
//! * `timing.png` — box plots of `pg_time_ms` and `update_time_ms` per algorithm (Fig. 6).
//!
//! # Inputs
//! * `progress.csv`: comma-separated, first line a header. Columns are found by name; only
//!   `iteration` and `eval_return_mean` are required, `pg_time_ms` / `update_time_ms` are used
//!   when present. Rows whose `eval_return_mean` is empty are not evaluation points; a
//!   non-finite value (`nan`, `inf`) is treated as empty too. Empty timing cells are skipped.
//! * `config.toml`: `[task] name` and `[algo] name` name the task and algorithm; runs of one
//!   algorithm whose other keys differ (the seed and checkpoint/log intervals aside) become
//!   separate rows labelled by the differing keys, e.g. `MPG-v1 [rollout_gradient=first_action]`.
//!   If it is absent, task and algorithm come from the path `<task>/<algo>/<seed dir>`.
//!   If both exist and disagree, the config wins and a warning is recorded.
//!
//! # Bad runs: warn and skip
//! A run whose files are missing or malformed (no `progress.csv`, unreadable or invalid TOML,
//! missing keys, unknown task, a CSV row with the wrong number of fields, a non-numeric
//! value, no evaluation row at all, ...) is **skipped**: it is listed with the reason in
//! [`ReportSummary::skipped`] and in a "Skipped runs" section at the end of `table1.md`.
//! Nothing panics. [`write_report`] returns an error only if the runs directory cannot be
//! read, no valid run remains, or an output file cannot be written.

pub mod bias;
pub mod paper;
pub mod plots;
pub mod stats;
pub mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::env::{TASKS, TaskSpec};
use crate::runtime::rundir::read_task_spec;

pub use stats::MeanCi;
pub use table::{AlgoRow, GoalReach, TaskTable};

/// The task of a run as the report needs it: its name, title and goals (from the run's
/// `task.toml`, or the registry for runs written before it existed).
#[derive(Debug, Clone)]
pub struct Task {
    name: String,
    title: String,
    goals: Vec<f64>,
    min_requirement: Option<f64>,
}

impl Task {
    /// The report's view of a task description.
    pub fn from_spec(spec: &TaskSpec) -> Task {
        Task {
            name: spec.name.clone(),
            title: spec.display_name().to_string(),
            goals: spec.goals.clone(),
            min_requirement: spec.min_requirement,
        }
    }

    /// The registered task `name` (`path_tracking`, `pendulum`, `lqr`, or one a program
    /// registered), if there is one.
    pub fn from_name(name: &str) -> Option<Task> {
        crate::env::lookup(name)
            .ok()
            .map(|t| Task::from_spec(t.spec()))
    }

    /// The task of the run in `dir`: its `task.toml` when it has one, else the registered
    /// task `name`.
    pub fn of_run(dir: &Path, name: &str) -> Result<Task, String> {
        match read_task_spec(dir) {
            Ok(Some(spec)) => Ok(Task::from_spec(&spec)),
            Ok(None) => Task::from_name(name).ok_or_else(|| {
                format!("unknown task {name:?} (no task.toml, and it is not registered)")
            }),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// Config / directory name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Human-readable name used in the table and plot titles.
    pub fn display_name(&self) -> &str {
        &self.title
    }

    /// Goal returns for the convergence-speed columns (paper Table I).
    pub fn goals(&self) -> &[f64] {
        &self.goals
    }

    /// Minimum return for the task to "work" (dashed line in Figs. 4(a)/5(a)), if it has one.
    pub fn min_requirement(&self) -> Option<f64> {
        self.min_requirement
    }

    /// Tables and figures list the built-in tasks first, in their order, then the others by
    /// name.
    fn order(&self) -> (usize, &str) {
        let rank = TASKS.iter().position(|t| *t == self.name);
        (rank.unwrap_or(TASKS.len()), &self.name)
    }
}

impl PartialEq for Task {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Task {}

impl PartialOrd for Task {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Task {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Known algorithm keys, in display order.
pub const KNOWN_ALGOS: [&str; 7] = ["mpg_v1", "mpg_v2", "ndpg", "nadp", "ddpg", "td3", "sac"];

/// Display name of an algorithm key (`mpg_v1` → `MPG-v1`, ...), keeping a variant label
/// (`mpg_v1 [rollout_gradient=first_action]` → `MPG-v1 [rollout_gradient=first_action]`).
/// Unknown keys are shown as is.
pub fn algo_display_name(key: &str) -> String {
    if let Some((base, variant)) = key.split_once(" [") {
        return format!("{} [{variant}", algo_display_name(base));
    }
    match key {
        "mpg_v1" => "MPG-v1",
        "mpg_v2" => "MPG-v2",
        "ndpg" => "n-step DPG",
        "nadp" => "n-step ADP",
        "ddpg" => "DDPG",
        "td3" => "TD3",
        "sac" => "SAC",
        other => other,
    }
    .to_string()
}

/// Sort key: known algorithms in paper order, then unknown ones alphabetically; variants of
/// an algorithm follow it.
pub(crate) fn algo_sort_key(key: &str) -> (usize, String) {
    let base = key.split_once(" [").map_or(key, |(b, _)| b);
    let idx = KNOWN_ALGOS
        .iter()
        .position(|k| *k == base)
        .unwrap_or(KNOWN_ALGOS.len());
    (idx, key.to_string())
}

/// One parsed training run.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub task: Task,
    pub algo: String,
    /// Seed directory name (e.g. `seed3`).
    pub seed: String,
    /// Evaluation points `(iteration, eval_return_mean)`, sorted by iteration.
    pub evals: Vec<(u64, f64)>,
    /// Non-empty `pg_time_ms` values.
    pub pg_time_ms: Vec<f64>,
    /// Non-empty `update_time_ms` values.
    pub update_time_ms: Vec<f64>,
    /// Every `config.toml` value as `section.key = value` (empty without a config).
    pub config: BTreeMap<String, String>,
}

/// A run that was left out of the report, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedRun {
    pub dir: PathBuf,
    pub reason: String,
}

/// What [`write_report`] did.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// Number of runs used.
    pub runs_used: usize,
    /// Runs left out, with the reason.
    pub skipped: Vec<SkippedRun>,
    /// Non-fatal remarks (e.g. config / path disagreement).
    pub warnings: Vec<String>,
    /// Table I content, one entry per task present, in task order.
    pub tables: Vec<TaskTable>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// Runs of one task grouped by algorithm key, in display order.
pub type AlgoRuns = Vec<(String, Vec<Run>)>;

/// All valid runs grouped by task, then algorithm key (sorted in display order).
pub type Grouped = BTreeMap<Task, AlgoRuns>;

/// Build the whole report from `runs` into `out` (created if needed).
pub fn write_report(runs: &Path, out: &Path) -> anyhow::Result<ReportSummary> {
    write_report_of(&[runs], out)
}

/// Build one report from the runs under several directories (e.g. two grids that differ in a
/// config key: their runs of one algorithm become rows labelled by that key).
pub fn write_report_of<P: AsRef<Path>>(roots: &[P], out: &Path) -> anyhow::Result<ReportSummary> {
    if roots.is_empty() {
        bail!("no runs directory given");
    }
    let mut loaded = LoadedRuns::default();
    for root in roots {
        let one = load_runs(root.as_ref())?;
        loaded.runs.extend(one.runs);
        loaded.skipped.extend(one.skipped);
        loaded.warnings.extend(one.warnings);
    }
    if loaded.runs.is_empty() {
        let names: Vec<String> = roots
            .iter()
            .map(|r| r.as_ref().display().to_string())
            .collect();
        let mut msg = format!("no valid run found under {}", names.join(", "));
        for s in &loaded.skipped {
            msg.push_str(&format!("\n  skipped {}: {}", s.dir.display(), s.reason));
        }
        bail!(msg);
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;

    let runs_used = loaded.runs.len();
    let grouped = group_runs(loaded.runs);
    let tables: Vec<TaskTable> = grouped
        .iter()
        .map(|(task, algos)| table::task_table(task.clone(), algos))
        .collect();

    let mut files = Vec::new();
    let md = out.join("table1.md");
    std::fs::write(
        &md,
        table::render_markdown(&tables, &loaded.skipped, &loaded.warnings),
    )
    .with_context(|| format!("cannot write {}", md.display()))?;
    files.push(md);
    let csv = out.join("table1.csv");
    std::fs::write(&csv, table::render_csv(&tables))
        .with_context(|| format!("cannot write {}", csv.display()))?;
    files.push(csv);

    files.extend(plots::write_plots(&grouped, out)?);

    Ok(ReportSummary {
        runs_used,
        skipped: loaded.skipped,
        warnings: loaded.warnings,
        tables,
        files,
    })
}

/// One paragraph on a single run for a person: the best evaluation return and, for each of the
/// task's goals, the first evaluation that reached it (the minimum requirement marked).
pub fn run_digest(run: &Run) -> String {
    let Some(&(best_k, best)) = run
        .evals
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
    else {
        return "no evaluation yet".to_string();
    };
    let (last_k, last) = *run.evals.last().expect("evals is not empty");
    let mut out = format!(
        "evaluation return {last:.2} at iteration {last_k}, best {best:.2} at iteration {best_k}"
    );
    for &goal in run.task.goals() {
        let reached = run.evals.iter().find(|(_, r)| *r >= goal).map(|(k, _)| *k);
        let what = if Some(goal) == run.task.min_requirement() {
            format!("{goal} (the task's minimum requirement)")
        } else {
            format!("{goal}")
        };
        match reached {
            Some(k) => out.push_str(&format!("\n  goal {what}: reached at iteration {k}")),
            None => out.push_str(&format!("\n  goal {what}: not reached")),
        }
    }
    out
}

/// Result of walking a runs directory.
#[derive(Debug, Default)]
pub struct LoadedRuns {
    pub runs: Vec<Run>,
    pub skipped: Vec<SkippedRun>,
    pub warnings: Vec<String>,
}

/// Walk `root` and parse every run directory found (see the module docs).
/// Fails only if `root` itself cannot be read.
pub fn load_runs(root: &Path) -> anyhow::Result<LoadedRuns> {
    if !root.is_dir() {
        bail!(
            "runs directory {} does not exist or is not a directory",
            root.display()
        );
    }
    let mut dirs = Vec::new();
    find_run_dirs(root, &mut dirs)
        .with_context(|| format!("cannot walk runs directory {}", root.display()))?;
    dirs.sort();
    let mut loaded = LoadedRuns::default();
    for dir in dirs {
        match load_run(&dir, &mut loaded.warnings) {
            Ok(run) => loaded.runs.push(run),
            Err(reason) => loaded.skipped.push(SkippedRun { dir, reason }),
        }
    }
    Ok(loaded)
}

fn find_run_dirs(dir: &Path, acc: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if dir.join("progress.csv").is_file() || dir.join("config.toml").is_file() {
        acc.push(dir.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // Symlinked directories are not followed (no cycles).
        if entry.file_type()?.is_dir() {
            find_run_dirs(&entry.path(), acc)?;
        }
    }
    Ok(())
}

fn file_name(p: Option<&Path>) -> Option<String> {
    p.and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
}

/// Parse one run directory; `Err` holds the human-readable reason to skip it.
fn load_run(dir: &Path, warnings: &mut Vec<String>) -> Result<Run, String> {
    let seed = file_name(Some(dir)).unwrap_or_else(|| dir.display().to_string());
    let path_algo = file_name(dir.parent());
    let path_task = file_name(dir.parent().and_then(Path::parent));

    let cfg_path = dir.join("config.toml");
    let mut config = BTreeMap::new();
    let (task_name, algo) = if cfg_path.is_file() {
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| format!("cannot read config.toml: {e}"))?;
        let (t, a) = parse_config(&text).map_err(|e| format!("config.toml: {e}"))?;
        if let Ok(table) = effective_config(&text).parse::<toml::Table>() {
            flatten_config("", &table, &mut config);
        }
        if path_task.as_deref().and_then(Task::from_name).is_some()
            && (path_task.as_deref() != Some(t.as_str())
                || path_algo.as_deref() != Some(a.as_str()))
        {
            warnings.push(format!(
                "{}: config.toml says {t}/{a}, the path says {}/{}; using the config",
                dir.display(),
                path_task.as_deref().unwrap_or(""),
                path_algo.as_deref().unwrap_or("")
            ));
        }
        (t, a)
    } else {
        match (path_task, path_algo) {
            (Some(t), Some(a)) if Task::from_name(&t).is_some() && !a.is_empty() => (t, a),
            _ => {
                return Err(
                    "no config.toml, and the path is not <task>/<algo>/<seed> with a known task"
                        .to_string(),
                );
            }
        }
    };
    let task = Task::of_run(dir, &task_name)?;
    if algo.trim().is_empty() {
        return Err("empty algorithm name".to_string());
    }

    let csv_path = dir.join("progress.csv");
    if !csv_path.is_file() {
        return Err("progress.csv is missing".to_string());
    }
    let text =
        std::fs::read_to_string(&csv_path).map_err(|e| format!("cannot read progress.csv: {e}"))?;
    let p = parse_progress(&text).map_err(|e| format!("progress.csv: {e}"))?;
    if p.evals.is_empty() {
        return Err("progress.csv has no evaluation row (eval_return_mean always empty)".into());
    }
    Ok(Run {
        dir: dir.to_path_buf(),
        task,
        algo,
        seed,
        evals: p.evals,
        pg_time_ms: p.pg_time_ms,
        update_time_ms: p.update_time_ms,
        config,
    })
}

/// A run's config with every key this version knows, its default where the file has none, so
/// that runs written before a key existed compare equal to runs that spell out its default.
/// Text that no longer parses as a config is compared as written.
fn effective_config(text: &str) -> String {
    crate::config::Config::from_toml_str(text, &[])
        .map_or_else(|_| text.to_string(), |c| c.to_toml())
}

/// `section.key = value` for every leaf of a TOML table (inline tables and arrays are kept
/// whole, strings unquoted).
fn flatten_config(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if prefix.is_empty() => flatten_config(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

/// Config keys that differ between runs without making them different experiments.
const NOT_A_VARIANT: [&str; 6] = [
    "train.seed",
    "train.checkpoint_interval",
    "train.keep_checkpoints",
    "train.log_interval",
    "train.tensorboard",
    "train.skip_memory_check",
];

/// Whether `key` is a setting of a runtime the run did not use: a `runtime.*` key other than
/// `runtime.mode` in a serial run (the asynchronous and Ray runtimes' settings).
fn unused_runtime_key(run: &Run, key: &str) -> bool {
    key.starts_with("runtime.")
        && key != "runtime.mode"
        && run
            .config
            .get("runtime.mode")
            .is_some_and(|m| m == "serial")
}

/// The variant label of each run of one algorithm: the config keys that differ between the
/// runs that have a `config.toml` (other than the seed and bookkeeping keys, and the settings
/// of runtimes a run did not use, such as Ray's in a serial run; keys are compared
/// with their defaults filled in, and a key missing from one config that does not parse as a
/// config counts as a different value, `(unset)`), as `key=value, ...`, each key
/// named by its last component unless two differing keys share it. Runs without a config are
/// compared on nothing: their label is empty. Empty when all agree.
pub fn variant_labels(runs: &[Run]) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> =
        runs.iter().flat_map(|r| r.config.keys()).collect();
    let differing: Vec<&String> = keys
        .into_iter()
        .filter(|k| !NOT_A_VARIANT.contains(&k.as_str()))
        .filter(|k| {
            let values: std::collections::BTreeSet<Option<&String>> = runs
                .iter()
                .filter(|r| !r.config.is_empty() && !unused_runtime_key(r, k))
                .map(|r| r.config.get(*k))
                .collect();
            values.len() > 1
        })
        .collect();
    let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let name = |k: &str| {
        let clash = differing.iter().filter(|d| short(d) == short(k)).count() > 1;
        if clash { k.to_string() } else { short(k) }
    };
    runs.iter()
        .map(|r| {
            if r.config.is_empty() {
                return String::new();
            }
            differing
                .iter()
                .filter(|k| !unused_runtime_key(r, k))
                .map(|k| {
                    let v = r.config.get(*k).map_or("(unset)", String::as_str);
                    format!("{}={v}", name(k))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect()
}

/// Read `[task] name` and `[algo] name` from a run's `config.toml`.
pub fn parse_config(text: &str) -> Result<(String, String), String> {
    let table: toml::Table = text.parse().map_err(|e| format!("invalid TOML: {e}"))?;
    let get = |section: &str| -> Result<String, String> {
        table
            .get(section)
            .and_then(|s| s.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("missing string key [{section}] name"))
    };
    Ok((get("task")?, get("algo")?))
}

/// Parsed content of a `progress.csv`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// `(iteration, eval_return_mean)` for rows with a finite evaluation, sorted by iteration.
    pub evals: Vec<(u64, f64)>,
    pub pg_time_ms: Vec<f64>,
    pub update_time_ms: Vec<f64>,
    /// Number of data rows.
    pub rows: usize,
}

/// Parse a `progress.csv` (see the module docs for the rules). Errors name the line.
pub fn parse_progress(text: &str) -> Result<Progress, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or("empty file (no header)")?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| cols.iter().position(|c| *c == name);
    let i_iter = find("iteration").ok_or("header has no `iteration` column")?;
    let i_eval = find("eval_return_mean").ok_or("header has no `eval_return_mean` column")?;
    let i_pg = find("pg_time_ms");
    let i_upd = find("update_time_ms");

    let mut p = Progress::default();
    for (lineno, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            return Err(format!(
                "line {lineno}: {} fields, header has {}",
                fields.len(),
                cols.len()
            ));
        }
        p.rows += 1;
        let it_s = fields[i_iter];
        let iteration = it_s
            .parse::<u64>()
            .ok()
            .or_else(|| {
                // Accept integral floats such as "3000.0".
                it_s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0 && v.fract() == 0.0)
                    .map(|v| v as u64)
            })
            .ok_or_else(|| {
                format!("line {lineno}: iteration {it_s:?} is not a non-negative integer")
            })?;
        if let Some(v) = parse_opt(fields[i_eval], lineno, "eval_return_mean")? {
            p.evals.push((iteration, v));
        }
        if let Some(i) = i_pg
            && let Some(v) = parse_opt(fields[i], lineno, "pg_time_ms")?
        {
            p.pg_time_ms.push(v);
        }
        if let Some(i) = i_upd
            && let Some(v) = parse_opt(fields[i], lineno, "update_time_ms")?
        {
            p.update_time_ms.push(v);
        }
    }
    // Stable sort: for a repeated iteration the first row stays first.
    p.evals.sort_by_key(|&(it, _)| it);
    p.evals.dedup_by_key(|&mut (it, _)| it);
    Ok(p)
}

/// Empty → `None`; non-finite → `None`; non-numeric → error.
fn parse_opt(s: &str, lineno: usize, col: &str) -> Result<Option<f64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let v: f64 = s
        .parse()
        .map_err(|_| format!("line {lineno}: {col} {s:?} is not a number"))?;
    Ok(v.is_finite().then_some(v))
}

/// Group runs by task and algorithm (algorithms in display order, seeds by directory); runs
/// of one algorithm whose configs differ in any key but the seed are split into variants
/// keyed `algo [key=value, ...]` (see [`variant_labels`]).
pub fn group_runs(runs: Vec<Run>) -> Grouped {
    let mut by_algo: BTreeMap<(Task, String), Vec<Run>> = BTreeMap::new();
    for run in runs {
        by_algo
            .entry((run.task.clone(), run.algo.clone()))
            .or_default()
            .push(run);
    }
    let mut map: BTreeMap<Task, BTreeMap<(usize, String), Vec<Run>>> = BTreeMap::new();
    for ((task, algo), runs) in by_algo {
        let labels = variant_labels(&runs);
        for (run, label) in runs.into_iter().zip(labels) {
            let key = if label.is_empty() {
                algo.clone()
            } else {
                format!("{algo} [{label}]")
            };
            map.entry(task.clone())
                .or_default()
                .entry(algo_sort_key(&key))
                .or_default()
                .push(run);
        }
    }
    map.into_iter()
        .map(|(task, algos)| {
            let v = algos
                .into_iter()
                .map(|((_, key), mut runs)| {
                    runs.sort_by(|a, b| a.dir.cmp(&b.dir));
                    (key, runs)
                })
                .collect();
            (task, v)
        })
        .collect()
}
