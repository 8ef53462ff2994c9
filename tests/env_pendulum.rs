//! Inverted pendulum task: physics, episode rules, and the differentiable prior model.

use std::f64::consts::PI;

use mixpg::env::pendulum::{
    EPISODE_LEN, PendulumEnv, PendulumModel, PendulumModelConfig, PendulumPhysics, capsule_inertia,
    capsule_volume, is_failure, reward, spec,
};
use mixpg::env::{Env, PriorModel, StepOut, TensorModel};
use mixpg::nn::{device, plain_device, tensor2, to_vec};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn frictionless() -> PendulumPhysics {
    PendulumPhysics {
        damping: 0.0,
        ..PendulumPhysics::mujoco()
    }
}

fn random_states(rng: &mut Pcg64Mcg, n: usize, scale: [f64; 4]) -> Vec<[f64; 4]> {
    (0..n)
        .map(|_| std::array::from_fn(|j| rng.random_range(-scale[j]..scale[j])))
        .collect()
}

// ---------------------------------------------------------------- task description

#[test]
fn spec_is_the_papers_task() {
    let s = spec();
    assert_eq!(s.name, "pendulum");
    assert_eq!((s.obs_dim, s.act_dim, s.episode_len), (4, 1, 100));
    assert_eq!(
        (s.action_low.clone(), s.action_high.clone()),
        (vec![-3.0], vec![3.0])
    );
    assert_eq!(s.obs_scale, vec![0.001, 1.0 / 3.0, 0.1, 0.5]);
    let env = PendulumEnv::new(3, 0);
    assert_eq!(env.spec(), &s);
    assert_eq!(
        PriorModel::spec(&PendulumModel::new(PendulumModelConfig::exact())),
        &s
    );
}

// ---------------------------------------------------------------- masses and inertia

#[test]
fn capsule_masses_and_inertia_match_hand_computed_values() {
    // Cart: r = 0.1, cylinder length 0.2: V = π(0.01·0.2 + 4/3·0.001) = π/300 m³ → 10π/3 kg.
    assert!((capsule_volume(0.1, 0.1) - PI / 300.0).abs() < 1e-15);
    let p = PendulumPhysics::mujoco();
    assert!(
        (p.cart_mass - 10.0 * PI / 3.0).abs() < 1e-9,
        "{}",
        p.cart_mass
    );

    // Pole: r = 0.049, length L = √(0.001² + 0.6²). Mass = 1000 π r² (L + 4r/3).
    let (r, len) = (0.049f64, (0.001f64 * 0.001 + 0.36).sqrt());
    let mass = 1000.0 * PI * r * r * (len + 4.0 * r / 3.0);
    assert!((p.pole_mass - mass).abs() < 1e-9);
    assert!(
        (p.pole_mass - 5.018_591_641_363).abs() < 1e-9,
        "{}",
        p.pole_mass
    );
    // Hand split: cylinder m_c = ρπr²L, sphere m_s = ρ·4/3·πr³.
    let m_c = 1000.0 * PI * r * r * len;
    let m_s = 1000.0 * 4.0 / 3.0 * PI * r.powi(3);
    let perp = m_c * (3.0 * r * r + len * len) / 12.0
        + 2.0 * m_s * r * r / 5.0
        + m_s * len * (3.0 * r + 2.0 * len) / 8.0;
    let axial = m_c * r * r / 2.0 + 2.0 * m_s * r * r / 5.0;
    let (m2, i2) = capsule_inertia(r, len / 2.0, 1000.0);
    assert!((m2 - mass).abs() < 1e-12);
    assert!((i2[0] - perp).abs() < 1e-12 && (i2[1] - perp).abs() < 1e-12);
    assert!((i2[2] - axial).abs() < 1e-12);
    // Values MuJoCo 2.2.2 reports for this XML (body_inertia of the pole).
    assert!((perp - 0.188_749_766_873).abs() < 1e-10, "{perp}");
    assert!((axial - 0.005_906_496_310).abs() < 1e-10, "{axial}");
    // CoM at the middle of the fromto segment; inertia about the hinge by parallel axes.
    assert_eq!(p.pole_com, [0.0005, 0.3]);
    let j = perp + mass * (0.0005f64.powi(2) + 0.09);
    assert!((p.pole_inertia - j).abs() < 1e-12);
    assert!(
        (p.pole_inertia - 0.640_424_269_244).abs() < 1e-10,
        "{}",
        p.pole_inertia
    );
}

