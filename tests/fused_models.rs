//! The fused host model steps against the burn (autodiff) steps they replace: values, noise
//! draws, vector-Jacobian products, and finite differences, for every model and configuration.

use burn::tensor::Tensor;
use mixpg::env::lqr::LqrModel;
use mixpg::env::path_tracking::{PathTrackingModel, PathTrackingModelConfig};
use mixpg::env::pendulum::{PendulumModel, PendulumModelConfig};
use mixpg::env::{AutodiffModel, ModelPath, ModelTape, PriorModel};
use mixpg::nn::{device, tensor2, to_vec};
use rand::{Rng, RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;

const BATCH: usize = 64;

/// A model under test with the ranges its random states and actions are drawn from.
struct Case {
    name: &'static str,
    model: Box<dyn PriorModel>,
    state_range: Vec<(f32, f32)>,
    action_range: (f32, f32),
}

fn path_tracking_case(name: &'static str, cfg: PathTrackingModelConfig) -> Case {
    Case {
        name,
        model: Box::new(PathTrackingModel::new(cfg)),
        state_range: vec![
            (-5.0, 5.0),
            (-1.0, 1.0),
            (-0.5, 0.5),
            (-2.0, 2.0),
            (-0.6, 0.6),
            (10.0, 590.0),
        ],
        action_range: (-1.0, 1.0),
    }
}

fn pendulum_case(name: &'static str, cfg: PendulumModelConfig) -> Case {
    Case {
        name,
        model: Box::new(PendulumModel::new(cfg)),
        state_range: vec![(-1.0, 1.0), (-0.5, 0.5), (-1.0, 1.0), (-1.5, 1.5)],
        action_range: (-3.0, 3.0),
    }
}

fn lqr_case(name: &'static str, mismatch: bool) -> Case {
    Case {
        name,
        model: Box::new(LqrModel::new(mismatch)),
        state_range: vec![(-1.0, 1.0), (-1.0, 1.0)],
        action_range: (-2.0, 2.0),
    }
}

fn cases() -> Vec<Case> {
    let curved_noisy = PathTrackingModelConfig {
        noise: true,
        substeps: 3,
        curved_path: true,
    };
    let mut euler_exact = PendulumModelConfig::exact();
    euler_exact.rk4 = false;
    euler_exact.substeps = 3;
    vec![
        path_tracking_case(
            "path_tracking mismatched",
            PathTrackingModelConfig::mismatched(),
        ),
        path_tracking_case("path_tracking exact", PathTrackingModelConfig::exact()),
        path_tracking_case("path_tracking curved + noise", curved_noisy),
        pendulum_case("pendulum mismatched", PendulumModelConfig::mismatched()),
        pendulum_case("pendulum exact", PendulumModelConfig::exact()),
        pendulum_case("pendulum exact params, Euler", euler_exact),
        lqr_case("lqr", false),
        lqr_case("lqr mismatched", true),
    ]
}

fn sample(ranges: &[(f32, f32)], rows: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..rows)
        .flat_map(|_| {
            ranges
                .iter()
                .map(|&(lo, hi)| rng.random_range(lo..hi))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn normals(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Every element within `rel` of the reference, relative to the element or, for elements near
/// zero, to a thousandth of the reference's largest magnitude.
fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.abs().max(1e-3 * scale).max(1e-12);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: fused {g} vs reference {w} (tolerance {tol})"
        );
    }
}

struct Inputs {
    state: Vec<f32>,
    action: Vec<f32>,
    d_next: Vec<f32>,
    d_reward: Vec<f32>,
}

fn inputs(case: &Case, batch: usize, seed: u64) -> Inputs {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let spec = case.model.spec();
    let (lo, hi) = case.action_range;
    Inputs {
        state: sample(&case.state_range, batch, &mut rng),
        action: sample(&vec![(lo, hi); spec.act_dim], batch, &mut rng),
        d_next: normals(batch * spec.obs_dim, &mut rng),
        d_reward: normals(batch, &mut rng),
    }
}

struct Host {
    next: Vec<f32>,
    reward: Vec<f32>,
    d_state: Vec<f32>,
    d_action: Vec<f32>,
}

fn host(model: &dyn PriorModel, x: &Inputs, rng: &mut Pcg64Mcg, tape: &mut ModelTape) -> Host {
    let spec = model.spec();
    let batch = x.d_reward.len();
    let mut noise = Vec::new();
    model.draw_noise(batch, rng, &mut noise);
    let mut out = Host {
        next: vec![0.0; batch * spec.obs_dim],
        reward: vec![0.0; batch],
        d_state: vec![0.0; batch * spec.obs_dim],
        d_action: vec![0.0; batch * spec.act_dim],
    };
    model.step_host(
        &x.state,
        &x.action,
        &noise,
        &mut out.next,
        &mut out.reward,
        tape,
    );
    model.step_vjp(
        tape,
        &x.d_next,
        &x.d_reward,
        &mut out.d_state,
        &mut out.d_action,
    );
    out
}

/// The autodiff step's values and the gradients of `Σ d_next·next + Σ d_reward·reward`.
fn reference(model: &dyn PriorModel, x: &Inputs, rng: &mut Pcg64Mcg) -> Host {
    let spec = model.spec();
    let (o, a, batch) = (spec.obs_dim, spec.act_dim, x.d_reward.len());
    let dev = device();
    let s = tensor2(x.state.clone(), batch, o, &dev).require_grad();
    let act = tensor2(x.action.clone(), batch, a, &dev).require_grad();
    let tensor = model.tensor().expect("built-in models have a tensor step");
    let (next, reward) = tensor.step_with(s.clone(), act.clone(), rng);
    let d_next = tensor2(x.d_next.clone(), batch, o, &dev);
    let d_reward = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(x.d_reward.clone(), [batch]),
        &dev,
    );
    let loss = next
        .clone()
        .mul(d_next)
        .sum()
        .add(reward.clone().mul(d_reward).sum());
    let grads = loss.backward();
    Host {
        next: to_vec(next.inner()),
        reward: to_vec(reward.inner()),
        d_state: to_vec(s.grad(&grads).expect("state gradient")),
        d_action: to_vec(act.grad(&grads).expect("action gradient")),
    }
}

