//! Algorithms: MPG-v1/v2 and the baselines n-step DPG, n-step ADP, DDPG, TD3 and SAC.
//!
//! An algorithm is split the way the paper's asynchronous architecture needs it:
//! - [`Learner::compute`] takes a parameter snapshot and a replay batch and returns gradients
//!   (value targets in [`targets`], policy losses in [`policy`]);
//! - [`Agent::apply`] owns the parameters and optimisers and applies gradients (Q every
//!   iteration; policy, temperature and target networks every `policy_delay`-th iteration).
//!
//! Both gradients of an iteration are computed from the same snapshot (as the reference
//! code's learners do), so the serial trainer is the asynchronous one with zero staleness.

pub mod bias;
pub mod bptt;
pub mod fused;
pub mod learned;
pub mod policy;
pub mod schedule;
pub mod targets;

use std::time::Instant;

use anyhow::Result;
use burn::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

use crate::checkpoint::Checkpoint;
use crate::config::{
    AlgoName, Config, MemberChoice, ModelKind, NoiseUnits, SacAction, ValueTarget,
};
use crate::env::{Env, ModelTape, PriorModel, Task, TaskSpec, Termination, check_model};
use crate::nn::{
    self, Adam, DetPolicy, GaussianPolicy, Kernels, ParamSet, QNet, device, plain_device, tensor2,
};
use crate::replay::{HostBatch, NStepWindow, ReplayBuffer};
use learned::{FitStats, LearnedModel, Selection};

/// The policy network of an algorithm.
#[derive(Debug, Clone)]
pub enum PolicyNet {
    /// `a = high ⊙ tanh(MLP(s))` (MPG, n-step DPG/ADP, DDPG, TD3).
    Det(DetPolicy),
    /// Diagonal Gaussian (SAC).
    Gauss(GaussianPolicy),
}

impl PolicyNet {
    /// The deterministic action (the mean for SAC), used for evaluation and for targets.
    pub fn act(&self, params: &[Tensor<2>], obs: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Det(p) => p.forward(params, obs),
            Self::Gauss(p) => p.mode(params, obs),
        }
    }

    fn init(&self, rng: &mut Pcg64Mcg) -> ParamSet {
        match self {
            Self::Det(p) => p.init(rng),
            Self::Gauss(p) => p.init(rng),
        }
    }
}

/// Network architectures of an algorithm (no parameters).
#[derive(Debug, Clone)]
pub struct Nets {
    /// The task the networks are sized for.
    pub spec: TaskSpec,
    /// The policy.
    pub policy: PolicyNet,
    /// The Q network architecture (shared by Q1 and Q2).
    pub q: QNet,
    /// The algorithm.
    pub algo: AlgoName,
    /// Which implementation runs the network passes (`network.kernels`).
    pub kernels: Kernels,
    /// Per action dimension, what the exploration and target-smoothing noise stds are
    /// multiplied by: 1 (`algo.noise_units = "action"`) or the box's half-width
    /// (`"normalized"`).
    pub noise_scale: Vec<f32>,
    /// SAC keeps its unsquashed sample raw (`algo.sac_action = "raw"`, `algo.squash = false`):
    /// [`act`] returns it unclipped for the replay, and Q receives it unclipped.
    pub raw_sample: bool,
}

impl Nets {
    /// Build the architectures for `cfg` on task `spec`.
    pub fn new(cfg: &Config, spec: &TaskSpec) -> Self {
        let dev = device();
        let policy = match cfg.algo.name {
            AlgoName::Sac => PolicyNet::Gauss(GaussianPolicy::with_bounds(
                &spec.obs_scale,
                &spec.action_low,
                &spec.action_high,
                cfg.algo.squash,
                &cfg.network,
                &dev,
            )),
            _ => PolicyNet::Det(DetPolicy::with_bounds(
                &spec.obs_scale,
                &spec.action_low,
                &spec.action_high,
                &cfg.network,
                &dev,
            )),
        };
        Self {
            spec: spec.clone(),
            policy,
            q: QNet::new(&spec.obs_scale, spec.act_dim, &cfg.network, &dev),
            algo: cfg.algo.name,
            kernels: cfg.network.kernels,
            noise_scale: match cfg.algo.noise_units {
                NoiseUnits::Action => vec![1.0; spec.act_dim],
                NoiseUnits::Normalized => spec.action_half(),
            },
            raw_sample: cfg.algo.name == AlgoName::Sac
                && !cfg.algo.squash
                && cfg.algo.sac_action == SacAction::Raw,
        }
    }

