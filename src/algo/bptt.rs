//! The fused H-step model-return gradient (n-step ADP, MPG's model term, with MPG's data term
//! sharing its policy pass at `s_0`) on the host kernels.
//!
//! `J_H = mean[Σ_{t<H} γ^t·scale·r̃_t + γ^H·Q1(s_H, π(s_H))]` over an H-step rollout of the
//! prior model from the replayed states, differentiated w.r.t. the policy parameters by
//! back-propagation through time: the policy and Q networks run on [`crate::nn::fused`], the
//! model on its fused host step and hand-derived vector-Jacobian product
//! ([`PriorModel::step_host`], [`PriorModel::step_vjp`]). It computes exactly what
//! [`super::policy::model_return`] computes by burn autodiff (the same noise draws in the same
//! order), for both readings of eq. (6): with `all_actions` every `a_t = π_θ(s_t)` carries
//! `∇θ`; otherwise only `a_0` does and later actions pass gradients to the states alone.
//!
//! Rows of the batch never interact, so with more than one thread in the current rayon pool the
//! batch is split into two halves, each run on its own one-thread pool (so its GEMMs stay
//! single-threaded), and the halves' gradients are summed in a fixed order: the result is
//! deterministic for a given thread count. Every step's activations live in a [`Workspace`]
//! owned by the learner, so nothing is allocated per call after warm-up except the returned
//! gradient.

use std::sync::{Mutex, OnceLock};

use rand_pcg::Pcg64Mcg;

use super::PolicyNet;
use super::policy::PolicyCtx;
use crate::env::{ModelTape, PriorModel, Termination};
use crate::nn::MlpTape;
use crate::nn::fused::Scratch;

/// Parts the batch is split into when the current rayon pool has more than one thread.
const PARTS: usize = 2;

/// Buffers of the fused BPTT gradient, reused between calls (one per learner).
#[derive(Default)]
pub struct Workspace {
    /// Model noise of every step for the whole batch, `[H][batch]` (empty rows without noise).
    noise: Mutex<Vec<Vec<f32>>>,
    /// The rollout buffers of each part of the batch.
    parts: [Mutex<Part>; PARTS],
    /// One-thread pools the parts run on (built on first use with more than one thread).
    pools: OnceLock<Vec<rayon::ThreadPool>>,
}

/// The rollout of one part of the batch: every step's states, actions, rewards and tapes.
#[derive(Default)]
struct Part {
    /// `s_0 … s_H`, each `[rows, obs]`.
    states: Vec<Vec<f32>>,
    /// `a_0 … a_H`, each `[rows, act]`.
    actions: Vec<Vec<f32>>,
    /// `r̃_0 … r̃_{H−1}`, each `[rows]`.
    rewards: Vec<Vec<f32>>,
    /// Policy activations at `s_0 … s_H`.
    pi_tapes: Vec<MlpTape>,
    /// Model steps `0 … H−1`.
    model_tapes: Vec<ModelTape>,
    /// Q1 activations at `(s_H, a_H)`.
    q_tape: MlpTape,
    /// Q1 activations at `(s_0, a_0)` (MPG's data term).
    q0_tape: MlpTape,
    /// `∂(−w_data·J_0)/∂a_0` (MPG's data term).
    d_action0: Vec<f32>,
    /// The policy's backward buffers, shared by all steps (so they stay in cache).
    pi_scratch: Scratch,
    d_state: Vec<f32>,
    d_state_prev: Vec<f32>,
    d_obs: Vec<f32>,
    d_action: Vec<f32>,
    d_reward: Vec<f32>,
    d_q: Vec<f32>,
    /// `γ^0 … γ^H`.
    discounts: Vec<f32>,
    /// With an absorbing termination that the model predicts: 1 for rows not terminated
    /// before step `t`, else 0, for `t = 0 … H` (empty while no row has terminated).
    alive: Vec<Vec<f32>>,
    /// Gradient of this part's share of `−weight·J_H` w.r.t. the policy parameters.
    grads: Vec<Vec<f32>>,
}

/// Gradient w.r.t. the policy parameters of `−weight·J_H` on the replayed states `obs`
/// (row-major), with the value `J_H`; the fused counterpart of
/// [`super::policy::model_return_grad_autodiff`].
pub fn model_return_grad(
    ctx: PolicyCtx,
    obs: &[f32],
    all_actions: bool,
    weight: f32,
    rng: &mut Pcg64Mcg,
) -> (Vec<Vec<f32>>, f64) {
    let (grads, _, jh) = rollout_grad(ctx, obs, all_actions, None, weight, rng);
    (grads, jh)
}

/// MPG's policy gradient: w.r.t. the policy parameters of `−(w_data·J_0 + w_model·J_H)` on
/// the replayed states `obs`, with the values `J_0 = mean Q1(s, π(s))` and `J_H`. The data
/// term shares the rollout's policy pass at `s_0`: its `∂Q1/∂a_0` joins the model's before the
/// one backward pass through `π(s_0)`. The fused counterpart of
/// [`super::fused::data_actor_grad`] plus [`model_return_grad`], tested against both.
pub fn mixed_grad(
    ctx: PolicyCtx,
    obs: &[f32],
    all_actions: bool,
    (w_data, w_model): (f32, f32),
    rng: &mut Pcg64Mcg,
) -> (Vec<Vec<f32>>, f64, f64) {
    rollout_grad(ctx, obs, all_actions, Some(w_data), w_model, rng)
}

