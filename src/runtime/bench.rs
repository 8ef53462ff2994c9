//! `mixpg bench-throughput`: update throughput of MPG in serial mode and in async mode with 1
//! and 2 learners, side by side in one run, plus n-step DPG's serial update time (the paper's
//! Fig. 6 comparison), and TD3's and SAC's serial iterations/s with each `network.kernels`
//! setting.
//!
//! Every setting trains for a fixed wall time in a temporary run directory (evaluations and
//! checkpoints pushed out of the way, `train.log_interval = 1`). Throughput is measured from
//! `progress.csv`: the rows are cut into windows of [`WINDOW_S`] seconds from the first applied
//! update on, and the table reports the median and mean updates/s over the windows (the first
//! window is dropped as warm-up when there are at least three).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{AsyncTrainer, Trainer};
use crate::config::Config;

/// Length of a throughput window, s.
pub const WINDOW_S: f64 = 1.0;

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The MPG config (default `configs/path_tracking/mpg_v1.toml`).
    pub config: PathBuf,
    /// The n-step DPG config (default: `ndpg.toml` next to `config`).
    pub ndpg_config: Option<PathBuf>,
    /// Overrides applied to both configs.
    pub set: Vec<String>,
    /// Wall seconds per setting.
    pub seconds: f64,
    /// Learner counts of the async settings.
    pub learners: Vec<usize>,
    /// When > 0, one more setting: the largest learner count with the optimizer re-applying
    /// the last gradient up to this many times while the queue is empty (the reference
    /// code's `grads_max_reuse`).
    pub grad_reuse: u64,
    /// Directory of the TD3 and SAC configs (`td3.toml`, `sac.toml`) whose serial iterations/s
    /// are measured with both `network.kernels` settings; `None` skips them.
    pub baselines: Option<PathBuf>,
    /// Wall seconds per baseline setting.
    pub baseline_seconds: f64,
}

/// The kernel settings compared by the TD3 / SAC rows.
const KERNELS: [&str; 2] = ["fused", "autodiff"];

/// Staleness statistics of the applied gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StalenessStats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// Maximum.
    pub max: u64,
}

impl StalenessStats {
    /// Statistics of `v` (None when empty).
    pub fn of(v: &[u64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_unstable();
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        Some(Self {
            mean: s.iter().sum::<u64>() as f64 / s.len() as f64,
            p50: q(0.5),
            p95: q(0.95),
            max: s[s.len() - 1],
        })
    }
}

/// One measured setting.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// Setting name, e.g. `mpg async 2 learners`.
    pub name: String,
    /// Updates applied.
    pub updates: u64,
    /// Median updates/s over the windows.
    pub median_ups: f64,
    /// Mean updates/s over the windows.
    pub mean_ups: f64,
    /// Mean policy-gradient computation time, ms.
    pub pg_time_ms: Option<f64>,
    /// Staleness (async settings).
    pub staleness: Option<StalenessStats>,
}

impl BenchRow {
    /// Median time per update, ms.
    pub fn update_ms(&self) -> f64 {
        1e3 / self.median_ups.max(1e-9)
    }
}

