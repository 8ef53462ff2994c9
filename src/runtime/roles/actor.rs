//! The actor role without its thread: collects one block of experience with a policy snapshot.

use anyhow::Result;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::messages::{Experience, Snapshot};
use crate::algo::{Nets, act, uniform_actions};
use crate::config::{Config, WarmupActions};
use crate::env::{Env, StepOut, Task, check_env, reset_after_collect};
use crate::nn::ParamSet;

/// An actor: its vectorized environment, policy copy and exploration RNG.
pub struct ActorCore {
    cfg: Config,
    nets: Nets,
    env: Box<dyn Env>,
    obs: Vec<f32>,
    out: StepOut,
    pi: ParamSet,
    version: u64,
    rng: Pcg64Mcg,
    /// Transitions still to act uniformly at random (`algo.warmup_actions = "uniform"`: this
    /// actor's share of the warm-up; an actor started, or restarted, with an updated policy
    /// acts with it from the start).
    uniform_left: usize,
}

impl ActorCore {
    /// An actor of `task` (`task.num_agents` agents) whose environment is seeded with
    /// `env_seed` and exploration RNG with `rng_seed`, acting with `snapshot`'s policy.
    pub fn new(
        cfg: &Config,
        task: &Task,
        env_seed: u64,
        rng_seed: u64,
        snapshot: &Snapshot,
    ) -> Result<Self> {
        let nets = Nets::new(cfg, task.spec());
        let mut env = task.make_env(cfg.task.num_agents, env_seed)?;
        check_env(env.as_mut())?;
        let mut obs = Vec::new();
        env.observe(&mut obs);
        Ok(Self {
            cfg: cfg.clone(),
            nets,
            env,
            obs,
            out: StepOut::default(),
            pi: snapshot.policy(),
            version: snapshot.version,
            rng: Pcg64Mcg::seed_from_u64(rng_seed),
            uniform_left: match cfg.algo.warmup_actions {
                WarmupActions::Uniform if snapshot.version == 0 => {
                    cfg.algo.warmup_samples.div_ceil(cfg.runtime.actors.max(1))
                }
                _ => 0,
            },
        })
    }

    /// The parameter version of the policy in use.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Act with `snapshot`'s policy from now on.
    pub fn set_policy(&mut self, snapshot: &Snapshot) {
        self.pi = snapshot.policy();
        self.version = snapshot.version;
    }

    /// Take `algo.collect_steps` exploring steps of every agent (resetting as
    /// `train.collect_reset` says) and return the transitions; an error if the environment
    /// failed.
    pub fn collect(&mut self) -> Result<Experience> {
        let explore = Some(self.cfg.algo.explore_noise);
        let mut e = Experience::default();
        for _ in 0..self.cfg.algo.collect_steps {
            let a = if self.uniform_left > 0 {
                let n = self.env.num_agents();
                self.uniform_left = self.uniform_left.saturating_sub(n);
                uniform_actions(&self.nets.spec, n, &mut self.rng)
            } else {
                act(&self.nets, &self.pi, &self.obs, explore, &mut self.rng)
            };
            self.env.step(&a, &mut self.out);
            check_env(self.env.as_mut())?;
            let o = &self.out;
            e.obs.extend_from_slice(&self.obs);
            e.act.extend_from_slice(&a);
            e.rew.extend_from_slice(&o.reward);
            e.next_obs.extend_from_slice(&o.next_obs);
            e.terminated.extend_from_slice(&o.terminated);
            e.truncated.extend_from_slice(&o.truncated);
            reset_after_collect(
                self.env.as_mut(),
                self.cfg.train.collect_reset,
                &mut self.rng,
            );
            check_env(self.env.as_mut())?;
            self.env.observe(&mut self.obs);
        }
        Ok(e)
    }
}