    /// SAC's sample as Q receives it: clipped to the task's bounds (differentiable inside
    /// them), or unchanged with [`Nets::raw_sample`].
    pub fn q_action(&self, sample: Tensor<2>) -> Tensor<2> {
        if self.raw_sample {
            sample
        } else {
            clip_to_bounds(&self.spec, sample)
        }
    }

    /// Whether the algorithm trains a second Q network.
    pub fn twin_q(&self) -> bool {
        matches!(self.algo, AlgoName::MpgV2 | AlgoName::Td3 | AlgoName::Sac)
    }
}

/// All parameters of an algorithm: online and target networks and SAC's log-temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Policy.
    pub pi: ParamSet,
    /// First Q network.
    pub q1: ParamSet,
    /// Second Q network (twin-Q algorithms).
    pub q2: Option<ParamSet>,
    /// Target policy.
    pub pi_t: ParamSet,
    /// Target Q1.
    pub q1_t: ParamSet,
    /// Target Q2.
    pub q2_t: Option<ParamSet>,
    /// log α (SAC), a `[1, 1]` parameter.
    pub log_alpha: ParamSet,
}

impl Params {
    /// Fresh parameters; targets start equal to the online networks.
    pub fn init(nets: &Nets, cfg: &Config, rng: &mut Pcg64Mcg) -> Self {
        let pi = nets.policy.init(rng);
        let q1 = nets.q.init(rng);
        let q2 = nets.twin_q().then(|| nets.q.init(rng));
        Self {
            pi_t: pi.clone(),
            q1_t: q1.clone(),
            q2_t: q2.clone(),
            pi,
            q1,
            q2,
            log_alpha: ParamSet::new(vec![[1, 1]], vec![vec![cfg.algo.alpha.ln() as f32]]),
        }
    }

    /// SAC's temperature α.
    pub fn alpha(&self) -> f64 {
        (self.log_alpha.values()[0][0] as f64).exp()
    }

    fn named(&self) -> Vec<(&'static str, &ParamSet)> {
        let mut v = vec![
            ("pi", &self.pi),
            ("q1", &self.q1),
            ("pi_t", &self.pi_t),
            ("q1_t", &self.q1_t),
            ("log_alpha", &self.log_alpha),
        ];
        if let (Some(q2), Some(q2_t)) = (&self.q2, &self.q2_t) {
            v.push(("q2", q2));
            v.push(("q2_t", q2_t));
        }
        v
    }

    /// Store every network in a checkpoint.
    pub fn save(&self, ck: &mut Checkpoint) {
        for (name, p) in self.named() {
            ck.set_params(&format!("params/{name}"), p);
        }
    }

    /// Load every network from a checkpoint, shaped like `self`.
    pub fn load(&self, ck: &Checkpoint) -> Result<Self> {
        let get = |name: &str, like: &ParamSet| ck.params(&format!("params/{name}"), like);
        Ok(Self {
            pi: get("pi", &self.pi)?,
            q1: get("q1", &self.q1)?,
            q2: self.q2.as_ref().map(|q| get("q2", q)).transpose()?,
            pi_t: get("pi_t", &self.pi_t)?,
            q1_t: get("q1_t", &self.q1_t)?,
            q2_t: self.q2_t.as_ref().map(|q| get("q2_t", q)).transpose()?,
            log_alpha: get("log_alpha", &self.log_alpha)?,
        })
    }
}

/// Gradients of one iteration, computed from one parameter snapshot.
#[derive(Debug, Clone, Default)]
pub struct Grads {
    /// Q1 gradient.
    pub q1: Vec<Vec<f32>>,
    /// Q2 gradient (twin-Q algorithms).
    pub q2: Option<Vec<Vec<f32>>>,
    /// Policy gradient (on policy-update iterations).
    pub pi: Option<Vec<Vec<f32>>>,
    /// Gradient of SAC's temperature loss w.r.t. log α (when α is learned).
    pub log_alpha: Option<f32>,
    /// Losses and timings.
    pub stats: GradStats,
}

