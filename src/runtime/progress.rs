//! `progress.csv`: one row per logged iteration, flushed as written.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::checkpoint::write_atomic;

/// The columns of `progress.csv`, in order.
pub const COLUMNS: [&str; 16] = [
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
        let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut kept = String::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let keep = i == 0
                || line
                    .split(',')
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .is_some_and(|it| it <= last);
            if keep {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        write_atomic(path, kept.as_bytes())?;
        Self::append(path)
    }

    fn append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { file })
    }

    /// Append one row and flush it.
    pub fn write(&mut self, row: &Row) -> Result<()> {
        writeln!(self.file, "{}", row.to_csv())?;
        self.file.flush()?;
        Ok(())
    }
}
