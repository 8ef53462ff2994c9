//! Policy losses and their gradients.
//!
//! - data-driven `J_0 = E Q1(s, π(s))` (n-step DPG, DDPG, TD3 — TD3 uses Q1 as in its paper);
//! - model-driven `J_H = E[Σ_{t<H} γ^t r̃_t + γ^H Q1(s_H, π(s_H))]` through the prior model by
//!   BPTT (n-step ADP);
//! - mixed `w_data J_0 + w_model J_H` with the weights of eqs. (10)–(11) (MPG);
//! - SAC's `E[α log π(a|s) − min_i Q_i(s, clip(a))]`, `a ~ π` reparameterised, Q fed the
//!   action clipped to the bounds as stored (the raw `a` with `algo.sac_action = "raw"`).
//!
//! The Q networks are frozen constants here; only the policy's parameters are tracked.

use burn::tensor::Tensor;
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

use super::{Nets, Params, PolicyNet, bptt, fused, schedule::configured_weights};
use crate::config::{AlgoName, Config, RolloutGradient};
use crate::env::PriorModel;
use crate::nn::{self, Kernels, plain_device, tensor2};

/// What every policy loss reads: the architectures, the config, the parameter snapshot (Q
/// networks and the constant copy of the policy) and the prior model.
#[derive(Clone, Copy)]
pub struct PolicyCtx<'a> {
    /// Architectures.
    pub nets: &'a Nets,
    /// Configuration.
    pub cfg: &'a Config,
    /// Parameter snapshot.
    pub p: &'a Params,
    /// The differentiable prior model (every model-driven algorithm has one; checked before
    /// a run starts).
    pub model: Option<&'a dyn PriorModel>,
    /// Buffers of the fused BPTT gradient (owned by the learner).
    pub bptt: &'a bptt::Workspace,
}

/// A policy gradient with its loss.
pub struct PolicyOut {
    /// Gradient of the loss (to minimise) w.r.t. the policy parameters.
    pub grads: Vec<Vec<f32>>,
    /// The loss value.
    pub loss: f64,
    /// SAC: gradient of the temperature loss w.r.t. log α (when learned).
    pub log_alpha_grad: Option<f32>,
}

/// The policy loss of the algorithm as a tensor, with the policy parameters given as `pi`
/// (tracked leaves for a gradient, or frozen for a value), and SAC's `log π(a|s)`.
pub fn loss(
    ctx: PolicyCtx,
    pi: &[Tensor<2>],
    s: Tensor<2>,
    k: u64,
    rng: &mut Pcg64Mcg,
) -> (Tensor<1>, Option<Tensor<1>>) {
    let PolicyCtx { nets, cfg, p, .. } = ctx;
    let a = &cfg.algo;
    match (nets.algo, &nets.policy) {
        (AlgoName::Sac, PolicyNet::Gauss(g)) => {
            let (n, d) = (s.dims()[0], nets.spec.act_dim);
            let eps: Vec<f32> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
            let smp = g.sample(pi, s.clone(), tensor2(eps, n, d, &plain_device()));
            let a_q = nets.q_action(smp.action);
            let q1 = nets.q.forward(p.q1.frozen(), s.clone(), a_q.clone());
            let q = match &p.q2 {
                Some(q2) => q1.min_pair(nets.q.forward(q2.frozen(), s, a_q)),
                None => q1,
            };
            let loss = smp
                .log_prob
                .clone()
                .mul_scalar(p.alpha() as f32)
                .sub(q)
                .mean();
            (loss, Some(smp.log_prob))
        }
        (AlgoName::Nadp, _) => (model_return(ctx, pi, s, true, rng).neg(), None),
        (AlgoName::MpgV1 | AlgoName::MpgV2, _) => {
            let (wd, wm) = configured_weights(cfg, k);
            let all = a.rollout_gradient == RolloutGradient::AllActions;
            let j0 = data_return(nets, p, pi, s.clone());
            let jh = model_return(ctx, pi, s, all, rng);
            let loss = j0.mul_scalar(wd as f32).add(jh.mul_scalar(wm as f32)).neg();
            (loss, None)
        }
        _ => (data_return(nets, p, pi, s).neg(), None),
    }
}