// ---------------------------------------------------------------- physics sanity

#[test]
fn rk4_conserves_energy_and_momentum_without_damping() {
    let phys = frictionless();
    // A large swing: the pole falls over, passes the bottom and keeps rotating/swinging.
    let mut s = [0.0, 0.3, 0.5, -1.0];
    let e0 = phys.energy(s);
    let momentum = |s: [f64; 4]| {
        let b = phys.pole_com[1] * s[1].cos() - phys.pole_com[0] * s[1].sin();
        (phys.cart_mass + phys.pole_mass) * s[2] + phys.pole_mass * b * s[3]
    };
    let p0 = momentum(s);
    let scale = phys.pole_mass * phys.gravity * phys.pole_com[1]; // ≈ 14.8 J
    let mut max_de: f64 = 0.0;
    let mut max_dp: f64 = 0.0;
    let mut max_theta: f64 = 0.0;
    for _ in 0..250 {
        s = phys.step(s, 0.0);
        max_de = max_de.max((phys.energy(s) - e0).abs());
        max_dp = max_dp.max((momentum(s) - p0).abs());
        max_theta = max_theta.max(s[1].abs());
    }
    assert!(
        max_theta > 2.0,
        "the test must exercise large angles ({max_theta})"
    );
    eprintln!("max energy drift {max_de} J, momentum drift {max_dp}");
    assert!(max_de < 1e-4 * scale, "energy drift {max_de} J");
    // Momentum scale (M+m)·|ṗ0| ≈ 7.7 kg·m/s.
    assert!(max_dp < 5e-4, "momentum drift {max_dp}");
}

#[test]
fn damping_dissipates_energy_and_force_does_work() {
    let phys = PendulumPhysics::mujoco();
    let mut s = [0.0, 0.3, 0.5, -1.0];
    let mut e = phys.energy(s);
    for _ in 0..100 {
        let next = phys.step(s, 0.0);
        let e_next = phys.energy(next);
        assert!(e_next < e, "damped energy must decrease: {e} -> {e_next}");
        s = next;
        e = e_next;
    }
    // Pushing a frictionless cart at rest with the pole hanging still: work = F·Δp exactly
    // (energy and the force's work agree up to the integrator's error).
    let phys = frictionless();
    let theta_eq = PI - phys.pole_com[0].atan2(phys.pole_com[1]);
    let mut s = [0.0, theta_eq, 0.0, 0.0];
    let e0 = phys.energy(s);
    for _ in 0..10 {
        s = phys.step(s, 0.5);
    }
    let work = phys.gear * 0.5 * s[0];
    assert!(
        ((phys.energy(s) - e0) - work).abs() < 1e-4 * work.abs(),
        "work {work}"
    );
}

#[test]
fn small_oscillation_period_matches_compound_pendulum_on_free_cart() {
    let phys = frictionless();
    let (m, big_m) = (phys.pole_mass, phys.cart_mass);
    let d = phys.pole_com[0].hypot(phys.pole_com[1]);
    // Hanging equilibrium: the CoM straight below the hinge.
    let theta_eq = PI - phys.pole_com[0].atan2(phys.pole_com[1]);
    // Linearised about it, the cart's reaction lowers the effective inertia:
    // (J − m²d²/(M+m)) ψ̈ = −m g d ψ.
    let omega = (m * phys.gravity * d / (phys.pole_inertia - m * m * d * d / (big_m + m))).sqrt();
    let period = 2.0 * PI / omega;

    let mut s = [0.0, theta_eq + 0.005, 0.0, 0.0];
    let dt = phys.timestep * phys.frame_skip as f64;
    let mut crossings = Vec::new();
    let mut t = 0.0;
    while crossings.len() < 21 {
        let next = phys.step(s, 0.0);
        let (u0, u1) = (s[1] - theta_eq, next[1] - theta_eq);
        if u0 > 0.0 && u1 <= 0.0 {
            crossings.push(t + dt * u0 / (u0 - u1));
        }
        s = next;
        t += dt;
        assert!(t < 100.0, "no oscillation");
    }
    let measured = (crossings[20] - crossings[0]) / 20.0;
    eprintln!("period measured {measured} analytic {period}");
    assert!(
        (measured - period).abs() < 1e-3 * period,
        "measured {measured} s vs analytic {period} s"
    );
    // The cart's recoil matters: the period on a fixed cart is noticeably longer.
    let fixed = 2.0 * PI / (m * phys.gravity * d / phys.pole_inertia).sqrt();
    assert!((fixed - measured) > 0.05 * measured);
}

