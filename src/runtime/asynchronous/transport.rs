//! Messages between the roles and the bounded-channel transports that carry them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use rand::Rng;
use rand_pcg::Pcg64Mcg;

use super::POLL;
use crate::replay::HostBatch;
pub(super) use crate::runtime::roles::{Experience, TaggedGrads};

/// Outcome of a blocking receive with a timeout.
#[derive(Debug)]
pub(super) enum Polled<T> {
    /// An item arrived.
    Item(T),
    /// Nothing within the timeout.
    Empty,
    /// The other side is gone.
    Closed,
}

/// Where an actor sends experience (to a random buffer).
pub(super) trait ExperienceSink {
    /// Deliver a block; waits (re-checking `stop`) while the target is full. False when
    /// stopping or closed.
    fn insert(&mut self, e: Experience, stop: &AtomicBool) -> bool;
}

/// Where a learner takes batches from.
pub(super) trait BatchSource {
    /// The next batch, waiting at most `timeout`.
    fn next_batch(&mut self, timeout: Duration) -> Polled<HostBatch>;
}

/// Where a learner sends gradients.
pub(super) trait GradientSink {
    /// Deliver a gradient; waits (re-checking `stop`) while the queue is full. False when
    /// stopping or closed.
    fn send(&mut self, g: TaggedGrads, stop: &AtomicBool) -> bool;
}

/// Send, waiting in [`POLL`] steps while the channel is full; false when stopping or closed.
pub(super) fn send_until<T>(tx: &Sender<T>, mut item: T, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        match tx.send_timeout(item, POLL) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(back)) => item = back,
            Err(SendTimeoutError::Disconnected(_)) => return false,
        }
    }
}

/// Receive with a timeout.
pub(super) fn recv_polled<T>(rx: &Receiver<T>, timeout: Duration) -> Polled<T> {
    match rx.recv_timeout(timeout) {
        Ok(x) => Polled::Item(x),
        Err(RecvTimeoutError::Timeout) => Polled::Empty,
        Err(RecvTimeoutError::Disconnected) => Polled::Closed,
    }
}

/// Channel transport: a random buffer's inbox.
pub(super) struct ChannelExperienceSink {
    pub(super) inboxes: Vec<Sender<Experience>>,
    pub(super) rng: Pcg64Mcg,
}

impl ExperienceSink for ChannelExperienceSink {
    fn insert(&mut self, e: Experience, stop: &AtomicBool) -> bool {
        let i = self.rng.random_range(0..self.inboxes.len());
        send_until(&self.inboxes[i], e, stop)
    }
}

/// Channel transport: the experience queue.
pub(super) struct ChannelBatchSource(pub(super) Receiver<HostBatch>);

impl BatchSource for ChannelBatchSource {
    fn next_batch(&mut self, timeout: Duration) -> Polled<HostBatch> {
        recv_polled(&self.0, timeout)
    }
}

/// Channel transport: the gradient queue.
pub(super) struct ChannelGradientSink(pub(super) Sender<TaggedGrads>);

impl GradientSink for ChannelGradientSink {
    fn send(&mut self, g: TaggedGrads, stop: &AtomicBool) -> bool {
        send_until(&self.0, g, stop)
    }
}
