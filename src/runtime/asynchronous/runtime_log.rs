//! `runtime.csv`: queue depths, rates, staleness and restarts about once a second.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};

use super::RUNTIME_COLUMNS;
use super::supervisor::Supervisor;

/// `runtime.csv` writer (see the module docs for the columns).
pub(super) struct RuntimeLog {
    pub(super) file: File,
    pub(super) last: Instant,
    pub(super) prev: [u64; 3],
    pub(super) prev_k: u64,
    pub(super) stale: (u64, u64, u64),
}

impl RuntimeLog {
    pub(super) fn open(path: &Path, k: u64) -> Result<Self> {
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

    pub(super) fn staleness(&mut self, s: u64) {
        self.stale.0 += s;
        self.stale.1 += 1;
        self.stale.2 = self.stale.2.max(s);
    }

    pub(super) fn maybe_write(
        &mut self,
        k: u64,
        wall: f64,
        sup: &Supervisor,
        force: bool,
    ) -> Result<()> {
        let dt = self.last.elapsed().as_secs_f64();
        if !force && dt < 1.0 {
            return Ok(());
        }
        let st = &sup.sh.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let now = [get(&st.env_steps), get(&st.batches), get(&st.grads)];
        let rate = |i: usize| (now[i] - self.prev[i]) as f64 / dt.max(1e-9);
        let (inserted, sampled) = (get(&st.inserted), get(&st.sampled));
        let stored: u64 = sup.sh.stored.iter().map(get).sum();
        let (s_sum, s_n, s_max) = std::mem::take(&mut self.stale);
        let row = [
            k.to_string(),
            format!("{wall:.3}"),
            sup.grad_rx.len().to_string(),
            sup.sh.exp_rx.len().to_string(),
            stored.to_string(),
            inserted.to_string(),
            sampled.to_string(),
            get(&st.throttle_events).to_string(),
            format!("{:.3}", get(&st.throttled_us) as f64 * 1e-6),
            format!("{:.1}", rate(0)),
            format!("{:.2}", rate(1)),
            format!("{:.2}", rate(2)),
            format!("{:.2}", (k - self.prev_k) as f64 / dt.max(1e-9)),
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
            get(&st.restarts).to_string(),
            if inserted > 0 {
                format!("{:.4}", sampled as f64 / inserted as f64)
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