// ---------------------------------------------------------------- environment rules

#[test]
fn reset_distribution_is_uniform_in_a_small_box_and_seeded() {
    let n = 4000;
    let env = PendulumEnv::new(n, 7);
    let mut obs = Vec::new();
    env.observe(&mut obs);
    assert_eq!(obs.len(), 4 * n);
    assert!(env.step_counts().iter().all(|&c| c == 0));
    for j in 0..4 {
        let col: Vec<f64> = obs.iter().skip(j).step_by(4).map(|&x| x as f64).collect();
        assert!(
            col.iter().all(|&x| (-0.01..0.01).contains(&x)),
            "column {j} out of range"
        );
        let mean = col.iter().sum::<f64>() / n as f64;
        let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let sd_uniform = 0.02 / 12f64.sqrt();
        assert!(
            mean.abs() < 4.0 * sd_uniform / (n as f64).sqrt(),
            "column {j} mean {mean}"
        );
        assert!(
            (var.sqrt() / sd_uniform - 1.0).abs() < 0.05,
            "column {j} std {}",
            var.sqrt()
        );
    }
    let mut again = Vec::new();
    PendulumEnv::new(n, 7).observe(&mut again);
    assert_eq!(obs, again, "same seed, same states");
    let mut other = PendulumEnv::new(n, 8);
    let mut o2 = Vec::new();
    other.observe(&mut o2);
    assert_ne!(obs, o2, "different seed, different states");
    other.reset(7);
    other.observe(&mut o2);
    assert_eq!(obs, o2, "reset(seed) re-seeds");
}

#[test]
fn reset_to_round_trips_and_sets_the_agent_count() {
    let mut env = PendulumEnv::new(2, 0);
    let states = vec![
        0.1f32, -0.05, 0.3, 1.5, -1.0, 0.15, -0.2, 0.0, 0.5, 0.01, 2.0, -3.0,
    ];
    env.reset_to(&states);
    assert_eq!(env.num_agents(), 3);
    let mut obs = Vec::new();
    env.observe(&mut obs);
    assert_eq!(obs, states);
    assert!(env.step_counts().iter().all(|&c| c == 0));
}

#[test]
fn step_clips_actions_and_applies_gear_100() {
    let mut a = PendulumEnv::new(1, 0);
    let s0 = [0.0f32, 0.0, 0.0, 0.0];
    let mut out = StepOut::default();
    a.reset_to(&s0);
    a.step(&[10.0], &mut out);
    let clipped = out.next_obs.clone();
    a.reset_to(&s0);
    a.step(&[3.0], &mut out);
    assert_eq!(clipped, out.next_obs);
    a.reset_to(&s0);
    a.step(&[-7.0], &mut out);
    let neg = out.next_obs.clone();
    a.reset_to(&s0);
    a.step(&[-3.0], &mut out);
    assert_eq!(neg, out.next_obs);
    assert_ne!(neg, clipped);
    // From rest, a = 3 → F = 300 N: p̈(0) = 300 J / det, so ṗ after 0.04 s ≈ 0.04 · p̈(0).
    let phys = PendulumPhysics::mujoco();
    let acc = phys.accel([0.0; 4], 300.0)[0];
    assert!((clipped[2] as f64 / (0.04 * acc) - 1.0).abs() < 0.05);
    assert!(
        acc > 300.0 / (phys.cart_mass + phys.pole_mass),
        "the pole's reaction adds inertia"
    );
}

#[test]
fn reward_is_the_negative_weighted_square_of_the_pre_step_state() {
    assert!((reward([1.0, 0.1, -2.0, 0.5]) + 0.445).abs() < 1e-12);
    let mut env = PendulumEnv::new(1, 0);
    let s = [1.0f32, 0.1, -2.0, 0.5];
    env.reset_to(&s);
    let mut out = StepOut::default();
    env.step(&[1.0], &mut out);
    assert!((out.reward[0] + 0.445).abs() < 1e-6, "{}", out.reward[0]);
    // The action does not enter.
    env.reset_to(&s);
    env.step(&[-3.0], &mut out);
    assert!((out.reward[0] + 0.445).abs() < 1e-6);
}

