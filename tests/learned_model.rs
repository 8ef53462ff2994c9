//! The learned dynamics model (`task.model = "learned"`): its vector-Jacobian product against
//! burn autodiff and finite differences, the fused policy gradient through it against the
//! autodiff path, a fit lowering the held-out error, the warm-up, checkpoint and resume, and
//! the refusals of bad configurations.

mod common;

use common::{assert_close, lqr_config, lqr_config_result, progress_without_timing, tempdir};
use mixpg::algo::learned::{LearnedModel, Selection};
use mixpg::algo::policy::{self, PolicyCtx};
use mixpg::algo::{Agent, Learner, Nets, Params, bptt, fused};
use mixpg::config::{Config, ModelConfig};
use mixpg::env::{ModelTape, PriorModel, StepOut, TaskSpec, lookup, task_spec};
use mixpg::nn::{self, plain_device, tensor2};
use mixpg::replay::ReplayBuffer;
use mixpg::runtime::Trainer;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A small ensemble: 3 members of 2×32.
fn small_model_config() -> ModelConfig {
    ModelConfig {
        ensemble: 3,
        hidden: vec![32, 32],
        max_steps: 300,
        ..ModelConfig::default()
    }
}

/// A replay of `n` agent-steps of `task` under uniformly random actions.
fn random_replay(task: &str, n: usize, seed: u64) -> ReplayBuffer {
    let task = lookup(task).unwrap();
    let spec = task.spec().clone();
    let agents = 8;
    let mut env = task.make_env(agents, seed).unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut replay = ReplayBuffer::new(n, spec.obs_dim, spec.act_dim);
    let (mut obs, mut out) = (Vec::new(), StepOut::default());
    env.observe(&mut obs);
    while replay.len() < n {
        let act: Vec<f32> = (0..agents * spec.act_dim)
            .map(|i| {
                let d = i % spec.act_dim;
                rng.random_range(spec.action_low[d]..spec.action_high[d])
            })
            .collect();
        env.step(&act, &mut out);
        replay.push_rows(
            &obs,
            &act,
            &out.reward,
            &out.next_obs,
            &out.terminated,
            &out.truncated,
        );
        env.reset_done();
        env.observe(&mut obs);
    }
    replay
}

/// A learned model of `task` fitted briefly to random transitions (a non-trivial normaliser
/// and non-trivial weights).
fn fitted(task: &str) -> LearnedModel {
    let spec = task_spec(task).unwrap();
    let cfg = ModelConfig {
        max_steps: 50,
        ..small_model_config()
    };
    let mut m = LearnedModel::new(&spec, &cfg, 1);
    m.fit(&random_replay(task, 800, 2)).unwrap();
    m
}

/// Rows of the transitions' observations and actions from a replay of `task`.
fn inputs(task: &str, rows: usize) -> (Vec<f32>, Vec<f32>) {
    let replay = random_replay(task, rows, 9);
    let [obs, act, ..] = replay.arrays().map(|(_, v)| v.to_vec());
    (obs, act)
}

/// `Σ next·d_next + Σ reward·d_reward` of the model's host step.
fn host_objective(m: &LearnedModel, s: &[f32], a: &[f32], d_next: &[f32], d_rew: &[f32]) -> f64 {
    let batch = d_rew.len();
    let (mut next, mut rew) = (vec![0.0; s.len()], vec![0.0; batch]);
    m.step_host(s, a, &[], &mut next, &mut rew, &mut ModelTape::default());
    let n: f64 = next
        .iter()
        .zip(d_next)
        .map(|(x, d)| (*x as f64) * (*d as f64))
        .sum();
    n + rew
        .iter()
        .zip(d_rew)
        .map(|(x, d)| (*x as f64) * (*d as f64))
        .sum::<f64>()
}

