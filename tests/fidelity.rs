//! Fidelity fixes and reference-faithful options: unsquashed SAC feeds Q the actions it stores
//! (clipped, or raw as the reference), n-step value targets from the prior model, and the
//! reference's reset-every-step collection.

mod common;

use std::path::Path;

use common::{lqr_config, progress_without_timing, tempdir};
use mixpg::algo::policy::{self, PolicyCtx};
use mixpg::algo::{Agent, Learner, Nets, Params, PolicyNet, act, bptt, targets};
use mixpg::config::{CollectReset, Config};
use mixpg::env::{StepOut, make_env, make_model, reset_after_collect, task_spec};
use mixpg::nn::{self, plain_device, tensor2};
use mixpg::replay::HostBatch;
use mixpg::runtime::Trainer;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;

/// SAC on path tracking without tanh squashing (the reference's), the sample fed to Q as
/// `sac_action` says, small networks, and 256 states from the simulator's initial distribution.
fn sac_path_tracking(sac_action: &str) -> (Config, Nets, Params, Vec<f32>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/path_tracking/sac.toml");
    let sets = [
        "network.hidden=[16, 16]".to_string(),
        "algo.squash=false".to_string(),
        format!("algo.sac_action={sac_action}"),
    ];
    let cfg = Config::load(&path, &sets).unwrap();
    let spec = task_spec("path_tracking").unwrap();
    let nets = Nets::new(&cfg, &spec);
    let params = Agent::new(&nets, &cfg, &mut Pcg64Mcg::seed_from_u64(1)).params;
    let mut obs = Vec::new();
    make_env("path_tracking", 256, 2).unwrap().observe(&mut obs);
    (cfg, nets, params, obs)
}

/// Rows of `v` (`[n, d]`) clipped to the bounds, on the host, as `algo::act` stores them.
fn clipped(v: &[f32], low: &[f32], high: &[f32]) -> Vec<f32> {
    let d = low.len();
    v.iter()
        .enumerate()
        .map(|(i, x)| x.clamp(low[i % d], high[i % d]))
        .collect()
}

#[test]
fn unsquashed_sac_feeds_q_the_actions_it_stores() {
    for sac_action in ["clipped", "raw"] {
        sac_feeds_q(sac_action);
    }
}

