//! Run configuration: TOML files deserialised with serde, unknown keys rejected, every field
//! documented where it is declared, `--set key=value` overrides, validation with errors that
//! name the key.
//!
//! Defaults are the paper's path-tracking MPG settings (see `docs/` and the files under
//! `configs/` for every (task, algorithm) pair).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use crate::env::CollectReset;
use crate::nn::{AdamConfig, LrSchedule, NetSpec};

/// A complete run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The task and its simulator / prior model.
    pub task: TaskConfig,
    /// The algorithm and its hyper-parameters.
    pub algo: AlgoConfig,
    /// Network sizes (all networks) and `network.kernels`: `"fused"` (default, the
    /// hand-written host kernels of `nn::fused`) or `"autodiff"` (burn autodiff, the reference).
    #[serde(default)]
    pub network: NetSpec,
    /// Training loop: iterations, evaluation, checkpoints, seed.
    #[serde(default)]
    pub train: TrainConfig,
    /// Serial or asynchronous execution.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The learned dynamics model (`task.model = "learned"`); ignored with a prior model.
    #[serde(default, skip_serializing_if = "ModelConfig::is_default")]
    pub model: ModelConfig,
}

/// Which task to learn and how its prior model is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Task name: a registered task, `path_tracking`, `pendulum` or the test task `lqr`
    /// built in (`mixpg tasks` lists them); kebab case (`path-tracking`) and the alias
    /// `inverted-pendulum` are accepted.
    pub name: String,
    /// Agents in each actor's vectorized environment (reference: 8 path tracking, 1 pendulum).
    #[serde(default = "d_num_agents")]
    pub num_agents: usize,
    /// Use the deliberately mismatched prior model of the paper (false: mismatch switched off).
    #[serde(default = "d_true")]
    pub model_mismatch: bool,
    /// Multiplier on rewards inside learning (reference: 0.01 path tracking, 1 pendulum);
    /// evaluation reports unscaled returns.
    #[serde(default = "d_reward_scale")]
    pub reward_scale: f64,
    /// Which differentiable model the model-driven terms run through: `prior` (default, the
    /// task's own model) or `learned` (an ensemble fitted to the replay, the `[model]` table).
    #[serde(default)]
    pub model: ModelKind,
}

/// Where the model of the model-driven terms comes from (`task.model`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// The task's prior model (with its mismatch, `task.model_mismatch`).
    #[default]
    Prior,
    /// An ensemble of MLPs fitted to the replay buffer (`[model]`).
    Learned,
}

/// How a policy gradient uses the learned ensemble (`model.member`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChoice {
    /// One member, drawn per policy gradient from the learner's seeded RNG.
    #[default]
    Random,
    /// The mean of the members' predictions (their vector-Jacobian products averaged).
    Mean,
}

/// The learned dynamics model (`[model]`, used with `task.model = "learned"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Ensemble members.
    #[serde(default = "d_ensemble")]
    pub ensemble: usize,
    /// Hidden layer widths of each member (ELU).
    #[serde(default = "d_model_hidden")]
    pub hidden: Vec<usize>,
    /// Adam learning rate of the fit.
    #[serde(default = "d_model_lr")]
    pub lr: f64,
    /// Mini-batch size of the fit.
    #[serde(default = "d_batch")]
    pub batch: usize,
    /// Fraction of the replay held out for early stopping and `model_error`.
    #[serde(default = "d_holdout")]
    pub holdout: f64,
    /// Epochs without a held-out improvement before a member's fit stops.
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Epochs (passes over the training split) per fit at most.
    #[serde(default = "d_max_epochs")]
    pub max_epochs: usize,
    /// Gradient steps per member per fit at most (an epoch may end early at this cap).
    #[serde(default = "d_max_steps")]
    pub max_steps: usize,
    /// Iterations between two fits (the first at iteration 0).
    #[serde(default = "d_fit_every")]
    pub fit_every: u64,
    /// Transitions the model must have been fitted on before its term is used.
    #[serde(default = "d_model_warmup")]
    pub warmup_steps: u64,
    /// `random` (default: one member per policy gradient) or `mean` (the ensemble mean).
    #[serde(default)]
    pub member: MemberChoice,
    /// The longest `algo.horizon` allowed through the learned model.
    #[serde(default = "d_max_horizon")]
    pub max_horizon: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        toml::from_str("").expect("model defaults")
    }
}

impl ModelConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AlgoName {
    /// MPG with n-step TD value learning in the true environment.
    #[serde(alias = "mpg-v1")]
    MpgV1,
    /// MPG with clipped double-Q value learning.
    #[serde(alias = "mpg-v2")]
    MpgV2,
    /// n-step DPG: data-driven PG, n-step TD critic.
    Ndpg,
    /// n-step ADP: model-driven PG (BPTT), n-step TD critic.
    Nadp,
    /// DDPG.
    Ddpg,
    /// TD3.
    Td3,
    /// SAC with a Gaussian policy.
    Sac,
}