/// Diagnostics of one gradient computation.
#[derive(Debug, Clone, Copy, Default)]
pub struct GradStats {
    /// Mean Q loss (over the trained Q networks).
    pub q_loss: f64,
    /// Policy loss, when the policy gradient was computed.
    pub policy_loss: Option<f64>,
    /// Wall time of the policy-gradient computation, ms.
    pub pg_time_ms: Option<f64>,
    /// Fraction of the batch's transitions that ended in a failure state.
    pub terminated_frac: f64,
    /// Global norm of the Q gradient before clipping (mean over the trained Q networks).
    pub q_grad_norm: f64,
    /// Global norm of the policy gradient before clipping, when it was computed.
    pub pi_grad_norm: Option<f64>,
    /// Root-mean-square error of the prior model's expected one-step prediction (noise at its
    /// mean) of the batch's next observations (a drift of the replayed states away from where the model is
    /// accurate shows here first); `None` without a model.
    pub model_error: Option<f64>,
}

impl Grads {
    /// True when every loss and gradient entry is finite.
    pub fn is_finite(&self) -> bool {
        // Blocks without an early exit inside, which the compiler vectorises.
        let block_ok = |b: &[f32]| b.iter().fold(true, |ok, x| ok & x.is_finite());
        let ok = |g: &Vec<Vec<f32>>| g.iter().all(|v| v.chunks(256).all(block_ok));
        self.stats.q_loss.is_finite()
            && self.stats.policy_loss.is_none_or(f64::is_finite)
            && ok(&self.q1)
            && self.q2.as_ref().is_none_or(ok)
            && self.pi.as_ref().is_none_or(ok)
            && self.log_alpha.is_none_or(f32::is_finite)
    }
}

/// Optimiser side: parameters, Adam states, and the update rule of Algorithm 1.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Current parameters.
    pub params: Params,
    /// Policy optimiser.
    pub pi_adam: Adam,
    /// Q1 optimiser.
    pub q1_adam: Adam,
    /// Q2 optimiser.
    pub q2_adam: Option<Adam>,
    /// Temperature optimiser (SAC with learned α).
    pub alpha_adam: Adam,
    tau: f32,
    policy_delay: u64,
    grad_clip: f32,
}

impl Agent {
    /// Fresh parameters and optimisers.
    pub fn new(nets: &Nets, cfg: &Config, rng: &mut Pcg64Mcg) -> Self {
        let params = Params::init(nets, cfg, rng);
        let a = &cfg.algo;
        let q_adam = |p: &ParamSet| Adam::new(a.adam.clone(), a.q_lr.clone(), p);
        Self {
            pi_adam: Adam::new(a.adam.clone(), a.policy_lr.clone(), &params.pi),
            q1_adam: q_adam(&params.q1),
            q2_adam: params.q2.as_ref().map(q_adam),
            alpha_adam: Adam::new(a.adam.clone(), a.q_lr.clone(), &params.log_alpha),
            params,
            tau: a.tau as f32,
            policy_delay: a.policy_delay,
            grad_clip: a.grad_clip as f32,
        }
    }

    /// The policy update interval m (`algo.policy_delay`).
    pub fn policy_delay(&self) -> u64 {
        self.policy_delay
    }

    /// Whether iteration `k` updates the policy and the targets.
    pub fn is_policy_iteration(&self, k: u64) -> bool {
        k.is_multiple_of(self.policy_delay)
    }

    /// Clip and apply the gradients of iteration `k`.
    pub fn apply(&mut self, g: Grads, k: u64) {
        let policy_step = self.is_policy_iteration(k);
        self.apply_step(g, policy_step);
    }

    /// Clip and apply gradients; the policy, temperature and target networks update only when
    /// `policy_step` (the asynchronous optimizer passes whether the gradient carries a policy
    /// gradient, since its learners compute one on every `policy_delay`-th gradient).
    pub fn apply_step(&mut self, mut g: Grads, policy_step: bool) {
        let clip = self.grad_clip;
        nn::clip_global_norm(&mut g.q1, clip);
        self.q1_adam.apply(&mut self.params.q1, &g.q1);
        if let (Some(mut gq2), Some(adam), Some(q2)) =
            (g.q2, self.q2_adam.as_mut(), self.params.q2.as_mut())
        {
            nn::clip_global_norm(&mut gq2, clip);
            adam.apply(q2, &gq2);
        }
        if !policy_step {
            return;
        }
        if let Some(mut gpi) = g.pi {
            nn::clip_global_norm(&mut gpi, clip);
            self.pi_adam.apply(&mut self.params.pi, &gpi);
        }
        if let Some(ga) = g.log_alpha {
            self.alpha_adam
                .apply(&mut self.params.log_alpha, &[vec![ga]]);
        }
        let p = &mut self.params;
        p.pi_t.soft_update_from(&p.pi, self.tau);
        p.q1_t.soft_update_from(&p.q1, self.tau);
        if let (Some(t), Some(o)) = (p.q2_t.as_mut(), p.q2.as_ref()) {
            t.soft_update_from(o, self.tau);
        }
    }

