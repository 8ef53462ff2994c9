//! A task's vectorized simulator with Gymnasium's next-step autoreset: an agent whose episode
//! ended (terminated, or truncated at the task's episode length) is reset by the following
//! call, which returns its initial observation with reward 0 and no flags and ignores its
//! action; every other agent is stepped in the same native call.

use anyhow::{Result, ensure};
use rand::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{Env, StepOut, Task, TaskSpec, check_env};

/// `num_agents` agents of a task with next-step autoreset.
pub struct AutoResetEnv {
    env: Box<dyn Env>,
    /// Agents whose last step ended their episode (reset by the next step).
    ended: Vec<bool>,
    active: Vec<bool>,
    /// Draws the seeds of unseeded resets.
    seeds: Pcg64Mcg,
}

impl AutoResetEnv {
    /// `num_agents` agents of `task`, reset with `seed`.
    pub fn new(task: &Task, num_agents: usize, seed: u64) -> Result<Self> {
        ensure!(num_agents >= 1, "the number of agents must be at least 1");
        Ok(Self {
            env: task.make_env(num_agents, seed)?,
            ended: vec![false; num_agents],
            active: vec![true; num_agents],
            seeds: Pcg64Mcg::seed_from_u64(seed),
        })
    }

    /// The task description.
    pub fn spec(&self) -> &TaskSpec {
        self.env.spec()
    }

    /// Number of agents.
    pub fn num_agents(&self) -> usize {
        self.ended.len()
    }

    /// Reset every agent, re-seeded with `seed` (or with the next seed drawn from the last
    /// one), and return the observations.
    pub fn reset(&mut self, seed: Option<u64>) -> Vec<f32> {
        let seed = match seed {
            Some(s) => {
                self.seeds = Pcg64Mcg::seed_from_u64(s);
                s
            }
            None => self.seeds.next_u64(),
        };
        self.env.reset(seed);
        self.ended.fill(false);
        let mut obs = Vec::new();
        self.env.observe(&mut obs);
        obs
    }

    /// One step of every agent (row-major `num_agents * act_dim` actions), agents that ended
    /// in the previous step being reset instead.
    pub fn step(&mut self, actions: &[f32], out: &mut StepOut) -> Result<()> {
        let spec = self.env.spec();
        ensure!(
            actions.len() == self.ended.len() * spec.act_dim,
            "expected {} actions ({} agents x {}), got {}",
            self.ended.len() * spec.act_dim,
            self.ended.len(),
            spec.act_dim,
            actions.len()
        );
        ensure!(
            actions.iter().all(|a| a.is_finite()),
            "actions must be finite numbers"
        );
        if self.ended.contains(&true) {
            self.env.reset_done();
            for (a, e) in self.active.iter_mut().zip(&self.ended) {
                *a = !e;
            }
            self.env.step_active(actions, &self.active, out);
        } else {
            self.env.step(actions, out);
        }
        check_env(self.env.as_mut())?;
        for ((e, t), u) in self
            .ended
            .iter_mut()
            .zip(&out.terminated)
            .zip(&out.truncated)
        {
            *e = *t || *u;
        }
        Ok(())
    }
}