#[test]
fn step_vjp_matches_burn_autodiff_and_finite_differences() {
    for task in ["lqr", "pendulum", "path_tracking"] {
        let mut m = fitted(task);
        let spec: TaskSpec = task_spec(task).unwrap();
        let (o, a) = (spec.obs_dim, spec.act_dim);
        let batch = 6;
        let (s, u) = inputs(task, batch);
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let d_next: Vec<f32> = (0..batch * o)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let d_rew: Vec<f32> = (0..batch).map(|_| rng.random_range(-1.0..1.0)).collect();
        for selection in [Selection::Member(1), Selection::Mean] {
            m.select(selection);
            let what = format!("{task} {selection:?}");
            // Fused host step and VJP.
            let (mut next, mut rew) = (vec![0.0; batch * o], vec![0.0; batch]);
            let mut tape = ModelTape::default();
            m.step_host(&s, &u, &[], &mut next, &mut rew, &mut tape);
            let (mut d_s, mut d_a) = (vec![0.0; batch * o], vec![0.0; batch * a]);
            m.step_vjp(&tape, &d_next, &d_rew, &mut d_s, &mut d_a);

            // The same model on burn tensors, differentiated by autodiff.
            let pd = plain_device();
            let st = tensor2(s.clone(), batch, o, &pd).autodiff().require_grad();
            let at = tensor2(u.clone(), batch, a, &pd).autodiff().require_grad();
            let tm = m.tensor().unwrap();
            let (n_t, r_t) = tm.step(st.clone(), at.clone(), &[]);
            let obj = n_t
                .clone()
                .mul(tensor2(d_next.clone(), batch, o, &pd))
                .sum()
                .add(r_t.clone().mul(nn::tensor1(d_rew.clone(), &pd)).sum());
            let grads = obj.backward();
            let g_s = nn::to_vec(st.grad(&grads).unwrap());
            let g_a = nn::to_vec(at.grad(&grads).unwrap());
            let close = |x: f32, y: f32, tol: f32| (x - y).abs() <= tol * (1.0 + y.abs());
            for (x, y) in next.iter().zip(nn::to_vec(n_t)) {
                assert!(close(*x, y, 1e-4), "{what}: next {x} vs {y}");
            }
            for (x, y) in rew.iter().zip(nn::to_vec(r_t)) {
                assert!(close(*x, y, 1e-4), "{what}: reward {x} vs {y}");
            }
            for (x, y) in d_s.iter().zip(&g_s).chain(d_a.iter().zip(&g_a)) {
                assert!(close(*x, *y, 1e-4), "{what}: vjp {x} vs autodiff {y}");
            }

            // Central finite differences of the same objective, input by input, with steps of a
            // hundredth of each input's std.
            let f = |s: &[f32], u: &[f32]| host_objective(&m, s, u, &d_next, &d_rew);
            let std = m.normaliser().in_std.clone();
            for (i, want) in d_s.iter().enumerate() {
                let h = 1e-2 * std[i % o];
                let (mut sp, mut sm) = (s.clone(), s.clone());
                sp[i] += h;
                sm[i] -= h;
                let fd = (f(&sp, &u) - f(&sm, &u)) / (2.0 * h as f64);
                let tol = 3e-2 * (1.0 + want.abs() as f64);
                assert!(
                    (fd - *want as f64).abs() <= tol,
                    "{what}: d_state[{i}] {want} vs fd {fd}"
                );
            }
            for (i, want) in d_a.iter().enumerate() {
                let h = 1e-2 * std[o + i % a];
                let (mut up, mut um) = (u.clone(), u.clone());
                up[i] += h;
                um[i] -= h;
                let fd = (f(&s, &up) - f(&s, &um)) / (2.0 * h as f64);
                let tol = 3e-2 * (1.0 + want.abs() as f64);
                assert!(
                    (fd - *want as f64).abs() <= tol,
                    "{what}: d_action[{i}] {want} vs fd {fd}"
                );
            }
        }
    }
}

struct Setup {
    cfg: Config,
    nets: Nets,
    params: Params,
    model: LearnedModel,
    obs: Vec<f32>,
    workspace: bptt::Workspace,
}

impl Setup {
    fn new(task: &str, algo: &str, extra: &[&str]) -> Self {
        let name = format!("task.name=\"{task}\"");
        let mut sets = vec![
            name.as_str(),
            "task.model=\"learned\"",
            "network.hidden=[32, 32]",
        ];
        sets.extend_from_slice(extra);
        let cfg = lqr_config(algo, &sets);
        let spec = task_spec(task).unwrap();
        let nets = Nets::new(&cfg, &spec);
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        let params = Agent::new(&nets, &cfg, &mut rng).params;
        let (obs, _) = inputs(task, 32);
        Self {
            cfg,
            nets,
            params,
            model: fitted(task),
            obs,
            workspace: bptt::Workspace::default(),
        }
    }