impl AlgoName {
    /// Every algorithm, in table order.
    pub const ALL: [AlgoName; 7] = [
        Self::MpgV1,
        Self::MpgV2,
        Self::Ndpg,
        Self::Nadp,
        Self::Ddpg,
        Self::Td3,
        Self::Sac,
    ];

    /// The snake-case name used in configs and paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MpgV1 => "mpg_v1",
            Self::MpgV2 => "mpg_v2",
            Self::Ndpg => "ndpg",
            Self::Nadp => "nadp",
            Self::Ddpg => "ddpg",
            Self::Td3 => "td3",
            Self::Sac => "sac",
        }
    }

    /// Whether the critic learns from n-step targets (MPG-v1, n-step DPG, n-step ADP).
    pub fn n_step_critic(self) -> bool {
        matches!(self, Self::MpgV1 | Self::Ndpg | Self::Nadp)
    }

    /// Whether the policy gradient runs through a prior model (MPG-v1, MPG-v2, n-step ADP).
    pub fn needs_model(self) -> bool {
        matches!(self, Self::MpgV1 | Self::MpgV2 | Self::Nadp)
    }

    /// The generic configuration of the algorithm (`configs/generic/<algo>.toml`, built into
    /// the library): for a task without configs of its own, with `task.name` to be set.
    pub fn generic_config(self) -> &'static str {
        match self {
            Self::MpgV1 => include_str!("../configs/generic/mpg_v1.toml"),
            Self::MpgV2 => include_str!("../configs/generic/mpg_v2.toml"),
            Self::Ndpg => include_str!("../configs/generic/ndpg.toml"),
            Self::Nadp => include_str!("../configs/generic/nadp.toml"),
            Self::Ddpg => include_str!("../configs/generic/ddpg.toml"),
            Self::Td3 => include_str!("../configs/generic/td3.toml"),
            Self::Sac => include_str!("../configs/generic/sac.toml"),
        }
    }

    /// The algorithm named `name`, in snake case (`mpg_v2`) or kebab case (`mpg-v2`).
    pub fn parse(name: &str) -> Option<AlgoName> {
        let snake = name.trim().replace('-', "_");
        Self::ALL.into_iter().find(|a| a.as_str() == snake)
    }
}

/// How the actions taken after the first one in MPG's model rollout enter the gradient
/// (see `docs/design.md`, "The two readings of eq. (6)").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutGradient {
    /// The gradient of loss (9) itself, n-step ADP's BPTT: every action a_t = π_θ(s_t).
    AllActions,
    /// Eq. (6)'s computation (one ∇θπ_θ(s_0) factor), as the reference code: θ enters only
    /// through a_0; later actions come from a frozen copy of the policy (gradients still flow
    /// through the states).
    FirstAction,
}

/// What an unsquashed SAC sample (`algo.squash = false`) is in learning: the action the replay
/// stores and the one the critic receives in the actor loss and the soft target. The
/// environment clips what it applies either way. See `docs/design.md`, "SAC on path tracking:
/// why it failed and the fix".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SacAction {
    /// Clipped to the action bounds (what the environment applies). A coordinate outside the
    /// bounds has zero gradient through Q, so once the mean has left the bounds and the
    /// log-std sits at its clip, the policy gradient is exactly zero.
    Clipped,
    /// The raw Gaussian sample, as the reference code: the replay stores it and Q is fitted
    /// and differentiated on it, so Q's extrapolation keeps a gradient outside the bounds.
    Raw,
}

/// Where the n-step value targets of MPG-v1, n-step DPG and n-step ADP are rolled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTarget {
    /// The true environment, reset to each replayed state (the paper).
    Env,
    /// The prior model, as the reference code's n-step ADP does.
    Model,
    /// The replay's own stored trajectories (the behaviour policy's actions, uncorrected):
    /// for tasks whose environment cannot be set to a replayed state.
    Replay,
}

/// The units of `algo.explore_noise`, `algo.target_noise` and `algo.target_noise_clip`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseUnits {
    /// Action units (the paper's tasks).
    #[default]
    Action,
    /// Fractions of each action dimension's half-range `(high − low)/2`, as in
    /// Stable-Baselines3's normalised action space (the generic configs).
    Normalized,
}

/// How the warm-up's actions are chosen (`algo.warmup_actions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupActions {
    /// The initial policy plus exploration noise (the paper's and the reference code's).
    #[default]
    Policy,
    /// Uniformly at random in the task's action box (Stable-Baselines3's `learning_starts`).
    Uniform,
}

