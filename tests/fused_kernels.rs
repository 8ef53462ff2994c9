//! The fused host kernels (`network.kernels = "fused"`) against the burn autodiff path (the
//! reference) on random inputs, and against finite differences.

mod common;

use burn::tensor::Tensor;
use common::{progress_without_timing, tempdir};
use mixpg::algo::policy::{self, PolicyCtx};
use mixpg::algo::{Agent, Learner, Nets, Params, TargetBatch, act, bptt};
use mixpg::config::Config;
use mixpg::env::{make_env, make_model, task_spec};
use mixpg::nn::{
    self, DetPolicy, GaussianPolicy, GaussianTape, Mlp, MlpTape, NetSpec, ParamSet, QNet, device,
    plain_device, tensor1, tensor2, to_vec,
};
use mixpg::replay::HostBatch;
use mixpg::runtime::Trainer;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

const BATCH: usize = 37;

fn random_vec(n: usize, lo: f32, hi: f32, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn normal_vec(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// `max |a − b| ≤ 1e-4 · max |b|` (plus a floor for all-tiny references).
fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-3);
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= 1e-4 * scale,
        "{what}: max error {err} vs scale {scale}"
    );
}

fn assert_all_close(what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len(), "{what}: tensor count");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_close(&format!("{what}[{i}]"), x, y);
    }
}

/// A leaf input tensor whose gradient burn keeps.
fn leaf(data: &[f32], rows: usize, cols: usize) -> Tensor<2> {
    tensor2(data.to_vec(), rows, cols, &plain_device())
        .autodiff()
        .require_grad()
}

fn zeros_like(p: &ParamSet) -> Vec<Vec<f32>> {
    p.values().iter().map(|v| vec![0.0; v.len()]).collect()
}

/// A spec with unequal hidden widths, so transposes and strides are exercised.
fn spec() -> NetSpec {
    NetSpec {
        hidden: vec![48, 33],
        ..NetSpec::default()
    }
}

/// A parameter set with random (non-zero) biases, so bias gradients and forwards are tested.
fn random_params(p: ParamSet, rng: &mut impl Rng) -> ParamSet {
    let mut p = p;
    p.update(|vals| {
        for v in vals.iter_mut() {
            for x in v.iter_mut() {
                *x += rng.random_range(-0.3f32..0.3);
            }
        }
    });
    p
}

#[test]
fn mlp_forward_and_backward_match_autodiff() {
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let scale = [0.5, 2.0, 1.0, 0.1, 3.0];
    let mlp = Mlp::new(&scale, &spec().hidden, 3, &device());
    let params = random_params(mlp.init(1.0, &mut rng), &mut rng);
    let x = random_vec(BATCH * 5, -3.0, 3.0, &mut rng);
    let r = random_vec(BATCH * 3, -1.0, 1.0, &mut rng);

    let tr = params.track();
    let xt = leaf(&x, BATCH, 5);
    let out = mlp.forward(&tr.leaves, xt.clone());
    let loss = out
        .clone()
        .mul(tensor2(r.clone(), BATCH, 3, &device()))
        .sum();
    let g = loss.backward();
    let ref_dp = tr.grads(&g);
    let ref_dx = to_vec(xt.grad(&g).unwrap());

    let mut tape = MlpTape::default();
    // Twice: the second pass reuses the tape's buffers.
    for _ in 0..2 {
        let y = mlp
            .forward_host(params.values(), &x, BATCH, &mut tape)
            .to_vec();
        assert_close("mlp forward", &y, &to_vec(out.clone().inner()));
        let mut dp = zeros_like(&params);
        let mut dx = vec![0.0; x.len()];
        mlp.backward_host(params.values(), &tape, &r, Some(&mut dp), Some(&mut dx));
        assert_all_close("mlp d_params", &dp, &ref_dp);
        assert_close("mlp d_x", &dx, &ref_dx);
    }
}

