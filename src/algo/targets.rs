//! Value targets `R^Target(s, a)` of eq. (12) and of the baselines, computed without gradients.
//!
//! Rewards are multiplied by `task.reward_scale`. The tasks are treated as continuing: no
//! target is masked by `terminated`, since both tasks have negative rewards and an absorbing
//! zero-reward failure state would make failing attractive (termination is a reset rule of
//! data collection; see `docs/design.md`).

use burn::tensor::Tensor;
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

use super::{Nets, Params, PolicyNet, fused};
use crate::config::{AlgoName, Config};
use crate::env::{Env, PriorModel, StepOut};
use crate::nn::{self, Kernels, plain_device, tensor2};
use crate::replay::HostBatch;

/// n-step TD targets run in the true environment (MPG-v1, n-step DPG, n-step ADP):
/// from each replayed `(s, a)` the simulator is reset to `s`, takes `a`, then follows the
/// current policy for `n − 1` steps; the tail is `γ^n Q1'(s_n, π'(s_n))` with the target
/// networks (optionally clipped to `algo.bootstrap_clip`).
pub fn n_step(nets: &Nets, cfg: &Config, p: &Params, env: &mut dyn Env, b: &HostBatch) -> Vec<f32> {
    let o = nets.spec.obs_dim;
    let dev = plain_device();
    let scale = cfg.task.reward_scale as f32;
    let gamma = cfg.algo.gamma as f32;
    env.reset_to(&b.obs);
    let mut out = StepOut::default();
    let mut ret = vec![0.0f32; b.len];
    let mut disc = 1.0f32;
    let mut actions = b.act.clone();
    let mut obs = b.obs.clone();
    for t in 0..cfg.algo.n_step {
        if t > 0 {
            actions = match nets.kernels {
                Kernels::Fused => fused::act(nets, &p.pi, &obs),
                Kernels::Autodiff => {
                    let x = tensor2(obs.clone(), b.len, o, &dev);
                    nn::to_vec(nets.policy.act(p.pi.frozen(), x))
                }
            };
        }
        env.step(&actions, &mut out);
        for (r, rew) in ret.iter_mut().zip(&out.reward) {
            *r += disc * scale * rew;
        }
        disc *= gamma;
        std::mem::swap(&mut obs, &mut out.next_obs);
    }
    with_tail(nets, cfg, p, &ret, disc, obs)
}

/// n-step targets rolled out in the prior model instead of the true environment
/// (`algo.value_target = "model"`, the reference code's n-step ADP): from each replayed
/// `(s, a)` the model takes `a`, then follows the current policy for `n − 1` steps, with the
/// same tail as [`n_step`].
pub fn n_step_model(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    model: &dyn PriorModel,
    b: &HostBatch,
    rng: &mut Pcg64Mcg,
) -> Vec<f32> {
    let (o, a) = (nets.spec.obs_dim, nets.spec.act_dim);
    let dev = plain_device();
    let scale = cfg.task.reward_scale as f32;
    let gamma = cfg.algo.gamma as f32;
    let mut s = tensor2(b.obs.clone(), b.len, o, &dev);
    let mut act = tensor2(b.act.clone(), b.len, a, &dev);
    let mut ret = vec![0.0f32; b.len];
    let mut disc = 1.0f32;
    for t in 0..cfg.algo.n_step {
        if t > 0 {
            act = nets.policy.act(p.pi.frozen(), s.clone());
        }
        let (s2, r) = model.step(s, act.clone(), rng);
        for (acc, rew) in ret.iter_mut().zip(nn::to_vec(r)) {
            *acc += disc * scale * rew;
        }
        disc *= gamma;
        s = s2;
    }
    with_tail(nets, cfg, p, &ret, disc, nn::to_vec(s))
}

/// `ret + disc · Q1'(s_n, π'(s_n))` with the target networks, the bootstrap value optionally
/// clipped to `algo.bootstrap_clip`.
fn with_tail(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    ret: &[f32],
    disc: f32,
    obs: Vec<f32>,
) -> Vec<f32> {
    let mut tail = match nets.kernels {
        Kernels::Fused => fused::target_q(nets, p, &obs, &fused::act(nets, &p.pi_t, &obs), true),
        Kernels::Autodiff => {
            let s_n = tensor2(obs, ret.len(), nets.spec.obs_dim, &plain_device());
            let a_n = nets.policy.act(p.pi_t.frozen(), s_n.clone());
            nn::to_vec(nets.q.forward(p.q1_t.frozen(), s_n, a_n))
        }
    };
    if let Some([lo, hi]) = cfg.algo.bootstrap_clip {
        tail.iter_mut()
            .for_each(|x| *x = x.clamp(lo as f32, hi as f32));
    }
    ret.iter().zip(&tail).map(|(r, q)| r + disc * q).collect()
}

