//! Path tracking: simulator, prior models, reset rules, termination and reward.

use std::f64::consts::PI;

use mixpg::env::path_tracking::{
    self as pt, Kernel, PathTrackingEnv, PathTrackingModel, PathTrackingModelConfig,
};
use mixpg::env::{Env, StepOut, TensorModel};
use mixpg::nn::{device, tensor2, to_vec};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn random_actions(rng: &mut Pcg64Mcg, n: usize) -> Vec<f32> {
    (0..2 * n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn circ_diff(a: f32, b: f32, period: f32) -> f32 {
    let d = (a - b).rem_euclid(period);
    d.min(period - d)
}

fn model_step(
    model: &PathTrackingModel,
    s: &[f32],
    a: &[f32],
    rng: &mut Pcg64Mcg,
) -> (Vec<f32>, Vec<f32>) {
    let n = s.len() / 6;
    let dev = device();
    let (ns, r) = model.step_with(
        tensor2(s.to_vec(), n, 6, &dev),
        tensor2(a.to_vec(), n, 2, &dev),
        rng,
    );
    (to_vec(ns), to_vec(r))
}

// ---------------------------------------------------------------------------------------------
// (a) exact model vs simulator, kernels
// ---------------------------------------------------------------------------------------------

#[test]
fn exact_model_agrees_with_simulator_over_20_steps() {
    let n = 128;
    let mut env = PathTrackingEnv::new(n, 11);
    let model = PathTrackingModel::new(PathTrackingModelConfig::exact());
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let mut s = Vec::new();
    env.observe(&mut s);
    let mut out = StepOut::default();
    let mut max_err = [0.0f32; 7];
    for _ in 0..20 {
        let a = random_actions(&mut rng, n);
        env.step(&a, &mut out);
        let (ms, mr) = model_step(&model, &s, &a, &mut rng);
        for i in 0..n {
            for j in 0..5 {
                let e = (ms[6 * i + j] - out.next_obs[6 * i + j]).abs();
                max_err[j] = max_err[j].max(e);
            }
            let ex = circ_diff(ms[6 * i + 5], out.next_obs[6 * i + 5], 1200.0);
            max_err[5] = max_err[5].max(ex);
            max_err[6] =
                max_err[6].max((mr[i] - out.reward[i]).abs() / (1.0 + out.reward[i].abs()));
        }
        // Both continue from the simulator's state (the model is judged one step at a time).
        s.clone_from(&out.next_obs);
    }
    let tol = [2e-3, 2e-3, 2e-3, 2e-3, 2e-4, 5e-3, 1e-5];
    for j in 0..7 {
        assert!(
            max_err[j] < tol[j],
            "component {j}: max error {} (all: {max_err:?})",
            max_err[j]
        );
    }
}

#[test]
fn exact_model_rollout_tracks_simulator_rollout() {
    // Open-loop rollouts of 20 steps from the same states stay close (errors do not blow up).
    let n = 64;
    let mut env = PathTrackingEnv::new(n, 3);
    let model = PathTrackingModel::new(PathTrackingModelConfig::exact());
    let mut rng = Pcg64Mcg::seed_from_u64(9);
    let mut s = Vec::new();
    env.observe(&mut s);
    let mut out = StepOut::default();
    for _ in 0..20 {
        let a: Vec<f32> = random_actions(&mut rng, n)
            .iter()
            .map(|v| 0.3 * v)
            .collect();
        env.step(&a, &mut out);
        s = model_step(&model, &s, &a, &mut rng).0;
    }
    for i in 0..n {
        for j in 0..5 {
            let (m, e) = (s[6 * i + j], out.next_obs[6 * i + j]);
            assert!(
                (m - e).abs() < 1e-2 * (1.0 + e.abs()),
                "agent {i} dim {j}: {m} vs {e}"
            );
        }
        assert!(circ_diff(s[6 * i + 5], out.next_obs[6 * i + 5], 1200.0) < 2e-2);
    }
}

#[test]
fn simulator_matches_f64_reference_integration() {
    // Straightforward f64 integration with exact trig (no rotation trick, no fast math).
    let n = 32;
    let mut env = PathTrackingEnv::new(n, 21);
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    let mut s = Vec::new();
    env.observe(&mut s);
    let a = random_actions(&mut rng, n);
    let mut out = StepOut::default();
    env.step(&a, &mut out);
    for i in 0..n {
        let want = reference_sim_step(&s[6 * i..6 * i + 6], &a[2 * i..2 * i + 2]);
        let got = &out.next_obs[6 * i..6 * i + 6];
        for j in 0..5 {
            assert!(
                (got[j] as f64 - want[j]).abs() < 1e-4 * (1.0 + want[j].abs()),
                "agent {i} dim {j}: {} vs {}",
                got[j],
                want[j]
            );
        }
        assert!(circ_diff(got[5], want[5] as f32, 1200.0) < 2e-3);
    }
}

/// f64 simulator step (the documented equations).
fn reference_sim_step(o: &[f32], a: &[f32]) -> [f64; 6] {
    let o: Vec<f64> = o.iter().map(|&v| v as f64).collect();
    let delta = (a[0] as f64).clamp(-1.0, 1.0) * 1.2 * PI / 9.0;
    let ax = (a[1] as f64).clamp(-1.0, 1.0) * 3.0;
    let (mut vx, mut vy, mut r, mut x) = (o[0] + 20.0, o[1], o[2], o[5]);
    let mut y = pt::y_ref(x) + o[3];
    let mut phi = pt::phi_ref(x) + o[4];
    let tau = 0.005;
    for _ in 0..20 {
        let (nvx, nvy, nr) = f_xu(vx, vy, r, delta, ax, tau);
        x += tau * (vx * phi.cos() - vy * phi.sin());
        y += tau * (vx * phi.sin() + vy * phi.cos());
        phi += tau * r;
        (vx, vy, r) = (nvx.clamp(1.0, 35.0), nvy, nr);
    }
    let dy = y - pt::y_ref(x);
    let dphi = (phi - pt::phi_ref(x) + PI).rem_euclid(2.0 * PI) - PI;
    [vx - 20.0, vy, r, dy, dphi, x.rem_euclid(1200.0)]
}

fn f_xu(vx: f64, vy: f64, r: f64, delta: f64, ax: f64, tau: f64) -> (f64, f64, f64) {
    let (cf, cr, a, b, m, iz) = (-128915.5, -85943.6, 1.06, 1.85, 1412.0, 1536.7);
    let nvx = vx + tau * (ax + vy * r);
    let nvy =
        (m * vy * vx + tau * (a * cf - b * cr) * r - tau * cf * delta * vx - tau * m * vx * vx * r)
            / (m * vx - tau * (cf + cr));
    let nr = (-iz * r * vx - tau * (a * cf - b * cr) * vy + tau * a * cf * delta * vx)
        / (tau * (a * a * cf + b * b * cr) - iz * vx);
    (nvx, nvy, nr)
}

#[test]
fn kernels_are_bit_identical() {
    let best = Kernel::detect();
    let n = 100; // not a multiple of the lane count
    let mut e1 = PathTrackingEnv::new(n, 4);
    let mut e2 = PathTrackingEnv::new(n, 4);
    e2.set_kernel(Kernel::Generic);
    assert_eq!(e1.kernel(), best);
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let (mut o1, mut o2) = (StepOut::default(), StepOut::default());
    for _ in 0..10 {
        let a = random_actions(&mut rng, n);
        e1.step(&a, &mut o1);
        e2.step(&a, &mut o2);
        assert_eq!(o1.next_obs, o2.next_obs);
        assert_eq!(o1.reward, o2.reward);
        assert_eq!(o1.terminated, o2.terminated);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) the mismatched model visibly disagrees
// ---------------------------------------------------------------------------------------------

#[test]
fn mismatched_model_drifts_in_lateral_error() {
    let n = 256;
    let mut env = PathTrackingEnv::new(n, 8);
    let model = PathTrackingModel::new(PathTrackingModelConfig::mismatched());
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let mut s = Vec::new();
    env.observe(&mut s);
    let mut out = StepOut::default();
    let a: Vec<f32> = random_actions(&mut rng, n)
        .iter()
        .map(|v| 0.2 * v)
        .collect();
    for k in 1..=5 {
        env.step(&a, &mut out);
        s = model_step(&model, &s, &a, &mut rng).0;
        let mean_diff: f32 = (0..n)
            .map(|i| s[6 * i + 3] - out.next_obs[6 * i + 3])
            .sum::<f32>()
            / n as f32;
        let want = 0.5 * k as f32;
        assert!(
            (mean_diff - want).abs() < 0.15 * k as f32,
            "after {k} steps mean Δy drift {mean_diff}, expected ≈ {want}"
        );
    }
}

#[test]
fn mismatched_model_noise_is_biased_normal() {
    let n = 4096;
    let noisy = PathTrackingModel::new(PathTrackingModelConfig::mismatched());
    let clean = PathTrackingModel::new(PathTrackingModelConfig {
        noise: false,
        ..PathTrackingModelConfig::mismatched()
    });
    let mut rng = Pcg64Mcg::seed_from_u64(7);
    let s: Vec<f32> = (0..n)
        .flat_map(|_| [0.0, 0.0, 0.0, 0.0, 0.0, 10.0])
        .collect();
    let a = vec![0.0; 2 * n];
    let (ns, _) = model_step(&noisy, &s, &a, &mut rng);
    let (cs, _) = model_step(&clean, &s, &a, &mut rng);
    let d: Vec<f64> = (0..n)
        .map(|i| (ns[6 * i + 3] - cs[6 * i + 3]) as f64)
        .collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let std = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    assert!((mean - 0.5).abs() < 1e-3, "noise mean {mean}");
    assert!((std - 0.01).abs() < 1e-3, "noise std {std}");
    // Only Δy is perturbed.
    for i in 0..n {
        for j in [0, 1, 2, 4, 5] {
            assert_eq!(ns[6 * i + j], cs[6 * i + j]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (c) gradients of one model step vs finite differences
// ---------------------------------------------------------------------------------------------

/// f64 re-implementation of the mismatched model step without noise: `(next_state, reward)`.
fn reference_model_step(s: &[f64], a: &[f64]) -> ([f64; 6], f64) {
    let delta = a[0] * 1.2 * PI / 9.0;
    let ax = a[1] * 3.0;
    let (vx, vy, r, dy, dphi, x) = (s[0] + 20.0, s[1], s[2], s[3], s[4], s[5]);
    let reward = -(0.01 * s[0] * s[0]
        + 0.04 * dy * dy
        + 0.1 * dphi * dphi
        + 0.02 * r * r
        + 5.0 * delta * delta
        + 0.05 * ax * ax);
    let tau = 0.1;
    let (nvx, nvy, nr) = f_xu(vx, vy, r, delta, ax, tau);
    let ndy = dy + tau * (vx * dphi.sin() + vy * dphi.cos());
    let ndphi = dphi + tau * r;
    let nx = x + tau * (vx * dphi.cos() - vy * dphi.sin());
    (
        [nvx.clamp(1.0, 35.0) - 20.0, nvy, nr, ndy, ndphi, nx],
        reward,
    )
}

#[test]
fn model_step_gradients_match_finite_differences() {
    let model = PathTrackingModel::new(PathTrackingModelConfig {
        noise: false,
        ..PathTrackingModelConfig::mismatched()
    });
    let n = 8;
    let mut rng = Pcg64Mcg::seed_from_u64(13);
    let s: Vec<f32> = (0..n)
        .flat_map(|_| {
            [
                rng.random_range(-4.0..4.0),
                rng.random_range(-1.0..1.0),
                rng.random_range(-0.3..0.3),
                rng.random_range(-1.0..1.0),
                rng.random_range(-0.5..0.5),
                rng.random_range(0.0..600.0),
            ]
        })
        .collect();
    let a = random_actions(&mut rng, n);
    let w: Vec<f64> = (0..7).map(|_| rng.random_range(-1.0..1.0)).collect();

    // Forward agreement of the f64 re-implementation with the model.
    let dev = device();
    let st = tensor2(s.clone(), n, 6, &dev).require_grad();
    let at = tensor2(a.clone(), n, 2, &dev).require_grad();
    let (ns, rw) = model.step_with(st.clone(), at.clone(), &mut rng);
    let (nsv, rwv) = (to_vec(ns.clone()), to_vec(rw.clone()));
    for i in 0..n {
        let s64: Vec<f64> = s[6 * i..6 * i + 6].iter().map(|&v| v as f64).collect();
        let a64: Vec<f64> = a[2 * i..2 * i + 2].iter().map(|&v| v as f64).collect();
        let (want, wr) = reference_model_step(&s64, &a64);
        for j in 0..6 {
            assert!((nsv[6 * i + j] as f64 - want[j]).abs() < 1e-4 * (1.0 + want[j].abs()));
        }
        assert!((rwv[i] as f64 - wr).abs() < 1e-5);
    }

    // L = Σ_i [Σ_j w_j s'_ij + w_6 r_i].
    let wt = tensor2(w[..6].iter().map(|&v| v as f32).collect(), 1, 6, &dev);
    let loss = ns.mul(wt).sum().add(rw.mul_scalar(w[6] as f32).sum());
    let grads = loss.backward();
    let gs = to_vec(st.grad(&grads).expect("state gradient"));
    let ga = to_vec(at.grad(&grads).expect("action gradient"));

    let scalar = |s64: &[f64], a64: &[f64]| {
        let (ns, r) = reference_model_step(s64, a64);
        ns.iter().zip(&w).map(|(x, w)| x * w).sum::<f64>() + w[6] * r
    };
    let h = 1e-6;
    for i in 0..n {
        let s64: Vec<f64> = s[6 * i..6 * i + 6].iter().map(|&v| v as f64).collect();
        let a64: Vec<f64> = a[2 * i..2 * i + 2].iter().map(|&v| v as f64).collect();
        for j in 0..8 {
            let (mut sp, mut sm, mut ap, mut am) =
                (s64.clone(), s64.clone(), a64.clone(), a64.clone());
            if j < 6 {
                sp[j] += h;
                sm[j] -= h;
            } else {
                ap[j - 6] += h;
                am[j - 6] -= h;
            }
            let fd = (scalar(&sp, &ap) - scalar(&sm, &am)) / (2.0 * h);
            let g = if j < 6 {
                gs[6 * i + j]
            } else {
                ga[2 * i + j - 6]
            } as f64;
            assert!(
                (g - fd).abs() < 1e-3 * (1.0 + fd.abs()),
                "agent {i} input {j}: autodiff {g} vs finite difference {fd}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (d) reset distribution and reset rules
// ---------------------------------------------------------------------------------------------

fn moments(v: impl Iterator<Item = f32>) -> (f64, f64) {
    let v: Vec<f64> = v.map(|x| x as f64).collect();
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

#[test]
fn reset_distribution_moments() {
    let n = 40_000;
    let env = PathTrackingEnv::new(n, 99);
    let mut o = Vec::new();
    env.observe(&mut o);
    let or = &o;
    let col = |j: usize| (0..n).map(move |i| or[6 * i + j]);
    let (m0, s0) = moments(col(0));
    let (m1, s1) = moments(col(1));
    let (m2, s2) = moments(col(2));
    let (m3, s3) = moments(col(3));
    let (m4, s4) = moments(col(4));
    let (m5, s5) = moments(col(5));
    let close = |got: f64, want: f64, tol: f64, what: &str| {
        assert!((got - want).abs() < tol, "{what}: {got} vs {want}");
    };
    close(m0, 0.0, 0.05, "mean v_x-20");
    close(s0, 10.0 / 12f64.sqrt(), 0.05, "std v_x");
    close(m1, 0.0, 0.05, "mean v_y");
    // v_y = v_x tan β, β ~ N(0, 0.15): E[v_y²] ≈ E[v_x²]·E[tan²β].
    close(
        s1,
        ((400.0f64 + 100.0 / 12.0) * 0.0225 * (1.0 + 2.0 * 0.0225)).sqrt(),
        0.06,
        "std v_y",
    );
    close(m2, 0.0, 0.01, "mean r");
    close(s2, 0.3, 0.01, "std r");
    close(m3, 0.0, 0.03, "mean Δy");
    close(s3, 1.0, 0.02, "std Δy");
    close(m4, 0.0, 0.01, "mean Δφ");
    close(s4, PI / 9.0, 0.01, "std Δφ");
    close(m5, 300.0, 3.0, "mean x");
    close(s5, 600.0 / 12f64.sqrt(), 3.0, "std x");
    assert!(col(5).all(|x| (0.0..600.0).contains(&x)));
    assert!(col(0).all(|v| (-5.0..5.0).contains(&v)));
    // Same seed, same states; another seed, other states.
    let mut o2 = Vec::new();
    PathTrackingEnv::new(n, 99).observe(&mut o2);
    assert_eq!(o, o2);
    let mut env3 = PathTrackingEnv::new(n, 99);
    env3.reset(100);
    env3.observe(&mut o2);
    assert_ne!(o, o2);
}

#[test]
fn reset_to_round_trips_and_changes_agent_count() {
    let mut env = PathTrackingEnv::new(4, 1);
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let states: Vec<f32> = (0..7)
        .flat_map(|_| {
            [
                rng.random_range(-5.0..5.0),
                rng.random_range(-2.0..2.0),
                rng.random_range(-0.5..0.5),
                rng.random_range(-2.0..2.0),
                rng.random_range(-0.7..0.7),
                rng.random_range(0.0..1200.0),
            ]
        })
        .collect();
    env.reset_to(&states);
    assert_eq!(env.num_agents(), 7);
    let mut o = Vec::new();
    env.observe(&mut o);
    assert_eq!(o, states);
    // The set state is the one the dynamics start from.
    let a = random_actions(&mut rng, 7);
    let mut out = StepOut::default();
    env.step(&a, &mut out);
    assert_eq!(out.next_obs.len(), 42);
    for i in 0..7 {
        let want = reference_sim_step(&states[6 * i..6 * i + 6], &a[2 * i..2 * i + 2]);
        assert!((out.next_obs[6 * i + 3] as f64 - want[3]).abs() < 1e-3);
        assert!((out.next_obs[6 * i + 1] as f64 - want[1]).abs() < 1e-3);
    }
}

#[test]
fn reset_done_resets_only_flagged_agents() {
    let mut env = PathTrackingEnv::new(6, 5);
    // Agents 1 and 4 start far off the path and terminate on the first step.
    let mut states = Vec::new();
    for i in 0..6 {
        let dy = if i == 1 || i == 4 { 5.0 } else { 0.1 };
        states.extend_from_slice(&[0.0, 0.0, 0.0, dy, 0.0, 100.0 * i as f32]);
    }
    env.reset_to(&states);
    let mut out = StepOut::default();
    env.step(&[0.0; 12], &mut out);
    let flagged: Vec<bool> = out.terminated.clone();
    assert_eq!(flagged, [false, true, false, false, true, false]);
    let mut before = Vec::new();
    env.observe(&mut before);
    env.reset_done();
    let mut after = Vec::new();
    env.observe(&mut after);
    for i in 0..6 {
        let same = before[6 * i..6 * i + 6] == after[6 * i..6 * i + 6];
        assert_eq!(same, !flagged[i], "agent {i}");
        let steps = env.steps_since_reset()[i];
        assert_eq!(steps, if flagged[i] { 0 } else { 1 }, "agent {i}");
    }
    // A second reset_done without a step in between does nothing.
    env.reset_done();
    let mut again = Vec::new();
    env.observe(&mut again);
    assert_eq!(after, again);
}

#[test]
fn truncation_after_200_steps_since_reset() {
    let n = 8;
    let mut env = PathTrackingEnv::new(n, 5);
    let mut out = StepOut::default();
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    let mut clock = vec![0usize; n];
    let mut truncations = 0;
    for t in 1..=450 {
        // A lane-keeping feedback controller with a little noise keeps most agents alive.
        let mut o = Vec::new();
        env.observe(&mut o);
        let a: Vec<f32> = (0..n)
            .flat_map(|i| {
                let s = &o[6 * i..6 * i + 6];
                let steer = -(0.05 * s[3] + 0.5 * s[4]) / 0.4189;
                [steer + rng.random_range(-0.02..0.02), -0.3 * s[0]]
            })
            .collect();
        env.step(&a, &mut out);
        for (i, k) in clock.iter_mut().enumerate() {
            *k += 1;
            assert_eq!(out.truncated[i], *k == 200, "agent {i} step {t}");
            truncations += out.truncated[i] as usize;
            if out.truncated[i] || out.terminated[i] {
                *k = 0;
            }
        }
        env.reset_done();
        assert!(
            env.steps_since_reset()
                .iter()
                .zip(&clock)
                .all(|(&a, &b)| a as usize == b)
        );
        if t == 300 {
            // reset_to restarts every agent's clock.
            let mut o = Vec::new();
            env.observe(&mut o);
            env.reset_to(&o);
            clock.fill(0);
        }
    }
    assert!(truncations > 0, "no agent reached the episode length");
}

// ---------------------------------------------------------------------------------------------
// (e) termination
// ---------------------------------------------------------------------------------------------

/// The documented rule (f64) on a post-step observation and the normalised action.
fn terminal_reference(o: &[f32], a: &[f32]) -> bool {
    let o: Vec<f64> = o.iter().map(|&v| v as f64).collect();
    let delta = (a[0] as f64).clamp(-1.0, 1.0) * 1.2 * PI / 9.0;
    let ax = (a[1] as f64).clamp(-1.0, 1.0) * 3.0;
    let (cf, cr, la, lb, m, g) = (-128915.5f64, -85943.6f64, 1.06, 1.85, 1412.0, 9.81);
    let fzf = lb * m * g / (la + lb);
    let fzr = la * m * g / (la + lb);
    let (fxf, fxr) = if ax < 0.0 {
        (m * ax / 2.0, m * ax / 2.0)
    } else {
        (0.0, m * ax)
    };
    let muf = (fzf * fzf - fxf * fxf).sqrt() / fzf;
    let mur = (fzr * fzr - fxr * fxr).sqrt() / fzr;
    let (vx, vy, r) = (o[0] + 20.0, o[1], o[2]);
    let af = ((vy + la * r) / vx).atan() - delta;
    let ar = ((vy - lb * r) / vx).atan();
    o[3].abs() > 3.0
        || o[4].abs() > PI / 4.0
        || vx < 2.0
        || af.abs() > 3.0 * muf * fzf / cf.abs()
        || ar.abs() > 3.0 * mur * fzr / cr.abs()
        || r.abs() > mur * g / vx.abs()
}

fn step_one(state: [f32; 6], action: [f32; 2]) -> (Vec<f32>, bool) {
    let mut env = PathTrackingEnv::new(1, 0);
    env.reset_to(&state);
    let mut out = StepOut::default();
    env.step(&action, &mut out);
    (out.next_obs, out.terminated[0])
}

#[test]
fn termination_on_hand_made_states() {
    // (state, action, expected): each case trips one condition (or none).
    let cases: [([f32; 6], [f32; 2], bool); 9] = [
        ([0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0], false), // on the path, straight
        ([0.0, 0.0, 0.0, 3.5, 0.0, 0.0], [0.0, 0.0], true),  // |Δy| > 3
        ([0.0, 0.0, 0.0, -3.5, 0.0, 0.0], [0.0, 0.0], true),
        ([0.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0], true), // |Δφ| > π/4
        ([-18.5, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, -1.0], true), // v_x < 2
        ([0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0], true), // front slip at full steer
        ([0.0, -6.0, 0.0, 0.0, 0.0, 0.0], [-0.6, 0.0], true), // rear slip (v_y large)
        ([10.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0], false), // accelerating, straight
        ([-5.0, 0.2, 0.05, 1.0, 0.1, 300.0], [0.05, -0.5], false), // moderate
    ];
    for (k, (s, a, want)) in cases.iter().enumerate() {
        let (next, term) = step_one(*s, *a);
        assert_eq!(
            term,
            terminal_reference(&next, a),
            "case {k}: env vs documented rule"
        );
        assert_eq!(term, *want, "case {k}: next state {next:?}");
    }
}

#[test]
fn yaw_rate_bound_terminates_in_steady_cornering() {
    // Hold a constant steer, keeping the vehicle on the path's frame (Δy, Δφ reset to 0 each
    // step), until the yaw rate settles: lateral acceleration > μg trips the yaw-rate bound
    // while the slip angles are still inside theirs (bounds are 3× the friction limit).
    let mut env = PathTrackingEnv::new(1, 0);
    let mut s = vec![-5.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let a = [0.45f32, 0.0];
    let mut out = StepOut::default();
    for _ in 0..30 {
        env.reset_to(&s);
        env.step(&a, &mut out);
        s.clone_from(&out.next_obs);
        s[0] = -5.0;
        s[3] = 0.0;
        s[4] = 0.0;
    }
    let o = &out.next_obs;
    let (vx, vy, r) = (o[0] as f64 + 20.0, o[1] as f64, o[2] as f64);
    assert!(r.abs() > 9.81 / vx, "yaw rate {r} below the bound");
    let ar = ((vy - 1.85 * r) / vx).atan();
    assert!(
        ar.abs() < 3.0 * 5046.0 / 85943.6,
        "rear slip {ar} out of bound"
    );
    assert!(out.terminated[0]);
    assert_eq!(out.terminated[0], terminal_reference(o, &a));
}

#[test]
fn termination_matches_documented_rule_on_random_states() {
    let n = 2000;
    let mut rng = Pcg64Mcg::seed_from_u64(17);
    let states: Vec<f32> = (0..n)
        .flat_map(|_| {
            [
                rng.random_range(-19.0..15.0),
                rng.random_range(-4.0..4.0),
                rng.random_range(-1.5..1.5),
                rng.random_range(-4.0..4.0),
                rng.random_range(-1.2..1.2),
                rng.random_range(0.0..1200.0),
            ]
        })
        .collect();
    let a = random_actions(&mut rng, n);
    let mut env = PathTrackingEnv::new(1, 0);
    env.reset_to(&states);
    let mut out = StepOut::default();
    env.step(&a, &mut out);
    let (mut t, mut mismatches) = (0, 0);
    for i in 0..n {
        let want = terminal_reference(&out.next_obs[6 * i..6 * i + 6], &a[2 * i..2 * i + 2]);
        t += want as usize;
        mismatches += (want != out.terminated[i]) as usize;
    }
    // Both outcomes occur; disagreements only within f32 rounding of a bound (rare).
    assert!(t > n / 10 && t < n * 9 / 10, "terminal fraction {t}/{n}");
    assert!(mismatches <= 2, "{mismatches} disagreements");
}

// ---------------------------------------------------------------------------------------------
// (f) reward
// ---------------------------------------------------------------------------------------------

#[test]
fn reward_on_hand_computed_example() {
    // v_x−20 = 2, r = 0.1, Δy = −1, Δφ = 0.2; δ = 0.5·1.2π/9 = π/15, a_x = −1.5:
    // 0.01·4 + 0.04·1 + 0.1·0.04 + 0.02·0.01 + 5π²/225 + 0.05·2.25 = 0.41602454.
    let want = -0.416_024_54f32;
    let s = [2.0f32, 0.5, 0.1, -1.0, 0.2, 100.0];
    let a = [0.5f32, -0.5];
    assert!((pt::reward(&s, &a) - want).abs() < 1e-6);
    let (_, _) = step_one(s, a);
    let mut env = PathTrackingEnv::new(1, 0);
    env.reset_to(&s);
    let mut out = StepOut::default();
    env.step(&a, &mut out);
    assert!(
        (out.reward[0] - want).abs() < 1e-6,
        "env reward {}",
        out.reward[0]
    );
    let model = PathTrackingModel::new(PathTrackingModelConfig::mismatched());
    let dev = device();
    let r = to_vec(model.reward(
        tensor2(s.to_vec(), 1, 6, &dev),
        tensor2(a.to_vec(), 1, 2, &dev),
    ));
    assert!((r[0] - want).abs() < 1e-6, "model reward {}", r[0]);
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let (_, r2) = model_step(&model, &s, &a, &mut rng);
    assert_eq!(r2, r);

    // The simulator clips actions, the model does not.
    let big = [2.0f32, -3.0];
    let clipped = -(0.01 * 4.0 + 0.04 + 0.1 * 0.04 + 0.02 * 0.01)
        - 5.0 * (1.2 * std::f32::consts::PI / 9.0).powi(2)
        - 0.05 * 9.0;
    env.reset_to(&s);
    env.step(&big, &mut out);
    assert!(
        (out.reward[0] - clipped).abs() < 1e-5,
        "clipped env reward {}",
        out.reward[0]
    );
    let unclipped = -(0.01 * 4.0 + 0.04 + 0.1 * 0.04 + 0.02 * 0.01)
        - 5.0 * (2.4 * std::f32::consts::PI / 9.0).powi(2)
        - 0.05 * 81.0;
    let r = to_vec(model.reward(
        tensor2(s.to_vec(), 1, 6, &dev),
        tensor2(big.to_vec(), 1, 2, &dev),
    ));
    assert!((r[0] - unclipped).abs() < 1e-5, "model reward {}", r[0]);
}

// ---------------------------------------------------------------------------------------------
// The simulator's vectorisable math
// ---------------------------------------------------------------------------------------------

#[test]
fn fast_math_matches_std() {
    use pt::fast_math;
    let mut rng = Pcg64Mcg::seed_from_u64(23);
    for _ in 0..200_000 {
        let v: f32 = rng.random_range(-3000.0..3000.0) * rng.random_range(0.0f32..1.0).powi(3);
        assert_eq!(fast_math::floor(v), v.floor(), "floor({v})");
        let u: f32 = rng.random_range(-8.0..8.0);
        let (s, c) = fast_math::sincos_turns(u);
        let a = std::f64::consts::TAU * u as f64;
        assert!((s as f64 - a.sin()).abs() < 3e-7, "sin at {u} turns: {s}");
        assert!((c as f64 - a.cos()).abs() < 3e-7, "cos at {u} turns: {c}");
        let t = v * 0.01;
        let at = (t as f64).atan();
        assert!(
            (fast_math::atan(t) as f64 - at).abs() < 2e-7 * (1.0 + at.abs()),
            "atan({t})"
        );
    }
    for v in [
        0.0f32,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -1.5,
        8_388_607.5,
        -8_388_607.5,
        1e9,
        -1e9,
        -1e-30,
    ] {
        assert_eq!(fast_math::floor(v), v.floor(), "floor({v})");
    }
}