#[test]
fn termination_rule_uses_position_and_angle_limits() {
    assert!(!is_failure([0.0, 0.0, 5.0, 5.0]));
    assert!(!is_failure([1.999, 0.2, 0.0, 0.0]));
    assert!(!is_failure([-1.999, -0.2, 0.0, 0.0]));
    assert!(is_failure([2.0, 0.0, 0.0, 0.0]));
    assert!(is_failure([-2.0, 0.0, 0.0, 0.0]));
    assert!(is_failure([0.0, 0.2001, 0.0, 0.0]));
    assert!(is_failure([0.0, -0.2001, 0.0, 0.0]));
    assert!(is_failure([0.0, f64::NAN, 0.0, 0.0]));
    // In the env, on the post-step state.
    let mut env = PendulumEnv::new(1, 0);
    env.reset_to(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 1.95, 0.0, 5.0, 0.0]);
    let mut out = StepOut::default();
    env.step(&[0.0, 0.0, 0.0], &mut out);
    assert_eq!(out.terminated, vec![false, true, true]);
    assert_eq!(out.truncated, vec![false, false, false]);
}

#[test]
fn truncation_after_episode_len_steps() {
    let mut env = PendulumEnv::new(2, 3);
    let mut out = StepOut::default();
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    for t in 1..=EPISODE_LEN + 2 {
        let a: Vec<f32> = (0..2).map(|_| rng.random_range(-3.0..3.0)).collect();
        env.step(&a, &mut out);
        let expect = t >= EPISODE_LEN;
        assert_eq!(out.truncated, vec![expect; 2], "step {t}");
        assert_eq!(out.next_obs.len(), 8);
        assert_eq!(out.reward.len(), 2);
    }
}

#[test]
fn reset_done_resets_only_finished_agents() {
    let mut env = PendulumEnv::new(1, 11);
    // Agent 0 healthy, agent 1 fails on its first step.
    env.reset_to(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.0, 0.0]);
    let mut out = StepOut::default();
    env.step(&[0.0, 0.0], &mut out);
    assert_eq!(out.terminated, vec![false, true]);
    let before = env.states().to_vec();
    env.reset_done();
    let after = env.states();
    assert_eq!(after[0], before[0], "healthy agent untouched");
    assert!(
        after[1].iter().all(|x| x.abs() <= 0.01),
        "failed agent reset: {:?}",
        after[1]
    );
    assert_eq!(env.step_counts(), &[1, 0]);
    // A second reset_done changes nothing (the reset agent is no longer done).
    let snapshot = env.states().to_vec();
    env.reset_done();
    assert_eq!(env.states(), &snapshot[..]);
    // Truncated agents are reset too (a linear feedback keeps this one healthy for 100 steps).
    let mut env = PendulumEnv::new(1, 12);
    for _ in 0..EPISODE_LEN {
        let s = env.states()[0];
        let a = [(0.5 * s[0] + 10.0 * s[1] + s[2] + 1.5 * s[3]) as f32];
        env.step(&a, &mut out);
    }
    assert!(out.truncated[0] && !out.terminated[0]);
    env.reset_done();
    assert_eq!(env.step_counts(), &[0]);
}

// ---------------------------------------------------------------- prior model

fn model_step(model: &PendulumModel, states: &[[f64; 4]], actions: &[f64]) -> Vec<[f64; 4]> {
    let n = states.len();
    let dev = plain_device();
    let s = tensor2(
        states
            .iter()
            .flat_map(|s| s.iter().map(|&x| x as f32))
            .collect(),
        n,
        4,
        &dev,
    );
    let a = tensor2(actions.iter().map(|&x| x as f32).collect(), n, 1, &dev);
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let (next, _) = model.step_with(s, a, &mut rng);
    to_vec(next)
        .chunks_exact(4)
        .map(|c| std::array::from_fn(|j| c[j] as f64))
        .collect()
}