/// The actor loss and the soft target of unsquashed SAC feed Q the clipped sample
/// (`"clipped"`) or the raw one (`"raw"`), and `algo::act` stores the same.
fn sac_feeds_q(sac_action: &str) {
    let (cfg, nets, p, obs) = sac_path_tracking(sac_action);
    let clip = sac_action == "clipped";
    let spec = &nets.spec;
    let (n, o, d) = (obs.len() / spec.obs_dim, spec.obs_dim, spec.act_dim);
    let dev = plain_device();
    let s = tensor2(obs.clone(), n, o, &dev);
    let PolicyNet::Gauss(g) = &nets.policy else {
        panic!("SAC has a Gaussian policy")
    };
    let min_q = |s: &[f32], a: Vec<f32>| {
        let (s, a) = (tensor2(s.to_vec(), n, o, &dev), tensor2(a, n, d, &dev));
        let q1 = nn::to_vec(nets.q.forward(p.q1.frozen(), s.clone(), a.clone()));
        let q2 = nn::to_vec(nets.q.forward(p.q2.as_ref().unwrap().frozen(), s, a));
        q1.iter()
            .zip(&q2)
            .map(|(x, y)| x.min(*y))
            .collect::<Vec<f32>>()
    };
    let min_q_target = |s: &[f32], a: Vec<f32>| {
        let (s, a) = (tensor2(s.to_vec(), n, o, &dev), tensor2(a, n, d, &dev));
        let q1 = nn::to_vec(nets.q.forward(p.q1_t.frozen(), s.clone(), a.clone()));
        let q2 = nn::to_vec(nets.q.forward(p.q2_t.as_ref().unwrap().frozen(), s, a));
        q1.iter()
            .zip(&q2)
            .map(|(x, y)| x.min(*y))
            .collect::<Vec<f32>>()
    };
    // The same noise the loss and the target draw from their RNG.
    let noise = |seed: u64| -> Vec<f32> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        (0..n * d).map(|_| rng.sample(StandardNormal)).collect()
    };
    let alpha = p.alpha() as f32;

    // Actor loss.
    let model = make_model("path_tracking", true).unwrap();
    let workspace = bptt::Workspace::default();
    let ctx = PolicyCtx {
        nets: &nets,
        cfg: &cfg,
        p: &p,
        model: Some(model.as_ref()),
        bptt: &workspace,
    };
    let (loss, _) = policy::loss(
        ctx,
        p.pi.frozen(),
        s.clone(),
        0,
        &mut Pcg64Mcg::seed_from_u64(7),
    );
    let smp = g.sample(p.pi.frozen(), s, tensor2(noise(7), n, d, &dev));
    let raw = nn::to_vec(smp.action);
    let bounded = clipped(&raw, &spec.action_low, &spec.action_high);
    let outside = raw.iter().zip(&bounded).filter(|(a, b)| a != b).count();
    assert!(
        outside > n / 10,
        "too few samples outside the bounds ({outside}) to test"
    );
    // What `algo::act` stores for the same noise (it draws it first from its RNG).
    let stored = act(
        &nets,
        &p.pi,
        &obs,
        Some(0.0),
        &mut Pcg64Mcg::seed_from_u64(7),
    );
    let want = if clip { &bounded } else { &raw };
    let close = stored
        .iter()
        .zip(want)
        .all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0));
    assert!(
        close && stored.len() == want.len(),
        "{sac_action}: stored actions"
    );
    let (fed, other) = if clip { (bounded, raw) } else { (raw, bounded) };
    let logp = nn::to_vec(smp.log_prob);
    let value = |a: Vec<f32>| -> f32 {
        let q = min_q(&obs, a);
        logp.iter().zip(&q).map(|(l, q)| alpha * l - q).sum::<f32>() / n as f32
    };
    let (expected, not_fed) = (value(fed), value(other));
    let got = nn::scalar(loss);
    assert!(
        (got - expected).abs() < 1e-5 * expected.abs().max(1.0),
        "{sac_action}: {got} vs {expected}"
    );
    assert!(
        (not_fed - expected).abs() > 1e-4,
        "clipping must matter in this test"
    );

    // Target: r̃ + γ (min Q'(s', a'_fed) − α log π(a'|s')), here with s' = s and r = 0.
    let b = HostBatch {
        len: n,
        obs: obs.clone(),
        act: stored,
        rew: vec![0.0; n],
        next_obs: obs.clone(),
        terminated: vec![0.0; n],
        truncated: vec![0.0; n],
        n_step: None,
    };
    let y = targets::one_step(&nets, &cfg, &p, &b, &mut Pcg64Mcg::seed_from_u64(9));
    let s2 = tensor2(obs.clone(), n, o, &dev);
    let smp = g.sample(p.pi.frozen(), s2, tensor2(noise(9), n, d, &dev));
    let a2 = nn::to_vec(smp.action);
    let a2 = if clip {
        clipped(&a2, &spec.action_low, &spec.action_high)
    } else {
        a2
    };
    let q2 = min_q_target(&obs, a2);
    let gamma = cfg.algo.gamma as f32;
    for ((y, q), l) in y.iter().zip(&q2).zip(nn::to_vec(smp.log_prob)) {
        let want = gamma * (q - alpha * l);
        assert!(
            (y - want).abs() < 1e-5 * want.abs().max(1.0),
            "{sac_action}: {y} vs {want}"
        );
    }
}