#[test]
fn fused_steps_match_the_burn_steps_and_their_gradients() {
    let mut tape = ModelTape::default();
    for (k, case) in cases().iter().enumerate() {
        let x = inputs(case, BATCH, 10 + k as u64);
        let mut rng_host = Pcg64Mcg::seed_from_u64(99);
        let mut rng_ref = Pcg64Mcg::seed_from_u64(99);
        let got = host(case.model.as_ref(), &x, &mut rng_host, &mut tape);
        let want = reference(case.model.as_ref(), &x, &mut rng_ref);
        let name = case.name;
        assert_close(&format!("{name}: next"), &got.next, &want.next, 1e-4);
        assert_close(&format!("{name}: reward"), &got.reward, &want.reward, 1e-4);
        assert_close(
            &format!("{name}: d_state"),
            &got.d_state,
            &want.d_state,
            1e-4,
        );
        assert_close(
            &format!("{name}: d_action"),
            &got.d_action,
            &want.d_action,
            1e-4,
        );
        assert_eq!(
            rng_host.next_u64(),
            rng_ref.next_u64(),
            "{name}: the host step must draw exactly the burn step's noise"
        );
    }
}

/// `L(state, action) = Σ d_next·next + Σ d_reward·reward` with fixed noise, in f64 of the f32 step.
fn objective(model: &dyn PriorModel, x: &Inputs, noise: &[f32], tape: &mut ModelTape) -> f64 {
    let spec = model.spec();
    let batch = x.d_reward.len();
    let mut next = vec![0.0; batch * spec.obs_dim];
    let mut reward = vec![0.0; batch];
    model.step_host(&x.state, &x.action, noise, &mut next, &mut reward, tape);
    let dot = |u: &[f32], v: &[f32]| {
        u.iter()
            .zip(v)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum::<f64>()
    };
    dot(&next, &x.d_next) + dot(&reward, &x.d_reward)
}

/// Central differences of the f32 step with a step of 0.02 (the f32 round-off of outputs such as
/// `x ≈ 600` limits the accuracy to a few 1e-3 absolute).
#[test]
fn fused_vjps_match_central_finite_differences() {
    let mut tape = ModelTape::default();
    for (k, case) in cases().iter().enumerate() {
        let model = case.model.as_ref();
        let x = inputs(case, 4, 40 + k as u64);
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let mut noise = Vec::new();
        model.draw_noise(4, &mut rng, &mut noise);
        let (o, a) = (model.spec().obs_dim, model.spec().act_dim);
        let mut d_state = vec![0.0; 4 * o];
        let mut d_action = vec![0.0; 4 * a];
        let mut next = vec![0.0; 4 * o];
        let mut reward = vec![0.0; 4];
        model.step_host(
            &x.state,
            &x.action,
            &noise,
            &mut next,
            &mut reward,
            &mut tape,
        );
        model.step_vjp(&tape, &x.d_next, &x.d_reward, &mut d_state, &mut d_action);
        for (which, analytic) in [(0, &d_state), (1, &d_action)] {
            for i in 0..analytic.len() {
                let mut probe = |delta: f32| {
                    let mut y = Inputs {
                        state: x.state.clone(),
                        action: x.action.clone(),
                        d_next: x.d_next.clone(),
                        d_reward: x.d_reward.clone(),
                    };
                    let v = if which == 0 {
                        &mut y.state
                    } else {
                        &mut y.action
                    };
                    let h = 0.02;
                    v[i] += delta * h;
                    (objective(model, &y, &noise, &mut tape), h)
                };
                let (up, h) = probe(1.0);
                let (down, _) = probe(-1.0);
                let fd = (up - down) / (2.0 * h as f64);
                let an = analytic[i] as f64;
                assert!(
                    (fd - an).abs() <= 2e-2 * an.abs() + 3e-3,
                    "{}: {} [{i}]: finite difference {fd} vs vjp {an}",
                    case.name,
                    if which == 0 { "d_state" } else { "d_action" },
                );
            }
        }
    }
}