    fn ctx(&self) -> PolicyCtx<'_> {
        PolicyCtx {
            nets: &self.nets,
            cfg: &self.cfg,
            p: &self.params,
            model: Some(&self.model),
            bptt: &self.workspace,
        }
    }
}

#[test]
fn fused_policy_gradient_through_the_learned_model_matches_autodiff() {
    for task in ["lqr", "path_tracking"] {
        for selection in [Selection::Member(2), Selection::Mean] {
            for (algo, reading) in [("nadp", "all_actions"), ("mpg_v2", "first_action")] {
                let reading = format!("algo.rollout_gradient={reading}");
                let grad = |kernels: &str| {
                    let kernels = format!("network.kernels=\"{kernels}\"");
                    let mut s = Setup::new(task, algo, &[&reading, &kernels]);
                    s.model.select(selection);
                    let mut rng = Pcg64Mcg::seed_from_u64(4);
                    policy::gradient(s.ctx(), &s.obs, 150, &mut rng)
                };
                let (f, ad) = (grad("fused"), grad("autodiff"));
                let what = format!("{task} {selection:?} {algo}");
                assert_close(&what, &f.grads, &ad.grads, 2e-3);
                assert!(
                    (f.loss - ad.loss).abs() <= 1e-4 * ad.loss.abs().max(1e-3),
                    "{what}: loss {} vs {}",
                    f.loss,
                    ad.loss
                );
            }
        }
    }
}

#[test]
fn a_fit_on_lqr_lowers_the_held_out_error() {
    let spec = task_spec("lqr").unwrap();
    let mut m = LearnedModel::new(&spec, &small_model_config(), 5);
    let replay = random_replay("lqr", 3000, 11);
    assert!(m.stats().is_none() && !m.ready());
    let fresh = random_replay("lqr", 500, 12);
    let [obs, act, _, next, ..] = fresh.arrays().map(|(_, v)| v.to_vec());
    let before = m.one_step_error(&obs, &act, &next).0;
    let s = m.fit(&replay).unwrap();
    let after = m.one_step_error(&obs, &act, &next).0;
    assert!(
        s.model_error < 0.2 * s.error_before,
        "held-out error {} before the fit, {} after",
        s.error_before,
        s.model_error
    );
    assert!(
        after < 0.2 * before,
        "fresh transitions: {before} before, {after} after"
    );
    assert!(s.disagreement > 0.0 && s.steps > 0 && s.transitions == 3000);
    assert!(m.ready(), "3000 transitions ≥ model.warmup_steps = 1000");
    // A second fit starts from the fitted weights and keeps the error low.
    let again = m.fit(&replay).unwrap();
    assert!(again.error_before < 0.5 * s.error_before);
}

#[test]
fn the_policy_follows_its_data_term_until_the_model_is_warmed_up() {
    for algo in ["mpg_v2", "nadp"] {
        let cfg = lqr_config(
            algo,
            &[
                "task.model=\"learned\"",
                "model.warmup_steps=2000",
                "model.hidden=[16]",
            ],
        );
        let task = lookup("lqr").unwrap();
        let nets = Nets::new(&cfg, task.spec());
        let agent = Agent::new(&nets, &cfg, &mut Pcg64Mcg::seed_from_u64(0));
        let mut learner = Learner::for_task(nets.clone(), &cfg, &task, 0, 1).unwrap();
        let replay = random_replay("lqr", 1000, 3);
        let batch = replay.sample(64, &mut Pcg64Mcg::seed_from_u64(4));
        let tb = learner.targets(&agent.params, batch).unwrap();
        let data_only = fused::data_actor_grad(&nets, &agent.params, &tb.batch.obs, 1.0).0;
        // Not fitted yet, then fitted on 1000 < 2000 transitions: not warmed up.
        for fit in [false, true] {
            if fit {
                assert!(learner.fit_model(0, &replay).is_some());
                assert!(!learner.learned().unwrap().ready());
            }
            let g = learner.compute(&agent.params, &tb, 0, true);
            match algo {
                "nadp" => assert!(g.pi.is_none(), "{algo}: no policy update in the warm-up"),
                _ => assert_eq!(g.pi.unwrap(), data_only, "{algo}: data-driven term alone"),
            }
        }
        assert!(
            learner.fit_model(1, &replay).is_none(),
            "not a fit iteration"
        );
        learner
            .fit_model(250, &random_replay("lqr", 2000, 5))
            .unwrap();
        assert!(learner.learned().unwrap().ready());
        let g = learner.compute(&agent.params, &tb, 0, true).pi.unwrap();
        assert_ne!(g, data_only, "{algo}: the model term once warmed up");
    }
}