#[test]
fn det_policy_forward_and_backward_match_autodiff() {
    let scale = [0.5, 2.0, 1.0, 0.3];
    // A symmetric box (`high ⊙ tanh`) and an asymmetric one (`mid + half ⊙ tanh`).
    det_policy_case(DetPolicy::new(&scale, &[2.0, 0.5], &spec(), &device()));
    det_policy_case(DetPolicy::with_bounds(
        &scale,
        &[-1.0, 0.0],
        &[3.0, 0.5],
        &spec(),
        &device(),
    ));
}

fn det_policy_case(pol: DetPolicy) {
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    let params = random_params(pol.init(&mut rng), &mut rng);
    let obs = random_vec(BATCH * 4, -2.0, 2.0, &mut rng);
    let r = random_vec(BATCH * 2, -1.0, 1.0, &mut rng);

    let tr = params.track();
    let ot = leaf(&obs, BATCH, 4);
    let act = pol.forward(&tr.leaves, ot.clone());
    let g = act
        .clone()
        .mul(tensor2(r.clone(), BATCH, 2, &device()))
        .sum()
        .backward();

    let mut tape = MlpTape::default();
    let a = pol
        .forward_host(params.values(), &obs, BATCH, &mut tape)
        .to_vec();
    assert_close("policy forward", &a, &to_vec(act.inner()));
    let mut dp = zeros_like(&params);
    let mut dobs = vec![0.0; obs.len()];
    pol.backward_host(params.values(), &tape, &r, Some(&mut dp), Some(&mut dobs));
    assert_all_close("policy d_params", &dp, &tr.grads(&g));
    assert_close("policy d_obs", &dobs, &to_vec(ot.grad(&g).unwrap()));
}

#[test]
fn q_net_forward_and_backward_match_autodiff() {
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let q = QNet::new(&[0.5, 2.0, 1.0, 0.3], 2, &spec(), &device());
    let params = random_params(q.init(&mut rng), &mut rng);
    let obs = random_vec(BATCH * 4, -2.0, 2.0, &mut rng);
    let act = random_vec(BATCH * 2, -1.0, 1.0, &mut rng);
    let r = random_vec(BATCH, -1.0, 1.0, &mut rng);

    let tr = params.track();
    let (ot, at) = (leaf(&obs, BATCH, 4), leaf(&act, BATCH, 2));
    let qv = q.forward(&tr.leaves, ot.clone(), at.clone());
    let g = qv
        .clone()
        .mul(tensor1(r.clone(), &device()))
        .sum()
        .backward();

    let mut tape = MlpTape::default();
    let y = q
        .forward_host(params.values(), &obs, &act, BATCH, &mut tape)
        .to_vec();
    assert_close("q forward", &y, &to_vec(qv.inner()));
    let mut dp = zeros_like(&params);
    let (mut dobs, mut dact) = (vec![0.0; obs.len()], vec![0.0; act.len()]);
    q.backward_host(
        params.values(),
        &tape,
        &r,
        Some(&mut dp),
        Some(&mut dobs),
        Some(&mut dact),
    );
    assert_all_close("q d_params", &dp, &tr.grads(&g));
    assert_close("q d_obs", &dobs, &to_vec(ot.grad(&g).unwrap()));
    assert_close("q d_act", &dact, &to_vec(at.grad(&g).unwrap()));
    // Only the action gradient (what the actor losses ask for).
    let mut dact2 = vec![0.0; act.len()];
    q.backward_host(params.values(), &tape, &r, None, None, Some(&mut dact2));
    assert_close("q d_act alone", &dact2, &dact);
}

fn check_gaussian(squash: bool) {
    let scale = [0.5, 2.0, 1.0];
    check_gaussian_policy(
        GaussianPolicy::new(&scale, &[2.0, 0.5], squash, &spec(), &device()),
        squash,
    );
    let (low, high) = ([-1.0, 0.0], [3.0, 0.5]);
    check_gaussian_policy(
        GaussianPolicy::with_bounds(&scale, &low, &high, squash, &spec(), &device()),
        squash,
    );
}

