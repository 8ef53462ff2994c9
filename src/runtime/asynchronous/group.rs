//! A learner group: `M` learner threads of this runtime sharing one parameter copy and one
//! batch feed, driven in rounds from outside. The Ray runtime (`mixpg.ray`) runs one group per
//! node in a Ray actor, so that the heavy exchange (a parameter version per gradient, a
//! gradient per computation) stays inside the node and only one message per round crosses to
//! the driver.
//!
//! Batches enter the feed by [`LearnerGroup::feed`] (from any thread: in `mixpg.ray` a feeder
//! thread of the group's actor pulls them from the buffers and keeps
//! [`LearnerGroup::feed_len`] at its target). A round ([`LearnerGroup::round`]) takes up the
//! newest parameters (when their version differs from the group's), waits until the threads
//! have made at least the requested number of gradients (or a time limit passed) and returns
//! every gradient made so far, each tagged with the version it was computed from. Between
//! rounds each thread makes at most its share of `max_pending` gradients from the parameters
//! it holds (one per kept batch: a batch is never used twice with one version), and the
//! threads together at most as many as the gradient channel holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use super::POLL;
use super::learner::{LearnerLinks, LearnerWorker};
use super::shared::{Stats, Worker};
use super::snapshot::{ParamStore, VariableSource};
use super::supervisor::{Outcome, spawn_loop};
use super::transport::{ChannelBatchSource, ChannelGradientSink, TaggedGrads};
use crate::config::Config;
use crate::env::Task;
use crate::replay::HostBatch;
use crate::runtime::roles::Snapshot;
use crate::runtime::seeds::derive_seed;

/// `M` learner threads behind one parameter copy, one batch feed and one gradient channel.
pub struct LearnerGroup {
    params: Arc<ParamStore>,
    feed: Sender<HostBatch>,
    grads: Receiver<TaggedGrads>,
    stop: Arc<AtomicBool>,
    exits: Receiver<(usize, Outcome)>,
    handles: Vec<JoinHandle<()>>,
}

impl LearnerGroup {
    /// Start `threads` learner threads of `cfg` on `task` holding `snapshot`'s parameters
    /// (thread `t` seeded from `seed` and `t`); at most `max_pending` gradients wait for a
    /// round, beyond that the threads wait.
    pub fn start(
        cfg: &Config,
        task: &Task,
        threads: usize,
        seed: u64,
        snapshot: Snapshot,
        max_pending: usize,
    ) -> Result<Self> {
        ensure!(
            threads >= 1,
            "a learner group needs at least one learner thread"
        );
        ensure!(
            max_pending >= 1,
            "a learner group must hold at least one gradient"
        );
        let params = Arc::new(ParamStore::new(snapshot));
        let (feed, feed_rx) = unbounded();
        let (grad_tx, grads) = bounded(max_pending);
        let (exit_tx, exits) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let mut group = Self {
            params,
            feed,
            grads,
            stop,
            exits,
            handles: Vec::with_capacity(threads),
        };
        for t in 0..threads {
            let (params, stop, stats) = (group.params.clone(), group.stop.clone(), stats.clone());
            let (feed_rx, grad_tx) = (feed_rx.clone(), grad_tx.clone());
            let (cfg, task, exit_tx) = (cfg.clone(), task.clone(), exit_tx.clone());
            let build = move || -> Result<Box<dyn Worker>> {
                let links = LearnerLinks {
                    params,
                    source: Box::new(ChannelBatchSource(feed_rx)),
                    sink: Box::new(ChannelGradientSink(grad_tx)),
                    stop,
                    stats,
                };
                let seed = derive_seed(seed, t as u64);
                let kept = (max_pending / threads).max(1);
                Ok(Box::new(LearnerWorker::new(
                    &cfg, &task, seed, links, kept, None,
                )?))
            };
            let report = move |outcome| {
                let _ = exit_tx.send((t, outcome));
            };
            let name = format!("group learner #{t}");
            let h = spawn_loop(name, group.stop.clone(), None, build, report)?;
            group.handles.push(h);
        }
        Ok(group)
    }

    /// The parameter version the threads compute from.
    pub fn version(&self) -> u64 {
        self.params.version()
    }

    /// Add a batch to the feed.
    pub fn feed(&self, batch: HostBatch) -> Result<()> {
        self.feed
            .send(batch)
            .map_err(|_| anyhow::anyhow!("the learner group's feed is closed"))
    }

    /// Batches in the feed that no thread has taken yet.
    pub fn feed_len(&self) -> usize {
        self.feed.len()
    }

    /// One round: take up `snapshot` (when its version differs from the group's), wait until
    /// at least `min_gradients` gradients are ready or `wait` has passed, and return every
    /// ready gradient in the order they were made. An error when a learner thread failed.
    pub fn round(
        &self,
        snapshot: Option<Snapshot>,
        min_gradients: usize,
        wait: Duration,
    ) -> Result<Vec<TaggedGrads>> {
        if let Some(s) = snapshot.filter(|s| s.version != self.params.version()) {
            self.params.publish(s);
        }
        let deadline = Instant::now() + wait;
        let mut grads = Vec::new();
        loop {
            self.check_threads()?;
            grads.extend(self.grads.try_iter());
            let now = Instant::now();
            if grads.len() >= min_gradients || now >= deadline {
                return Ok(grads);
            }
            match self.grads.recv_timeout(POLL.min(deadline - now)) {
                Ok(g) => grads.push(g),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!("every learner thread has ended"),
            }
        }
    }

    /// An error naming the first learner thread that failed, panicked or ended.
    fn check_threads(&self) -> Result<()> {
        if let Ok((t, outcome)) = self.exits.try_recv() {
            let what = match outcome {
                Outcome::Finished => "ended".to_string(),
                Outcome::Failed(m) => format!("failed: {m}"),
                Outcome::Panicked(m) => format!("panicked: {m}"),
            };
            bail!("learner thread #{t} of the group {what}");
        }
        Ok(())
    }
}

impl Drop for LearnerGroup {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
