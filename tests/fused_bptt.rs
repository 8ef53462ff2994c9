//! The fused BPTT model-return gradient against burn autodiff (every task, both readings of
//! eq. (6), model mismatch on), the full fused MPG gradient against autodiff, finite
//! differences on lqr, the MPG/ADP identity, the two-thread split and MPG's shared policy pass at `s_0`.

mod common;

use common::{assert_close, lqr_config};
use mixpg::algo::policy::{self, PolicyCtx};
use mixpg::algo::{Agent, Nets, Params, bptt, fused};
use mixpg::config::Config;
use mixpg::env::{PriorModel, make_model, task_spec};
use mixpg::nn::{self, ParamSet};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A config on `task` with algorithm `algo`, 64-unit networks and horizon `horizon`.
fn config(task: &str, algo: &str, horizon: usize, extra: &[&str]) -> Config {
    let task = format!("task.name=\"{task}\"");
    let horizon = format!("algo.horizon={horizon}");
    let mut sets = vec![
        task.as_str(),
        horizon.as_str(),
        "network.hidden=[64, 64]",
        "task.model_mismatch=true",
        "task.reward_scale=0.5",
    ];
    sets.extend_from_slice(extra);
    lqr_config(algo, &sets)
}

/// Random states of `task` in the ranges its replay buffer holds.
fn states(task: &str, batch: usize, rng: &mut Pcg64Mcg) -> Vec<f32> {
    let ranges: &[(f32, f32)] = match task {
        "path_tracking" => &[
            (-5.0, 5.0),
            (-1.0, 1.0),
            (-0.5, 0.5),
            (-2.0, 2.0),
            (-0.6, 0.6),
            (10.0, 590.0),
        ],
        "pendulum" => &[(-0.5, 0.5), (-0.2, 0.2), (-0.5, 0.5), (-0.5, 0.5)],
        _ => &[(-1.0, 1.0), (-1.0, 1.0)],
    };
    (0..batch)
        .flat_map(|_| {
            ranges
                .iter()
                .map(|&(lo, hi)| rng.random_range(lo..hi))
                .collect::<Vec<_>>()
        })
        .collect()
}

struct Setup {
    cfg: Config,
    nets: Nets,
    params: Params,
    model: Box<dyn PriorModel>,
    obs: Vec<f32>,
    workspace: bptt::Workspace,
}

impl Setup {
    fn new(cfg: Config, batch: usize) -> Self {
        let spec = task_spec(&cfg.task.name).unwrap();
        let nets = Nets::new(&cfg, &spec);
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        let params = Agent::new(&nets, &cfg, &mut rng).params;
        let model = make_model(&cfg.task.name, cfg.task.model_mismatch).unwrap();
        let obs = states(&cfg.task.name, batch, &mut rng);
        Self {
            cfg,
            nets,
            params,
            model,
            obs,
            workspace: bptt::Workspace::default(),
        }
    }

    fn ctx(&self) -> PolicyCtx<'_> {
        PolicyCtx {
            nets: &self.nets,
            cfg: &self.cfg,
            p: &self.params,
            model: Some(self.model.as_ref()),
            bptt: &self.workspace,
        }
    }
}

#[test]
fn fused_model_return_gradient_matches_autodiff() {
    for task in ["path_tracking", "pendulum", "lqr"] {
        for all_actions in [true, false] {
            let s = Setup::new(config(task, "nadp", 25, &[]), 64);
            let what = format!("{task}, all_actions={all_actions}");
            let mut rng = Pcg64Mcg::seed_from_u64(3);
            let (want, jh_want) =
                policy::model_return_grad_autodiff(s.ctx(), &s.obs, all_actions, 0.7, &mut rng);
            let mut rng_fused = Pcg64Mcg::seed_from_u64(3);
            let (got, jh) =
                bptt::model_return_grad(s.ctx(), &s.obs, all_actions, 0.7, &mut rng_fused);
            assert_close(&what, &got, &want, 1e-4);
            assert!(
                (jh - jh_want).abs() <= 1e-4 * jh_want.abs(),
                "{what}: J_H {jh} vs {jh_want}"
            );
            assert_eq!(rng, rng_fused, "{what}: same noise draws");
        }
    }
}

#[test]
fn fused_mpg_gradient_matches_autodiff() {
    for task in ["path_tracking", "pendulum"] {
        for (algo, reading) in [("mpg_v1", "all_actions"), ("mpg_v2", "first_action")] {
            let reading = format!("algo.rollout_gradient={reading}");
            let grad = |kernels: &str| {
                let kernels = format!("network.kernels=\"{kernels}\"");
                let s = Setup::new(config(task, algo, 25, &[&reading, &kernels]), 64);
                let mut rng = Pcg64Mcg::seed_from_u64(4);
                policy::gradient(s.ctx(), &s.obs, 150, &mut rng)
            };
            let (fused, autodiff) = (grad("fused"), grad("autodiff"));
            let what = format!("{task} {algo}");
            assert_close(&what, &fused.grads, &autodiff.grads, 1e-4);
            assert!(
                (fused.loss - autodiff.loss).abs() <= 1e-4 * autodiff.loss.abs(),
                "{what}: loss {} vs {}",
                fused.loss,
                autodiff.loss
            );
        }
    }
}