    /// Store parameters and optimiser states.
    pub fn save(&self, ck: &mut Checkpoint) {
        self.params.save(ck);
        ck.set_adam("adam/pi", &self.pi_adam);
        ck.set_adam("adam/q1", &self.q1_adam);
        if let Some(a) = &self.q2_adam {
            ck.set_adam("adam/q2", a);
        }
        ck.set_adam("adam/log_alpha", &self.alpha_adam);
    }

    /// Restore parameters and optimiser states saved by [`Agent::save`].
    pub fn load(&mut self, ck: &Checkpoint) -> Result<()> {
        let params = self.params.load(ck)?;
        self.pi_adam = ck.adam("adam/pi", &params.pi)?;
        self.q1_adam = ck.adam("adam/q1", &params.q1)?;
        if let Some(q2) = &params.q2 {
            self.q2_adam = Some(ck.adam("adam/q2", q2)?);
        }
        self.alpha_adam = ck.adam("adam/log_alpha", &params.log_alpha)?;
        self.params = params;
        Ok(())
    }
}

/// A replayed batch together with its value targets (reused `batch_reuse` times).
#[derive(Debug, Clone)]
pub struct TargetBatch {
    /// The transitions.
    pub batch: HostBatch,
    /// Value targets `R^Target(s, a)` (scaled rewards).
    pub targets: Vec<f32>,
    /// [`model_error`] on the batch (computed once per batch, reported with every gradient);
    /// `None` without a model.
    pub model_error: Option<f64>,
}

/// Learner side: computes targets and gradients from a parameter snapshot.
pub struct Learner {
    /// Architectures.
    pub nets: Nets,
    cfg: Config,
    /// The prior model (model-driven algorithms; the others report `model_error` with it when
    /// the task has one).
    model: Option<Box<dyn PriorModel>>,
    /// The learned model (`task.model = "learned"`), which then takes the prior model's place.
    learned: Option<LearnedModel>,
    /// Buffers of the fused BPTT gradient.
    bptt: bptt::Workspace,
    /// True simulator for n-step TD targets in the environment (`algo.value_target = "env"`).
    env: Option<Box<dyn Env>>,
    rng: Pcg64Mcg,
}

impl Learner {
    /// A learner with its own prior model, true environment and RNG.
    pub fn new(
        nets: Nets,
        cfg: &Config,
        model: Option<Box<dyn PriorModel>>,
        env: Option<Box<dyn Env>>,
        seed: u64,
    ) -> Self {
        Self {
            nets,
            cfg: cfg.clone(),
            model,
            learned: None,
            env,
            rng: Pcg64Mcg::seed_from_u64(seed),
            bptt: bptt::Workspace::default(),
        }
    }

    /// The learner with the learned model `model` in place of a prior model.
    pub fn with_learned(mut self, model: LearnedModel) -> Self {
        self.model = None;
        self.learned = Some(model);
        self
    }

    /// The learner of `cfg` on `task`: the task's prior model when it has one (the
    /// model-driven terms and `model_error`; the exact model with `task.model_mismatch =
    /// false`) or, with `task.model = "learned"`, a learned ensemble initialised from
    /// `seed + 1`; its true environment seeded with `env_seed` when n-step targets are rolled
    /// out there, and its RNG seeded with `seed`.
    pub fn for_task(
        nets: Nets,
        cfg: &Config,
        task: &Task,
        env_seed: u64,
        seed: u64,
    ) -> Result<Self> {
        let mismatch = cfg.task.model_mismatch;
        let learned = cfg.task.model == ModelKind::Learned;
        let has_model = !learned
            && if mismatch {
                task.has_model()
            } else {
                task.has_exact_model()
            };
        let model = has_model.then(|| task.make_model(mismatch)).transpose()?;
        let env = match n_step_source(cfg) {
            Some(ValueTarget::Env) => Some(task.make_env(cfg.algo.batch_size, env_seed)?),
            _ => None,
        };
        let learner = Self::new(nets, cfg, model, env, seed);
        Ok(match learned {
            true => {
                let model = LearnedModel::new(task.spec(), &cfg.model, seed.wrapping_add(1));
                learner.with_learned(model)
            }
            false => learner,
        })
    }