#[test]
fn exact_model_agrees_with_the_simulator() {
    let phys = PendulumPhysics::mujoco();
    let model = PendulumModel::new(PendulumModelConfig::exact());
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let n = 32;
    let mut sim = random_states(&mut rng, n, [0.5, 0.15, 0.5, 0.5]);
    let mut mdl = sim.clone();
    let mut worst_one_step: f64 = 0.0;
    let mut worst_rollout: f64 = 0.0;
    for _ in 0..20 {
        let actions: Vec<f64> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
        let one = model_step(&model, &sim, &actions);
        mdl = model_step(&model, &mdl, &actions);
        for i in 0..n {
            sim[i] = phys.step(sim[i], actions[i]);
            for j in 0..4 {
                let scale = 1.0 + sim[i][j].abs();
                worst_one_step = worst_one_step.max((one[i][j] - sim[i][j]).abs() / scale);
                worst_rollout = worst_rollout.max((mdl[i][j] - sim[i][j]).abs() / scale);
            }
        }
    }
    eprintln!("exact model: one-step {worst_one_step}, rollout {worst_rollout}");
    assert!(worst_one_step < 2e-6, "one-step error {worst_one_step}");
    assert!(
        worst_rollout < 2e-5,
        "20-step open-loop error {worst_rollout}"
    );
}

#[test]
fn mismatched_model_disagrees_with_the_simulator() {
    let phys = PendulumPhysics::mujoco();
    let cfg = PendulumModelConfig {
        noise: false,
        ..PendulumModelConfig::mismatched()
    };
    let model = PendulumModel::new(cfg);
    let mut rng = Pcg64Mcg::seed_from_u64(6);
    let n = 64;
    let states = random_states(&mut rng, n, [0.5, 0.15, 0.5, 0.5]);
    let actions: Vec<f64> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
    let pred = model_step(&model, &states, &actions);
    let mut mean_err = [0.0; 4];
    for i in 0..n {
        let truth = phys.step(states[i], actions[i]);
        for j in 0..4 {
            mean_err[j] += (pred[i][j] - truth[j]).abs() / n as f64;
        }
    }
    eprintln!("mismatched mean abs error {mean_err:?}");
    // Velocities are off by centimetres/decimetres per second after a single step (the exact
    // model is within ~1e-6, see above).
    assert!(mean_err[2] > 0.03, "{mean_err:?}");
    assert!(mean_err[3] > 0.1, "{mean_err:?}");
    // And the reference noise p' += N(0.1, 0.5) is on by default.
    assert!(PendulumModelConfig::mismatched().noise);
}

