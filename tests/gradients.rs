//! Gradients on the `lqr` task: every algorithm's policy loss and the critic's loss against
//! finite differences, MPG's weight schedule (eqs. (10)–(11)) and its gradient identities
//! (the weighted n-step DPG and n-step ADP gradients, the model-weight floor, eq. (6)'s two
//! readings), the proximal term, and n-step targets against the simulator.

mod common;

use burn::tensor::Tensor;
use common::lqr_config;
use mixpg::algo::policy::PolicyCtx;
use mixpg::algo::schedule::{configured_weights, mpg_weights};
use mixpg::algo::{Agent, Learner, Nets, Params, bptt, policy};
use mixpg::config::Config;
use mixpg::env::{make_env, make_model, task_spec};
use mixpg::nn::{self, ParamSet, plain_device, tensor2};
use mixpg::replay::HostBatch;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn setup(cfg: &Config) -> (Nets, Params, Vec<f32>) {
    let spec = task_spec(&cfg.task.name).unwrap();
    let nets = Nets::new(cfg, &spec);
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let agent = Agent::new(&nets, cfg, &mut rng);
    let obs: Vec<f32> = (0..16 * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
    (nets, agent.params, obs)
}

fn perturbed(p: &ParamSet, d: &[Vec<f32>], eps: f32) -> ParamSet {
    let mut q = p.clone();
    q.update(|vals| {
        for (v, dv) in vals.iter_mut().zip(d) {
            for (x, y) in v.iter_mut().zip(dv) {
                *x += eps * y;
            }
        }
    });
    q
}

/// The policy loss value with the differentiated policy parameters `pi` (the snapshot `p`
/// keeps the parameters the loss treats as constants; noise drawn from a fixed seed).
fn loss_value(nets: &Nets, cfg: &Config, p: &Params, pi: &ParamSet, obs: &[f32], k: u64) -> f64 {
    let model = make_model(&cfg.task.name, cfg.task.model_mismatch).unwrap();
    let s = tensor2(obs.to_vec(), obs.len() / 2, 2, &plain_device());
    let mut rng = Pcg64Mcg::seed_from_u64(11);
    let ctx = PolicyCtx {
        nets,
        cfg,
        p,
        model: Some(model.as_ref()),
        bptt: &bptt::Workspace::default(),
    };
    let (l, _) = policy::loss(ctx, pi.frozen(), s, k, &mut rng);
    nn::scalar(l) as f64
}

fn policy_grad(nets: &Nets, cfg: &Config, p: &Params, obs: &[f32], k: u64) -> Vec<Vec<f32>> {
    // The networks of `cfg`'s algorithm (the fused path dispatches on them), same shapes as
    // `nets`, so the parameters `p` of another algorithm's setup apply.
    let nets = &Nets::new(cfg, &nets.spec);
    let model = make_model(&cfg.task.name, cfg.task.model_mismatch).unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(11);
    let ctx = PolicyCtx {
        nets,
        cfg,
        p,
        model: Some(model.as_ref()),
        bptt: &bptt::Workspace::default(),
    };
    policy::gradient(ctx, obs, k, &mut rng).grads
}

/// A direction in parameter space shaped like `p`, entries uniform in [−1, 1).
fn random_direction(p: &ParamSet, rng: &mut Pcg64Mcg) -> Vec<Vec<f32>> {
    p.values()
        .iter()
        .map(|v| (0..v.len()).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect()
}

fn dot(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum()
}

#[test]
fn policy_gradients_match_finite_differences() {
    let cases: &[(&str, &[&str])] = &[
        ("mpg_v1", &[]),
        ("mpg_v2", &["algo.rollout_gradient=first_action"]),
        ("ndpg", &[]),
        ("nadp", &[]),
        ("ddpg", &[]),
        ("td3", &[]),
        ("sac", &[]),
        ("sac", &["algo.squash=false"]),
        ("sac", &["algo.squash=false", "algo.sac_action=raw"]),
    ];
    for (algo, extra) in cases {
        let mut sets = vec!["network.hidden=[16, 16]", "algo.horizon=5"];
        sets.extend_from_slice(extra);
        let cfg = lqr_config(algo, &sets);
        let (nets, p, obs) = setup(&cfg);
        let k = 150; // both MPG weights are far from 0 and 1
        let g = policy_grad(&nets, &cfg, &p, &obs, k);
        assert!(nn::global_norm(&g) > 1e-4, "{algo}: zero gradient");
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        for _ in 0..2 {
            let d = random_direction(&p.pi, &mut rng);
            let eps = 1e-3;
            let plus = loss_value(&nets, &cfg, &p, &perturbed(&p.pi, &d, eps), &obs, k);
            let minus = loss_value(&nets, &cfg, &p, &perturbed(&p.pi, &d, -eps), &obs, k);
            let numeric = (plus - minus) / (2.0 * eps as f64);
            let analytic = dot(&g, &d);
            let tol = 3e-2 * analytic.abs().max(numeric.abs()).max(1e-3);
            assert!(
                (analytic - numeric).abs() < tol,
                "{algo} {extra:?}: analytic {analytic} vs numeric {numeric}"
            );
        }
    }
}

#[test]
fn unsquashed_sac_keeps_a_policy_gradient_outside_the_bounds_only_with_raw_actions() {
    // The path-tracking failure (docs/design.md, "SAC on path tracking"): once the Gaussian
    // mean is far outside the bounds and the log-std above its clip, a Q fed the clipped sample
    // gives the policy exactly zero gradient, while a Q fed the raw sample does not. The
    // output bias puts the means at +30 (bounds ±2) and the raw log-stds at +10 (clip 1).
    for kernels in ["autodiff", "fused"] {
        let grad = |action: &str| {
            let sets = [
                "network.hidden=[16, 16]".to_string(),
                "algo.squash=false".to_string(),
                format!("algo.sac_action={action}"),
                format!("network.kernels=\"{kernels}\""),
            ];
            let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
            let cfg = lqr_config("sac", &sets);
            let (nets, mut p, obs) = setup(&cfg);
            p.pi.update(|v| v[5] = vec![30.0, 10.0]);
            nn::global_norm(&policy_grad(&nets, &cfg, &p, &obs, 0))
        };
        assert_eq!(grad("clipped"), 0.0, "{kernels}");
        assert!(grad("raw") > 1e-4, "{kernels}");
    }
}

#[test]
fn q_loss_gradient_matches_finite_differences() {
    let cfg = lqr_config("mpg_v2", &["network.hidden=[16, 16]"]);
    let (nets, p, obs) = setup(&cfg);
    let n = obs.len() / 2;
    let mut rng = Pcg64Mcg::seed_from_u64(9);
    let batch = HostBatch {
        len: n,
        obs: obs.clone(),
        act: (0..n).map(|_| rng.random_range(-2.0..2.0)).collect(),
        rew: (0..n).map(|_| rng.random_range(-1.0..0.0)).collect(),
        next_obs: obs.iter().map(|x| x * 0.9).collect(),
        terminated: vec![0.0; n],
        truncated: vec![0.0; n],
        n_step: None,
    };
    let model = make_model("lqr", true).unwrap();
    let mut learner = Learner::new(nets.clone(), &cfg, Some(model), None, 0);
    let tb = learner.targets(&p, batch.clone()).unwrap();
    let g = learner.compute(&p, &tb, 1, false);
    let value = |q1: &ParamSet| {
        let s = tensor2(batch.obs.clone(), n, 2, &plain_device());
        let a = tensor2(batch.act.clone(), n, 1, &plain_device());
        let y = nn::tensor1(tb.targets.clone(), &plain_device());
        let q: Tensor<1> = nets.q.forward(q1.frozen(), s, a);
        nn::scalar(q.sub(y).powi_scalar(2).mean().mul_scalar(0.5)) as f64
    };
    let d = random_direction(&p.q1, &mut rng);
    let eps = 1e-3;
    let numeric = (value(&perturbed(&p.q1, &d, eps)) - value(&perturbed(&p.q1, &d, -eps))) / (2e-3);
    let analytic = dot(&g.q1, &d);
    assert!(
        (analytic - numeric).abs() < 2e-2 * analytic.abs().max(1e-3),
        "{analytic} vs {numeric}"
    );
    assert!(g.q2.is_some() && g.pi.is_none());
}

#[test]
fn weight_schedule_matches_hand_computed_values() {
    // Eqs. (10)–(11) with T = 9000, η = 0.1, H = 25, computed by hand:
    // i = 0: λ = 0.9, e = (1, 0.9^25) → w_data = 1/(1 + exp(1/0.9^25 − 1)) = 2.4253e-6.
    let cases = [
        (0, 2.425_293_2e-6),
        (2250, 0.068_814_875),
        (4500, 0.5),
        (6750, 0.931_185_125),
        (9000, 0.999_997_574_7),
        (50_000, 0.999_997_574_7),
    ];
    for (i, want) in cases {
        let (wd, wm) = mpg_weights(i, 9000, 0.1, 25);
        assert!(
            (wd - want).abs() < 1e-6 * want.max(1e-3),
            "i={i}: {wd} vs {want}"
        );
        assert!((wd + wm - 1.0).abs() < 1e-12);
    }
    // The pendulum's T = 4000 has the same shape, scaled.
    let (a, _) = mpg_weights(1000, 4000, 0.1, 25);
    assert!((a - 0.068_814_875).abs() < 1e-6);
}

/// MPG's policy gradient under `mpg` at iteration `k` is `wd·∇J_0 + wm·∇J_H`: n-step DPG's and
/// n-step ADP's gradients on the same batch with the settings `sets`.
fn assert_weighted_mix(mpg: &Config, sets: &[&str], k: u64, (wd, wm): (f64, f64)) {
    let (nets, p, obs) = setup(mpg);
    let g = policy_grad(&nets, mpg, &p, &obs, k);
    let g0 = policy_grad(&nets, &lqr_config("ndpg", sets), &p, &obs, k);
    let gh = policy_grad(&nets, &lqr_config("nadp", sets), &p, &obs, k);
    for ((a, b), c) in g
        .iter()
        .flatten()
        .zip(g0.iter().flatten())
        .zip(gh.iter().flatten())
    {
        let want = wd as f32 * b + wm as f32 * c;
        assert!(
            (a - want).abs() < 1e-5 + 1e-4 * want.abs(),
            "k={k}: {a} vs {want}"
        );
    }
}

#[test]
fn mpg_gradient_is_the_weighted_ndpg_and_nadp_gradients() {
    // On the `all_actions` reading (the gradient of loss (9), every rollout action π_θ(s_t)),
    // MPG's J_H part is n-step ADP's policy loss on the same batch with H steps: the MPG
    // gradient is w_data·∇J_0 + w_model·∇J_H exactly. (Eq. (6)'s `first_action` reading
    // differs from n-step ADP's BPTT by design; see the next test.)
    let sets = ["network.hidden=[16, 16]", "algo.horizon=6"];
    let mpg = lqr_config(
        "mpg_v1",
        &[sets[0], sets[1], "algo.rollout_gradient=all_actions"],
    );
    for k in [0, 150, 299] {
        let (wd, wm) = mpg_weights(k, 300, 0.1, 6);
        assert_weighted_mix(&mpg, &sets, k, (wd, wm));
    }
}

#[test]
fn a_model_weight_floor_holds_w_model_in_the_gradient() {
    // algo.model_weight_min = 0.3: once the schedule's w_model falls below 0.3 the gradient is
    // 0.7·∇J_0 + 0.3·∇J_H; before, the schedule's own weights.
    let sets = ["network.hidden=[16, 16]", "algo.horizon=6"];
    let mpg = lqr_config(
        "mpg_v1",
        &[
            sets[0],
            sets[1],
            "algo.rollout_gradient=all_actions",
            "algo.model_weight_min=0.3",
        ],
    );
    for k in [0, 299] {
        let (wd, wm) = mpg_weights(k, 300, 0.1, 6);
        let (wd, wm) = if wm < 0.3 { (0.7, 0.3) } else { (wd, wm) };
        assert_eq!(configured_weights(&mpg, k), (wd, wm));
        assert_weighted_mix(&mpg, &sets, k, (wd, wm));
    }
    assert!(
        mpg_weights(299, 300, 0.1, 6).1 < 0.3,
        "the floor is reached"
    );
    let bad = common::lqr_config_result("mpg_v1", &["algo.model_weight_min=1.5"]);
    assert!(format!("{:#}", bad.unwrap_err()).contains("algo.model_weight_min"));
}

#[test]
fn first_action_mode_differs_from_full_bptt() {
    // Same weights, same batch: only the way later rollout actions enter the gradient differs.
    let sets = ["network.hidden=[16, 16]", "algo.horizon=6"];
    let all = lqr_config(
        "mpg_v1",
        &[sets[0], sets[1], "algo.rollout_gradient=all_actions"],
    );
    let first = lqr_config(
        "mpg_v1",
        &[sets[0], sets[1], "algo.rollout_gradient=first_action"],
    );
    let (nets, p, obs) = setup(&all);
    let g_all = policy_grad(&nets, &all, &p, &obs, 0);
    let g_first = policy_grad(&nets, &first, &p, &obs, 0);
    let diff: Vec<Vec<f32>> = g_all
        .iter()
        .zip(&g_first)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
        .collect();
    let rel = nn::global_norm(&diff) / nn::global_norm(&g_all);
    assert!(
        rel > 1e-2,
        "the two modes must give different gradients (relative difference {rel})"
    );
}

#[test]
fn n_step_targets_follow_the_true_environment() {
    // From (s, a) the target is Σ γ^t r_t of the simulator with a then π, plus γ^n Q'(s_n, π'(s_n)):
    // check it against a hand-rolled loop over the simulator.
    let cfg = lqr_config("ndpg", &["algo.n_step=3", "network.hidden=[8]"]);
    let (nets, p, obs) = setup(&cfg);
    let n = obs.len() / 2;
    let act: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32) * 4.0 - 2.0).collect();
    let batch = HostBatch {
        len: n,
        obs: obs.clone(),
        act: act.clone(),
        rew: vec![0.0; n],
        next_obs: obs.clone(),
        terminated: vec![0.0; n],
        truncated: vec![0.0; n],
        n_step: None,
    };
    let env = make_env("lqr", n, 0).unwrap();
    let mut learner = Learner::new(
        nets.clone(),
        &cfg,
        Some(make_model("lqr", true).unwrap()),
        Some(env),
        0,
    );
    let got = learner.targets(&p, batch).unwrap().targets;
    let g = cfg.algo.gamma as f32;
    for i in 0..n {
        let mut s = [obs[2 * i], obs[2 * i + 1]];
        let mut ret = 0.0f32;
        let mut a = act[i];
        for t in 0..3 {
            if t > 0 {
                let x = tensor2(s.to_vec(), 1, 2, &plain_device());
                a = nn::to_vec(nets.policy.act(p.pi.frozen(), x))[0];
            }
            ret += g.powi(t) * mixpg::env::lqr::reward(&s, a.clamp(-2.0, 2.0));
            s = [s[0] + 0.1 * s[1], s[1] + 0.1 * a.clamp(-2.0, 2.0)];
        }
        let x = tensor2(s.to_vec(), 1, 2, &plain_device());
        let a_n = nets.policy.act(p.pi_t.frozen(), x.clone());
        let tail = nn::scalar(nets.q.forward(p.q1_t.frozen(), x, a_n));
        let want = ret + g.powi(3) * tail;
        assert!(
            (got[i] - want).abs() < 1e-4 * want.abs().max(1.0),
            "{i}: {} vs {want}",
            got[i]
        );
    }
}

