//! The buffer role: stores experience and samples batches under the samples-per-insert bound.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;
use crossbeam_channel::{SendTimeoutError, TryRecvError};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::BATCH_OFFER;
use super::POLL;
use super::shared::{Ctl, Flow, Shared, Worker};
use super::transport::{Experience, Polled, recv_polled};
use crate::env::task_spec;
use crate::replay::{HostBatch, ReplayBuffer};
use crate::runtime::seeds::STREAM_BUFFER;

/// A buffer: its replay ring, sampling RNG and samples-per-insert counters.
pub(super) struct BufferWorker {
    pub(super) sh: Arc<Shared>,
    pub(super) id: usize,
    pub(super) replay: ReplayBuffer,
    pub(super) rng: Pcg64Mcg,
    pub(super) pending: Option<HostBatch>,
    pub(super) inserted: u64,
    pub(super) sampled: u64,
    pub(super) start: usize,
    pub(super) throttled_since: Option<Instant>,
    pub(super) starving: bool,
    pub(super) warned: bool,
}

impl BufferWorker {
    pub(super) fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        let cfg = &sh.cfg;
        let spec = task_spec(&cfg.task.name)?;
        // Requests still queued (sent before this incarnation started) are answered by `step`.
        let restored = sh.initial_replay.lock().expect("replay lock")[id].take();
        let replay = restored.unwrap_or_else(|| {
            ReplayBuffer::new(cfg.algo.buffer_capacity, spec.obs_dim, spec.act_dim)
        });
        let start = cfg.algo.warmup_samples.div_ceil(cfg.runtime.buffers).max(1);
        Ok(Self {
            rng: Pcg64Mcg::seed_from_u64(sh.seed(STREAM_BUFFER, id, inc)),
            inserted: replay.len() as u64,
            replay,
            pending: None,
            sampled: 0,
            start,
            throttled_since: None,
            starving: false,
            warned: false,
            sh,
            id,
        })
    }

    pub(super) fn insert(&mut self, e: Experience) {
        self.replay.push_rows(
            &e.obs,
            &e.act,
            &e.rew,
            &e.next_obs,
            &e.terminated,
            &e.truncated,
        );
        let n = e.rew.len() as u64;
        self.inserted += n;
        self.sh.stats.inserted.fetch_add(n, Ordering::Relaxed);
        self.sh.stored[self.id].store(self.replay.len() as u64, Ordering::Relaxed);
    }

    /// Whether the samples-per-insert bound allows another batch.
    pub(super) fn rate_ok(&self) -> bool {
        let spi = self.sh.cfg.runtime.samples_per_insert;
        spi <= 0.0
            || (self.sampled + self.sh.cfg.algo.batch_size as u64) as f64
                <= spi * self.inserted as f64
    }

    pub(super) fn set_throttled(&mut self, on: bool) {
        let st = &self.sh.stats;
        match (on, self.throttled_since) {
            (true, None) => {
                self.throttled_since = Some(Instant::now());
                st.throttled_now.fetch_add(1, Ordering::Relaxed);
                st.throttle_events.fetch_add(1, Ordering::Relaxed);
                if !self.warned {
                    self.warned = true;
                    eprintln!(
                        "async: buffer #{} throttled: replayed {} / inserted {} transitions would exceed \
                         runtime.samples_per_insert = {}; waiting for actors",
                        self.id,
                        self.sampled,
                        self.inserted,
                        self.sh.cfg.runtime.samples_per_insert
                    );
                }
            }
            (false, Some(t)) => {
                self.throttled_since = None;
                st.throttled_now.fetch_sub(1, Ordering::Relaxed);
                st.throttled_us
                    .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Count this buffer in `starving_now` while it holds less than its warm-up share, so that
    /// actors collect freely until it is filled (warm-up, or a restarted buffer).
    pub(super) fn set_starving(&mut self, on: bool) {
        if on != self.starving {
            self.starving = on;
            let n = &self.sh.stats.starving_now;
            if on {
                n.fetch_add(1, Ordering::Relaxed);
            } else {
                n.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for BufferWorker {
    fn drop(&mut self) {
        self.set_throttled(false);
        self.set_starving(false);
    }
}

impl Worker for BufferWorker {
    fn step(&mut self) -> Result<Flow> {
        match self.sh.ctl_rx[self.id].try_recv() {
            Ok(Ctl::Snapshot(reply)) => {
                let _ = reply.send(self.replay.clone());
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Ok(Flow::Stop),
        }
        let inbox = self.sh.inbox_rx[self.id].clone();
        while let Ok(e) = inbox.try_recv() {
            self.insert(e);
        }
        self.set_starving(self.replay.len() < self.start);
        if self.pending.is_none() && self.replay.len() >= self.start {
            if self.rate_ok() {
                self.set_throttled(false);
                let b = self
                    .replay
                    .sample(self.sh.cfg.algo.batch_size, &mut self.rng);
                self.pending = Some(b);
            } else {
                self.set_throttled(true);
            }
        }
        match self.pending.take() {
            Some(b) => match self.sh.exp_tx.send_timeout(b, BATCH_OFFER) {
                Ok(()) => {
                    let n = self.sh.cfg.algo.batch_size as u64;
                    self.sampled += n;
                    self.sh.stats.sampled.fetch_add(n, Ordering::Relaxed);
                    self.sh.stats.batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(SendTimeoutError::Timeout(b)) => self.pending = Some(b),
                Err(SendTimeoutError::Disconnected(_)) => return Ok(Flow::Stop),
            },
            None => match recv_polled(&inbox, POLL) {
                Polled::Item(e) => self.insert(e),
                Polled::Empty => {}
                Polled::Closed => return Ok(Flow::Stop),
            },
        }
        Ok(Flow::Continue)
    }
}