/// n-step targets of a batch of LQR transitions, rolled out in the environment or the model.
fn lqr_targets(extra: &[&str]) -> Vec<f32> {
    let mut sets = vec!["network.hidden=[16, 16]", "algo.n_step=8"];
    sets.extend_from_slice(extra);
    let cfg = lqr_config("nadp", &sets);
    let spec = task_spec("lqr").unwrap();
    let nets = Nets::new(&cfg, &spec);
    let p = Agent::new(&nets, &cfg, &mut Pcg64Mcg::seed_from_u64(1)).params;
    let n = cfg.algo.batch_size;
    let mut rng = Pcg64Mcg::seed_from_u64(4);
    let obs: Vec<f32> = (0..2 * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let act: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    let mut env = make_env("lqr", n, 5).unwrap();
    env.reset_to(&obs);
    let mut out = StepOut::default();
    env.step(&act, &mut out);
    let b = HostBatch {
        len: n,
        obs,
        act,
        rew: out.reward,
        next_obs: out.next_obs,
        terminated: vec![0.0; n],
        truncated: vec![0.0; n],
        n_step: None,
    };
    let model = make_model("lqr", cfg.task.model_mismatch).unwrap();
    let env = make_env("lqr", n, 6).unwrap();
    let mut learner = Learner::new(nets, &cfg, Some(model), Some(env), 8);
    learner.targets(&p, b).unwrap().targets
}

#[test]
fn model_value_targets_equal_env_targets_when_the_model_is_exact() {
    let env = lqr_targets(&["task.model_mismatch=false"]);
    let exact = lqr_targets(&["task.model_mismatch=false", "algo.value_target=model"]);
    let biased = lqr_targets(&["algo.value_target=model"]);
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(max_diff(&env, &exact) < 1e-4, "{}", max_diff(&env, &exact));
    // The mismatched model's bias on v changes the return by far more than rounding.
    assert!(
        max_diff(&env, &biased) > 1e-2,
        "{}",
        max_diff(&env, &biased)
    );
}

#[test]
fn every_step_collection_resets_every_agent() {
    let mut env = make_env("lqr", 16, 3).unwrap();
    let mut out = StepOut::default();
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let mut obs = Vec::new();
    env.step(&[0.5; 16], &mut out);
    reset_after_collect(env.as_mut(), CollectReset::Done, &mut rng);
    env.observe(&mut obs);
    assert_eq!(obs, out.next_obs, "no LQR agent is done after one step");
    env.step(&[0.5; 16], &mut out);
    reset_after_collect(env.as_mut(), CollectReset::EveryStep, &mut rng);
    env.observe(&mut obs);
    for (k, (a, b)) in obs.chunks(2).zip(out.next_obs.chunks(2)).enumerate() {
        assert_ne!(a, b, "agent {k} was not reset");
        assert!(
            a.iter().all(|x| (-1.0..1.0).contains(x)),
            "agent {k}: {a:?}"
        );
    }
}

#[test]
fn every_step_collection_is_seed_reproducible_and_changes_the_run() {
    let run = |name: &str, mode: &str| {
        let dir = tempdir(name);
        let sets = ["train.iterations=60", "train.eval_interval=30"];
        let cfg = lqr_config("mpg_v2", &[sets[0], sets[1], mode]);
        Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap();
        let rows = progress_without_timing(&dir.join("progress.csv"));
        let _ = std::fs::remove_dir_all(&dir);
        rows
    };
    let a = run("every-a", "train.collect_reset=every_step");
    let b = run("every-b", "train.collect_reset=every_step");
    let done = run("every-done", "train.collect_reset=done");
    assert_eq!(a, b);
    assert_ne!(a, done);
}

#[test]
fn gradient_stats_report_terminations_and_unclipped_norms() {
    let cfg = lqr_config("mpg_v2", &["network.hidden=[16, 16]"]);
    let spec = task_spec("lqr").unwrap();
    let nets = Nets::new(&cfg, &spec);
    let p = Agent::new(&nets, &cfg, &mut Pcg64Mcg::seed_from_u64(1)).params;
    let n = 8;
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    let obs: Vec<f32> = (0..2 * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let b = HostBatch {
        len: n,
        obs: obs.clone(),
        act: vec![0.3; n],
        rew: vec![-1.0; n],
        next_obs: obs,
        terminated: vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        truncated: vec![0.0; n],
        n_step: None,
    };
    let model = make_model("lqr", true).unwrap();
    let mut learner = Learner::new(nets, &cfg, Some(model), None, 3);
    let tb = learner.targets(&p, b).unwrap();
    let g = learner.compute(&p, &tb, 0, true);
    assert_eq!(g.stats.terminated_frac, 0.25);
    let q1 = nn::global_norm(&g.q1) as f64;
    let q2 = nn::global_norm(g.q2.as_ref().unwrap()) as f64;
    assert!((g.stats.q_grad_norm - 0.5 * (q1 + q2)).abs() < 1e-6 * q1.max(1.0));
    let pi = nn::global_norm(g.pi.as_ref().unwrap()) as f64;
    assert_eq!(g.stats.pi_grad_norm, Some(pi));
    assert!(pi > 0.0);
    let g = learner.compute(&p, &tb, 1, false);
    assert_eq!(g.stats.pi_grad_norm, None);
}

#[test]
fn progress_appends_the_diagnostics_columns() {
    let dir = tempdir("diagnostics");
    let cfg = lqr_config(
        "td3",
        &[
            "train.iterations=20",
            "train.eval_interval=10",
            "task.model_mismatch=true",
        ],
    );
    Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap();
    let text = std::fs::read_to_string(dir.join("progress.csv")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[..4],
        ["iteration", "wall_s", "env_steps", "eval_return_mean"]
    );
    assert_eq!(
        header[header.len() - 6..],
        [
            "terminated_frac",
            "q_grad_norm",
            "pi_grad_norm",
            "model_error",
            "model_disagreement",
            "model_fit_ms"
        ]
    );
    let last: Vec<&str> = lines.last().unwrap().split(',').collect();
    let value = |c: &str| -> f64 {
        let i = header.iter().position(|h| *h == c).unwrap();
        last[i].parse().unwrap()
    };
    assert_eq!(value("terminated_frac"), 0.0, "LQR never terminates");
    assert!(value("q_grad_norm") > 0.0 && value("pi_grad_norm") > 0.0);
    assert!(value("model_error") > 0.0, "the mismatched LQR model errs");
    let n = header.len();
    assert_eq!(last[n - 2..], ["", ""], "a prior model is not fitted");
}