/// A policy-loss term's gradient and value (`policy::proximal_grad`, …), `None` when off.
type PolicyTerm = fn(PolicyCtx, &[f32]) -> Option<(Vec<Vec<f32>>, f64)>;

/// The policy-loss term `key` = κ on MPG-v1 and TD3: its gradient `term(ctx, obs)` is the same
/// on the fused and the autodiff kernels, agrees with finite differences of its value, and is
/// exactly what the configured policy gradient gains; a negative κ, or any κ for SAC, is
/// refused.
fn assert_policy_term(key: &str, term: PolicyTerm) {
    let base = ["network.hidden=[16, 16]", "algo.horizon=5"];
    let on = format!("{key}=2.5");
    for algo in ["mpg_v1", "td3"] {
        let with = |extra: &[&str]| {
            let mut sets = base.to_vec();
            sets.extend_from_slice(extra);
            lqr_config(algo, &sets)
        };
        let cfg = with(&[&on]);
        let (nets, mut p, obs) = setup(&cfg);
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        let shift = random_direction(&p.pi, &mut rng);
        p.pi_t = perturbed(&p.pi, &shift, 0.05); // the target policy lags the policy
        let model = make_model("lqr", false).unwrap();
        let ws = bptt::Workspace::default();
        let value_and_grad = |cfg: &Config, p: &Params| {
            let nets = Nets::new(cfg, &nets.spec);
            let ctx = PolicyCtx {
                nets: &nets,
                cfg,
                p,
                model: Some(model.as_ref()),
                bptt: &ws,
            };
            term(ctx, &obs).expect("κ > 0")
        };
        let (fused, value) = value_and_grad(&cfg, &p);
        let autodiff_cfg = with(&[&on, "network.kernels=\"autodiff\""]);
        let (autodiff, value_ad) = value_and_grad(&autodiff_cfg, &p);
        assert!(value > 1e-6, "{algo} {key}: a zero term tests nothing");
        assert!(
            (value - value_ad).abs() < 1e-5 * value.max(1.0),
            "{value} vs {value_ad}"
        );
        let diff: Vec<Vec<f32>> = fused
            .iter()
            .zip(&autodiff)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
            .collect();
        assert!(
            nn::global_norm(&diff) < 1e-4 * nn::global_norm(&fused),
            "{algo} {key}: fused and autodiff gradients differ"
        );
        for _ in 0..2 {
            let d = random_direction(&p.pi, &mut rng);
            let eps = 1e-3;
            let at = |e: f32| {
                let mut q = p.clone();
                q.pi = perturbed(&p.pi, &d, e);
                value_and_grad(&autodiff_cfg, &q).1
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            let analytic = dot(&fused, &d);
            let tol = 3e-2 * analytic.abs().max(numeric.abs()).max(1e-4);
            assert!(
                (analytic - numeric).abs() < tol,
                "{algo} {key}: analytic {analytic} vs numeric {numeric}"
            );
        }
        let k = 150;
        let plain = policy_grad(&nets, &with(&[]), &p, &obs, k);
        let total = policy_grad(&nets, &cfg, &p, &obs, k);
        for ((t, g), f) in total
            .iter()
            .flatten()
            .zip(plain.iter().flatten())
            .zip(fused.iter().flatten())
        {
            assert!(
                (t - (g + f)).abs() < 1e-5 * (1.0 + g.abs()),
                "{algo} {key}: {t} ≠ {g} + {f}"
            );
        }
    }
    for (algo, value) in [("mpg_v2", "-1.0"), ("sac", "0.5")] {
        let bad = common::lqr_config_result(algo, &[&format!("{key}={value}")]);
        assert!(
            format!("{:#}", bad.unwrap_err()).contains(key),
            "{algo} with {key} = {value} is refused"
        );
    }
}

#[test]
fn a_proximal_term_adds_its_gradient_on_both_kernels_and_matches_finite_differences() {
    // κ/2 · mean ‖(π(s) − π_t(s)) / h‖²: a soft trust region around the target policy.
    assert_policy_term("algo.policy_proximal", policy::proximal_grad);
}

#[test]
fn a_preactivation_penalty_adds_its_gradient_on_both_kernels_and_matches_finite_differences() {
    // κ/2 · mean Σ_j z_j(s)² on the pre-tanh outputs: keeps the tanh out of saturation.
    assert_policy_term("algo.policy_preactivation", policy::preactivation_grad);
}