/// `J_0 = mean Q1(s, π(s))`.
pub fn data_return(nets: &Nets, p: &Params, pi: &[Tensor<2>], s: Tensor<2>) -> Tensor<1> {
    let act = nets.policy.act(pi, s.clone());
    nets.q.forward(p.q1.frozen(), s, act).mean()
}

/// `J_H = mean[Σ_{t<H} γ^t r̃_t + γ^H Q1(s_H, π(s_H))]` over an H-step rollout of the prior
/// model from `s`. With `all_actions`, every action is `π_θ(s_t)` (the gradient of loss (9),
/// n-step ADP's BPTT); otherwise only `a_0` depends on θ directly and later actions come from
/// the policy's parameters as constants, gradients still flowing through the states (eq. (6)'s
/// single `∇θπ_θ(s_0)` factor, as the reference code).
pub fn model_return(
    ctx: PolicyCtx,
    pi: &[Tensor<2>],
    s: Tensor<2>,
    all_actions: bool,
    rng: &mut Pcg64Mcg,
) -> Tensor<1> {
    let PolicyCtx {
        nets,
        cfg,
        p,
        model,
        ..
    } = ctx;
    let model = model
        .and_then(PriorModel::tensor)
        .expect("network.kernels = \"autodiff\" is checked to have a burn-tensor model");
    let scale = cfg.task.reward_scale as f32;
    let gamma = cfg.algo.gamma as f32;
    let frozen = p.pi.frozen();
    let policy_at = |t: usize| if t == 0 || all_actions { pi } else { frozen };
    let mut s = s;
    let mut ret: Option<Tensor<1>> = None;
    let mut disc = 1.0f32;
    for t in 0..cfg.algo.horizon {
        let act = nets.policy.act(policy_at(t), s.clone());
        let (s2, r) = model.step_with(s, act, rng);
        let term = r.mul_scalar(disc * scale);
        ret = Some(match ret {
            Some(acc) => acc.add(term),
            None => term,
        });
        disc *= gamma;
        s = s2;
    }
    let act = nets.policy.act(policy_at(cfg.algo.horizon), s.clone());
    let tail = nets.q.forward(p.q1.frozen(), s, act).mul_scalar(disc);
    match ret {
        Some(acc) => acc.add(tail),
        None => tail,
    }
    .mean()
}

/// The policy gradient of iteration `k` on the replayed states `obs` (row-major), on the
/// kernels `network.kernels` selects. With `algo.policy_proximal` or
/// `algo.policy_preactivation` κ > 0, the loss includes that term ([`proximal_grad`],
/// [`preactivation_grad`]).
pub fn gradient(ctx: PolicyCtx, obs: &[f32], k: u64, rng: &mut Pcg64Mcg) -> PolicyOut {
    let out = match ctx.nets.kernels {
        Kernels::Fused => gradient_fused(ctx, obs, k, rng),
        Kernels::Autodiff => gradient_autodiff(ctx, obs, k, rng),
    };
    with_regularisers(ctx, obs, out)
}

/// `out` with the gradients and values of the configured proximal and pre-activation terms
/// added.
fn with_regularisers(ctx: PolicyCtx, obs: &[f32], mut out: PolicyOut) -> PolicyOut {
    for (grads, value) in [proximal_grad(ctx, obs), preactivation_grad(ctx, obs)]
        .into_iter()
        .flatten()
    {
        for (o, g) in out.grads.iter_mut().zip(&grads) {
            o.iter_mut().zip(g).for_each(|(o, g)| *o += g);
        }
        out.loss += value;
    }
    out
}