    /// The learned model, if the learner has one.
    pub fn learned(&self) -> Option<&LearnedModel> {
        self.learned.as_ref()
    }

    /// Refit the learned model to `replay` when iteration `k` is a fit iteration
    /// (`model.fit_every`); the fit's diagnostics, or `None` when nothing was fitted.
    pub fn fit_model(&mut self, k: u64, replay: &ReplayBuffer) -> Option<FitStats> {
        let every = self.cfg.model.fit_every;
        let model = self.learned.as_mut()?;
        k.is_multiple_of(every).then(|| model.fit(replay)).flatten()
    }

    /// Store the learned model (if any) in a checkpoint.
    pub fn save_model(&self, ck: &mut Checkpoint) -> Result<()> {
        self.learned
            .as_ref()
            .map_or(Ok(()), |m| m.save(ck, learned::CHECKPOINT_PREFIX))
    }

    /// Restore the learned model (if any) saved by [`Learner::save_model`].
    pub fn load_model(&mut self, ck: &Checkpoint) -> Result<()> {
        self.learned
            .as_mut()
            .map_or(Ok(()), |m| m.load(ck, learned::CHECKPOINT_PREFIX))
    }

    /// The learner's RNG (model noise, SAC noise), for checkpoints.
    pub fn rng(&self) -> &Pcg64Mcg {
        &self.rng
    }

    /// Replace the RNG (resume).
    pub fn set_rng(&mut self, rng: Pcg64Mcg) {
        self.rng = rng;
    }

    /// The model of the model-driven terms, if the learner has one: the learned model, or
    /// the prior model.
    pub fn model(&self) -> Option<&dyn PriorModel> {
        match &self.learned {
            Some(m) => Some(m),
            None => self.model.as_deref(),
        }
    }

    /// Compute the value targets of a fresh batch with the snapshot `p`; an error if the
    /// environment or the model (one written in Python) failed.
    pub fn targets(&mut self, p: &Params, batch: HostBatch) -> Result<TargetBatch> {
        let (nets, cfg) = (&self.nets, &self.cfg);
        let targets = match n_step_source(cfg) {
            Some(ValueTarget::Model) => {
                let model = self
                    .model
                    .as_deref()
                    .expect("checked: n-step model targets");
                targets::n_step_model(nets, cfg, p, model, &batch, &mut self.rng)?
            }
            Some(ValueTarget::Env) => {
                let env = self
                    .env
                    .as_deref_mut()
                    .expect("checked: n-step env targets");
                targets::n_step(nets, cfg, p, env, &batch)?
            }
            Some(ValueTarget::Replay) => targets::n_step_replay(nets, cfg, p, &batch),
            None => targets::one_step(nets, cfg, p, &batch, &mut self.rng),
        };
        let model_error = match (&self.learned, self.model.as_deref()) {
            (Some(m), _) => m.stats().map(|s| s.model_error),
            (None, Some(m)) => {
                let e = model_error(m, &batch);
                check_model(m)?;
                Some(e)
            }
            (None, None) => None,
        };
        Ok(TargetBatch {
            batch,
            targets,
            model_error,
        })
    }

    /// An error if the prior model failed during the last gradient (one written in Python).
    pub fn check_model(&self) -> Result<()> {
        self.model.as_deref().map_or(Ok(()), check_model)
    }

