//! Theorem 2 made empirical: the bias of the data-driven and model-driven policy gradients
//! against a reference gradient, on fixed states, for one parameter snapshot.
//!
//! Every gradient has eq. (6)'s form, `E_s[∇θπ_θ(s) · ∇_a R(s, a)]` with one `∇θπ` factor
//! (the `first_action` reading; see `docs/design.md`):
//! - data-driven: `R = Q1(s, a)` ([`policy::data_return`]);
//! - model-driven with horizon n: `R` = the n-step return of the run's (mismatched) prior model
//!   plus `γ^n Q1(s_n, π(s_n))` ([`policy::model_return`]); n = 0 is the data-driven gradient;
//! - reference: the same through the **exact** model (mismatch off) with a long horizon, so
//!   that the learned Q's share `γ^N` is negligible: the best available estimate of the true
//!   policy gradient of eq. (6).

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::policy::{self, PolicyCtx};
use super::{Nets, Params, bptt};
use crate::config::{Config, RolloutGradient};
use crate::env::PriorModel;
use crate::nn::{self, plain_device, tensor2};

/// One policy-gradient estimate compared with the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientBias {
    /// `data` or `model`.
    pub estimator: &'static str,
    /// Model rollout horizon n (0 for the data-driven gradient).
    pub horizon: usize,
    /// `‖g − g_ref‖ / ‖g_ref‖`.
    pub relative_bias: f64,
    /// Cosine between `g` and `g_ref`.
    pub cosine: f64,
    /// `‖g‖`.
    pub norm: f64,
}

/// The gradient of eq. (6)'s return (to maximise) w.r.t. the policy parameters on `states`
/// (row-major): data-driven for `horizon = None`, else model-driven through `model` with that
/// horizon. Model noise is drawn from a generator seeded with `seed`.
pub fn policy_gradient(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    model: &dyn PriorModel,
    states: &[f32],
    horizon: Option<usize>,
    seed: u64,
) -> Vec<Vec<f32>> {
    let o = nets.spec.obs_dim;
    if let (Some(h), None) = (horizon, model.tensor()) {
        // A host-only model: the fused BPTT computes the same gradient (of −J_H, negated).
        let mut cfg = cfg.clone();
        cfg.algo.horizon = h;
        let bptt = bptt::Workspace::default();
        let ctx = PolicyCtx {
            nets,
            cfg: &cfg,
            p,
            model: Some(model),
            bptt: &bptt,
        };
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let (mut g, _) = bptt::model_return_grad(ctx, states, false, 1.0, &mut rng);
        g.iter_mut().flatten().for_each(|x| *x = -*x);
        return g;
    }
    let s = tensor2(states.to_vec(), states.len() / o, o, &plain_device());
    let tracked = p.pi.track();
    let ret = match horizon {
        None => policy::data_return(nets, p, &tracked.leaves, s),
        Some(h) => {
            let mut cfg = cfg.clone();
            cfg.algo.horizon = h;
            cfg.algo.rollout_gradient = RolloutGradient::FirstAction;
            let bptt = bptt::Workspace::default();
            let ctx = PolicyCtx {
                nets,
                cfg: &cfg,
                p,
                model: Some(model),
                bptt: &bptt,
            };
            let mut rng = Pcg64Mcg::seed_from_u64(seed);
            policy::model_return(ctx, &tracked.leaves, s, false, &mut rng)
        }
    };
    tracked.grads(&ret.backward())
}

/// Relative bias and cosine of `g` against `reference`, and `‖g‖`.
pub fn compare(g: &[Vec<f32>], reference: &[Vec<f32>]) -> (f64, f64, f64) {
    let flat = |v: &[Vec<f32>]| -> Vec<f64> { v.iter().flatten().map(|x| *x as f64).collect() };
    let (a, b) = (flat(g), flat(reference));
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    (diff / nb.max(1e-30), dot / (na * nb).max(1e-30), na)
}

/// What one bias measurement needs besides the parameters.
pub struct BiasSetup<'a> {
    /// Architectures.
    pub nets: &'a Nets,
    /// The run's configuration (γ, reward scale).
    pub cfg: &'a Config,
    /// The run's prior model (with its mismatch, as configured).
    pub model: &'a dyn PriorModel,
    /// The exact model (mismatch off), for the reference gradient.
    pub exact: &'a dyn PriorModel,
    /// The states, row-major.
    pub states: &'a [f32],
    /// Reference horizon N.
    pub reference_horizon: usize,
    /// Seed of the model noise (the same for every estimate).
    pub seed: u64,
}

/// The data-driven gradient's and the model-driven gradients' bias (one per horizon) against
/// the reference gradient, for the parameters `p`; also returns `‖g_ref‖`.
pub fn gradient_bias(
    setup: &BiasSetup,
    p: &Params,
    horizons: &[usize],
) -> (f64, Vec<GradientBias>) {
    let BiasSetup {
        nets,
        cfg,
        model,
        exact,
        states,
        reference_horizon,
        seed,
    } = *setup;
    let reference = policy_gradient(nets, cfg, p, exact, states, Some(reference_horizon), seed);
    let mut out = Vec::with_capacity(horizons.len() + 1);
    let mut push = |estimator, horizon, g: Vec<Vec<f32>>| {
        let (relative_bias, cosine, norm) = compare(&g, &reference);
        out.push(GradientBias {
            estimator,
            horizon,
            relative_bias,
            cosine,
            norm,
        });
    };
    push(
        "data",
        0,
        policy_gradient(nets, cfg, p, model, states, None, seed),
    );
    for &h in horizons {
        push(
            "model",
            h,
            policy_gradient(nets, cfg, p, model, states, Some(h), seed),
        );
    }
    (nn::global_norm(&reference) as f64, out)
}
