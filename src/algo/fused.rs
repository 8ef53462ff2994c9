//! The algorithms' data-driven computations on the fused host kernels (`network.kernels =
//! "fused"`): critic gradients, the data-driven actor gradient (`J_0`), SAC's actor and
//! temperature gradients, value targets and action selection. Each mirrors its autodiff
//! counterpart in [`super`], [`super::policy`] and [`super::targets`] (same formulas, same
//! random draws in the same order) and is tested against it.
//!
//! Activations live in a per-thread [`Workspace`], so learner threads never share buffers and
//! nothing is allocated per call after warm-up except the returned gradients.

use std::cell::RefCell;

use rand::Rng;
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

use super::{Nets, Params, PolicyNet};
use crate::nn::{GaussianTape, MlpTape, ParamSet};

/// Reusable buffers of the fused computations.
#[derive(Default)]
struct Workspace {
    pi: MlpTape,
    q1: MlpTape,
    q2: MlpTape,
    gauss: GaussianTape,
    d_act: Vec<f32>,
    d_act2: Vec<f32>,
    d_q: Vec<f32>,
    d_q2: Vec<f32>,
    noise: Vec<f32>,
    clipped: Vec<f32>,
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

/// Run `f` with this thread's workspace, or with a fresh one when it is in use: a thread
/// waiting inside a multi-threaded GEMM may run another fused job of the same pool (rayon work
/// stealing), which must not borrow the buffers of the job it interrupted.
fn with_workspace<R>(f: impl FnOnce(&mut Workspace) -> R) -> R {
    WORKSPACE.with(|w| match w.try_borrow_mut() {
        Ok(mut w) => f(&mut w),
        Err(_) => f(&mut Workspace::default()),
    })
}

/// SAC's sample `act` as Q receives it into `out`: clipped to the task's action bounds, or
/// unchanged with [`Nets::raw_sample`] (SAC feeds Q what the replay stores; [`Nets::q_action`]).
fn q_action_into(nets: &Nets, act: &[f32], out: &mut Vec<f32>) {
    let spec = &nets.spec;
    let d = spec.act_dim;
    out.clear();
    if nets.raw_sample {
        out.extend_from_slice(act);
        return;
    }
    out.extend(
        act.iter()
            .enumerate()
            .map(|(i, x)| x.max(spec.action_low[i % d]).min(spec.action_high[i % d])),
    );
}

/// Zero gradients shaped like `p`.
fn zeros_like(p: &ParamSet) -> Vec<Vec<f32>> {
    p.values().iter().map(|v| vec![0.0; v.len()]).collect()
}

/// Deterministic actions of `pi` (the squashed mean for SAC) into `out`.
fn policy_action(
    nets: &Nets,
    pi: &ParamSet,
    obs: &[f32],
    batch: usize,
    tape: &mut MlpTape,
    out: &mut Vec<f32>,
) {
    match &nets.policy {
        PolicyNet::Det(p) => {
            let a = p.forward_host(pi.values(), obs, batch, tape);
            out.clear();
            out.extend_from_slice(a);
        }
        PolicyNet::Gauss(g) => g.mode_host(pi.values(), obs, batch, tape, out),
    }
}

/// Deterministic actions for a batch of observations (evaluation, targets, exploration base).
pub fn act(nets: &Nets, pi: &ParamSet, obs: &[f32]) -> Vec<f32> {
    let batch = obs.len() / nets.spec.obs_dim;
    with_workspace(|w| {
        let mut out = Vec::with_capacity(batch * nets.spec.act_dim);
        policy_action(nets, pi, obs, batch, &mut w.pi, &mut out);
        out
    })
}

/// SAC's sampled actions `a ~ π(·|s)` for standard-normal noise `eps`.
pub fn sample(nets: &Nets, pi: &ParamSet, obs: &[f32], eps: &[f32]) -> Vec<f32> {
    let PolicyNet::Gauss(g) = &nets.policy else {
        unreachable!("only SAC samples its policy")
    };
    let batch = obs.len() / nets.spec.obs_dim;
    with_workspace(|w| {
        g.sample_host(pi.values(), obs, eps, batch, &mut w.gauss);
        w.gauss.action().to_vec()
    })
}

/// Gradient of the Q loss `½ mean (Q(s, a) − y)²` and its value.
pub fn critic_grad(
    nets: &Nets,
    q: &ParamSet,
    obs: &[f32],
    act: &[f32],
    y: &[f32],
) -> (Vec<Vec<f32>>, f64) {
    let batch = y.len();
    with_workspace(|w| {
        let qv = nets.q.forward_host(q.values(), obs, act, batch, &mut w.q1);
        let inv = 1.0 / batch as f32;
        w.d_q.clear();
        let mut loss = 0.0f64;
        for (qi, yi) in qv.iter().zip(y) {
            let e = qi - yi;
            loss += (e as f64) * (e as f64);
            w.d_q.push(e * inv);
        }
        let mut g = zeros_like(q);
        nets.q
            .backward_host(q.values(), &w.q1, &w.d_q, Some(&mut g), None, None);
        (g, 0.5 * loss / batch as f64)
    })
}

/// Gradient w.r.t. the policy of `−J_0 = −mean Q1(s, π(s))`, scaled by `weight`, with the
/// value `J_0` (DDPG, TD3, n-step DPG, and MPG's data term).
pub fn data_actor_grad(nets: &Nets, p: &Params, obs: &[f32], weight: f32) -> (Vec<Vec<f32>>, f64) {
    let PolicyNet::Det(pol) = &nets.policy else {
        unreachable!("the data-driven actor gradient is for deterministic policies")
    };
    let batch = obs.len() / nets.spec.obs_dim;
    with_workspace(|w| {
        let a = pol.forward_host(p.pi.values(), obs, batch, &mut w.pi);
        let qv = nets.q.forward_host(p.q1.values(), obs, a, batch, &mut w.q1);
        let j0 = qv.iter().map(|&x| x as f64).sum::<f64>() / batch as f64;
        w.d_q.clear();
        w.d_q.resize(batch, -weight / batch as f32);
        w.d_act.resize(a.len(), 0.0);
        nets.q
            .backward_host(p.q1.values(), &w.q1, &w.d_q, None, None, Some(&mut w.d_act));
        let mut g = zeros_like(&p.pi);
        pol.backward_host(p.pi.values(), &w.pi, &w.d_act, Some(&mut g), None);
        (g, j0)
    })
}

/// Gradient w.r.t. the policy of the proximal term `κ/2 · mean_s Σ_j ((π(s)_j − π_t(s)_j) /
/// h_j)²` (`π_t` the target policy, `h` the actions' half-ranges) and its value.
pub fn proximal_actor_grad(
    nets: &Nets,
    p: &Params,
    obs: &[f32],
    kappa: f32,
    half: &[f32],
) -> (Vec<Vec<f32>>, f64) {
    let PolicyNet::Det(pol) = &nets.policy else {
        unreachable!("the proximal term is for deterministic policies (checked in the config)")
    };
    let batch = obs.len() / nets.spec.obs_dim;
    let target = act(nets, &p.pi_t, obs);
    with_workspace(|w| {
        let a = pol.forward_host(p.pi.values(), obs, batch, &mut w.pi);
        let mut sq = 0.0f64;
        w.d_act.clear();
        for ((x, t), h) in a.iter().zip(&target).zip(half.iter().cycle()) {
            let e = (x - t) / h;
            sq += (e as f64) * (e as f64);
            w.d_act.push(kappa * e / (h * batch as f32));
        }
        let mut g = zeros_like(&p.pi);
        pol.backward_host(p.pi.values(), &w.pi, &w.d_act, Some(&mut g), None);
        (g, 0.5 * kappa as f64 * sq / batch as f64)
    })
}

/// Gradient w.r.t. the policy of the pre-activation penalty `κ/2 · mean_s Σ_j z_j(s)²` (`z` the
/// pre-tanh outputs of the deterministic policy) and its value.
pub fn preactivation_actor_grad(
    nets: &Nets,
    p: &Params,
    obs: &[f32],
    kappa: f32,
) -> (Vec<Vec<f32>>, f64) {
    let PolicyNet::Det(pol) = &nets.policy else {
        unreachable!(
            "the pre-activation penalty is for deterministic policies (checked in the config)"
        )
    };
    let batch = obs.len() / nets.spec.obs_dim;
    with_workspace(|w| {
        let z = pol.mlp.forward_host(p.pi.values(), obs, batch, &mut w.pi);
        let sq: f64 = z.iter().map(|v| (*v as f64) * (*v as f64)).sum();
        w.d_act.clear();
        w.d_act.extend(z.iter().map(|v| kappa * v / batch as f32));
        let mut g = zeros_like(&p.pi);
        pol.mlp
            .backward_host(p.pi.values(), &w.pi, &w.d_act, Some(&mut g), None);
        (g, 0.5 * kappa as f64 * sq / batch as f64)
    })
}

/// SAC's actor loss `mean[α log π(a|s) − min_i Q_i(s, clip(a))]` (the raw `a` with
/// [`Nets::raw_sample`]), `a ~ π` reparameterised: the policy gradient, the loss and
/// `mean log π` (for the temperature gradient). Draws the noise from `rng` exactly as the
/// autodiff path.
pub fn sac_actor_grad(
    nets: &Nets,
    p: &Params,
    obs: &[f32],
    rng: &mut Pcg64Mcg,
) -> (Vec<Vec<f32>>, f64, f64) {
    let PolicyNet::Gauss(g) = &nets.policy else {
        unreachable!("SAC has a Gaussian policy")
    };
    let (batch, d) = (obs.len() / nets.spec.obs_dim, nets.spec.act_dim);
    let alpha = p.alpha() as f32;
    with_workspace(|w| {
        w.noise.clear();
        w.noise
            .extend((0..batch * d).map(|_| rng.sample::<f32, _>(StandardNormal)));
        g.sample_host(p.pi.values(), obs, &w.noise, batch, &mut w.gauss);
        q_action_into(nets, w.gauss.action(), &mut w.clipped);
        let a = &w.clipped;
        let q1 = nets.q.forward_host(p.q1.values(), obs, a, batch, &mut w.q1);
        let q2 = match &p.q2 {
            Some(q2) => Some(nets.q.forward_host(q2.values(), obs, a, batch, &mut w.q2)),
            None => None,
        };
        let inv = 1.0 / batch as f32;
        let (mut loss, mut mean_lp) = (0.0f64, 0.0f64);
        w.d_q.clear();
        w.d_q2.clear();
        for (i, lp) in w.gauss.log_prob().iter().enumerate() {
            let (a1, a2) = (q1[i], q2.map_or(f32::INFINITY, |q| q[i]));
            // Ties (measure zero) send the gradient to Q1.
            let first = a1 <= a2;
            let qmin = if first { a1 } else { a2 };
            loss += (alpha * lp - qmin) as f64;
            mean_lp += *lp as f64;
            w.d_q.push(if first { -inv } else { 0.0 });
            w.d_q2.push(if first { 0.0 } else { -inv });
        }
        w.d_act.resize(batch * d, 0.0);
        nets.q
            .backward_host(p.q1.values(), &w.q1, &w.d_q, None, None, Some(&mut w.d_act));
        if let Some(q2) = &p.q2 {
            w.d_act2.resize(batch * d, 0.0);
            nets.q
                .backward_host(q2.values(), &w.q2, &w.d_q2, None, None, Some(&mut w.d_act2));
            w.d_act.iter_mut().zip(&w.d_act2).for_each(|(x, y)| *x += y);
        }
        // The clip passes the gradient inside the bounds only (a raw sample is never clipped).
        for ((g, a), c) in w.d_act.iter_mut().zip(w.gauss.action()).zip(&w.clipped) {
            if a != c {
                *g = 0.0;
            }
        }
        w.d_q.clear();
        w.d_q.resize(batch, alpha * inv);
        let mut grads = zeros_like(&p.pi);
        g.sample_backward_host(
            p.pi.values(),
            &w.gauss,
            &w.d_act,
            &w.d_q,
            Some(&mut grads),
            None,
        );
        (grads, loss / batch as f64, mean_lp / batch as f64)
    })
}

/// `min_i Q_i'(s', a')` of the target critics (`Q1'` alone without a twin or when `single`).
pub fn target_q(nets: &Nets, p: &Params, obs: &[f32], act: &[f32], single: bool) -> Vec<f32> {
    let batch = obs.len() / nets.spec.obs_dim;
    with_workspace(|w| {
        let mut v = nets
            .q
            .forward_host(p.q1_t.values(), obs, act, batch, &mut w.q1)
            .to_vec();
        if let (Some(q2t), false) = (&p.q2_t, single) {
            let q2 = nets
                .q
                .forward_host(q2t.values(), obs, act, batch, &mut w.q2);
            v.iter_mut().zip(q2).for_each(|(x, y)| *x = x.min(*y));
        }
        v
    })
}

/// SAC's soft value `min_i Q_i'(s', clip(a')) − α log π(a'|s')` (the raw `a'` with
/// [`Nets::raw_sample`]), `a' ~ π(·|s')` with noise `eps`.
pub fn sac_target_value(nets: &Nets, p: &Params, obs: &[f32], eps: &[f32]) -> Vec<f32> {
    let PolicyNet::Gauss(g) = &nets.policy else {
        unreachable!("SAC has a Gaussian policy")
    };
    let batch = obs.len() / nets.spec.obs_dim;
    let alpha = p.alpha() as f32;
    let (act, log_prob) = with_workspace(|w| {
        g.sample_host(p.pi.values(), obs, eps, batch, &mut w.gauss);
        let mut act = Vec::with_capacity(w.gauss.action().len());
        q_action_into(nets, w.gauss.action(), &mut act);
        (act, w.gauss.log_prob().to_vec())
    });
    let mut v = target_q(nets, p, obs, &act, false);
    v.iter_mut()
        .zip(&log_prob)
        .for_each(|(q, lp)| *q -= alpha * lp);
    v
}
