//! The buffer role without its thread: inserts experience and samples batches under the
//! samples-per-insert bound.

use anyhow::Result;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::messages::Experience;
use crate::algo::replay_window;
use crate::config::Config;
use crate::env::TaskSpec;
use crate::replay::{HostBatch, NStepWindow, ReplayBuffer};

/// A buffer: its replay ring, sampling RNG and samples-per-insert counters (transitions).
pub struct BufferCore {
    replay: ReplayBuffer,
    /// n-step returns along stored trajectories (`algo.value_target = "replay"`).
    window: Option<NStepWindow>,
    rng: Pcg64Mcg,
    inserted: u64,
    sampled: u64,
    warm_len: usize,
    batch_size: usize,
    samples_per_insert: f64,
}

impl BufferCore {
    /// One of `runtime.buffers` buffers of capacity `algo.buffer_capacity`, starting from
    /// `restored` contents when given (they count as inserted), sampling with `seed`.
    pub fn new(
        cfg: &Config,
        spec: &TaskSpec,
        restored: Option<ReplayBuffer>,
        seed: u64,
    ) -> Result<Self> {
        let replay = restored.unwrap_or_else(|| {
            ReplayBuffer::new(cfg.algo.buffer_capacity, spec.obs_dim, spec.act_dim)
        });
        Ok(Self {
            rng: Pcg64Mcg::seed_from_u64(seed),
            inserted: replay.len() as u64,
            replay,
            window: replay_window(cfg, spec),
            sampled: 0,
            warm_len: cfg.algo.warmup_samples.div_ceil(cfg.runtime.buffers).max(1),
            batch_size: cfg.algo.batch_size,
            samples_per_insert: cfg.runtime.samples_per_insert,
        })
    }

    /// Store a block of transitions.
    pub fn insert(&mut self, e: &Experience) {
        self.replay.push_rows(
            &e.obs,
            &e.act,
            &e.rew,
            &e.next_obs,
            &e.terminated,
            &e.truncated,
        );
        self.inserted += e.len() as u64;
    }

    /// Whether the buffer holds its warm-up share (`ceil(algo.warmup_samples / buffers)`).
    pub fn is_warm(&self) -> bool {
        self.replay.len() >= self.warm_len
    }

    /// Whether the samples-per-insert bound allows another batch.
    pub fn rate_ok(&self) -> bool {
        let spi = self.samples_per_insert;
        spi <= 0.0 || (self.sampled + self.batch_size as u64) as f64 <= spi * self.inserted as f64
    }

    /// A batch of `algo.batch_size` uniform samples (not yet counted as sampled).
    pub fn sample(&mut self) -> HostBatch {
        match &self.window {
            Some(w) => self.replay.sample_n_step(self.batch_size, &mut self.rng, w),
            None => self.replay.sample(self.batch_size, &mut self.rng),
        }
    }

    /// Count a delivered batch against the samples-per-insert bound; returns its transitions.
    pub fn count_delivered(&mut self) -> u64 {
        self.sampled += self.batch_size as u64;
        self.batch_size as u64
    }

    /// A batch when the buffer is warm and the bound allows one (counted as delivered).
    pub fn try_sample(&mut self) -> Option<HostBatch> {
        (self.is_warm() && self.rate_ok()).then(|| {
            self.count_delivered();
            self.sample()
        })
    }

    /// Transitions stored.
    pub fn len(&self) -> usize {
        self.replay.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.replay.is_empty()
    }

    /// Transitions inserted (restored contents included).
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// Transitions delivered in batches.
    pub fn sampled(&self) -> u64 {
        self.sampled
    }

    /// The replay contents (for checkpoints).
    pub fn replay(&self) -> &ReplayBuffer {
        &self.replay
    }
}