/// The gradient of `−(data_weight·J_0 + weight·J_H)` (no `J_0` term without a data weight),
/// with `J_0` (0 without a data weight) and `J_H`.
fn rollout_grad(
    ctx: PolicyCtx,
    obs: &[f32],
    all_actions: bool,
    data_weight: Option<f32>,
    weight: f32,
    rng: &mut Pcg64Mcg,
) -> (Vec<Vec<f32>>, f64, f64) {
    let ws = ctx.bptt;
    let (o, horizon) = (ctx.nets.spec.obs_dim, ctx.cfg.algo.horizon);
    let batch = obs.len() / o;
    let model = ctx
        .model
        .expect("model-driven algorithms are checked to have a prior model");
    let mut noise = ws.noise.lock().expect("bptt noise buffers");
    noise.resize_with(horizon, Vec::new);
    for step in noise.iter_mut() {
        model.draw_noise(batch, rng, step);
    }
    let noise = &*noise;
    let run = |rows: std::ops::Range<usize>, part: &mut Part| {
        let rollout = Rollout {
            ctx,
            model,
            obs,
            noise,
            rows,
            batch,
            all_actions,
            data_weight,
            weight,
        };
        rollout.gradient(part)
    };
    let mut first = ws.parts[0].lock().expect("bptt part buffers");
    let (grads, sum) = if rayon::current_num_threads() > 1 && batch >= PARTS {
        let mut second = ws.parts[1].lock().expect("bptt part buffers");
        let pools = ws.pools.get_or_init(|| {
            (0..PARTS)
                .map(|_| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .expect("a one-thread pool for a BPTT part")
                })
                .collect()
        });
        let half = batch / 2;
        let (p0, p1) = (&mut *first, &mut *second);
        let (s0, s1) = rayon::join(
            || pools[0].install(|| run(0..half, p0)),
            || pools[1].install(|| run(half..batch, p1)),
        );
        let mut grads = first.grads.clone();
        for (g, h) in grads.iter_mut().zip(&second.grads) {
            g.iter_mut().zip(h).for_each(|(x, y)| *x += y);
        }
        (grads, (s0.0 + s1.0, s0.1 + s1.1))
    } else {
        let sums = run(0..batch, &mut first);
        (first.grads.clone(), sums)
    };
    let n = batch as f64;
    (grads, sum.0 / n, sum.1 / n)
}

/// One part's rollout: rows `rows` of a batch of `batch`.
struct Rollout<'a> {
    ctx: PolicyCtx<'a>,
    model: &'a dyn PriorModel,
    obs: &'a [f32],
    noise: &'a [Vec<f32>],
    rows: std::ops::Range<usize>,
    batch: usize,
    all_actions: bool,
    /// `w_data` of MPG's data term `J_0` at `s_0`, if any.
    data_weight: Option<f32>,
    weight: f32,
}