#[test]
fn model_noise_is_biased_gaussian_on_cart_position_only() {
    let noisy = PendulumModel::new(PendulumModelConfig::mismatched());
    let clean = PendulumModel::new(PendulumModelConfig {
        noise: false,
        ..PendulumModelConfig::mismatched()
    });
    let n = 20000;
    let dev = plain_device();
    let mut rng = Pcg64Mcg::seed_from_u64(9);
    let states: Vec<f32> = (0..n * 4).map(|_| rng.random_range(-0.1..0.1)).collect();
    let actions: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let s = tensor2(states, n, 4, &dev);
    let a = tensor2(actions, n, 1, &dev);
    let (x, rx) = noisy.step_with(s.clone(), a.clone(), &mut rng);
    let (y, ry) = clean.step_with(s, a, &mut rng);
    assert_eq!(to_vec(rx), to_vec(ry), "noise does not touch the reward");
    let (x, y) = (to_vec(x), to_vec(y));
    let d: Vec<f64> = x.iter().zip(&y).map(|(a, b)| (a - b) as f64).collect();
    for j in 1..4 {
        assert!(
            d.iter().skip(j).step_by(4).all(|&v| v == 0.0),
            "column {j} got noise"
        );
    }
    let p: Vec<f64> = d.iter().step_by(4).copied().collect();
    let mean = p.iter().sum::<f64>() / n as f64;
    let sd = (p.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    assert!((mean - 0.1).abs() < 0.015, "mean {mean}");
    assert!((sd - 0.5).abs() < 0.015, "std {sd}");
}

#[test]
fn model_reward_matches_environment_reward() {
    let model = PendulumModel::new(PendulumModelConfig::exact());
    let dev = plain_device();
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let states = random_states(&mut rng, 16, [1.0, 0.3, 2.0, 2.0]);
    let flat: Vec<f32> = states
        .iter()
        .flat_map(|s| s.iter().map(|&x| x as f32))
        .collect();
    let actions: Vec<f32> = (0..16).map(|_| rng.random_range(-3.0..3.0)).collect();
    let r = to_vec(model.reward(
        tensor2(flat.clone(), 16, 4, &dev),
        tensor2(actions.clone(), 16, 1, &dev),
    ));
    let mut env = PendulumEnv::new(1, 0);
    env.reset_to(&flat);
    let mut out = StepOut::default();
    env.step(&actions, &mut out);
    for i in 0..16 {
        let want = reward(states[i]);
        assert!((r[i] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
        assert!((out.reward[i] - r[i]).abs() < 1e-5 * (1.0 + r[i].abs()));
    }
    let (_, r2) = model.step_with(
        tensor2(flat, 16, 4, &dev),
        tensor2(actions, 16, 1, &dev),
        &mut rng,
    );
    assert_eq!(to_vec(r2), r, "step's reward is reward(state, action)");
}

/// Gradients of `Σ w ⊙ next_state + Σ v ⊙ reward` w.r.t. state and action vs central differences.
fn check_gradients(cfg: PendulumModelConfig) {
    let model = PendulumModel::new(PendulumModelConfig {
        noise: false,
        ..cfg
    });
    let mut rng = Pcg64Mcg::seed_from_u64(21);
    let n = 6;
    let states: Vec<f32> = random_states(&mut rng, n, [0.5, 0.2, 1.0, 1.0])
        .iter()
        .flat_map(|s| s.iter().map(|&x| x as f32))
        .collect();
    let actions: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    let w: Vec<f32> = (0..n * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();

    let loss = |s: &[f32], a: &[f32]| -> f64 {
        let dev = plain_device();
        let mut r = Pcg64Mcg::seed_from_u64(0);
        let (next, rew) = model.step_with(
            tensor2(s.to_vec(), n, 4, &dev),
            tensor2(a.to_vec(), n, 1, &dev),
            &mut r,
        );
        let next = to_vec(next);
        let rew = to_vec(rew);
        next.iter()
            .zip(&w)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum::<f64>()
            + rew
                .iter()
                .zip(&v)
                .map(|(x, y)| (*x as f64) * (*y as f64))
                .sum::<f64>()
    };

    let dev = device();
    let s = tensor2(states.clone(), n, 4, &dev).require_grad();
    let a = tensor2(actions.clone(), n, 1, &dev).require_grad();
    let mut r = Pcg64Mcg::seed_from_u64(0);
    let (next, rew) = model.step_with(s.clone(), a.clone(), &mut r);
    let l = next
        .mul(tensor2(w.clone(), n, 4, &dev))
        .sum()
        .add(rew.mul(mixpg::nn::tensor1(v.clone(), &dev)).sum());
    let grads = l.backward();
    let gs = to_vec(s.grad(&grads).expect("state gradient"));
    let ga = to_vec(a.grad(&grads).expect("action gradient"));

    let eps = 1e-2f32;
    let check = |analytic: f32, plus: f64, minus: f64, what: String| {
        let fd = (plus - minus) / (2.0 * eps as f64);
        let tol = 2e-3 * (1.0 + fd.abs());
        assert!(
            (analytic as f64 - fd).abs() < tol,
            "{what}: autodiff {analytic} vs finite difference {fd}"
        );
    };
    for k in 0..n * 4 {
        let (mut sp, mut sm) = (states.clone(), states.clone());
        sp[k] += eps;
        sm[k] -= eps;
        check(
            gs[k],
            loss(&sp, &actions),
            loss(&sm, &actions),
            format!("d/ds[{k}]"),
        );
    }
    for k in 0..n {
        let (mut ap, mut am) = (actions.clone(), actions.clone());
        ap[k] += eps;
        am[k] -= eps;
        check(
            ga[k],
            loss(&states, &ap),
            loss(&states, &am),
            format!("d/da[{k}]"),
        );
    }
    assert!(
        ga.iter().all(|g| g.abs() > 1e-3),
        "the action reaches the next state"
    );
}

#[test]
fn exact_model_gradients_match_finite_differences() {
    check_gradients(PendulumModelConfig::exact());
}

#[test]
fn mismatched_model_gradients_match_finite_differences() {
    check_gradients(PendulumModelConfig::mismatched());
}