/// Algorithm hyper-parameters. Fields not used by an algorithm are ignored by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgoConfig {
    /// Which algorithm.
    pub name: AlgoName,
    /// Discount factor γ.
    #[serde(default = "d_gamma")]
    pub gamma: f64,
    /// Replay mini-batch size N.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Replay capacity (transitions).
    #[serde(default = "d_capacity")]
    pub buffer_capacity: usize,
    /// Transitions collected before learning starts.
    #[serde(default = "d_warmup")]
    pub warmup_samples: usize,
    /// How the warm-up's transitions are acted: with the initial policy and its exploration
    /// noise (`policy`, the paper's) or uniformly at random in the action box (`uniform`, as
    /// Stable-Baselines3's `learning_starts`).
    #[serde(default)]
    pub warmup_actions: WarmupActions,
    /// Vectorized env steps an actor takes per collection (serial mode: once per
    /// `collect_interval` iterations).
    #[serde(default = "d_collect_steps")]
    pub collect_steps: usize,
    /// Iterations between two collections in serial mode.
    #[serde(default = "d_collect_interval")]
    pub collect_interval: u64,
    /// Std of the Gaussian exploration noise, in `algo.noise_units` (0 disables it).
    #[serde(default = "d_explore")]
    pub explore_noise: f64,
    /// Units of the exploration and TD3 smoothing noise: `action` (default) or `normalized`
    /// (fractions of each dimension's half-range).
    #[serde(default)]
    pub noise_units: NoiseUnits,
    /// Polyak coefficient τ of the target networks.
    #[serde(default = "d_tau")]
    pub tau: f64,
    /// Policy update interval m: the policy and targets update every m-th iteration.
    #[serde(default = "d_delay")]
    pub policy_delay: u64,
    /// Q-network learning rate schedule (over the Q optimiser's own steps).
    #[serde(default = "d_q_lr")]
    pub q_lr: LrSchedule,
    /// Policy learning rate schedule (over the policy optimiser's own steps).
    #[serde(default = "d_pi_lr")]
    pub policy_lr: LrSchedule,
    /// Adam hyper-parameters.
    #[serde(default)]
    pub adam: AdamConfig,
    /// Global-norm clip of each network's gradient.
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
    /// n of n-step TD targets (MPG-v1, n-step DPG, n-step ADP).
    #[serde(default = "d_h")]
    pub n_step: usize,
    /// H: model-rollout horizon of MPG's J_H and of n-step ADP's policy loss.
    #[serde(default = "d_h")]
    pub horizon: usize,
    /// Times a batch and its (expensive) targets are reused (MPG-v1, n-step DPG: 10).
    #[serde(default = "d_reuse")]
    pub batch_reuse: usize,
    /// η of the weight schedule (10): the base λ moves between 1−η and 1.
    #[serde(default = "d_eta")]
    pub eta: f64,
    /// T of the weight schedule (10): iterations over which weights move from model to data.
    #[serde(default = "d_schedule_t")]
    pub schedule_iterations: u64,
    /// A floor under MPG's model weight: `w_model = max(w_model(k), floor)`, `w_data = 1 −
    /// w_model`. 0 (the default) is the paper's schedule, which hands the policy gradient
    /// wholly to the data term by T; see `docs/design.md`, "MPG-v1's late collapses".
    #[serde(default)]
    pub model_weight_min: f64,
    /// κ of a proximal term `κ/2 · mean ‖(π(s) − π_target(s)) / half-range‖²` added to the
    /// policy loss of deterministic policies: a soft trust region that holds each policy step
    /// near the slowly moving target policy. 0 (the default, the paper) adds nothing; see
    /// `docs/design.md`, "MPG-v1's late collapses".
    #[serde(default)]
    pub policy_proximal: f64,
    /// κ of a penalty `κ/2 · mean Σ_j z_j(s)²` on the pre-tanh outputs `z` of a deterministic
    /// policy, added to its loss: it keeps the tanh out of saturation, where its slope and
    /// every policy gradient vanish. 0 (the default, the paper) adds nothing; see
    /// `docs/design.md`, "A learned model".
    #[serde(default)]
    pub policy_preactivation: f64,
    /// H of the weight schedule (10), the exponent; defaults to `horizon` when absent.
    #[serde(default)]
    pub schedule_exponent: Option<usize>,
    /// How later rollout actions enter MPG's gradient.
    #[serde(default = "d_rollout_grad")]
    pub rollout_gradient: RolloutGradient,
    /// Where n-step value targets are rolled out: `env` (default, the paper: the true
    /// environment reset to each replayed state), `model` (the prior model, the reference
    /// code's n-step ADP) or `replay` (the replay's stored trajectories, for environments that
    /// cannot be set to a state).
    #[serde(default = "d_value_target")]
    pub value_target: ValueTarget,
    /// TD3 target-policy smoothing noise std.
    #[serde(default = "d_target_noise")]
    pub target_noise: f64,
    /// TD3 target-policy smoothing noise clip.
    #[serde(default = "d_target_noise_clip")]
    pub target_noise_clip: f64,
    /// SAC entropy temperature α (initial value when learned).
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// SAC: learn α towards `target_entropy` (default −act_dim).
    #[serde(default)]
    pub learn_alpha: bool,
    /// SAC target entropy when α is learned; defaults to −act_dim.
    #[serde(default)]
    pub target_entropy: Option<f64>,
    /// SAC: squash the Gaussian with tanh into the action bounds.
    #[serde(default = "d_true")]
    pub squash: bool,
    /// SAC without `squash`: the sample the replay stores and Q receives, `clipped` (default)
    /// to the bounds or `raw` (the reference code). Ignored when `squash` (the squashed sample
    /// is inside the bounds).
    #[serde(default = "d_sac_action")]
    pub sac_action: SacAction,
    /// Clip the bootstrap value of n-step targets to `[lo, hi]` (reference pendulum hack);
    /// absent: no clip.
    #[serde(default)]
    pub bootstrap_clip: Option<[f64; 2]>,
}