fn check_gaussian_policy(pol: GaussianPolicy, squash: bool) {
    let mut rng = Pcg64Mcg::seed_from_u64(4 + squash as u64);
    // Large random biases push some log-stds beyond the clip range on both sides.
    let mut params = pol.init(&mut rng);
    params.update(|vals| {
        for v in vals.iter_mut() {
            for x in v.iter_mut() {
                *x += rng.random_range(-0.5f32..0.5);
            }
        }
        let last = vals.len() - 1;
        vals[last] = vec![0.2, -0.4, 0.5, -4.5];
    });
    let obs = random_vec(BATCH * 3, -2.0, 2.0, &mut rng);
    let eps = normal_vec(BATCH * 2, &mut rng);
    let ra = random_vec(BATCH * 2, -1.0, 1.0, &mut rng);
    let rl = random_vec(BATCH, -1.0, 1.0, &mut rng);

    let tr = params.track();
    let ot = leaf(&obs, BATCH, 3);
    let smp = pol.sample(
        &tr.leaves,
        ot.clone(),
        tensor2(eps.clone(), BATCH, 2, &plain_device()),
    );
    let g = smp
        .action
        .clone()
        .mul(tensor2(ra.clone(), BATCH, 2, &device()))
        .sum()
        .add(
            smp.log_prob
                .clone()
                .mul(tensor1(rl.clone(), &device()))
                .sum(),
        )
        .backward();

    let mut tape = GaussianTape::default();
    pol.sample_host(params.values(), &obs, &eps, BATCH, &mut tape);
    assert_close(
        "gaussian action",
        tape.action(),
        &to_vec(smp.action.inner()),
    );
    assert_close(
        "gaussian log_prob",
        tape.log_prob(),
        &to_vec(smp.log_prob.inner()),
    );
    let mut dp = zeros_like(&params);
    let mut dobs = vec![0.0; obs.len()];
    pol.sample_backward_host(
        params.values(),
        &tape,
        &ra,
        &rl,
        Some(&mut dp),
        Some(&mut dobs),
    );
    assert_all_close("gaussian d_params", &dp, &tr.grads(&g));
    assert_close("gaussian d_obs", &dobs, &to_vec(ot.grad(&g).unwrap()));

    let mut mode = Vec::new();
    pol.mode_host(
        params.values(),
        &obs,
        BATCH,
        &mut MlpTape::default(),
        &mut mode,
    );
    let ref_mode = pol.mode(params.frozen(), tensor2(obs, BATCH, 3, &plain_device()));
    assert_close("gaussian mode", &mode, &to_vec(ref_mode));
}

#[test]
fn gaussian_head_matches_autodiff_unsquashed() {
    check_gaussian(false);
}

#[test]
fn gaussian_head_matches_autodiff_squashed() {
    check_gaussian(true);
}

