//! Value targets `R^Target(s, a)` of eq. (12) and of the baselines, computed without gradients.
//!
//! Rewards are multiplied by `task.reward_scale`. What a terminated transition means comes
//! from the task ([`Termination`]): the paper's tasks are continuing (termination is a reset
//! rule of data collection, no target is masked by it, since both tasks have negative rewards
//! and an absorbing zero-reward failure state would make failing attractive; see
//! `docs/design.md`), while Gymnasium's tasks are absorbing (no bootstrap and no reward after a
//! terminated step; truncation still bootstraps).

use anyhow::Result;
use burn::tensor::Tensor;
use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

use super::{Nets, Params, PolicyNet, fused};
use crate::config::{AlgoName, Config};
use crate::env::{Env, ModelTape, PriorModel, StepOut, Termination, check_env, check_model};
use crate::nn::{self, Kernels, plain_device, tensor2};
use crate::replay::HostBatch;

/// Deterministic actions of the online policy for `obs` on the configured kernels.
fn policy_actions(nets: &Nets, p: &Params, obs: &[f32]) -> Vec<f32> {
    match nets.kernels {
        Kernels::Fused => fused::act(nets, &p.pi, obs),
        Kernels::Autodiff => {
            let n = obs.len() / nets.spec.obs_dim;
            let x = tensor2(obs.to_vec(), n, nets.spec.obs_dim, &plain_device());
            nn::to_vec(nets.policy.act(p.pi.frozen(), x))
        }
    }
}

/// The discounted returns of an n-step rollout being summed, with the rows still alive (an
/// absorbing termination stops a row's sum and its bootstrap).
struct Returns {
    ret: Vec<f32>,
    disc: f32,
    /// `Some` for an absorbing task: 1 while the row has not terminated, else 0.
    alive: Option<Vec<f32>>,
    scale: f32,
    gamma: f32,
}

impl Returns {
    fn new(nets: &Nets, cfg: &Config, rows: usize) -> Self {
        let absorbing = nets.spec.termination == Termination::Absorbing;
        Self {
            ret: vec![0.0; rows],
            disc: 1.0,
            alive: absorbing.then(|| vec![1.0; rows]),
            scale: cfg.task.reward_scale as f32,
            gamma: cfg.algo.gamma as f32,
        }
    }

    /// Add one step's rewards; `terminated` (possibly empty: none) ends rows when absorbing.
    fn add(&mut self, reward: &[f32], terminated: &[bool]) {
        match &mut self.alive {
            None => {
                for (r, rew) in self.ret.iter_mut().zip(reward) {
                    *r += self.disc * self.scale * rew;
                }
            }
            Some(alive) => {
                for (i, (r, rew)) in self.ret.iter_mut().zip(reward).enumerate() {
                    *r += self.disc * self.scale * rew * alive[i];
                    if terminated.get(i).copied().unwrap_or(false) {
                        alive[i] = 0.0;
                    }
                }
            }
        }
        self.disc *= self.gamma;
    }

    /// `ret + disc · alive · Q1'(s_n, π'(s_n))`.
    fn finish(self, nets: &Nets, cfg: &Config, p: &Params, obs: Vec<f32>) -> Vec<f32> {
        let disc: Vec<f32> = match &self.alive {
            None => vec![self.disc; self.ret.len()],
            Some(alive) => alive.iter().map(|a| self.disc * a).collect(),
        };
        with_tail(nets, cfg, p, &self.ret, &disc, obs)
    }
}

/// n-step TD targets run in the true environment (MPG-v1, n-step DPG, n-step ADP):
/// from each replayed `(s, a)` the simulator is reset to `s`, takes `a`, then follows the
/// current policy for `n − 1` steps; the tail is `γ^n Q1'(s_n, π'(s_n))` with the target
/// networks (optionally clipped to `algo.bootstrap_clip`).
pub fn n_step(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    env: &mut dyn Env,
    b: &HostBatch,
) -> Result<Vec<f32>> {
    env.reset_to(&b.obs);
    check_env(env)?;
    let mut out = StepOut::default();
    let mut sum = Returns::new(nets, cfg, b.len);
    let mut actions = b.act.clone();
    let mut obs = b.obs.clone();
    for t in 0..cfg.algo.n_step {
        if t > 0 {
            actions = policy_actions(nets, p, &obs);
        }
        env.step(&actions, &mut out);
        check_env(env)?;
        sum.add(&out.reward, &out.terminated);
        std::mem::swap(&mut obs, &mut out.next_obs);
    }
    Ok(sum.finish(nets, cfg, p, obs))
}