/// One-step targets `r̃ + γ V'(s')`:
/// - MPG-v2: clipped double Q, `min_i Q_i'(s', π'(s'))` (eq. 12);
/// - TD3: the same with target-policy smoothing noise, clipped, and the action clipped to the
///   bounds;
/// - DDPG: `Q1'(s', π'(s'))`;
/// - SAC: `min_i Q_i'(s', clip(a')) − α log π(a'|s')` with `a' ~ π(·|s')` (the raw `a'`
///   with `algo.sac_action = "raw"`).
pub fn one_step(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    b: &HostBatch,
    rng: &mut Pcg64Mcg,
) -> Vec<f32> {
    let v = match nets.kernels {
        Kernels::Fused => one_step_values_fused(nets, cfg, p, b, rng),
        Kernels::Autodiff => one_step_values_autodiff(nets, cfg, p, b, rng),
    };
    let (scale, gamma) = (cfg.task.reward_scale as f32, cfg.algo.gamma as f32);
    b.rew
        .iter()
        .zip(&v)
        .map(|(r, v)| r * scale + v * gamma)
        .collect()
}

/// TD3's target action: `π'(s')` plus clipped Gaussian smoothing noise, clipped to the bounds.
fn smoothed(nets: &Nets, cfg: &Config, mut act: Vec<f32>, rng: &mut Pcg64Mcg) -> Vec<f32> {
    let a = nets.spec.act_dim;
    let c = cfg.algo.target_noise_clip as f32;
    for (i, x) in act.iter_mut().enumerate() {
        let e: f32 = rng.sample::<f32, _>(StandardNormal) * cfg.algo.target_noise as f32;
        let d = i % a;
        *x = (*x + e.clamp(-c, c)).clamp(nets.spec.action_low[d], nets.spec.action_high[d]);
    }
    act
}

/// The bootstrap values `V'(s')` of [`one_step`] on the fused kernels.
fn one_step_values_fused(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    b: &HostBatch,
    rng: &mut Pcg64Mcg,
) -> Vec<f32> {
    let s2 = &b.next_obs;
    match nets.algo {
        AlgoName::Sac => {
            let n = b.len * nets.spec.act_dim;
            let eps: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
            fused::sac_target_value(nets, p, s2, &eps)
        }
        AlgoName::Td3 => {
            let act = smoothed(nets, cfg, fused::act(nets, &p.pi_t, s2), rng);
            fused::target_q(nets, p, s2, &act, false)
        }
        algo => {
            let act = fused::act(nets, &p.pi_t, s2);
            fused::target_q(nets, p, s2, &act, algo == AlgoName::Ddpg)
        }
    }
}

/// The bootstrap values `V'(s')` of [`one_step`] by burn (the reference path).
fn one_step_values_autodiff(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    b: &HostBatch,
    rng: &mut Pcg64Mcg,
) -> Vec<f32> {
    let (o, a) = (nets.spec.obs_dim, nets.spec.act_dim);
    let dev = plain_device();
    let s2 = tensor2(b.next_obs.clone(), b.len, o, &dev);
    let q = |params: &crate::nn::ParamSet, act: Tensor<2>| {
        nets.q.forward(params.frozen(), s2.clone(), act)
    };
    let min_q = |act: Tensor<2>| {
        let q1 = q(&p.q1_t, act.clone());
        match &p.q2_t {
            Some(q2t) => q1.min_pair(q(q2t, act)),
            None => q1,
        }
    };
    let v = match (nets.algo, &nets.policy) {
        (AlgoName::Sac, PolicyNet::Gauss(g)) => {
            let eps: Vec<f32> = (0..b.len * a).map(|_| rng.sample(StandardNormal)).collect();
            let smp = g.sample(p.pi.frozen(), s2.clone(), tensor2(eps, b.len, a, &dev));
            min_q(nets.q_action(smp.action)).sub(smp.log_prob.mul_scalar(p.alpha() as f32))
        }
        (AlgoName::Td3, policy) => {
            let act = nn::to_vec(policy.act(p.pi_t.frozen(), s2.clone()));
            min_q(tensor2(smoothed(nets, cfg, act, rng), b.len, a, &dev))
        }
        (AlgoName::Ddpg, policy) => q(&p.q1_t, policy.act(p.pi_t.frozen(), s2.clone())),
        (_, policy) => min_q(policy.act(p.pi_t.frozen(), s2.clone())),
    };
    nn::to_vec(v)
}