#[test]
fn fused_mlp_gradient_matches_finite_differences() {
    let mut rng = Pcg64Mcg::seed_from_u64(6);
    let mlp = Mlp::new(&[0.5, 2.0, 1.0], &spec().hidden, 2, &device());
    let params = random_params(mlp.init(1.0, &mut rng), &mut rng);
    let x = random_vec(BATCH * 3, -2.0, 2.0, &mut rng);
    let r = random_vec(BATCH * 2, -1.0, 1.0, &mut rng);
    let mut tape = MlpTape::default();
    // f64 accumulation of Σ r ⊙ mlp(x).
    let mut value = |p: &[Vec<f32>], x: &[f32]| -> f64 {
        let y = mlp.forward_host(p, x, BATCH, &mut tape);
        y.iter()
            .zip(&r)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum()
    };
    let mut tape2 = MlpTape::default();
    mlp.forward_host(params.values(), &x, BATCH, &mut tape2);
    let mut dp = zeros_like(&params);
    let mut dx = vec![0.0; x.len()];
    mlp.backward_host(params.values(), &tape2, &r, Some(&mut dp), Some(&mut dx));
    let h = 1e-3f32;
    for _ in 0..3 {
        let d: Vec<Vec<f32>> = params
            .values()
            .iter()
            .map(|v| random_vec(v.len(), -1.0, 1.0, &mut rng))
            .collect();
        let shifted = |s: f32| -> Vec<Vec<f32>> {
            params
                .values()
                .iter()
                .zip(&d)
                .map(|(v, dv)| v.iter().zip(dv).map(|(a, b)| a + s * h * b).collect())
                .collect()
        };
        let numeric = (value(&shifted(1.0), &x) - value(&shifted(-1.0), &x)) / (2.0 * h as f64);
        let analytic: f64 = dp
            .iter()
            .flatten()
            .zip(d.iter().flatten())
            .map(|(g, d)| (*g as f64) * (*d as f64))
            .sum();
        let tol = 1e-2 * analytic.abs().max(numeric.abs()).max(1e-2);
        assert!(
            (analytic - numeric).abs() < tol,
            "parameters: analytic {analytic}, numeric {numeric}"
        );
        let dxdir = random_vec(x.len(), -1.0, 1.0, &mut rng);
        let xs =
            |s: f32| -> Vec<f32> { x.iter().zip(&dxdir).map(|(a, b)| a + s * h * b).collect() };
        let numeric = (value(params.values(), &xs(1.0)) - value(params.values(), &xs(-1.0)))
            / (2.0 * h as f64);
        let analytic: f64 = dx
            .iter()
            .zip(&dxdir)
            .map(|(g, d)| (*g as f64) * (*d as f64))
            .sum();
        let tol = 1e-2 * analytic.abs().max(numeric.abs()).max(1e-2);
        assert!(
            (analytic - numeric).abs() < tol,
            "input: analytic {analytic}, numeric {numeric}"
        );
    }
    assert!(nn::global_norm(&dp) > 1e-3);
}

// ---- Algorithm-level paths: fused against autodiff on both tasks. ----

const TASKS: [&str; 2] = ["path_tracking", "pendulum"];
const ALG_BATCH: usize = 48;

/// `configs/{task}/{file}.toml` as algorithm `algo` with smaller networks and `kernels`.
fn task_config(task: &str, file: &str, algo: &str, kernels: &str, extra: &[&str]) -> Config {
    let mut set = vec![
        format!("algo.name={algo}"),
        format!("network.kernels=\"{kernels}\""),
        "network.hidden=[40, 24]".to_string(),
        "algo.n_step=5".to_string(),
        "algo.horizon=5".to_string(),
    ];
    set.extend(extra.iter().map(|s| s.to_string()));
    let path = format!("configs/{task}/{file}.toml");
    Config::load(std::path::Path::new(&path), &set).expect("config")
}

/// Parameters with every network (targets, Q2, biases) distinct and α ≠ 1.
fn distinct_params(nets: &Nets, cfg: &Config) -> Params {
    let mut rng = Pcg64Mcg::seed_from_u64(11);
    let mut p = Agent::new(nets, cfg, &mut rng).params;
    for ps in [&mut p.pi, &mut p.q1, &mut p.pi_t, &mut p.q1_t] {
        *ps = random_params(ps.clone(), &mut rng);
    }
    for ps in [p.q2.as_mut(), p.q2_t.as_mut()].into_iter().flatten() {
        *ps = random_params(ps.clone(), &mut rng);
    }
    p.log_alpha.update(|v| v[0][0] = -1.3);
    p
}

/// A batch of real observations of `task` with random actions and rewards.
fn task_batch(task: &str) -> HostBatch {
    let spec = task_spec(task).unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(12);
    let mut env = make_env(task, ALG_BATCH, 5).unwrap();
    let mut obs = Vec::new();
    env.observe(&mut obs);
    let act: Vec<f32> = (0..ALG_BATCH * spec.act_dim)
        .map(|i| {
            let d = i % spec.act_dim;
            rng.random_range(spec.action_low[d]..spec.action_high[d])
        })
        .collect();
    let mut out = mixpg::env::StepOut::default();
    env.step(&act, &mut out);
    HostBatch {
        len: ALG_BATCH,
        obs,
        act,
        rew: out.reward.clone(),
        next_obs: out.next_obs.clone(),
        terminated: vec![0.0; ALG_BATCH],
        truncated: vec![0.0; ALG_BATCH],
        n_step: None,
    }
}

