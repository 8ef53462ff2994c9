//! Tasks: the vectorized `Env` trait (true simulators), the differentiable prior-model traits
//! (`PriorModel`: a host step with its vector-Jacobian product, what the fused learning core
//! runs; `TensorModel`: a step on burn tensors, differentiated by autodiff) and [`Task`], the
//! value that bundles a task's description, simulator and model. The built-in tasks are
//! registered as `Task` values in [`task`]'s registry, where a crate that depends on mixpg can
//! register its own.

pub mod autodiff_model;
pub mod lqr;
pub mod path_tracking;
pub mod pendulum;
pub mod task;
pub mod vector;

use anyhow::{Result, bail, ensure};
use burn::tensor::Tensor;
use rand::RngCore;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::nn::MlpTape;
pub use autodiff_model::AutodiffModel;
pub use task::{Task, lookup, register, registered};

/// Names of the built-in tasks (`lqr` is the small test task with a known optimum).
pub const TASKS: [&str; 3] = ["path_tracking", "pendulum", "lqr"];

/// A task name as registered: snake case (`path-tracking` → `path_tracking`), with the alias
/// `inverted_pendulum` for `pendulum`.
pub fn canonical_name(name: &str) -> String {
    let snake = name.trim().replace('-', "_");
    if snake == "inverted_pendulum" {
        "pendulum".to_string()
    } else {
        snake
    }
}

/// The registered name of a built-in task given in snake or kebab case (`path-tracking`), or
/// by its alias `inverted_pendulum` / `inverted-pendulum` (= `pendulum`).
pub fn canonical_task(name: &str) -> Option<&'static str> {
    let snake = canonical_name(name);
    TASKS.into_iter().find(|t| *t == snake)
}

/// The description of a registered task.
pub fn task_spec(name: &str) -> Result<TaskSpec> {
    Ok(lookup(name)?.spec().clone())
}

/// A registered task's true simulator with `num_agents` agents.
pub fn make_env(name: &str, num_agents: usize, seed: u64) -> Result<Box<dyn Env>> {
    lookup(name)?.make_env(num_agents, seed)
}

/// A registered task's prior model, with or without its deliberate mismatch.
pub fn make_model(name: &str, mismatch: bool) -> Result<Box<dyn PriorModel>> {
    lookup(name)?.make_model(mismatch)
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

/// What a `terminated` flag means for learning and evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// Gymnasium's rule: a terminated transition is absorbing (its value target does not
    /// bootstrap; truncation still does) and ends an evaluation episode early.
    #[default]
    Absorbing,
    /// The paper's tasks: termination is only the reset rule of data collection; value
    /// targets bootstrap through it and evaluation episodes run their full length.
    Continuing,
}

/// Static description of a task: dimensions, action bounds, episode length, goals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Registry name, e.g. `path_tracking` (also the task's directory in experiment grids).
    pub name: String,
    /// Human-readable name for tables and plots (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Observation (= model state) dimension.
    pub obs_dim: usize,
    /// Action dimension.
    pub act_dim: usize,
    /// Lower action bound per dimension (the env clips to it).
    pub action_low: Vec<f32>,
    /// Upper action bound per dimension.
    pub action_high: Vec<f32>,
    /// Evaluation episode length in steps (with [`Termination::Absorbing`], the longest one).
    pub episode_len: usize,
    /// Per-dimension observation scale applied at the input of every network.
    pub obs_scale: Vec<f32>,
    /// Goal returns of Table I's convergence columns, easiest first (may be empty).
    #[serde(default)]
    pub goals: Vec<f64>,
    /// The return at which the task counts as solved (dashed line of the learning curves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requirement: Option<f64>,
    /// What `terminated` means.
    #[serde(default)]
    pub termination: Termination,
    /// Whether [`Env::reset_to`] sets exact states (needed for n-step value targets rolled
    /// out in the true environment, `algo.value_target = "env"`).
    #[serde(default = "settable_default")]
    pub settable: bool,
}

fn settable_default() -> bool {
    true
}

impl TaskSpec {
    /// A task `name` with `obs_dim` observations and actions bounded by `[low, high]` per
    /// dimension, episodes of `episode_len` steps; unscaled observations, no goals,
    /// Gymnasium's termination rule, and an environment that can be set to a state.
    pub fn new(
        name: &str,
        obs_dim: usize,
        action_low: Vec<f32>,
        action_high: Vec<f32>,
        episode_len: usize,
    ) -> Self {
        Self {
            name: name.to_string(),
            title: None,
            obs_dim,
            act_dim: action_low.len(),
            action_low,
            action_high,
            episode_len,
            obs_scale: vec![1.0; obs_dim],
            goals: Vec::new(),
            min_requirement: None,
            termination: Termination::Absorbing,
            settable: true,
        }
    }