    /// Gradients of iteration `k` from the snapshot `p` on a batch with targets. With more
    /// than one thread in the current rayon pool, the critic gradients are computed on another
    /// thread while this one computes the policy gradient (same results, in any order).
    pub fn compute(&mut self, p: &Params, tb: &TargetBatch, k: u64, policy_step: bool) -> Grads {
        let nets = &self.nets;
        let critic = || {
            let q = |q: &ParamSet| match nets.kernels {
                Kernels::Fused => {
                    let b = &tb.batch;
                    fused::critic_grad(nets, q, &b.obs, &b.act, &tb.targets)
                }
                Kernels::Autodiff => critic_grad_autodiff(nets, q, tb),
            };
            (q(&p.q1), p.q2.as_ref().map(q))
        };
        // A learned model not yet warmed up: MPG follows its data-driven term alone, n-step
        // ADP (model-driven only) makes no policy update.
        let ready = self.learned.as_ref().is_none_or(LearnedModel::ready);
        if let Some(m) = self.learned.as_mut().filter(|_| ready && policy_step) {
            m.select(match self.cfg.model.member {
                MemberChoice::Random => Selection::Member(self.rng.random_range(0..m.ensemble())),
                MemberChoice::Mean => Selection::Mean,
            });
        }
        let model: Option<&dyn PriorModel> = match &self.learned {
            Some(m) => Some(m),
            None => self.model.as_deref(),
        };
        let (cfg, rng) = (&self.cfg, &mut self.rng);
        let bptt = &self.bptt;
        let policy_step = policy_step && (ready || nets.algo != AlgoName::Nadp);
        let mut actor = || {
            policy_step.then(|| {
                let start = Instant::now();
                let ctx = policy::PolicyCtx {
                    nets,
                    cfg,
                    p,
                    model,
                    bptt,
                };
                let out = match ready {
                    true => policy::gradient(ctx, &tb.batch.obs, k, rng),
                    false => policy::data_gradient(ctx, &tb.batch.obs),
                };
                (out, start.elapsed().as_secs_f64() * 1e3)
            })
        };
        let (((g1, l1), q2), pg) = if policy_step && rayon::current_num_threads() > 1 {
            let mut critic_out = None;
            let pg = rayon::in_place_scope(|s| {
                s.spawn(|_| critic_out = Some(critic()));
                actor()
            });
            (critic_out.expect("the critic job ran"), pg)
        } else {
            (critic(), actor())
        };
        let (q2, l2) = match q2 {
            Some((g, l)) => (Some(g), Some(l)),
            None => (None, None),
        };
        let n1 = nn::global_norm(&g1) as f64;
        let q_grad_norm = q2
            .as_ref()
            .map_or(n1, |g2| 0.5 * (n1 + nn::global_norm(g2) as f64));
        let b = &tb.batch;
        let terminated_frac = b.terminated.iter().sum::<f32>() as f64 / b.len.max(1) as f64;
        let mut grads = Grads {
            q1: g1,
            q2,
            stats: GradStats {
                q_loss: l2.map_or(l1, |l2| 0.5 * (l1 + l2)),
                terminated_frac,
                q_grad_norm,
                model_error: tb.model_error,
                ..Default::default()
            },
            ..Default::default()
        };
        if let Some((out, ms)) = pg {
            grads.stats.pi_grad_norm = Some(nn::global_norm(&out.grads) as f64);
            grads.pi = Some(out.grads);
            grads.log_alpha = out.log_alpha_grad;
            grads.stats.policy_loss = Some(out.loss);
            grads.stats.pg_time_ms = Some(ms);
        }
        grads
    }
}

/// Root-mean-square error of `model`'s expected one-step prediction (noise at its mean) of
/// `batch`'s next observations, over every row and observation coordinate.
pub fn model_error(model: &dyn PriorModel, batch: &HostBatch) -> f64 {
    let n = batch.len;
    if n == 0 {
        return 0.0;
    }
    let noise = model.noise_mean().map_or(Vec::new(), |m| vec![m; n]);
    let mut next = vec![0.0; batch.next_obs.len()];
    let mut reward = vec![0.0; n];
    model.step_host(
        &batch.obs,
        &batch.act,
        &noise,
        &mut next,
        &mut reward,
        &mut ModelTape::default(),
    );
    let sq: f64 = next
        .iter()
        .zip(&batch.next_obs)
        .map(|(m, t)| ((m - t) as f64).powi(2))
        .sum();
    (sq / next.len() as f64).sqrt()
}

/// Where `cfg`'s algorithm rolls out its n-step value targets, or `None` for one-step targets.
pub fn n_step_source(cfg: &Config) -> Option<ValueTarget> {
    cfg.algo
        .name
        .n_step_critic()
        .then_some(cfg.algo.value_target)
}

