//! Tasks: the vectorized `Env` trait (true simulators in plain Rust) and the
//! differentiable `PriorModel` trait (burn tensors, so gradients flow through it, plus a fused
//! host step with a hand-derived vector-Jacobian product for the fast learning core).

pub mod lqr;
pub mod path_tracking;
pub mod pendulum;
pub mod vector;

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use rand::RngCore;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

/// Names of the registered tasks (`lqr` is the small test task with a known optimum).
pub const TASKS: [&str; 3] = ["path_tracking", "pendulum", "lqr"];

/// The registered name of a task given in snake or kebab case (`path-tracking`), or by its
/// alias `inverted_pendulum` / `inverted-pendulum` (= `pendulum`).
pub fn canonical_task(name: &str) -> Option<&'static str> {
    let snake = name.trim().replace('-', "_");
    if snake == "inverted_pendulum" {
        return Some("pendulum");
    }
    TASKS.into_iter().find(|t| *t == snake)
}

/// The description of a registered task.
pub fn task_spec(name: &str) -> Result<TaskSpec> {
    Ok(match canonical_task(name).unwrap_or(name) {
        "path_tracking" => path_tracking::spec(),
        "pendulum" => pendulum::spec(),
        "lqr" => lqr::spec(),
        _ => bail!(unknown(name)),
    })
}

/// A task's true simulator with `num_agents` agents.
pub fn make_env(name: &str, num_agents: usize, seed: u64) -> Result<Box<dyn Env>> {
    Ok(match canonical_task(name).unwrap_or(name) {
        "path_tracking" => Box::new(path_tracking::PathTrackingEnv::new(num_agents, seed)),
        "pendulum" => Box::new(pendulum::PendulumEnv::new(num_agents, seed)),
        "lqr" => Box::new(lqr::LqrEnv::new(num_agents, seed)),
        _ => bail!(unknown(name)),
    })
}

/// A task's prior model, with or without its deliberate mismatch.
pub fn make_model(name: &str, mismatch: bool) -> Result<Box<dyn PriorModel>> {
    Ok(match canonical_task(name).unwrap_or(name) {
        "path_tracking" => Box::new(path_tracking::PathTrackingModel::new(
            path_tracking::PathTrackingModelConfig::mismatch_flag(mismatch),
        )),
        "pendulum" => Box::new(pendulum::PendulumModel::new(if mismatch {
            pendulum::PendulumModelConfig::mismatched()
        } else {
            pendulum::PendulumModelConfig::exact()
        })),
        "lqr" => Box::new(lqr::LqrModel::new(mismatch)),
        _ => bail!(unknown(name)),
    })
}

fn unknown(name: &str) -> String {
    format!(
        "task `{name}` is not available in this build (known: {})",
        TASKS.join(", ")
    )
}

/// Which agents data collection resets after each step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectReset {
    /// Only the agents whose step terminated or truncated.
    #[default]
    Done,
    /// Every agent, re-sampled from the initial distribution: what the reference code does in
    /// effect, because its path-tracking `done` is always true (a bug, kept as an option).
    EveryStep,
}

/// Reset the agents after a collected step as `mode` says; `every_step` draws the new
/// initial states' seed from `rng`.
pub fn reset_after_collect(env: &mut dyn Env, mode: CollectReset, rng: &mut Pcg64Mcg) {
    match mode {
        CollectReset::Done => env.reset_done(),
        CollectReset::EveryStep => env.reset(rng.next_u64()),
    }
}

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
    /// [`Env::step`] for the agents with `active[i]`; the others keep their exact state, step
    /// count and flags, and their rows of `out` hold their observation, reward 0 and no flags
    /// (next-step autoreset: an agent just reset is not stepped in the same call).
    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut);
}

/// Overwrite agent `i`'s rows of `out` with `obs`, reward 0 and no flags (a held agent).
fn hold_row(out: &mut StepOut, i: usize, obs: &[f32]) {
    let d = obs.len();
    out.next_obs[d * i..d * (i + 1)].copy_from_slice(obs);
    out.reward[i] = 0.0;
    out.terminated[i] = false;
    out.truncated[i] = false;
}

/// What a host model step saves for its vector-Jacobian product; the buffers are reused
/// between calls (no allocation once they have reached their size).
#[derive(Debug, Clone, Default)]
pub struct ModelTape {
    /// The step's input states, `[batch, obs_dim]`.
    pub state: Vec<f32>,
    /// The step's actions, `[batch, act_dim]`.
    pub action: Vec<f32>,
    /// Model-specific intermediate values (e.g. the state at the start of every sub-step).
    pub saved: Vec<f32>,
}

impl ModelTape {
    /// Save the step's inputs and size `saved` to `saved_len` values.
    pub fn record(&mut self, state: &[f32], action: &[f32], saved_len: usize) {
        self.state.clear();
        self.state.extend_from_slice(state);
        self.action.clear();
        self.action.extend_from_slice(action);
        self.saved.resize(saved_len, 0.0);
    }
}

/// A differentiable prior model of a task: burn tensors for the reference autodiff path, and a
/// fused host step with its vector-Jacobian product for the fast path (both compute the same
/// function).
pub trait PriorModel: Send + Sync {
    /// The task description (same as the simulator's).
    fn spec(&self) -> &TaskSpec;
    /// The reward r(s, a) as an explicit function of state and action, shape `[batch]`.
    fn reward(&self, state: Tensor<2>, action: Tensor<2>) -> Tensor<1>;
    /// One model step on a batch: `(next_state, reward)` with `reward = self.reward(state, action)`.
    /// Any stochastic mismatch (biased noise) is drawn from `rng`.
    fn step(
        &self,
        state: Tensor<2>,
        action: Tensor<2>,
        rng: &mut Pcg64Mcg,
    ) -> (Tensor<2>, Tensor<1>);
    /// Draw the noise of one step on `batch` rows from `rng`, exactly the draws (and order)
    /// [`PriorModel::step`] makes: one value per row, or none (empty) for a deterministic model.
    fn draw_noise(&self, batch: usize, rng: &mut Pcg64Mcg, noise: &mut Vec<f32>);
    /// The mean of one value of [`PriorModel::draw_noise`] (its expected step), or `None` for a
    /// deterministic model.
    fn noise_mean(&self) -> Option<f32>;
    /// Host step on row-major `state` `[batch, obs_dim]` and `action` `[batch, act_dim]` with the
    /// `noise` of [`PriorModel::draw_noise`]: writes `next` `[batch, obs_dim]` and `reward`
    /// `[batch]` and saves what [`PriorModel::step_vjp`] needs in `tape`.
    fn step_host(
        &self,
        state: &[f32],
        action: &[f32],
        noise: &[f32],
        next: &mut [f32],
        reward: &mut [f32],
        tape: &mut ModelTape,
    );
    /// Vector-Jacobian product of the step saved in `tape`: from `d_next` `[batch, obs_dim]` and
    /// `d_reward` `[batch]`, overwrites `d_state` `[batch, obs_dim]` and `d_action`
    /// `[batch, act_dim]`.
    fn step_vjp(
        &self,
        tape: &ModelTape,
        d_next: &[f32],
        d_reward: &[f32],
        d_state: &mut [f32],
        d_action: &mut [f32],
    );
}