/// Training loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Update iterations (paper: 100 000).
    #[serde(default = "d_iterations")]
    pub iterations: u64,
    /// Evaluate every this many iterations, including 0 (paper: 3000).
    #[serde(default = "d_eval_interval")]
    pub eval_interval: u64,
    /// Episodes per evaluation (paper: 5).
    #[serde(default = "d_eval_episodes")]
    pub eval_episodes: usize,
    /// Save a checkpoint every this many iterations.
    #[serde(default = "d_eval_interval")]
    pub checkpoint_interval: u64,
    /// Checkpoints kept (oldest deleted).
    #[serde(default = "d_keep")]
    pub keep_checkpoints: usize,
    /// Write a progress.csv row every this many iterations.
    #[serde(default = "d_log_interval")]
    pub log_interval: u64,
    /// Random seed: fixes everything in serial mode.
    #[serde(default)]
    pub seed: u64,
    /// Abort after this many consecutive steps with non-finite losses or gradients.
    #[serde(default = "d_nonfinite")]
    pub max_nonfinite_streak: u64,
    /// Which agents data collection resets after each step: `done` (default: those that
    /// terminated or truncated) or `every_step` (all, re-sampled from the initial
    /// distribution: the reference code's effective behaviour, a bug kept as an option).
    #[serde(default)]
    pub collect_reset: CollectReset,
    /// Serial mode: threads of the learning core (GEMMs split across them, and the critic and
    /// policy gradients computed concurrently). Default 1; a run is reproducible for a given
    /// setting.
    #[serde(default = "d_threads")]
    pub threads: usize,
    /// Also write every progress row (and the config) as a TensorBoard event file in the run
    /// directory (`tensorboard --logdir RUN`); see `docs/usage.md` for the tags.
    #[serde(default = "d_true")]
    pub tensorboard: bool,
    /// Start the run even when its estimated memory exceeds the memory available (`mixpg
    /// train --force` sets it); the episode-length bounds of `algo.horizon` and
    /// `algo.n_step` are checked regardless.
    #[serde(default)]
    pub skip_memory_check: bool,
}

/// Execution mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One thread, bit-reproducible from the seed.
    Serial,
    /// The paper's asynchronous architecture (threads); not bit-reproducible.
    Async,
    /// The same architecture on Ray (run by `python -m mixpg.ray`); not bit-reproducible.
    Ray,
}

/// What the asynchronous runtime does when a worker thread panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPanic {
    /// Report the role and id and start a fresh worker.
    Restart,
    /// Report the role and id and stop the run cleanly with an error.
    Stop,
}