    /// The name shown in tables and plots.
    pub fn display_name(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }

    /// The centre `(low + high) / 2` of the action box per dimension.
    pub fn action_mid(&self) -> Vec<f32> {
        let pairs = self.action_low.iter().zip(&self.action_high);
        pairs.map(|(l, h)| 0.5 * (l + h)).collect()
    }

    /// The half-width `(high − low) / 2` of the action box per dimension.
    pub fn action_half(&self) -> Vec<f32> {
        let pairs = self.action_low.iter().zip(&self.action_high);
        pairs.map(|(l, h)| 0.5 * (h - l)).collect()
    }

    /// Check that the description is usable; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        ensure!(
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
            "task name {n:?} must be non-empty and use only letters, digits, `_` and `.` \
             (it names directories)"
        );
        ensure!(self.obs_dim >= 1, "task `{n}`: obs_dim must be at least 1");
        ensure!(self.act_dim >= 1, "task `{n}`: act_dim must be at least 1");
        ensure!(
            self.action_low.len() == self.act_dim && self.action_high.len() == self.act_dim,
            "task `{n}`: action_low and action_high need act_dim = {} values (got {} and {})",
            self.act_dim,
            self.action_low.len(),
            self.action_high.len()
        );
        for (d, (l, h)) in self.action_low.iter().zip(&self.action_high).enumerate() {
            ensure!(
                l.is_finite() && h.is_finite() && l < h,
                "task `{n}`: action bounds of dimension {d} must be finite with low < high \
                 (got [{l}, {h}]); unbounded action spaces are not supported"
            );
        }
        ensure!(
            self.episode_len >= 1,
            "task `{n}`: episode_len must be at least 1"
        );
        ensure!(
            self.obs_scale.len() == self.obs_dim
                && self.obs_scale.iter().all(|s| s.is_finite() && *s != 0.0),
            "task `{n}`: obs_scale needs obs_dim = {} finite non-zero values",
            self.obs_dim
        );
        ensure!(
            self.goals.iter().all(|g| g.is_finite()),
            "task `{n}`: goals must be finite"
        );
        Ok(())
    }
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
    /// Set the agents' states exactly (row-major `n * obs_dim`); the agent count becomes `n`
    /// (used only when the spec says the task is `settable`).
    fn reset_to(&mut self, states: &[f32]);
    /// Current observations, row-major `num_agents * obs_dim`.
    fn observe(&self, out: &mut Vec<f32>);
    /// Apply actions (row-major `num_agents * act_dim`, clipped to the bounds) and advance one step.
    fn step(&mut self, actions: &[f32], out: &mut StepOut);
    /// [`Env::step`] for the agents with `active[i]`; the others keep their exact state, step
    /// count and flags, and their rows of `out` hold their observation, reward 0 and no flags
    /// (next-step autoreset: an agent just reset is not stepped in the same call).
    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut);
    /// The failure of the last call, for environments that can fail (one stepped in Python
    /// raising an exception): the caller checks it after each call and stops with it; the
    /// failed call's outputs are not to be used. Plain Rust simulators never fail.
    fn take_error(&mut self) -> Option<anyhow::Error> {
        None
    }
}

/// `Err` with the environment's failure of its last call, if it had one.
pub fn check_env(env: &mut dyn Env) -> Result<()> {
    match env.take_error() {
        Some(e) => Err(e.context(format!("environment of task `{}` failed", env.spec().name))),
        None => Ok(()),
    }
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
    /// Rows whose step ended in a terminal state (`[batch]`), for models that predict
    /// termination; empty otherwise. With [`Termination::Absorbing`] a model rollout adds no
    /// reward or value after it.
    pub terminated: Vec<bool>,
    /// Network activations of a model that is a network (a learned ensemble: one tape per
    /// member the step ran); empty for other models.
    pub nets: Vec<MlpTape>,
}

impl ModelTape {
    /// Save the step's inputs, size `saved` to `saved_len` values and clear `terminated`.
    pub fn record(&mut self, state: &[f32], action: &[f32], saved_len: usize) {
        self.state.clear();
        self.state.extend_from_slice(state);
        self.action.clear();
        self.action.extend_from_slice(action);
        self.saved.resize(saved_len, 0.0);
        self.terminated.clear();
    }
}