/// Gradient and value of the proximal term `κ/2 · mean_s Σ_j ((π(s)_j − π_t(s)_j) / h_j)²`
/// (`κ = algo.policy_proximal`, `π_t` the target policy, `h` the action half-ranges), on the
/// kernels `network.kernels` selects; `None` when κ = 0. A soft trust region on the policy
/// step: the policy is held near its slowly moving average.
pub fn proximal_grad(ctx: PolicyCtx, obs: &[f32]) -> Option<(Vec<Vec<f32>>, f64)> {
    let PolicyCtx { nets, cfg, p, .. } = ctx;
    let kappa = cfg.algo.policy_proximal as f32;
    if kappa == 0.0 {
        return None;
    }
    let half = nets.spec.action_half(); // finite and positive: checked with the task
    Some(match nets.kernels {
        Kernels::Fused => fused::proximal_actor_grad(nets, p, obs, kappa, &half),
        Kernels::Autodiff => {
            let (o, d) = (nets.spec.obs_dim, nets.spec.act_dim);
            let device = plain_device();
            let s = tensor2(obs.to_vec(), obs.len() / o, o, &device);
            let inv_h = tensor2(half.iter().map(|h| 1.0 / h).collect(), 1, d, &device);
            let tracked = p.pi.track();
            let a = nets.policy.act(&tracked.leaves, s.clone());
            let t = nets.policy.act(p.pi_t.frozen(), s);
            let e = a.sub(t).mul(inv_h);
            let term = e.clone().mul(e).sum_dim(1).mean().mul_scalar(0.5 * kappa);
            let value = nn::scalar(term.clone().inner()) as f64;
            (tracked.grads(&term.backward()), value)
        }
    })
}

/// Gradient and value of the pre-activation penalty `κ/2 · mean_s Σ_j z_j(s)²`
/// (`κ = algo.policy_preactivation`, `z` the deterministic policy's pre-tanh outputs), on the
/// kernels `network.kernels` selects; `None` when κ = 0. It pulls a saturated tanh back to
/// where its slope, and so every policy gradient, is not near zero.
pub fn preactivation_grad(ctx: PolicyCtx, obs: &[f32]) -> Option<(Vec<Vec<f32>>, f64)> {
    let PolicyCtx { nets, cfg, p, .. } = ctx;
    let kappa = cfg.algo.policy_preactivation as f32;
    if kappa == 0.0 {
        return None;
    }
    Some(match nets.kernels {
        Kernels::Fused => fused::preactivation_actor_grad(nets, p, obs, kappa),
        Kernels::Autodiff => {
            let PolicyNet::Det(pol) = &nets.policy else {
                unreachable!("the pre-activation penalty is for deterministic policies")
            };
            let o = nets.spec.obs_dim;
            let s = tensor2(obs.to_vec(), obs.len() / o, o, &plain_device());
            let tracked = p.pi.track();
            let z = pol.mlp.forward(&tracked.leaves, s);
            let term = z.clone().mul(z).sum_dim(1).mean().mul_scalar(0.5 * kappa);
            let value = nn::scalar(term.clone().inner()) as f64;
            (tracked.grads(&term.backward()), value)
        }
    })
}

/// The gradient of the data-driven loss `−J_0` alone (MPG while its learned model warms up),
/// plus the proximal and pre-activation terms when configured, on the kernels
/// `network.kernels` selects.
pub fn data_gradient(ctx: PolicyCtx, obs: &[f32]) -> PolicyOut {
    let PolicyCtx { nets, p, .. } = ctx;
    let (grads, j0) = match nets.kernels {
        Kernels::Fused => fused::data_actor_grad(nets, p, obs, 1.0),
        Kernels::Autodiff => {
            let o = nets.spec.obs_dim;
            let s = tensor2(obs.to_vec(), obs.len() / o, o, &plain_device());
            let tracked = p.pi.track();
            let j0 = data_return(nets, p, &tracked.leaves, s);
            let value = nn::scalar(j0.clone().inner()) as f64;
            (tracked.grads(&j0.neg().backward()), value)
        }
    };
    let out = PolicyOut {
        grads,
        loss: -j0,
        log_alpha_grad: None,
    };
    with_regularisers(ctx, obs, out)
}