impl Rollout<'_> {
    /// Run the rollout forward and back into `w.grads`; returns the sums over the rows of
    /// `Q1(s_0, a_0)` (0 without a data term) and of the model returns.
    fn gradient(&self, w: &mut Part) -> (f64, f64) {
        let PolicyCtx { nets, cfg, p, .. } = self.ctx;
        let model = self.model;
        let absorbing = nets.spec.termination == Termination::Absorbing;
        let PolicyNet::Det(pol) = &nets.policy else {
            unreachable!("model-driven policy gradients are for deterministic policies")
        };
        let (o, a) = (nets.spec.obs_dim, nets.spec.act_dim);
        let horizon = cfg.algo.horizon;
        let rows = self.rows.len();
        let (pi, q1) = (p.pi.values(), p.q1.values());
        let scale = cfg.task.reward_scale as f32;
        let gamma = cfg.algo.gamma as f32;

        // Forward: s_{t+1}, r̃_t = model(s_t, π(s_t)), then Q1(s_H, π(s_H)).
        w.states.resize_with(horizon + 1, Vec::new);
        w.actions.resize_with(horizon + 1, Vec::new);
        w.rewards.resize_with(horizon, Vec::new);
        w.pi_tapes.resize_with(horizon + 1, MlpTape::default);
        w.model_tapes.resize_with(horizon, ModelTape::default);
        w.states[0].clear();
        w.states[0].extend_from_slice(&self.obs[self.rows.start * o..self.rows.end * o]);
        w.alive.clear();
        for t in 0..=horizon {
            let act = pol.forward_host(pi, &w.states[t], rows, &mut w.pi_tapes[t]);
            w.actions[t].clear();
            w.actions[t].extend_from_slice(act);
            if t == horizon {
                break;
            }
            let noise = match self.noise[t].is_empty() {
                true => &[][..],
                false => &self.noise[t][self.rows.clone()],
            };
            let (done, next) = w.states.split_at_mut(t + 1);
            next[0].resize(rows * o, 0.0);
            w.rewards[t].resize(rows, 0.0);
            model.step_host(
                &done[t],
                &w.actions[t],
                noise,
                &mut next[0],
                &mut w.rewards[t],
                &mut w.model_tapes[t],
            );
            let terminated = &w.model_tapes[t].terminated;
            if absorbing && (!w.alive.is_empty() || terminated.contains(&true)) {
                if w.alive.is_empty() {
                    w.alive.resize(t + 1, vec![1.0; rows]);
                }
                let ended = |i: usize| terminated.get(i).copied().unwrap_or(false);
                let next: Vec<f32> = (w.alive[t].iter().enumerate())
                    .map(|(i, &alive)| if ended(i) { 0.0 } else { alive })
                    .collect();
                w.alive.push(next);
            }
        }
        let data_sum = match self.data_weight {
            Some(_) => nets
                .q
                .forward_host(q1, &w.states[0], &w.actions[0], rows, &mut w.q0_tape)
                .iter()
                .map(|&x| x as f64)
                .sum::<f64>(),
            None => 0.0,
        };
        let q = nets.q.forward_host(
            q1,
            &w.states[horizon],
            &w.actions[horizon],
            rows,
            &mut w.q_tape,
        );
        // γ^t as the autodiff path forms it (a running f32 product).
        w.discounts.clear();
        w.discounts.push(1.0f32);
        for t in 0..horizon {
            w.discounts.push(w.discounts[t] * gamma);
        }
        // Rows terminated before step t contribute nothing from t on (absorbing termination).
        let alive = |t: usize, row: usize| w.alive.get(t).map_or(1.0, |a| a[row]);
        let mut sum = 0.0f64;
        for (t, (r, &disc)) in w.rewards.iter().zip(&w.discounts).enumerate() {
            let c = disc * scale;
            let rows = r.iter().enumerate();
            sum += rows
                .map(|(i, &x)| (x * c * alive(t, i)) as f64)
                .sum::<f64>();
        }
        sum += q
            .iter()
            .enumerate()
            .map(|(i, &x)| (x * w.discounts[horizon] * alive(horizon, i)) as f64)
            .sum::<f64>();

        // Backward of −weight·J_H: each row's return enters the mean with 1/batch.
        let c = -self.weight / self.batch as f32;
        let tracked = |t: usize| t == 0 || self.all_actions;
        w.grads.resize_with(pi.len(), Vec::new);
        for (g, v) in w.grads.iter_mut().zip(pi) {
            g.clear();
            g.resize(v.len(), 0.0);
        }
        w.d_q.clear();
        w.d_q.resize(rows, c * w.discounts[horizon]);
        if let Some(a) = w.alive.get(horizon) {
            w.d_q.iter_mut().zip(a).for_each(|(d, a)| *d *= a);
        }
        w.d_state.resize(rows * o, 0.0);
        w.d_action.resize(rows * a, 0.0);
        w.d_obs.resize(rows * o, 0.0);
        w.d_state_prev.resize(rows * o, 0.0);
        w.pi_scratch.transpose(&pol.mlp, pi);
        nets.q.backward_host(
            q1,
            &w.q_tape,
            &w.d_q,
            None,
            Some(&mut w.d_state),
            Some(&mut w.d_action),
        );
        for t in (0..=horizon).rev() {
            if t < horizon {
                w.d_reward.clear();
                w.d_reward.resize(rows, c * (w.discounts[t] * scale));
                if let Some(a) = w.alive.get(t) {
                    w.d_reward.iter_mut().zip(a).for_each(|(d, a)| *d *= a);
                }
                model.step_vjp(
                    &w.model_tapes[t],
                    &w.d_state,
                    &w.d_reward,
                    &mut w.d_state_prev,
                    &mut w.d_action,
                );
                std::mem::swap(&mut w.d_state, &mut w.d_state_prev);
            }
            if let (0, Some(wd)) = (t, self.data_weight) {
                w.d_q.clear();
                w.d_q.resize(rows, -wd / self.batch as f32);
                w.d_action0.resize(rows * a, 0.0);
                let d_a0 = Some(&mut w.d_action0[..]);
                nets.q
                    .backward_host(q1, &w.q0_tape, &w.d_q, None, None, d_a0);
                w.d_action
                    .iter_mut()
                    .zip(&w.d_action0)
                    .for_each(|(x, y)| *x += y);
            }
            // s_0 is data: its gradient is not needed.
            let d_obs = (t > 0).then_some(&mut w.d_obs[..]);
            let d_params = tracked(t).then_some(&mut w.grads[..]);
            let tape = &w.pi_tapes[t];
            pol.backward_host_in(&mut w.pi_scratch, pi, tape, &w.d_action, d_params, d_obs);
            if t > 0 {
                w.d_state
                    .iter_mut()
                    .zip(&w.d_obs)
                    .for_each(|(x, y)| *x += y);
            }
        }
        (data_sum, sum)
    }
}