/// How a prior model's host step and its vector-Jacobian product are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelPath {
    /// Hand-written host step and VJP: the fused learning core at full speed.
    Host,
    /// A burn-tensor step ([`TensorModel`]) run and differentiated by burn autodiff at every
    /// model step ([`AutodiffModel`]): correct, slower.
    Autodiff,
}

impl ModelPath {
    /// A line for the run's log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Host => "host step with a hand-written vector-Jacobian product (fused core)",
            Self::Autodiff => "burn-tensor step, vector-Jacobian product by burn autodiff",
        }
    }
}

/// A differentiable prior model of a task, as the fused learning core runs it: a host step on
/// a batch that saves what its vector-Jacobian product needs, and that product. A model
/// written only on burn tensors ([`TensorModel`]) becomes one through [`AutodiffModel`].
pub trait PriorModel: Send + Sync {
    /// The task description (same as the simulator's).
    fn spec(&self) -> &TaskSpec;
    /// Draw the noise of one step on `batch` rows from `rng`: one value per row, or none
    /// (empty, the default) for a deterministic model.
    fn draw_noise(&self, batch: usize, rng: &mut Pcg64Mcg, noise: &mut Vec<f32>) {
        let _ = (batch, rng);
        noise.clear();
    }
    /// The mean of one value of [`PriorModel::draw_noise`] (its expected step), or `None` (the
    /// default) for a deterministic model.
    fn noise_mean(&self) -> Option<f32> {
        None
    }
    /// Host step on row-major `state` `[batch, obs_dim]` and `action` `[batch, act_dim]` with the
    /// `noise` of [`PriorModel::draw_noise`]: writes `next` `[batch, obs_dim]` and `reward`
    /// `[batch]` and saves what [`PriorModel::step_vjp`] needs in `tape` (and, for a model
    /// that predicts termination, the terminated rows in `tape.terminated`).
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
    /// The same model on burn tensors, for `network.kernels = "autodiff"` (the reference
    /// path); `None` (the default) for a host-only model.
    fn tensor(&self) -> Option<&dyn TensorModel> {
        None
    }
    /// How the host step and its VJP are computed (said in the run's log).
    fn path(&self) -> ModelPath {
        ModelPath::Host
    }
    /// The failure of the last call, for models that can fail (one written in Python); the
    /// learner checks it after each use and stops the run with it.
    fn take_error(&self) -> Option<anyhow::Error> {
        None
    }
}

/// A differentiable prior model on burn tensors: burn autodiff differentiates its step.
pub trait TensorModel: Send + Sync {
    /// The task description.
    fn spec(&self) -> &TaskSpec;
    /// One model step on a batch, `(next_state [batch, obs_dim], reward [batch])`, with the
    /// noise drawn by [`TensorModel::draw_noise`] (one value per row, or empty).
    fn step(&self, state: Tensor<2>, action: Tensor<2>, noise: &[f32]) -> (Tensor<2>, Tensor<1>);
    /// Draw the noise of one step on `batch` rows (default: none, a deterministic model).
    fn draw_noise(&self, batch: usize, rng: &mut Pcg64Mcg, noise: &mut Vec<f32>) {
        let _ = (batch, rng);
        noise.clear();
    }
    /// The mean of one noise value, or `None` (the default) for a deterministic model.
    fn noise_mean(&self) -> Option<f32> {
        None
    }
    /// [`TensorModel::step`] with its noise drawn from `rng`.
    fn step_with(
        &self,
        state: Tensor<2>,
        action: Tensor<2>,
        rng: &mut Pcg64Mcg,
    ) -> (Tensor<2>, Tensor<1>) {
        let mut noise = Vec::new();
        self.draw_noise(state.dims()[0], rng, &mut noise);
        self.step(state, action, &noise)
    }
}

/// `Err` naming the model's failure of its last call, if it had one.
pub fn check_model(model: &dyn PriorModel) -> Result<()> {
    match model.take_error() {
        Some(e) => Err(e.context(format!(
            "prior model of task `{}` failed",
            model.spec().name
        ))),
        None => Ok(()),
    }
}

/// An error unless `spec` has the dimensions of `task` (a simulator or model built for
/// another task).
pub(crate) fn check_same_shape(what: &str, spec: &TaskSpec, task: &TaskSpec) -> Result<()> {
    if (spec.obs_dim, spec.act_dim) != (task.obs_dim, task.act_dim) {
        bail!(
            "the {what} of task `{}` has obs_dim {} and act_dim {}, the task {} and {}",
            task.name,
            spec.obs_dim,
            spec.act_dim,
            task.obs_dim,
            task.act_dim
        );
    }
    Ok(())
}
