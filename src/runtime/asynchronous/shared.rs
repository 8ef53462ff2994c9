//! Roles, the worker trait, and what every worker thread shares (channels, counters, seeds).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};

use super::snapshot::ParamStore;
use super::supervisor::Event;
use super::transport::{Experience, TaggedGrads};
use crate::config::{Config, FaultSpec, FaultTarget};
use crate::env::Task;
use crate::replay::{HostBatch, ReplayBuffer};
use crate::runtime::roles::{WorkerStream, worker_seed};

/// Worker roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Role {
    /// Collects experience.
    Actor,
    /// Stores experience and samples batches.
    Buffer,
    /// Computes gradients.
    Learner,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Actor => "actor",
            Self::Buffer => "buffer",
            Self::Learner => "learner",
        })
    }
}

impl Role {
    /// Whether a test fault aimed at `target` hits this role.
    pub(super) fn is(self, target: FaultTarget) -> bool {
        matches!(
            (self, target),
            (Self::Actor, FaultTarget::Actor)
                | (Self::Buffer, FaultTarget::Buffer)
                | (Self::Learner, FaultTarget::Learner)
        )
    }
}

/// Whether a worker's loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Call `step` again.
    Continue,
    /// Leave the loop (stop requested or a channel closed).
    Stop,
}

/// A role's unit of work, driven by its thread's loop (Acme-style `Actor::update` /
/// `Learner::step`); the transport is behind the traits above.
pub(super) trait Worker {
    /// Do one unit of work (a collection, a buffer round, a batch).
    fn step(&mut self) -> Result<Flow>;
}

/// Counters shared by every role (relaxed atomics; diagnostics only).
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) env_steps: AtomicU64,
    pub(super) paced_collections: AtomicU64,
    pub(super) inserted: AtomicU64,
    pub(super) sampled: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) grads: AtomicU64,
    pub(super) throttle_events: AtomicU64,
    pub(super) throttled_us: AtomicU64,
    pub(super) throttled_now: AtomicU64,
    pub(super) starving_now: AtomicU64,
    pub(super) restarts: AtomicU64,
}

/// A control request to a buffer.
pub(super) enum Ctl {
    Snapshot(Sender<ReplayBuffer>),
}

/// What every worker thread shares.
pub(super) struct Shared {
    pub(super) cfg: Config,
    pub(super) task: Task,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) store: Arc<ParamStore>,
    pub(super) stats: Arc<Stats>,
    pub(super) stored: Vec<AtomicU64>,
    pub(super) inbox_tx: Vec<Sender<Experience>>,
    pub(super) inbox_rx: Vec<Receiver<Experience>>,
    pub(super) ctl_tx: Vec<Sender<Ctl>>,
    pub(super) ctl_rx: Vec<Receiver<Ctl>>,
    pub(super) exp_tx: Sender<HostBatch>,
    pub(super) exp_rx: Receiver<HostBatch>,
    pub(super) grad_tx: Sender<TaggedGrads>,
    pub(super) events: Sender<Event>,
    pub(super) initial_replay: Mutex<Vec<Option<ReplayBuffer>>>,
    pub(super) buffer_alive: Vec<AtomicBool>,
    pub(super) fault: Option<FaultSpec>,
    pub(super) train_seed: u64,
    pub(super) start_version: u64,
}

impl Shared {
    pub(super) fn seed(&self, stream: WorkerStream, id: usize, incarnation: u32) -> u64 {
        worker_seed(self.train_seed, self.start_version, stream, id, incarnation)
    }
}
