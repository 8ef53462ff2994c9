//! `mixpg analyze-bias` (Theorem 2 made empirical) on the LQR task: the reference PG is the
//! true policy gradient of eq. (6); with the model mismatch off the model-driven PG's bias
//! vanishes as the horizon grows; the command writes `bias.csv` and `bias.png`.

mod common;

use common::{lqr_config, tempdir};
use mixpg::algo::bias::{BiasSetup, gradient_bias, policy_gradient};
use mixpg::algo::{Agent, Nets, Params};
use mixpg::analysis::{BiasOptions, analyze_bias};
use mixpg::config::Config;
use mixpg::env::{StepOut, make_env, make_model, task_spec};
use mixpg::nn::{self, plain_device, tensor1, tensor2};
use mixpg::runtime::Trainer;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn setup(mismatch: bool) -> (Config, Nets, Params, Vec<f32>) {
    let mismatch = format!("task.model_mismatch={mismatch}");
    let cfg = lqr_config(
        "mpg_v1",
        &["network.hidden=[16, 16]", "algo.gamma=0.9", &mismatch],
    );
    let nets = Nets::new(&cfg, &task_spec("lqr").unwrap());
    let p = Agent::new(&nets, &cfg, &mut Pcg64Mcg::seed_from_u64(3)).params;
    let mut rng = Pcg64Mcg::seed_from_u64(4);
    let states = (0..2 * 32).map(|_| rng.random_range(-1.0..1.0)).collect();
    (cfg, nets, p, states)
}

/// Per state, `R(s, a) = Σ_{t<N} γ^t r_t + γ^N Q1(s_N, π(s_N))` in the true simulator, from
/// `s` with first action `a` and the policy afterwards.
fn true_return(
    nets: &Nets,
    cfg: &Config,
    p: &Params,
    states: &[f32],
    a0: &[f32],
    n: usize,
) -> Vec<f64> {
    let k = a0.len();
    let dev = plain_device();
    let mut env = make_env("lqr", k, 0).unwrap();
    env.reset_to(states);
    let mut out = StepOut::default();
    let mut ret = vec![0.0f64; k];
    let mut disc = 1.0f64;
    let mut obs = states.to_vec();
    let mut act = a0.to_vec();
    for t in 0..n {
        if t > 0 {
            act = nn::to_vec(
                nets.policy
                    .act(p.pi.frozen(), tensor2(obs.clone(), k, 2, &dev)),
            );
        }
        env.step(&act, &mut out);
        for (g, r) in ret.iter_mut().zip(&out.reward) {
            *g += disc * *r as f64;
        }
        disc *= cfg.algo.gamma;
        obs = out.next_obs.clone();
    }
    let s = tensor2(obs, k, 2, &dev);
    let a = nets.policy.act(p.pi.frozen(), s.clone());
    let q = nn::to_vec(nets.q.forward(p.q1.frozen(), s, a));
    ret.iter()
        .zip(q)
        .map(|(g, q)| g + disc * q as f64)
        .collect()
}

#[test]
fn reference_pg_equals_the_true_policy_gradient_on_lqr() {
    let (cfg, nets, p, states) = setup(false);
    let n = 60;
    let exact = make_model("lqr", false).unwrap();
    let reference = policy_gradient(&nets, &cfg, &p, exact.as_ref(), &states, Some(n), 0);

    // ∇θ E_s[R(s, π_θ(s))] = E_s[∇θπ_θ(s) · ∂R/∂a(s, π(s))]: ∂R/∂a by central differences of
    // the true simulator, ∇θπ by the policy's own Jacobian (a vector-Jacobian product).
    let k = states.len() / 2;
    let dev = plain_device();
    let a0 = nn::to_vec(
        nets.policy
            .act(p.pi.frozen(), tensor2(states.clone(), k, 2, &dev)),
    );
    let h = 1e-2f32;
    let shifted = |d: f32| a0.iter().map(|a| a + d).collect::<Vec<f32>>();
    let plus = true_return(&nets, &cfg, &p, &states, &shifted(h), n);
    let minus = true_return(&nets, &cfg, &p, &states, &shifted(-h), n);
    let dr_da: Vec<f32> = plus
        .iter()
        .zip(&minus)
        .map(|(a, b)| ((a - b) / (2.0 * h as f64) / k as f64) as f32)
        .collect();
    let tracked = p.pi.track();
    let act = nets
        .policy
        .act(&tracked.leaves, tensor2(states.clone(), k, 2, &dev));
    let weighted = act.squeeze_dim::<1>(1).mul(tensor1(dr_da, &dev)).sum();
    let truth = tracked.grads(&weighted.backward());

    let (rel, cos, _) = mixpg::algo::bias::compare(&reference, &truth);
    assert!(nn::global_norm(&truth) > 1e-3, "degenerate test");
    assert!(
        rel < 1e-3 && cos > 0.9999,
        "relative difference {rel}, cosine {cos}"
    );
}