/// Runtime settings (paper: 2 actors, 2 buffers, 12 learners).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `serial`, `async` or `ray`.
    #[serde(default = "d_mode")]
    pub mode: Mode,
    /// Actor threads (async).
    #[serde(default = "d_two")]
    pub actors: usize,
    /// Buffer threads (async).
    #[serde(default = "d_two")]
    pub buffers: usize,
    /// Learner threads (async; on Ray, `learner_groups` × `learners_per_group` instead).
    #[serde(default = "d_learners")]
    pub learners: usize,
    /// Ray: learner groups, each a Ray actor on a node of its own running
    /// `learners_per_group` learner threads that share one parameter copy and one batch feed
    /// and exchange one message per round with the driver.
    #[serde(default = "d_one")]
    pub learner_groups: usize,
    /// Ray: learner threads per group; left out, the CPU count Ray gives the group's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learners_per_group: Option<usize>,
    /// Ray: custom resources a node must offer to host a learner group, e.g.
    /// `{ learner_node = 1 }` (`--learner-resource NAME=AMOUNT` adds to them); the groups are
    /// placed on different nodes that have them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_resources: BTreeMap<String, f64>,
    /// Ray: a learner group answers a round once it has made this many gradients per learner
    /// thread (or after 0.1 s); larger rounds cost the driver less per update and make the
    /// gradients staler (docs/design.md). Default 8.
    #[serde(default = "d_round_gradients")]
    pub round_gradients_per_learner: usize,
    /// Worker panic policy (async).
    #[serde(default = "d_on_panic")]
    pub on_panic: OnPanic,
    /// Capacity of the experience (batch) queue.
    #[serde(default = "d_exp_queue")]
    pub experience_queue: usize,
    /// Capacity of the gradient queue.
    #[serde(default = "d_grad_queue")]
    pub gradient_queue: usize,
    /// Upper bound on replayed samples per inserted sample (Reverb's samples-per-insert);
    /// buffers wait for actors beyond it. 0 disables the bound.
    #[serde(default = "d_spi")]
    pub samples_per_insert: f64,
    /// Async: when the gradient queue is empty, the optimizer re-applies the last gradient up
    /// to this many times instead of waiting (the reference code's `grads_max_reuse`, 25);
    /// reused applications count as iterations. 0 (default): always wait for a fresh gradient.
    #[serde(default)]
    pub grad_max_reuse: u64,
    /// TEST-ONLY fault injection (async), see [`FaultSpec`]: `"ROLE:ID:STEP"` (ROLE = actor,
    /// buffer or learner) makes that worker panic at its STEP-th step (first incarnation only);
    /// `"learner:ID:STEP:nan"` makes its STEP-th gradient non-finite instead; `"checkpoint:0:K"`
    /// makes every checkpoint write from iteration K on fail. Leave unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_panic: Option<String>,
}

/// Largest `runtime.experience_queue` / `runtime.gradient_queue` (channels allocate their
/// slots up front).
pub const MAX_QUEUE: usize = 1 << 16;

/// What a test fault targets (`runtime.inject_panic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// An actor thread.
    Actor,
    /// A buffer thread.
    Buffer,
    /// A learner thread.
    Learner,
    /// The optimizer's checkpoint writes.
    Checkpoint,
}

/// A test-only fault parsed from `runtime.inject_panic` (`ROLE:ID:STEP[:nan]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    /// What fails.
    pub target: FaultTarget,
    /// The worker id (0 for `checkpoint`).
    pub id: usize,
    /// The worker step (0-based, first incarnation) that fails, or for `checkpoint` the first
    /// iteration whose checkpoint write fails.
    pub step: u64,
    /// A learner sends a non-finite gradient at that step instead of panicking.
    pub non_finite: bool,
}

impl FaultSpec {
    /// Parse `ROLE:ID:STEP` or `learner:ID:STEP:nan`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(':');
        let target = match it.next()? {
            "actor" => FaultTarget::Actor,
            "buffer" => FaultTarget::Buffer,
            "learner" => FaultTarget::Learner,
            "checkpoint" => FaultTarget::Checkpoint,
            _ => return None,
        };
        let id = it.next()?.parse().ok()?;
        let step = it.next()?.parse().ok()?;
        let non_finite = match it.next() {
            None => false,
            Some("nan") if target == FaultTarget::Learner => true,
            Some(_) => return None,
        };
        it.next().is_none().then_some(Self {
            target,
            id,
            step,
            non_finite,
        })
    }
}

fn d_ensemble() -> usize {
    5
}
fn d_model_hidden() -> Vec<usize> {
    vec![200, 200]
}
fn d_model_lr() -> f64 {
    1e-3
}
fn d_holdout() -> f64 {
    0.2
}
fn d_patience() -> usize {
    5
}
fn d_max_epochs() -> usize {
    50
}
fn d_max_steps() -> usize {
    1000
}
fn d_fit_every() -> u64 {
    250
}
fn d_model_warmup() -> u64 {
    1000
}
fn d_max_horizon() -> usize {
    50
}
fn d_num_agents() -> usize {
    8
}
fn d_true() -> bool {
    true
}
fn d_reward_scale() -> f64 {
    0.01
}
fn d_gamma() -> f64 {
    0.98
}
fn d_batch() -> usize {
    256
}
fn d_capacity() -> usize {
    500_000
}
fn d_warmup() -> usize {
    3000
}
fn d_collect_steps() -> usize {
    64
}
fn d_collect_interval() -> u64 {
    10
}
fn d_explore() -> f64 {
    0.1
}
fn d_tau() -> f64 {
    0.005
}
fn d_delay() -> u64 {
    2
}
fn d_q_lr() -> LrSchedule {
    LrSchedule::linear(8e-5, 8e-6, 100_000)
}
fn d_pi_lr() -> LrSchedule {
    LrSchedule::linear(3e-5, 3e-6, 100_000)
}
fn d_clip() -> f64 {
    3.0
}
fn d_h() -> usize {
    25
}
fn d_reuse() -> usize {
    10
}
fn d_eta() -> f64 {
    0.1
}
fn d_schedule_t() -> u64 {
    9000
}
fn d_rollout_grad() -> RolloutGradient {
    RolloutGradient::FirstAction
}
fn d_value_target() -> ValueTarget {
    ValueTarget::Env
}
fn d_sac_action() -> SacAction {
    SacAction::Clipped
}
fn d_target_noise() -> f64 {
    0.2
}
fn d_target_noise_clip() -> f64 {
    0.5
}
fn d_alpha() -> f64 {
    0.03
}
fn d_iterations() -> u64 {
    100_000
}
fn d_eval_interval() -> u64 {
    3000
}
fn d_eval_episodes() -> usize {
    5
}
fn d_keep() -> usize {
    2
}
fn d_log_interval() -> u64 {
    1
}
fn d_nonfinite() -> u64 {
    100
}
fn d_threads() -> usize {
    1
}
fn d_mode() -> Mode {
    Mode::Serial
}
fn d_two() -> usize {
    2
}
fn d_round_gradients() -> usize {
    8
}
fn d_learners() -> usize {
    12
}
fn d_one() -> usize {
    1
}
fn d_on_panic() -> OnPanic {
    OnPanic::Restart
}
fn d_exp_queue() -> usize {
    128
}
fn d_grad_queue() -> usize {
    25
}
fn d_spi() -> f64 {
    64.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        toml::from_str("").expect("train defaults")
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        toml::from_str("").expect("runtime defaults")
    }
}