fn perturbed(p: &ParamSet, d: &[Vec<f32>], eps: f32) -> ParamSet {
    let mut q = p.clone();
    q.update(|vals| {
        for (v, dv) in vals.iter_mut().zip(d) {
            v.iter_mut().zip(dv).for_each(|(x, y)| *x += eps * y);
        }
    });
    q
}

#[test]
fn fused_model_return_gradient_matches_finite_differences_on_lqr() {
    // lqr's model is deterministic, so J_H is a smooth function of the policy parameters. With
    // `all_actions`, J_H(θ) evaluated at perturbed θ is the differentiated function.
    let mut s = Setup::new(config("lqr", "nadp", 10, &["network.hidden=[16, 16]"]), 16);
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let (g, _) = bptt::model_return_grad(s.ctx(), &s.obs, true, 1.0, &mut rng);
    let mut dir_rng = Pcg64Mcg::seed_from_u64(5);
    for _ in 0..3 {
        let d: Vec<Vec<f32>> = (s.params.pi.values().iter())
            .map(|v| {
                (0..v.len())
                    .map(|_| dir_rng.random_range(-1.0..1.0))
                    .collect()
            })
            .collect();
        let analytic: f64 = (g.iter().flatten().zip(d.iter().flatten()))
            .map(|(x, y)| -(*x as f64) * *y as f64)
            .sum();
        let base = s.params.pi.clone();
        let eps = 1e-3;
        let mut value = |sign: f32| {
            s.params.pi = perturbed(&base, &d, sign * eps);
            bptt::model_return_grad(s.ctx(), &s.obs, true, 1.0, &mut rng).1
        };
        let numeric = (value(1.0) - value(-1.0)) / (2.0 * eps as f64);
        s.params.pi = base;
        assert!(
            (analytic - numeric).abs() <= 1e-2 * analytic.abs().max(1e-3),
            "dJ_H/dθ·d: fused {analytic} vs finite difference {numeric}"
        );
    }
}

#[test]
fn mpg_model_term_with_weight_one_is_the_nadp_gradient_on_the_fused_path() {
    // MPG with weights (0, 1) is n-step ADP when every action is differentiated (the reading
    // n-step ADP uses); with `first_action` it is not (see `tests/gradients.rs`).
    let s = Setup::new(config("path_tracking", "nadp", 25, &[]), 32);
    let mut rng = Pcg64Mcg::seed_from_u64(8);
    let nadp = policy::gradient(s.ctx(), &s.obs, 0, &mut rng);
    let mpg = Setup::new(config("path_tracking", "mpg_v1", 25, &[]), 32);
    let mut rng = Pcg64Mcg::seed_from_u64(8);
    let (g, jh) = bptt::model_return_grad(mpg.ctx(), &mpg.obs, true, 1.0, &mut rng);
    assert_eq!(g, nadp.grads);
    assert_eq!(-jh, nadp.loss);
}

/// `f` run in a fresh rayon pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(f)
}

#[test]
fn two_thread_bptt_matches_one_thread_and_is_deterministic() {
    for all_actions in [true, false] {
        let s = Setup::new(config("pendulum", "mpg_v1", 25, &[]), 64);
        let run = |threads: usize| {
            on_threads(threads, || {
                let mut rng = Pcg64Mcg::seed_from_u64(2);
                bptt::model_return_grad(s.ctx(), &s.obs, all_actions, 1.0, &mut rng)
            })
        };
        let (one, two, again) = (run(1), run(2), run(2));
        assert_eq!(two, again, "two threads: the same result every time");
        assert_close("two threads vs one", &two.0, &one.0, 1e-5);
        assert!(nn::global_norm(&one.0) > 0.0);
    }
}

#[test]
fn mixed_gradient_is_the_data_and_model_gradients_summed() {
    for task in ["path_tracking", "pendulum"] {
        for all_actions in [true, false] {
            let s = Setup::new(config(task, "mpg_v1", 25, &[]), 64);
            let (wd, wm) = (0.3f32, 0.7f32);
            let run = |threads: usize| {
                on_threads(threads, || {
                    let mut rng = Pcg64Mcg::seed_from_u64(5);
                    bptt::mixed_grad(s.ctx(), &s.obs, all_actions, (wd, wm), &mut rng)
                })
            };
            let mut rng = Pcg64Mcg::seed_from_u64(5);
            let (mut separate, j0) = fused::data_actor_grad(&s.nets, &s.params, &s.obs, wd);
            let (gm, jh) = bptt::model_return_grad(s.ctx(), &s.obs, all_actions, wm, &mut rng);
            separate
                .iter_mut()
                .flatten()
                .zip(gm.iter().flatten())
                .for_each(|(x, y)| *x += y);
            for threads in [1, 2] {
                let (g, j0_mixed, jh_mixed) = run(threads);
                let what = format!("{task} all_actions={all_actions} threads={threads}");
                assert_close(&what, &g, &separate, 1e-4);
                assert!(
                    (j0_mixed - j0).abs() <= 1e-6 * j0.abs().max(1.0),
                    "{what}: J_0"
                );
                assert!(
                    (jh_mixed - jh).abs() <= 1e-6 * jh.abs().max(1.0),
                    "{what}: J_H"
                );
            }
        }
    }
}