/// The cells of a progress.csv column (`None` where empty).
fn column(path: &std::path::Path, name: &str) -> Vec<Option<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| l.split(',').nth(i).unwrap().parse().ok())
        .collect()
}

/// The learned-model settings of the short runs below.
const RUN: [&str; 7] = [
    "task.model=\"learned\"",
    "model.ensemble=2",
    "model.hidden=[16, 16]",
    "model.fit_every=30",
    "model.warmup_steps=600",
    "model.max_steps=40",
    "train.iterations=100",
];

#[test]
fn a_resumed_run_equals_the_uninterrupted_one_and_logs_the_model() {
    for (algo, member) in [("mpg_v2", "random"), ("nadp", "mean")] {
        let member = format!("model.member=\"{member}\"");
        let mut sets = RUN.to_vec();
        sets.extend([
            member.as_str(),
            "train.checkpoint_interval=40",
            "train.keep_checkpoints=5",
            "train.eval_interval=20",
            "algo.batch_reuse=3",
        ]);
        let cfg = lqr_config(algo, &sets);
        let (full, cut) = common::run_and_resume_after_a_crash(&cfg, &format!("learned-{algo}"));
        let rows = progress_without_timing(&full.join("progress.csv"));
        assert_eq!(
            rows,
            progress_without_timing(&cut.join("progress.csv")),
            "{algo}"
        );

        // The model's columns: model_error and disagreement once fitted, fit times on the
        // rows after a fit (every 30 iterations from 0, a row every 10).
        let col = |name: &str| column(&full.join("progress.csv"), name);
        let errors: Vec<f64> = col("model_error").into_iter().flatten().collect();
        assert!(
            !errors.is_empty() && errors.iter().all(|e| *e > 0.0),
            "{algo}"
        );
        assert!(col("model_disagreement").into_iter().flatten().count() > 0);
        assert!(col("model_fit_ms").into_iter().flatten().count() >= 3);
    }
}

#[test]
fn runs_with_a_learned_model_are_seed_reproducible() {
    let cfg = lqr_config("mpg_v1", &RUN);
    let run = |name: &str| {
        let dir = tempdir(name);
        Trainer::new(cfg.clone(), &dir)
            .unwrap()
            .quiet()
            .run()
            .unwrap();
        progress_without_timing(&dir.join("progress.csv"))
    };
    assert_eq!(run("learned-det-a"), run("learned-det-b"));
}

fn refusal(algo: &str, sets: &[&str]) -> String {
    format!("{:#}", lqr_config_result(algo, sets).unwrap_err())
}

