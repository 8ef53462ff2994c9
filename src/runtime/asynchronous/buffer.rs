//! The buffer thread: a [`BufferCore`] fed by the actors' inbox, offering batches to the
//! experience queue and answering replay snapshot requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;
use crossbeam_channel::{SendTimeoutError, TryRecvError};

use super::BATCH_OFFER;
use super::POLL;
use super::shared::{Ctl, Flow, Shared, Worker};
use super::transport::{Experience, Polled, recv_polled};
use crate::replay::HostBatch;
use crate::runtime::roles::BufferCore;
use crate::runtime::roles::WorkerStream;

/// A buffer thread's state: the role object, the batch on offer and the throttle / warm-up
/// flags it reports to the actors.
pub(super) struct BufferWorker {
    pub(super) sh: Arc<Shared>,
    pub(super) id: usize,
    pub(super) core: BufferCore,
    pub(super) pending: Option<HostBatch>,
    pub(super) throttled_since: Option<Instant>,
    pub(super) starving: bool,
    pub(super) warned: bool,
}

impl BufferWorker {
    pub(super) fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        // Requests still queued (sent before this incarnation started) are answered by `step`.
        let restored = sh.initial_replay.lock().expect("replay lock")[id].take();
        Ok(Self {
            core: BufferCore::new(
                &sh.cfg,
                sh.task.spec(),
                restored,
                sh.seed(WorkerStream::Buffer, id, inc),
            )?,
            pending: None,
            throttled_since: None,
            starving: false,
            warned: false,
            sh,
            id,
        })
    }

    pub(super) fn insert(&mut self, e: Experience) {
        self.core.insert(&e);
        self.sh
            .stats
            .inserted
            .fetch_add(e.len() as u64, Ordering::Relaxed);
        self.sh.stored[self.id].store(self.core.len() as u64, Ordering::Relaxed);
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
                        self.core.sampled(),
                        self.core.inserted(),
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
                let _ = reply.send(self.core.replay().clone());
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Ok(Flow::Stop),
        }
        let inbox = self.sh.inbox_rx[self.id].clone();
        while let Ok(e) = inbox.try_recv() {
            self.insert(e);
        }
        self.set_starving(!self.core.is_warm());
        if self.pending.is_none() && self.core.is_warm() {
            if self.core.rate_ok() {
                self.set_throttled(false);
                self.pending = Some(self.core.sample());
            } else {
                self.set_throttled(true);
            }
        }
        match self.pending.take() {
            Some(b) => match self.sh.exp_tx.send_timeout(b, BATCH_OFFER) {
                Ok(()) => {
                    let n = self.core.count_delivered();
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
