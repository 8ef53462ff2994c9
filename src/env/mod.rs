//! Tasks: the vectorized `Env` trait (true simulators in plain Rust) and the
//! differentiable `PriorModel` trait (burn tensors, so gradients flow through it).

pub mod path_tracking;

use burn::tensor::Tensor;
use rand_pcg::Pcg64Mcg;

/// Static description of a task: dimensions, action bounds and episode length.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Registry name, e.g. `path_tracking`.
    pub name: &'static str,
    /// Observation (= state) dimension.
    pub obs_dim: usize,
    /// Action dimension.
    pub act_dim: usize,
    /// Lower action bound per dimension (the env clips to it).
    pub action_low: Vec<f32>,
    /// Upper action bound per dimension.
    pub action_high: Vec<f32>,
    /// Fixed evaluation episode length in steps.
    pub episode_len: usize,
    /// Per-dimension observation scale applied at the input of every network.
    pub obs_scale: Vec<f32>,
}

/// Result buffers of one vectorized step (row-major, `num_agents` rows).
#[derive(Debug, Clone, Default)]
pub struct StepOut {
    /// Next observations, `num_agents * obs_dim`.
    pub next_obs: Vec<f32>,
    /// Rewards r(s, a) of the step, `num_agents`.
    pub reward: Vec<f32>,
    /// The agent entered a failure state (the task's reset rule).
    pub terminated: Vec<bool>,
    /// The agent reached the episode length.
    pub truncated: Vec<bool>,
}

/// A vectorized environment: `num_agents` independent agents stepped in one call.
pub trait Env: Send {
    /// The task description.
    fn spec(&self) -> &TaskSpec;
    /// Number of agents stepped per call.
    fn num_agents(&self) -> usize;
    /// Re-seed and reset every agent from the task's initial distribution.
    fn reset(&mut self, seed: u64);
    /// Reset only the agents whose last step terminated or truncated.
    fn reset_done(&mut self);
    /// Set the agents' states exactly (row-major `n * obs_dim`); the agent count becomes `n`.
    fn reset_to(&mut self, states: &[f32]);
    /// Current observations, row-major `num_agents * obs_dim`.
    fn observe(&self, out: &mut Vec<f32>);
    /// Apply actions (row-major `num_agents * act_dim`, clipped to the bounds) and advance one step.
    fn step(&mut self, actions: &[f32], out: &mut StepOut);
}

/// A differentiable prior model of a task, written with burn tensors.
pub trait PriorModel: Send {
    /// The task description (same as the simulator's).
    fn spec(&self) -> &TaskSpec;
    /// The reward r(s, a) as an explicit function of state and action, shape `[batch]`.
    fn reward(&self, state: Tensor<2>, action: Tensor<2>) -> Tensor<1>;
    /// One model step on a batch: `(next_state, reward)` with `reward = self.reward(state, action)`.
    /// Any stochastic mismatch (biased noise) is drawn from `rng`.
    fn step(&self, state: Tensor<2>, action: Tensor<2>, rng: &mut Pcg64Mcg) -> (Tensor<2>, Tensor<1>);
}