/// How replay batches follow stored trajectories for `algo.value_target = "replay"`, or
/// `None` when batches are plain transitions.
pub fn replay_window(cfg: &Config, spec: &TaskSpec) -> Option<NStepWindow> {
    (n_step_source(cfg) == Some(ValueTarget::Replay)).then(|| NStepWindow {
        n: cfg.algo.n_step,
        stride: cfg.task.num_agents,
        gamma: cfg.algo.gamma as f32,
        absorbing: spec.termination == Termination::Absorbing,
    })
}

/// `action` clipped to the task's bounds per dimension (differentiable inside them): what the
/// environment applies and the replay stores, so Q is always evaluated on its training support.
pub fn clip_to_bounds(spec: &TaskSpec, action: Tensor<2>) -> Tensor<2> {
    let [n, a] = action.dims();
    let dev = plain_device();
    let rows = |b: &[f32]| tensor2(b.iter().copied().cycle().take(n * a).collect(), n, a, &dev);
    action
        .max_pair(rows(&spec.action_low))
        .min_pair(rows(&spec.action_high))
}

/// Gradient and value of the Q loss `½ mean (Q(s, a) − y)²` by burn autodiff.
fn critic_grad_autodiff(nets: &Nets, q: &ParamSet, tb: &TargetBatch) -> (Vec<Vec<f32>>, f64) {
    let (o, a) = (nets.spec.obs_dim, nets.spec.act_dim);
    let dev = plain_device();
    let b = &tb.batch;
    let obs = tensor2(b.obs.clone(), b.len, o, &dev);
    let act = tensor2(b.act.clone(), b.len, a, &dev);
    let y = nn::tensor1(tb.targets.clone(), &dev);
    let tr = q.track();
    let loss = nets
        .q
        .forward(&tr.leaves, obs, act)
        .sub(y)
        .powi_scalar(2)
        .mean()
        .mul_scalar(0.5);
    let value = nn::scalar(loss.clone().inner()) as f64;
    (tr.grads(&loss.backward()), value)
}

/// `n` actions drawn uniformly at random in the box of `spec` (the warm-up of
/// `algo.warmup_actions = "uniform"`).
pub fn uniform_actions(spec: &TaskSpec, n: usize, rng: &mut Pcg64Mcg) -> Vec<f32> {
    let a = spec.act_dim;
    (0..n * a)
        .map(|i| {
            let (lo, hi) = (spec.action_low[i % a], spec.action_high[i % a]);
            lo + (hi - lo) * rng.random::<f32>()
        })
        .collect()
}

/// Actions for a batch of observations with the policy snapshot `pi`: deterministic, or with
/// exploration (Gaussian noise for deterministic policies, a sample for SAC), clipped to the
/// bounds (SAC's sample is left raw with [`Nets::raw_sample`]; the environment clips it).
pub fn act(
    nets: &Nets,
    pi: &ParamSet,
    obs: &[f32],
    explore: Option<f64>,
    rng: &mut Pcg64Mcg,
) -> Vec<f32> {
    let (o, a) = (nets.spec.obs_dim, nets.spec.act_dim);
    let n = obs.len() / o;
    let mut out = match (&nets.policy, explore) {
        (PolicyNet::Gauss(g), Some(_)) => {
            let eps: Vec<f32> = (0..n * a).map(|_| rng.sample(StandardNormal)).collect();
            match nets.kernels {
                Kernels::Fused => fused::sample(nets, pi, obs, &eps),
                Kernels::Autodiff => {
                    let dev = plain_device();
                    let x = tensor2(obs.to_vec(), n, o, &dev);
                    nn::to_vec(g.sample(pi.frozen(), x, tensor2(eps, n, a, &dev)).action)
                }
            }
        }
        (policy, noise) => {
            let mut v = match nets.kernels {
                Kernels::Fused => fused::act(nets, pi, obs),
                Kernels::Autodiff => {
                    let x = tensor2(obs.to_vec(), n, o, &plain_device());
                    nn::to_vec(policy.act(pi.frozen(), x))
                }
            };
            if let Some(sigma) = noise.filter(|s| *s > 0.0) {
                for (i, x) in v.iter_mut().enumerate() {
                    let scale = nets.noise_scale[i % a];
                    *x += sigma as f32 * scale * rng.sample::<f32, _>(StandardNormal);
                }
            }
            v
        }
    };
    if nets.raw_sample && explore.is_some() {
        return out;
    }
    for (i, x) in out.iter_mut().enumerate() {
        let d = i % a;
        *x = x.clamp(nets.spec.action_low[d], nets.spec.action_high[d]);
    }
    out
}