fn learner(task: &str, cfg: &Config) -> Learner {
    let nets = Nets::new(cfg, &task_spec(task).unwrap());
    let env = make_env(task, ALG_BATCH, 0).unwrap();
    Learner::new(
        nets,
        cfg,
        Some(make_model(task, true).unwrap()),
        Some(env),
        0,
    )
}

fn assert_scalar_close(what: &str, a: f64, b: f64) {
    assert!(
        (a - b).abs() <= 1e-4 * b.abs().max(1e-2),
        "{what}: {a} vs {b}"
    );
}

/// (file, algo, extra overrides) of every algorithm with a data-driven or SAC part; MPG in
/// both readings of eq. (6).
const CASES: [(&str, &str, &[&str]); 9] = [
    ("td3", "ddpg", &[]),
    ("td3", "td3", &[]),
    ("ndpg", "ndpg", &[]),
    ("sac", "sac", &["algo.learn_alpha=true"]),
    ("sac", "sac", &["algo.squash=false"]),
    ("sac", "sac", &["algo.squash=false", "algo.sac_action=raw"]),
    ("mpg_v1", "mpg_v1", &["algo.rollout_gradient=all_actions"]),
    ("mpg_v2", "mpg_v2", &["algo.rollout_gradient=first_action"]),
    ("mpg_v2", "mpg_v2", &["algo.rollout_gradient=all_actions"]),
];

#[test]
fn targets_critic_and_policy_gradients_match_autodiff_on_both_tasks() {
    for task in TASKS {
        let b = task_batch(task);
        for (file, algo, extra) in CASES {
            let what = format!("{task} {algo} {extra:?}");
            let cfg_a = task_config(task, file, algo, "autodiff", extra);
            let cfg_f = task_config(task, file, algo, "fused", extra);
            let (mut la, mut lf) = (learner(task, &cfg_a), learner(task, &cfg_f));
            let p = distinct_params(&la.nets, &cfg_a);
            let ta = la.targets(&p, b.clone()).unwrap();
            let tf = lf.targets(&p, b.clone()).unwrap();
            assert_close(&format!("{what} targets"), &tf.targets, &ta.targets);
            // Mid-schedule, so both MPG weights are non-zero.
            let k = cfg_a.algo.schedule_iterations / 2;
            let tb = TargetBatch {
                batch: b.clone(),
                targets: ta.targets,
                model_error: ta.model_error,
            };
            let ga = la.compute(&p, &tb, k, true);
            let gf = lf.compute(&p, &tb, k, true);
            assert_all_close(&format!("{what} q1"), &gf.q1, &ga.q1);
            match (&gf.q2, &ga.q2) {
                (Some(f), Some(a)) => assert_all_close(&format!("{what} q2"), f, a),
                (None, None) => {}
                _ => panic!("{what}: twin-Q mismatch"),
            }
            assert_scalar_close(&format!("{what} q loss"), gf.stats.q_loss, ga.stats.q_loss);
            assert_all_close(
                &format!("{what} policy"),
                gf.pi.as_ref().unwrap(),
                ga.pi.as_ref().unwrap(),
            );
            assert!(
                nn::global_norm(gf.pi.as_ref().unwrap()) > 1e-6,
                "{what}: zero gradient"
            );
            assert_scalar_close(
                &format!("{what} policy loss"),
                gf.stats.policy_loss.unwrap(),
                ga.stats.policy_loss.unwrap(),
            );
            match (gf.log_alpha, ga.log_alpha) {
                (Some(f), Some(a)) => assert_scalar_close(&what, f as f64, a as f64),
                (None, None) => assert!(!cfg_a.algo.learn_alpha || algo != "sac"),
                _ => panic!("{what}: temperature gradient mismatch"),
            }
        }
    }
}