/// n-step targets rolled out in the prior model instead of the true environment
/// (`algo.value_target = "model"`, the reference code's n-step ADP): from each replayed
/// `(s, a)` the model takes `a`, then follows the current policy for `n − 1` steps, with the
/// same tail as [`n_step`]. The model runs its host step (no gradient is needed).
pub fn n_step_model(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    model: &dyn PriorModel,
    b: &HostBatch,
    rng: &mut Pcg64Mcg,
) -> Result<Vec<f32>> {
    let mut sum = Returns::new(nets, cfg, b.len);
    let mut actions = b.act.clone();
    let mut obs = b.obs.clone();
    let (mut next, mut reward) = (vec![0.0; obs.len()], vec![0.0; b.len]);
    let (mut noise, mut tape) = (Vec::new(), ModelTape::default());
    for t in 0..cfg.algo.n_step {
        if t > 0 {
            actions = policy_actions(nets, p, &obs);
        }
        model.draw_noise(b.len, rng, &mut noise);
        model.step_host(&obs, &actions, &noise, &mut next, &mut reward, &mut tape);
        check_model(model)?;
        sum.add(&reward, &tape.terminated);
        std::mem::swap(&mut obs, &mut next);
    }
    Ok(sum.finish(nets, cfg, p, obs))
}

/// n-step targets from the replay's own stored trajectories (`algo.value_target =
/// "replay"`): the batch carries each row's discounted reward sum along the stored
/// trajectory and its bootstrap state and discount ([`crate::replay::NStepReturns`]); the tail
/// is `Q1'(s_m, π'(s_m))` as for [`n_step`]. The actions after the first are the behaviour
/// policy's (the usual uncorrected n-step return).
pub fn n_step_replay(nets: &Nets, cfg: &Config, p: &Params, b: &HostBatch) -> Vec<f32> {
    let tail = b
        .n_step
        .as_ref()
        .expect("value_target = \"replay\" batches carry their n-step returns");
    let scale = cfg.task.reward_scale as f32;
    let ret: Vec<f32> = tail.ret.iter().map(|r| r * scale).collect();
    with_tail(nets, cfg, p, &ret, &tail.discount, tail.boot_obs.clone())
}

/// `ret + disc · Q1'(s_n, π'(s_n))` per row with the target networks, the bootstrap value
/// optionally clipped to `algo.bootstrap_clip`.
fn with_tail(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    ret: &[f32],
    disc: &[f32],
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
    ret.iter()
        .zip(disc)
        .zip(&tail)
        .map(|((r, d), q)| r + d * q)
        .collect()
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
    let rows = b.rew.iter().zip(&v).zip(&b.terminated);
    match nets.spec.termination {
        Termination::Continuing => rows.map(|((r, v), _)| r * scale + v * gamma).collect(),
        Termination::Absorbing => rows
            .map(|((r, v), t)| r * scale + v * gamma * (1.0 - t))
            .collect(),
    }
}

/// TD3's target action: `π'(s')` plus clipped Gaussian smoothing noise, clipped to the bounds.
fn smoothed(nets: &Nets, cfg: &Config, mut act: Vec<f32>, rng: &mut Pcg64Mcg) -> Vec<f32> {
    let a = nets.spec.act_dim;
    for (i, x) in act.iter_mut().enumerate() {
        let d = i % a;
        let scale = nets.noise_scale[d];
        let c = cfg.algo.target_noise_clip as f32 * scale;
        let e: f32 = rng.sample::<f32, _>(StandardNormal) * (cfg.algo.target_noise as f32 * scale);
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