/// The temperature gradient `d/d log α` of `−log α · (E log π + target_entropy)`, when learned.
fn log_alpha_grad(ctx: PolicyCtx, mean_log_prob: f64) -> Option<f32> {
    let a = &ctx.cfg.algo;
    a.learn_alpha.then(|| {
        let target = a.target_entropy.unwrap_or(-(ctx.nets.spec.act_dim as f64));
        -(mean_log_prob + target) as f32
    })
}

/// [`gradient`] on the fused host kernels; the model-driven terms (n-step ADP, MPG's `J_H`)
/// by fused BPTT ([`bptt::model_return_grad`]).
pub fn gradient_fused(ctx: PolicyCtx, obs: &[f32], k: u64, rng: &mut Pcg64Mcg) -> PolicyOut {
    let PolicyCtx { nets, cfg, p, .. } = ctx;
    let a = &cfg.algo;
    match nets.algo {
        AlgoName::Sac => {
            let (grads, loss, mean_lp) = fused::sac_actor_grad(nets, p, obs, rng);
            PolicyOut {
                grads,
                loss,
                log_alpha_grad: log_alpha_grad(ctx, mean_lp),
            }
        }
        AlgoName::Nadp => {
            let (grads, jh) = bptt::model_return_grad(ctx, obs, true, 1.0, rng);
            PolicyOut {
                grads,
                loss: -jh,
                log_alpha_grad: None,
            }
        }
        AlgoName::MpgV1 | AlgoName::MpgV2 => {
            // MPG = w_data·∇J_0 + w_model·∇J_H, both through one policy pass at s_0.
            let (wd, wm) = configured_weights(cfg, k);
            let all = a.rollout_gradient == RolloutGradient::AllActions;
            let weights = (wd as f32, wm as f32);
            let (grads, j0, jh) = bptt::mixed_grad(ctx, obs, all, weights, rng);
            PolicyOut {
                grads,
                loss: -(wd * j0 + wm * jh),
                log_alpha_grad: None,
            }
        }
        _ => {
            let (grads, j0) = fused::data_actor_grad(nets, p, obs, 1.0);
            PolicyOut {
                grads,
                loss: -j0,
                log_alpha_grad: None,
            }
        }
    }
}

/// Gradient w.r.t. the policy of `−weight · J_H` (see [`model_return`]) by burn autodiff,
/// with the value `J_H`: the reference of [`bptt::model_return_grad`].
pub fn model_return_grad_autodiff(
    ctx: PolicyCtx,
    obs: &[f32],
    all_actions: bool,
    weight: f32,
    rng: &mut Pcg64Mcg,
) -> (Vec<Vec<f32>>, f64) {
    let o = ctx.nets.spec.obs_dim;
    let s = tensor2(obs.to_vec(), obs.len() / o, o, &plain_device());
    let tracked = ctx.p.pi.track();
    let jh = model_return(ctx, &tracked.leaves, s, all_actions, rng);
    let value = nn::scalar(jh.clone().inner()) as f64;
    (tracked.grads(&jh.mul_scalar(-weight).backward()), value)
}

/// [`gradient`] by burn autodiff through [`loss`] (the reference path).
pub fn gradient_autodiff(ctx: PolicyCtx, obs: &[f32], k: u64, rng: &mut Pcg64Mcg) -> PolicyOut {
    let o = ctx.nets.spec.obs_dim;
    let s = tensor2(obs.to_vec(), obs.len() / o, o, &plain_device());
    let tracked = ctx.p.pi.track();
    let (loss, log_prob) = loss(ctx, &tracked.leaves, s, k, rng);
    let value = nn::scalar(loss.clone().inner()) as f64;
    let grads = tracked.grads(&loss.backward());
    let log_alpha_grad =
        log_prob.and_then(|lp| log_alpha_grad(ctx, nn::scalar(lp.inner().mean()) as f64));
    PolicyOut {
        grads,
        loss: value,
        log_alpha_grad,
    }
}