use crate::env::canonical_name;

impl Config {
    /// Parse TOML text, apply `key=value` overrides, and validate.
    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Table = toml::from_str(text).context("invalid TOML")?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let mut cfg: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))
            .context("invalid configuration")?;
        cfg.task.name = canonical_name(&cfg.task.name);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read a config file, apply overrides, and validate; errors name the file and the key.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml_str(&text, overrides)
            .with_context(|| format!("config file {}", path.display()))
    }

    /// A run's config as `mixpg train` resolves it: the file, then `overrides`, then `seed`
    /// (`train.seed`) and `iterations` (`train.iterations`).
    pub fn load_for_run(
        path: &Path,
        overrides: &[String],
        seed: Option<u64>,
        iterations: Option<u64>,
    ) -> Result<Self> {
        let mut sets = overrides.to_vec();
        if let Some(s) = seed {
            sets.push(format!("train.seed={s}"));
        }
        if let Some(n) = iterations {
            sets.push(format!("train.iterations={n}"));
        }
        Self::load(path, &sets)
    }

    /// The fully resolved configuration as TOML (written next to a run's results).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// The exponent H of the weight schedule (10).
    pub fn schedule_exponent(&self) -> usize {
        self.algo.schedule_exponent.unwrap_or(self.algo.horizon)
    }

    /// Check value ranges; the error names the offending key.
    pub fn validate(&self) -> Result<()> {
        let t = &self.task;
        let a = &self.algo;
        let tr = &self.train;
        let r = &self.runtime;
        check(!t.name.is_empty(), "task.name", "must name a task")?;
        check(t.num_agents >= 1, "task.num_agents", "must be at least 1")?;
        check(tr.threads >= 1, "train.threads", "must be at least 1")?;
        check(
            t.reward_scale.is_finite() && t.reward_scale > 0.0,
            "task.reward_scale",
            "must be a positive number",
        )?;
        check(
            a.gamma > 0.0 && a.gamma <= 1.0,
            "algo.gamma",
            "must be in (0, 1]",
        )?;
        check(a.batch_size >= 1, "algo.batch_size", "must be at least 1")?;
        check(
            a.buffer_capacity >= a.batch_size,
            "algo.buffer_capacity",
            "must be at least algo.batch_size",
        )?;
        check(
            a.warmup_samples >= 1,
            "algo.warmup_samples",
            "must be at least 1",
        )?;
        if r.mode == Mode::Ray {
            check(
                r.grad_max_reuse == 0,
                "runtime.grad_max_reuse",
                "must be 0 in ray mode (the Ray driver applies fresh gradients only)",
            )?;
        }
        // The warm-up waits until a replay buffer holds `warmup_samples` transitions (one
        // buffer's share in async mode), which a smaller buffer never reaches.
        let per_buffer = match r.mode {
            Mode::Serial => a.warmup_samples,
            Mode::Async | Mode::Ray => a.warmup_samples.div_ceil(r.buffers.max(1)),
        };
        if a.buffer_capacity < per_buffer {
            let share = match r.mode {
                Mode::Serial => String::new(),
                Mode::Async | Mode::Ray => format!(
                    " / runtime.buffers = {} per buffer, in async mode",
                    r.buffers
                ),
            };
            bail!(
                "invalid value for `algo.buffer_capacity`: {} is smaller than the warm-up \
                 `algo.warmup_samples` = {}{share}, so the warm-up could never end; raise \
                 algo.buffer_capacity to at least {per_buffer} or lower algo.warmup_samples",
                a.buffer_capacity,
                a.warmup_samples
            );
        }
        check(
            a.collect_steps >= 1,
            "algo.collect_steps",
            "must be at least 1",
        )?;
        check(
            a.collect_interval >= 1,
            "algo.collect_interval",
            "must be at least 1",
        )?;
        check(
            a.explore_noise.is_finite() && a.explore_noise >= 0.0,
            "algo.explore_noise",
            "must be ≥ 0",
        )?;
        check(a.tau > 0.0 && a.tau <= 1.0, "algo.tau", "must be in (0, 1]")?;
        check(
            a.policy_delay >= 1,
            "algo.policy_delay",
            "must be at least 1",
        )?;
        for (key, s) in [("algo.q_lr", &a.q_lr), ("algo.policy_lr", &a.policy_lr)] {
            check(
                s.initial > 0.0 && s.final_lr >= 0.0 && s.power > 0.0,
                key,
                "needs initial > 0, final_lr ≥ 0 and power > 0",
            )?;
        }
        check(
            a.adam.beta1 >= 0.0 && a.adam.beta1 < 1.0,
            "algo.adam.beta1",
            "must be in [0, 1)",
        )?;
        check(
            a.adam.beta2 >= 0.0 && a.adam.beta2 < 1.0,
            "algo.adam.beta2",
            "must be in [0, 1)",
        )?;
        check(a.adam.eps > 0.0, "algo.adam.eps", "must be positive")?;
        check(a.grad_clip > 0.0, "algo.grad_clip", "must be positive")?;
        check(a.n_step >= 1, "algo.n_step", "must be at least 1")?;
        check(a.horizon >= 1, "algo.horizon", "must be at least 1")?;
        check(a.batch_reuse >= 1, "algo.batch_reuse", "must be at least 1")?;
        check(a.eta > 0.0 && a.eta < 1.0, "algo.eta", "must be in (0, 1)")?;
        check(
            (0.0..=1.0).contains(&a.model_weight_min),
            "algo.model_weight_min",
            "must be in [0, 1]",
        )?;
        // The deterministic policy's loss terms.
        for (key, kappa) in [
            ("algo.policy_proximal", a.policy_proximal),
            ("algo.policy_preactivation", a.policy_preactivation),
        ] {
            check(
                kappa.is_finite() && kappa >= 0.0,
                key,
                "must be a finite number ≥ 0",
            )?;
            check(
                kappa == 0.0 || a.name != AlgoName::Sac,
                key,
                "applies to deterministic policies; SAC's is stochastic (leave it at 0)",
            )?;
        }
        check(
            a.schedule_iterations >= 2,
            "algo.schedule_iterations",
            "must be at least 2",
        )?;
        check(a.target_noise >= 0.0, "algo.target_noise", "must be ≥ 0")?;
        check(
            a.target_noise_clip >= 0.0,
            "algo.target_noise_clip",
            "must be ≥ 0",
        )?;
        check(a.alpha > 0.0, "algo.alpha", "must be positive")?;
        if let Some([lo, hi]) = a.bootstrap_clip {
            check(lo < hi, "algo.bootstrap_clip", "needs lo < hi")?;
        }
        check(tr.iterations >= 1, "train.iterations", "must be at least 1")?;
        check(
            tr.eval_interval >= 1,
            "train.eval_interval",
            "must be at least 1",
        )?;
        check(
            tr.eval_episodes >= 1,
            "train.eval_episodes",
            "must be at least 1",
        )?;
        check(
            tr.checkpoint_interval >= 1,
            "train.checkpoint_interval",
            "must be at least 1",
        )?;
        check(
            tr.keep_checkpoints >= 1,
            "train.keep_checkpoints",
            "must be at least 1",
        )?;
        check(
            tr.log_interval >= 1,
            "train.log_interval",
            "must be at least 1",
        )?;
        check(
            tr.max_nonfinite_streak >= 1,
            "train.max_nonfinite_streak",
            "must be at least 1",
        )?;
        check(r.actors >= 1, "runtime.actors", "must be at least 1")?;
        check(r.buffers >= 1, "runtime.buffers", "must be at least 1")?;
        check(r.learners >= 1, "runtime.learners", "must be at least 1")?;
        check(
            r.learner_groups >= 1,
            "runtime.learner_groups",
            "must be at least 1",
        )?;
        check(
            r.learners_per_group != Some(0),
            "runtime.learners_per_group",
            "must be at least 1 (leave it out for the CPU count of the group's node)",
        )?;
        check(
            r.round_gradients_per_learner >= 1,
            "runtime.round_gradients_per_learner",
            "must be at least 1",
        )?;
        for (name, amount) in &r.group_resources {
            check(
                amount.is_finite() && *amount > 0.0,
                "runtime.group_resources",
                &format!("{name} = {amount}: amounts must be positive numbers"),
            )?;
        }
        for (key, n) in [
            ("runtime.experience_queue", r.experience_queue),
            ("runtime.gradient_queue", r.gradient_queue),
        ] {
            check(
                (1..=MAX_QUEUE).contains(&n),
                key,
                &format!("must be between 1 and {MAX_QUEUE}"),
            )?;
        }
        check(
            r.samples_per_insert >= 0.0,
            "runtime.samples_per_insert",
            "must be ≥ 0",
        )?;
        // The samples-per-insert bound paces the asynchronous buffers only.
        let start = a.warmup_samples.div_ceil(r.buffers.max(1)) as f64;
        let paced = r.mode != Mode::Serial && r.samples_per_insert > 0.0;
        if paced && r.samples_per_insert * start < a.batch_size as f64 {
            bail!(
                "invalid value for `runtime.samples_per_insert`: {} is so small that a buffer \
                 holding its warm-up share ({start} transitions) may not sample one batch of \
                 algo.batch_size = {}; use at least {} or 0 (no limit)",
                r.samples_per_insert,
                a.batch_size,
                a.batch_size as f64 / start
            );
        }
        if t.model == ModelKind::Learned {
            self.validate_learned()?;
        }
        if let Some(text) = &r.inject_panic {
            let spec = FaultSpec::parse(text);
            check(
                spec.is_some(),
                "runtime.inject_panic",
                "must be ROLE:ID:STEP with ROLE = actor, buffer, learner or checkpoint, \
                 or learner:ID:STEP:nan",
            )?;
            let spec = spec.expect("checked");
            let (ids, role_key) = match spec.target {
                FaultTarget::Actor => (r.actors, "runtime.actors"),
                FaultTarget::Buffer => (r.buffers, "runtime.buffers"),
                FaultTarget::Learner => (r.learners, "runtime.learners"),
                FaultTarget::Checkpoint => (1, "checkpoint (the optimizer's id is 0)"),
            };
            check(
                spec.id < ids,
                "runtime.inject_panic",
                &format!("id {} is out of range ({role_key}: {ids})", spec.id),
            )?;
        }
        Ok(())
    }
}