#[test]
fn model_pg_bias_vanishes_with_the_horizon_when_the_model_is_exact() {
    let horizons = [0, 1, 5, 10, 25, 50, 100];
    let bias = |mismatch: bool| {
        let (cfg, nets, p, states) = setup(mismatch);
        let model = make_model("lqr", mismatch).unwrap();
        let exact = make_model("lqr", false).unwrap();
        let s = BiasSetup {
            nets: &nets,
            cfg: &cfg,
            model: model.as_ref(),
            exact: exact.as_ref(),
            states: &states,
            reference_horizon: 100,
            seed: 0,
        };
        gradient_bias(&s, &p, &horizons).1
    };
    let exact = bias(false);
    assert_eq!(exact[0].estimator, "data");
    assert_eq!(exact[1].horizon, 0);
    // n = 0 is the data-driven PG.
    assert!((exact[0].relative_bias - exact[1].relative_bias).abs() < 1e-9);
    let b: Vec<f64> = exact[1..].iter().map(|g| g.relative_bias).collect();
    eprintln!("exact model, relative bias per horizon {horizons:?}: {b:?}");
    assert!(b[0] > 0.1, "an untrained Q's gradient is biased: {b:?}");
    assert!(b.windows(2).all(|w| w[1] < w[0]), "decreasing in n: {b:?}");
    assert!(b[5] < 0.5 * b[0], "{b:?}");
    assert!(b[6] < 1e-6, "n = N is the reference itself: {b:?}");
    // With the mismatch the model-driven bias does not vanish.
    let biased: Vec<f64> = bias(true)[1..].iter().map(|g| g.relative_bias).collect();
    eprintln!("mismatched model: {biased:?}");
    assert!(biased[6] > 0.01, "{biased:?}");
}

#[test]
fn analyze_bias_writes_csv_and_png_for_every_checkpoint() {
    let dir = tempdir("analyze-bias");
    let cfg = lqr_config(
        "mpg_v1",
        &[
            "network.hidden=[16, 16]",
            "train.iterations=40",
            "train.checkpoint_interval=20",
            "train.keep_checkpoints=5",
            "train.eval_interval=20",
        ],
    );
    Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap();
    let opts = BiasOptions {
        horizons: vec![0, 2, 10],
        states: 16,
        reference_horizon: 30,
        seed: 1,
    };
    let rows = analyze_bias(&dir, &opts, &dir).unwrap();
    let iterations: Vec<u64> = rows.iter().map(|r| r.iteration).collect();
    assert_eq!(iterations, [20, 20, 20, 20, 40, 40, 40, 40]);
    assert!(
        rows.iter()
            .all(|r| r.relative_bias.is_finite() && r.cosine.abs() <= 1.0 + 1e-9)
    );
    let csv = std::fs::read_to_string(dir.join("bias.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + rows.len());
    assert!(csv.starts_with("iteration,estimator,horizon,relative_bias,cosine"));
    let png = std::fs::read(dir.join("bias.png")).unwrap();
    assert_eq!(png[..4], [0x89, b'P', b'N', b'G']);

    let e = format!(
        "{:#}",
        analyze_bias(&dir.join("nope"), &opts, &dir).unwrap_err()
    );
    assert!(e.contains("nope"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
