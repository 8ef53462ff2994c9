//! `progress.csv`: one row per logged iteration, each written whole and flushed to disk at every
//! checkpoint; the progress bar that shows the same run on stderr.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::evaluator::EvalResult;
use crate::checkpoint::write_atomic;

/// The columns of `progress.csv`, in order.
pub const COLUMNS: [&str; 19] = [
    "iteration",
    "wall_s",
    "env_steps",
    "eval_return_mean",
    "eval_return_std",
    "w_data",
    "w_model",
    "q_loss",
    "policy_loss",
    "pg_time_ms",
    "update_time_ms",
    "nonfinite_skipped",
    "staleness",
    "terminated_frac",
    "q_grad_norm",
    "pi_grad_norm",
    "model_error",
    "model_disagreement",
    "model_fit_ms",
];

/// One row; `None` cells are written empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Iteration (updates applied so far).
    pub iteration: u64,
    /// Wall-clock seconds since the run started (excluding time between a stop and a resume).
    pub wall_s: f64,
    /// Environment steps collected (agent-steps).
    pub env_steps: u64,
    /// Evaluation mean return, on evaluation iterations.
    pub eval_mean: Option<f64>,
    /// Evaluation return std.
    pub eval_std: Option<f64>,
    /// MPG's data weight (1 for data-driven, 0 for model-driven algorithms).
    pub w_data: f64,
    /// MPG's model weight.
    pub w_model: f64,
    /// Mean Q loss since the previous row.
    pub q_loss: Option<f64>,
    /// Mean policy loss since the previous row.
    pub policy_loss: Option<f64>,
    /// Mean policy-gradient computation time since the previous row, ms.
    pub pg_time_ms: Option<f64>,
    /// Mean time per iteration to compute and apply gradients, ms.
    pub update_time_ms: Option<f64>,
    /// Steps skipped so far because of non-finite losses or gradients.
    pub nonfinite_skipped: u64,
    /// Mean gradient staleness since the previous row (0 in serial mode).
    pub staleness: Option<f64>,
    /// Mean fraction of terminated transitions in the replayed batches since the previous row.
    pub terminated_frac: Option<f64>,
    /// Mean global norm of the Q gradient before clipping since the previous row.
    pub q_grad_norm: Option<f64>,
    /// Mean global norm of the policy gradient before clipping since the previous row.
    pub pi_grad_norm: Option<f64>,
    /// Mean RMS error of the prior model's one-step prediction on the replayed batches since
    /// the previous row (a learned model: its held-out error at its last fit).
    pub model_error: Option<f64>,
    /// Mean disagreement of the learned ensemble (std of the members' next observations on
    /// the held-out transitions of its last fit) since the previous row.
    pub model_disagreement: Option<f64>,
    /// Mean wall time of the learned model's fits since the previous row, ms.
    pub model_fit_ms: Option<f64>,
}

fn cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

impl Row {
    /// The row as CSV (no newline).
    pub fn to_csv(&self) -> String {
        [
            self.iteration.to_string(),
            format!("{:.3}", self.wall_s),
            self.env_steps.to_string(),
            cell(self.eval_mean),
            cell(self.eval_std),
            format!("{}", self.w_data),
            format!("{}", self.w_model),
            cell(self.q_loss),
            cell(self.policy_loss),
            cell(self.pg_time_ms),
            cell(self.update_time_ms),
            self.nonfinite_skipped.to_string(),
            cell(self.staleness),
            cell(self.terminated_frac),
            cell(self.q_grad_norm),
            cell(self.pi_grad_norm),
            cell(self.model_error),
            cell(self.model_disagreement),
            cell(self.model_fit_ms),
        ]
        .join(",")
    }
}

/// An append-only progress log.
pub struct ProgressLog {
    file: File,
}

impl ProgressLog {
    /// Create `path` with the header (replacing any existing file).
    pub fn create(path: &Path) -> Result<Self> {
        write_atomic(path, format!("{}\n", COLUMNS.join(",")).as_bytes())?;
        Self::append(path)
    }

    /// Keep the header and the rows with `iteration <= last` (resume), then append.
    pub fn truncate_after(path: &Path, last: u64) -> Result<Self> {
        truncate_csv_after(path, last)?;
        Self::append(path)
    }

    fn append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { file })
    }

    /// Append one row (a single write of the whole line).
    pub fn write(&mut self, row: &Row) -> Result<()> {
        self.file
            .write_all(format!("{}\n", row.to_csv()).as_bytes())?;
        Ok(())
    }

    /// Flush the rows written so far to disk (before each checkpoint).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().context("flushing progress.csv")
    }
}

/// Rewrite a CSV log keeping its header and the complete rows (as many cells as the header)
/// whose first cell is an iteration `<= last`; used on resume.
pub(crate) fn truncate_csv_after(path: &Path, last: u64) -> Result<()> {
    let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut kept = String::new();
    let mut cells = 0;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let n = line.split(',').count();
        if i == 0 {
            cells = n;
        }
        let keep = i == 0
            || (n == cells
                && line
                    .split(',')
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .is_some_and(|it| it <= last));
        if keep {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    write_atomic(path, kept.as_bytes())
}

/// A progress bar on a terminal (stderr); plain lines at evaluations otherwise.
pub(crate) struct ProgressBar {
    total: u64,
    tty: bool,
    quiet: bool,
    last_eval: Option<(u64, EvalResult)>,
    started: Instant,
    last_draw: Instant,
}

impl ProgressBar {
    /// A bar up to `total` iterations (silent when `quiet`).
    pub(crate) fn new(total: u64, quiet: bool) -> Self {
        Self {
            total,
            tty: std::io::stderr().is_terminal(),
            quiet,
            last_eval: None,
            started: Instant::now(),
            last_draw: Instant::now(),
        }
    }

    /// Redraw at iteration `k` (at most every 200 ms).
    pub(crate) fn tick(&mut self, k: u64) {
        if self.quiet || !self.tty || self.last_draw.elapsed().as_millis() < 200 {
            return;
        }
        self.last_draw = Instant::now();
        let width = 30usize;
        let filled = (k as f64 / self.total as f64 * width as f64) as usize;
        let rate = k as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let eval = self
            .last_eval
            .map(|(i, e)| format!(" | eval@{i}: {:.2} ± {:.2}", e.mean, e.std))
            .unwrap_or_default();
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r[{}{}] {k}/{} ({rate:.1} it/s){eval}   ",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            self.total
        );
        let _ = err.flush();
    }

    /// Show an evaluation result.
    pub(crate) fn eval(&mut self, k: u64, e: EvalResult) {
        self.last_eval = Some((k, e));
        if !self.quiet && !self.tty {
            eprintln!(
                "iteration {k}/{}: eval return {:.3} ± {:.3} ({:.1} s)",
                self.total,
                e.mean,
                e.std,
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// End the bar's line.
    pub(crate) fn finish(&self) {
        if !self.quiet && self.tty {
            eprintln!();
        }
    }
}