impl Config {
    /// The refusals of `task.model = "learned"`; the error names the key.
    fn validate_learned(&self) -> Result<()> {
        let (a, m) = (&self.algo, &self.model);
        if !a.name.needs_model() {
            bail!(
                "invalid value for `task.model`: \"learned\" fits a model for the model-driven \
                 policy gradient, and algo.name = {:?} uses no model; use mpg_v1, mpg_v2 or nadp, \
                 or leave task.model out",
                a.name.as_str()
            );
        }
        check(m.ensemble >= 1, "model.ensemble", "must be at least 1")?;
        check(
            !m.hidden.is_empty() && m.hidden.iter().all(|h| *h >= 1),
            "model.hidden",
            "needs at least one hidden layer, each at least 1 wide",
        )?;
        check(
            m.lr.is_finite() && m.lr > 0.0,
            "model.lr",
            "must be positive",
        )?;
        check(m.batch >= 1, "model.batch", "must be at least 1")?;
        check(
            m.holdout > 0.0 && m.holdout < 1.0,
            "model.holdout",
            "must be in (0, 1)",
        )?;
        check(m.patience >= 1, "model.patience", "must be at least 1")?;
        check(m.max_epochs >= 1, "model.max_epochs", "must be at least 1")?;
        check(m.max_steps >= 1, "model.max_steps", "must be at least 1")?;
        check(m.fit_every >= 1, "model.fit_every", "must be at least 1")?;
        if a.horizon > m.max_horizon {
            bail!(
                "invalid value for `algo.horizon`: {} is longer than model.max_horizon = {} \
                 allows through a learned model (its errors compound along the rollout); lower \
                 algo.horizon or raise model.max_horizon",
                a.horizon,
                m.max_horizon
            );
        }
        if self.runtime.mode != Mode::Serial {
            bail!(
                "invalid value for `runtime.mode`: task.model = \"learned\" runs in serial mode \
                 only for now (the asynchronous and Ray runtimes do not fit or ship the model); \
                 use runtime.mode = \"serial\""
            );
        }
        if a.name.n_step_critic() && a.value_target == ValueTarget::Model {
            bail!(
                "invalid value for `algo.value_target`: \"model\" rolls n-step targets out in \
                 the prior model, and task.model = \"learned\" has none; use \"env\" or \"replay\""
            );
        }
        Ok(())
    }
}

fn check(ok: bool, key: &str, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        bail!("invalid value for `{key}`: {what}")
    }
}

/// Apply one `dotted.key=value` override; the value is parsed as TOML, or taken as a string.
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .with_context(|| format!("override `{spec}` is not of the form key=value"))?;
    let key = key.trim();
    let raw = raw.trim();
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("override key `{key}` is malformed");
    }
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .with_context(|| format!("override key `{key}`: `{p}` is not a table"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