/// `noise_mean` is the mean of `draw_noise`'s values, and `algo::model_error` is the RMS error
/// of the expected step (noise at that mean): 0 on next observations made by that step, δ after
/// adding δ to every coordinate.
#[test]
fn model_error_measures_the_expected_step_against_the_next_observations() {
    for case in cases() {
        let model = case.model.as_ref();
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let mut noise = Vec::new();
        model.draw_noise(20_000, &mut rng, &mut noise);
        match model.noise_mean() {
            None => assert!(noise.is_empty(), "{}", case.name),
            Some(m) => {
                let mean = noise.iter().map(|&x| x as f64).sum::<f64>() / noise.len() as f64;
                assert!(
                    (mean - m as f64).abs() < 0.02,
                    "{}: {mean} vs {m}",
                    case.name
                );
            }
        }
        let x = inputs(&case, BATCH, 5);
        let spec = model.spec();
        let expected = model.noise_mean().map_or(Vec::new(), |m| vec![m; BATCH]);
        let mut next = vec![0.0; BATCH * spec.obs_dim];
        let mut reward = vec![0.0; BATCH];
        let mut tape = ModelTape::default();
        model.step_host(
            &x.state,
            &x.action,
            &expected,
            &mut next,
            &mut reward,
            &mut tape,
        );
        let mut batch = mixpg::replay::HostBatch {
            len: BATCH,
            obs: x.state.clone(),
            act: x.action.clone(),
            rew: reward,
            next_obs: next,
            terminated: vec![0.0; BATCH],
            truncated: vec![0.0; BATCH],
            n_step: None,
        };
        let e0 = mixpg::algo::model_error(model, &batch);
        assert!(e0 < 1e-6, "{}: {e0}", case.name);
        batch.next_obs.iter_mut().for_each(|v| *v += 0.25);
        let e1 = mixpg::algo::model_error(model, &batch);
        assert!((e1 - 0.25).abs() < 1e-3, "{}: {e1}", case.name);
    }
}

/// A model written only on burn tensors, made a host model by `AutodiffModel`, computes the
/// same step and vector-Jacobian product as the hand-written host step of the same model.
#[test]
fn autodiff_model_matches_the_hand_written_host_step() {
    let pairs: Vec<(Case, Box<dyn PriorModel>)> = vec![
        (
            path_tracking_case("path_tracking", PathTrackingModelConfig::mismatched()),
            Box::new(AutodiffModel::new(PathTrackingModel::new(
                PathTrackingModelConfig::mismatched(),
            ))),
        ),
        (
            pendulum_case("pendulum", PendulumModelConfig::mismatched()),
            Box::new(AutodiffModel::new(PendulumModel::new(
                PendulumModelConfig::mismatched(),
            ))),
        ),
        (
            lqr_case("lqr", true),
            Box::new(AutodiffModel::new(LqrModel::new(true))),
        ),
    ];
    let mut tape = ModelTape::default();
    for (k, (case, wrapped)) in pairs.iter().enumerate() {
        assert_eq!(wrapped.path(), ModelPath::Autodiff);
        assert_eq!(case.model.path(), ModelPath::Host);
        let x = inputs(case, BATCH, 70 + k as u64);
        let hand = host(
            case.model.as_ref(),
            &x,
            &mut Pcg64Mcg::seed_from_u64(4),
            &mut tape,
        );
        let auto = host(
            wrapped.as_ref(),
            &x,
            &mut Pcg64Mcg::seed_from_u64(4),
            &mut tape,
        );
        let name = case.name;
        assert_close(&format!("{name}: next"), &auto.next, &hand.next, 1e-4);
        assert_close(&format!("{name}: reward"), &auto.reward, &hand.reward, 1e-4);
        assert_close(
            &format!("{name}: d_state"),
            &auto.d_state,
            &hand.d_state,
            1e-4,
        );
        assert_close(
            &format!("{name}: d_action"),
            &auto.d_action,
            &hand.d_action,
            1e-4,
        );
    }
}
