//! The actor thread: an [`ActorCore`] paced by the optimizer, sending to a random buffer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::PACED_SLEEP;
use super::shared::{Flow, Shared, Worker};
use super::snapshot::VariableSource;
use super::transport::{ChannelExperienceSink, ExperienceSink};
use crate::runtime::roles::ActorCore;
use crate::runtime::roles::WorkerStream;

/// An actor thread's state: the role object and where its experience goes.
pub(super) struct ActorWorker {
    pub(super) sh: Arc<Shared>,
    pub(super) core: ActorCore,
    pub(super) sink: Box<dyn ExperienceSink>,
}

impl ActorWorker {
    pub(super) fn new(sh: Arc<Shared>, id: usize, inc: u32) -> Result<Self> {
        let core = ActorCore::new(
            &sh.cfg,
            &sh.task,
            sh.seed(WorkerStream::ActorEnv, id, inc),
            sh.seed(WorkerStream::ActorCollect, id, inc),
            &sh.store.latest(),
        )?;
        let sink = Box::new(ChannelExperienceSink {
            inboxes: sh.inbox_tx.clone(),
            rng: Pcg64Mcg::seed_from_u64(sh.seed(WorkerStream::ActorRoute, id, inc)),
        });
        Ok(Self { core, sink, sh })
    }

    /// Paced by the optimizer (see the module docs): free while a buffer is below its warm-up
    /// share or throttled, otherwise one collection per `algo.collect_interval` updates of this
    /// session (plus one in flight per actor); free collections do not use up the budget.
    pub(super) fn pace(&self) -> Pace {
        let st = &self.sh.stats;
        let cfg = &self.sh.cfg;
        if st.starving_now.load(Ordering::Relaxed) > 0
            || st.throttled_now.load(Ordering::Relaxed) > 0
        {
            return Pace::Free;
        }
        let updates = self
            .sh
            .store
            .version()
            .saturating_sub(self.sh.start_version);
        let allowed = updates / cfg.algo.collect_interval + cfg.runtime.actors as u64;
        if st.paced_collections.load(Ordering::Relaxed) < allowed {
            Pace::Paced
        } else {
            Pace::Wait
        }
    }
}

/// What an actor may do now.
pub(super) enum Pace {
    /// Collect outside the budget (warm-up, refill or a throttled buffer).
    Free,
    /// Collect within the budget.
    Paced,
    /// Wait for the optimizer.
    Wait,
}

impl Worker for ActorWorker {
    fn step(&mut self) -> Result<Flow> {
        match self.pace() {
            Pace::Wait => {
                std::thread::sleep(PACED_SLEEP);
                return Ok(Flow::Continue);
            }
            Pace::Paced => {
                self.sh
                    .stats
                    .paced_collections
                    .fetch_add(1, Ordering::Relaxed);
            }
            Pace::Free => {}
        }
        if self.sh.store.version() != self.core.version() {
            self.core.set_policy(&self.sh.store.latest());
        }
        let e = self.core.collect()?;
        let n = e.len() as u64;
        if !self.sink.insert(e, &self.sh.stop) {
            return Ok(Flow::Stop);
        }
        self.sh.stats.env_steps.fetch_add(n, Ordering::Relaxed);
        Ok(Flow::Continue)
    }
}