/// Median and mean of the windowed update rates of a `progress.csv`.
pub fn windowed_rates(progress: &Path) -> Result<(f64, f64, u64)> {
    let text = fs::read_to_string(progress)
        .with_context(|| format!("cannot read {}", progress.display()))?;
    let rows: Vec<(u64, f64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    let first = rows.iter().find(|r| r.0 >= 1).copied();
    let Some((k0, t0)) = first else {
        return Ok((0.0, 0.0, 0));
    };
    let (k_end, _) = *rows.last().expect("non-empty");
    let mut rates = Vec::new();
    let (mut wk, mut wt) = (k0, t0);
    for &(k, t) in &rows {
        if t - wt >= WINDOW_S {
            rates.push((k - wk) as f64 / (t - wt));
            (wk, wt) = (k, t);
        }
    }
    if rates.len() >= 3 {
        rates.remove(0);
    }
    if rates.is_empty() {
        let (k, t) = *rows.last().expect("non-empty");
        rates.push((k - k0) as f64 / (t - t0).max(1e-9));
    }
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    Ok((median, mean, k_end))
}

fn bench_config(path: &Path, set: &[String], extra: &[String]) -> Result<Config> {
    let mut all: Vec<String> = [
        "train.iterations=1000000000",
        "train.eval_interval=1000000000",
        "train.checkpoint_interval=1000000000",
        "train.log_interval=1",
        "algo.buffer_capacity=100000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(set.iter().cloned());
    all.extend(extra.iter().cloned());
    Config::load(path, &all)
}

fn serial(name: &str, cfg: Config, dir: &Path, secs: f64) -> Result<BenchRow> {
    eprintln!("bench: {name} ({secs} s)");
    let mut t = Trainer::new(cfg, dir)?
        .quiet()
        .time_limit(Duration::from_secs_f64(secs));
    t.run()?;
    let (median_ups, mean_ups, updates) = windowed_rates(&dir.join("progress.csv"))?;
    Ok(BenchRow {
        name: name.to_string(),
        updates,
        median_ups,
        mean_ups,
        pg_time_ms: pg_time(&dir.join("progress.csv"))?,
        staleness: None,
    })
}

fn pg_time(progress: &Path) -> Result<Option<f64>> {
    let text = fs::read_to_string(progress)?;
    let v: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(9)?.parse().ok())
        .collect();
    Ok((!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64))
}

fn asynchronous(name: &str, cfg: Config, dir: &Path, secs: f64) -> Result<BenchRow> {
    eprintln!("bench: {name} ({secs} s)");
    let mut t = AsyncTrainer::new(cfg, dir)?
        .quiet()
        .time_limit(Duration::from_secs_f64(secs));
    let s = t.run()?;
    let (median_ups, mean_ups, updates) = windowed_rates(&dir.join("progress.csv"))?;
    Ok(BenchRow {
        name: name.to_string(),
        updates,
        median_ups,
        mean_ups,
        pg_time_ms: s.pg_time_ms,
        staleness: StalenessStats::of(&s.staleness),
    })
}

/// Run every setting; rows in order: MPG serial, MPG async with each learner count, n-step
/// DPG serial.
pub fn run(opts: &BenchOptions) -> Result<Vec<BenchRow>> {
    let root = std::env::temp_dir().join(format!("mixpg-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root)?;
    let result = (|| {
        let mut rows = Vec::new();
        let mpg = |extra: &[String]| bench_config(&opts.config, &opts.set, extra);
        rows.push(serial(
            "mpg serial",
            mpg(&["runtime.mode=\"serial\"".into()])?,
            &root.join("serial"),
            opts.seconds,
        )?);
        for &n in &opts.learners {
            let cfg = mpg(&[
                "runtime.mode=\"async\"".into(),
                format!("runtime.learners={n}"),
            ])?;
            let name = format!("mpg async {n} learner{}", if n == 1 { "" } else { "s" });
            rows.push(asynchronous(
                &name,
                cfg,
                &root.join(format!("async{n}")),
                opts.seconds,
            )?);
        }
        if let Some(&n) = opts.learners.iter().max().filter(|_| opts.grad_reuse > 0) {
            let r = opts.grad_reuse;
            let cfg = mpg(&[
                "runtime.mode=\"async\"".into(),
                format!("runtime.learners={n}"),
                format!("runtime.grad_max_reuse={r}"),
            ])?;
            rows.push(asynchronous(
                &format!("mpg async {n}L reuse {r}"),
                cfg,
                &root.join("reuse"),
                opts.seconds,
            )?);
        }
        let ndpg_path = opts
            .ndpg_config
            .clone()
            .unwrap_or_else(|| opts.config.with_file_name("ndpg.toml"));
        let cfg = bench_config(&ndpg_path, &opts.set, &["runtime.mode=\"serial\"".into()])?;
        rows.push(serial(
            "ndpg serial",
            cfg,
            &root.join("ndpg"),
            opts.seconds,
        )?);
        if let Some(dir) = &opts.baselines {
            for algo in ["td3", "sac"] {
                for kernels in KERNELS {
                    let extra = [
                        "runtime.mode=\"serial\"".into(),
                        format!("network.kernels=\"{kernels}\""),
                    ];
                    let cfg = bench_config(&dir.join(format!("{algo}.toml")), &opts.set, &extra)?;
                    rows.push(serial(
                        &format!("{algo} serial {kernels}"),
                        cfg,
                        &root.join(format!("{algo}-{kernels}")),
                        opts.baseline_seconds,
                    )?);
                }
            }
        }
        Ok(rows)
    })();
    let _ = fs::remove_dir_all(&root);
    result
}

/// The table printed by `mixpg bench-throughput`.
pub fn table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<22} {:>8} {:>11} {:>9} {:>10} {:>9} {:>28}\n",
        "setting",
        "updates",
        "median up/s",
        "mean up/s",
        "ms/update",
        "pg ms",
        "staleness mean/p50/p95/max"
    );
    for r in rows {
        let st = r
            .staleness
            .map(|s| format!("{:.2}/{}/{}/{}", s.mean, s.p50, s.p95, s.max))
            .unwrap_or_else(|| "-".into());
        s += &format!(
            "{:<22} {:>8} {:>11.2} {:>9.2} {:>10.2} {:>9} {:>28}\n",
            r.name,
            r.updates,
            r.median_ups,
            r.mean_ups,
            r.update_ms(),
            r.pg_time_ms.map_or("-".into(), |t| format!("{t:.2}")),
            st
        );
    }
    let find = |p: &str| rows.iter().find(|r| r.name.starts_with(p));
    let serial = find("mpg serial");
    let a1 = find("mpg async 1 learner");
    let a2 = find("mpg async 2 learners");
    let reuse = rows.iter().find(|r| r.name.contains("reuse"));
    let ndpg = find("ndpg serial");
    s += "\nratios (medians):\n";
    if let (Some(a), Some(b)) = (a2, a1) {
        s += &format!(
            "  async 2 learners / async 1 learner throughput: {:.2}x (target >= 1.7)\n",
            a.median_ups / b.median_ups.max(1e-9)
        );
    }
    for a in [a1, a2].into_iter().flatten() {
        if let Some(b) = serial {
            s += &format!(
                "  {} / mpg serial throughput: {:.2}x\n",
                a.name,
                a.median_ups / b.median_ups.max(1e-9)
            );
        }
    }
    if let Some(n) = ndpg {
        for m in [serial, a1, a2, reuse].into_iter().flatten() {
            s += &format!(
                "  {} update time / ndpg serial update time: {:.2} (Fig. 6 target <= 1.5 for async)\n",
                m.name,
                m.update_ms() / n.update_ms().max(1e-9)
            );
        }
    }
    for algo in ["td3", "sac"] {
        let rate = |k: &str| find(&format!("{algo} serial {k}")).map(|r| r.median_ups);
        if let (Some(f), Some(a)) = (rate(KERNELS[0]), rate(KERNELS[1])) {
            s += &format!(
                "  {algo} serial iterations/s, fused / autodiff kernels: {:.2}x (target >= 2)\n",
                f / a.max(1e-9)
            );
        }
    }
    s
}
