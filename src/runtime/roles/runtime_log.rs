//! `runtime.csv`: queue depths, rates, staleness and restarts about once a second.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::RUNTIME_COLUMNS;

/// What a runtime (threads or Ray) reports for a `runtime.csv` row: queue depths now, and
/// counters of this session (see the columns in [`RUNTIME_COLUMNS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RuntimeCounters {
    /// Gradients waiting for the optimizer (threads) or in flight (Ray).
    pub grad_queue: u64,
    /// Batches waiting for a learner (threads) or in flight (Ray).
    pub experience_queue: u64,
    /// Transitions held by all buffers.
    pub stored: u64,
    /// Environment steps (agent-steps) collected.
    pub env_steps: u64,
    /// Transitions inserted.
    pub inserted: u64,
    /// Transitions replayed in batches.
    pub sampled: u64,
    /// Batches delivered to learners.
    pub batches: u64,
    /// Gradients computed.
    pub grads: u64,
    /// Samples-per-insert waits begun.
    pub throttle_events: u64,
    /// Seconds spent in samples-per-insert waits.
    pub throttled_s: f64,
    /// Worker restarts.
    pub restarts: u64,
}

/// `runtime.csv` writer (see the module docs of [`crate::runtime::asynchronous`]).
pub(crate) struct RuntimeLog {
    file: File,
    last: Instant,
    prev: [u64; 3],
    prev_k: u64,
    stale: (u64, u64, u64),
}

impl RuntimeLog {
    pub(crate) fn open(path: &Path, k: u64) -> Result<Self> {
        let fresh = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if fresh {
            file.write_all(format!("{}\n", RUNTIME_COLUMNS.join(",")).as_bytes())?;
        }
        Ok(Self {
            file,
            last: Instant::now(),
            prev: [0; 3],
            prev_k: k,
            stale: (0, 0, 0),
        })
    }

    pub(crate) fn staleness(&mut self, s: u64) {
        self.stale.0 += s;
        self.stale.1 += 1;
        self.stale.2 = self.stale.2.max(s);
    }

    /// Whether a row is due (a second since the previous one, or `force`).
    pub(crate) fn due(&self, force: bool) -> bool {
        force || self.last.elapsed().as_secs_f64() >= 1.0
    }

    pub(crate) fn write(&mut self, k: u64, wall: f64, c: &RuntimeCounters) -> Result<()> {
        let dt = self.last.elapsed().as_secs_f64();
        let now = [c.env_steps, c.batches, c.grads];
        let rate = |i: usize| now[i].saturating_sub(self.prev[i]) as f64 / dt.max(1e-9);
        let (s_sum, s_n, s_max) = std::mem::take(&mut self.stale);
        let row = [
            k.to_string(),
            format!("{wall:.3}"),
            c.grad_queue.to_string(),
            c.experience_queue.to_string(),
            c.stored.to_string(),
            c.inserted.to_string(),
            c.sampled.to_string(),
            c.throttle_events.to_string(),
            format!("{:.3}", c.throttled_s),
            format!("{:.1}", rate(0)),
            format!("{:.2}", rate(1)),
            format!("{:.2}", rate(2)),
            format!("{:.2}", k.saturating_sub(self.prev_k) as f64 / dt.max(1e-9)),
            if s_n > 0 {
                format!("{:.3}", s_sum as f64 / s_n as f64)
            } else {
                String::new()
            },
            if s_n > 0 {
                s_max.to_string()
            } else {
                String::new()
            },
            c.restarts.to_string(),
            if c.inserted > 0 {
                format!("{:.4}", c.sampled as f64 / c.inserted as f64)
            } else {
                String::new()
            },
        ];
        self.file
            .write_all(format!("{}\n", row.join(",")).as_bytes())?;
        self.prev = now;
        self.prev_k = k;
        self.last = Instant::now();
        Ok(())
    }
}