#[test]
fn action_selection_matches_autodiff_on_both_tasks() {
    let cases: [(&str, &[&str]); 4] = [
        ("td3", &[]),
        ("sac", &[]),
        ("sac", &["algo.squash=false"]),
        ("sac", &["algo.squash=false", "algo.sac_action=raw"]),
    ];
    for task in TASKS {
        let b = task_batch(task);
        for (algo, extra) in cases {
            let cfg_a = task_config(task, algo, algo, "autodiff", extra);
            let cfg_f = task_config(task, algo, algo, "fused", extra);
            let spec = task_spec(task).unwrap();
            let (na, nf) = (Nets::new(&cfg_a, &spec), Nets::new(&cfg_f, &spec));
            let p = distinct_params(&na, &cfg_a);
            for explore in [None, Some(0.3)] {
                let what = format!("{task} {algo} {extra:?} act {explore:?}");
                let mut ra = Pcg64Mcg::seed_from_u64(9);
                let mut rf = Pcg64Mcg::seed_from_u64(9);
                let a = act(&na, &p.pi, &b.obs, explore, &mut ra);
                let f = act(&nf, &p.pi, &b.obs, explore, &mut rf);
                assert_close(&what, &f, &a);
                // Only a raw SAC sample may leave the bounds (the environment clips it); these
                // parameters put some of it outside.
                let outside = a.iter().enumerate().any(|(i, x)| {
                    let d = i % spec.act_dim;
                    *x < spec.action_low[d] || *x > spec.action_high[d]
                });
                assert_eq!(outside, na.raw_sample && explore.is_some(), "{what}");
            }
        }
    }
}

#[test]
fn ndpg_gradient_at_full_width_matches_autodiff() {
    // The fused n-step DPG gradient through policy::gradient equals the autodiff one at the
    // default network width (2×256), on the path-tracking task.
    let task = "path_tracking";
    let b = task_batch(task);
    let grads = |kernels: &str| {
        let cfg = task_config(
            task,
            "ndpg",
            "ndpg",
            kernels,
            &["network.hidden=[256, 256]"],
        );
        let nets = Nets::new(&cfg, &task_spec(task).unwrap());
        let p = distinct_params(&nets, &cfg);
        let model = make_model(task, true).unwrap();
        let ctx = PolicyCtx {
            nets: &nets,
            cfg: &cfg,
            p: &p,
            model: Some(model.as_ref()),
            bptt: &bptt::Workspace::default(),
        };
        policy::gradient(ctx, &b.obs, 0, &mut Pcg64Mcg::seed_from_u64(0)).grads
    };
    assert_all_close("ndpg 256", &grads("fused"), &grads("autodiff"));
}

#[test]
fn seeded_fused_serial_runs_are_identical() {
    for (algo, threads) in [("sac", 1), ("mpg_v2", 1), ("td3", 2), ("mpg_v1", 2)] {
        let cfg = common::lqr_config(
            algo,
            &[
                "network.kernels=\"fused\"",
                &format!("train.threads={threads}"),
                "train.iterations=40",
            ],
        );
        let run = |name: &str| {
            let dir = tempdir(&format!("fused-{algo}-{name}"));
            Trainer::new(cfg.clone(), &dir)
                .unwrap()
                .quiet()
                .run()
                .unwrap();
            progress_without_timing(&dir.join("progress.csv"))
        };
        assert_eq!(run("a"), run("b"), "{algo} with {threads} thread(s)");
    }
}

#[test]
fn a_bad_kernels_value_is_a_clear_error() {
    let err = common::lqr_config_result("td3", &["network.kernels=\"fast\""]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("kernels"), "{msg}");
    let err = common::lqr_config_result("td3", &["train.threads=0"]).unwrap_err();
    assert!(format!("{err:#}").contains("train.threads"));
}