#[test]
fn bad_learned_model_settings_are_refused_before_training() {
    let learned = "task.model=\"learned\"";
    for algo in ["td3", "sac", "ddpg", "ndpg"] {
        let e = refusal(algo, &[learned]);
        assert!(
            e.contains("task.model") && e.contains("uses no model"),
            "{e}"
        );
    }
    let e = refusal("mpg_v2", &[learned, "model.ensemble=0"]);
    assert!(
        e.contains("model.ensemble") && e.contains("at least 1"),
        "{e}"
    );
    let e = refusal("mpg_v2", &[learned, "algo.horizon=60"]);
    assert!(
        e.contains("algo.horizon") && e.contains("model.max_horizon = 50"),
        "{e}"
    );
    let e = refusal(
        "nadp",
        &[learned, "algo.horizon=20", "model.max_horizon=10"],
    );
    assert!(e.contains("longer than model.max_horizon = 10"), "{e}");
    for mode in ["async", "ray"] {
        let mode = format!("runtime.mode=\"{mode}\"");
        let e = refusal("mpg_v2", &[learned, &mode]);
        assert!(
            e.contains("runtime.mode") && e.contains("serial mode only"),
            "{e}"
        );
    }
    let e = refusal("nadp", &[learned, "algo.value_target=\"model\""]);
    assert!(
        e.contains("algo.value_target") && e.contains("learned"),
        "{e}"
    );
    for bad in [
        "model.holdout=1.0",
        "model.lr=0",
        "model.batch=0",
        "model.hidden=[]",
    ] {
        let key = bad.split('=').next().unwrap();
        let e = refusal("mpg_v2", &[learned, bad]);
        assert!(e.contains(key), "{bad}: {e}");
    }
    // A prior model ignores the [model] table; the default is the prior model.
    let cfg = lqr_config("td3", &["model.ensemble=0"]);
    assert_eq!(cfg.task.model, mixpg::config::ModelKind::Prior);
    // The key round-trips through the resolved config.
    let cfg = lqr_config("mpg_v2", &[learned, "model.member=\"mean\""]);
    let back = Config::from_toml_str(&cfg.to_toml(), &[]).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn analyze_bias_runs_through_the_learned_model_of_each_checkpoint() {
    let dir = tempdir("learned-bias");
    let mut sets = RUN.to_vec();
    sets.extend([
        "train.iterations=60",
        "train.checkpoint_interval=30",
        "train.keep_checkpoints=5",
        "train.eval_interval=30",
    ]);
    let cfg = lqr_config("mpg_v1", &sets);
    Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap();
    let opts = mixpg::analysis::BiasOptions {
        horizons: vec![0, 5],
        states: 16,
        reference_horizon: 30,
        seed: 1,
    };
    let rows = mixpg::analysis::analyze_bias(&dir, &opts, &dir).unwrap();
    let iterations: Vec<u64> = rows.iter().map(|r| r.iteration).collect();
    assert_eq!(iterations, [30, 30, 30, 60, 60, 60]);
    assert!(
        rows.iter()
            .all(|r| r.relative_bias.is_finite() && r.relative_bias > 0.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_memory_estimate_counts_the_learned_model() {
    let task = lookup("lqr").unwrap();
    let part = |sets: &[&str], what: &str| {
        let e = mixpg::runtime::limits::estimate(&lqr_config("mpg_v2", sets), &task).unwrap();
        e.parts
            .iter()
            .find(|p| p.what.contains(what))
            .unwrap()
            .bytes
    };
    let (learned, mean) = ("task.model=\"learned\"", "model.member=\"mean\"");
    assert_eq!(part(&[], "learned model"), 0.0);
    assert!(part(&[learned], "learned model") > 20000.0 * 4.0 * 10.0);
    let tape = "BPTT tape";
    assert!(part(&[learned], tape) > part(&[], tape));
    assert!(part(&[learned, mean], tape) > part(&[learned], tape));
}

#[test]
fn on_an_absorbing_task_the_model_learns_where_episodes_terminate() {
    // A 1-D task that terminates when the next position leaves [−1, 1]: s' = s + a.
    let spec = TaskSpec::new("edge", 1, vec![-0.5], vec![0.5], 50);
    assert_eq!(spec.termination, mixpg::env::Termination::Absorbing);
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let mut replay = ReplayBuffer::new(4000, 1, 1);
    while replay.len() < 4000 {
        let (s, a): (f32, f32) = (rng.random_range(-1.0..1.0), rng.random_range(-0.5..0.5));
        let next = s + a;
        replay.push(&[s], &[a], -s * s, &[next], next.abs() > 1.0, false);
    }
    let mut m = LearnedModel::new(&spec, &small_model_config(), 3);
    let fit = m.fit(&replay).unwrap();
    assert!(fit.model_error < 0.2 * fit.error_before, "{fit:?}");
    for selection in [Selection::Member(0), Selection::Mean] {
        m.select(selection);
        let (s, a) = ([0.9f32, 0.0, -0.9, 0.95], [0.4f32, 0.0, -0.4, -0.3]);
        let (mut next, mut rew, mut tape) = ([0.0; 4], [0.0; 4], ModelTape::default());
        m.step_host(&s, &a, &[], &mut next, &mut rew, &mut tape);
        assert_eq!(
            tape.terminated,
            [true, false, true, false],
            "{selection:?}: {next:?}"
        );
    }
}
