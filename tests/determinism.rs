//! Serial runs are reproducible: a seed fixes the run, another seed changes it, and a run
//! resumed after a crash equals an uninterrupted one (on the `lqr` task).

mod common;

use common::{lqr_config, progress_without_timing, tempdir};
use mixpg::config::Config;
use mixpg::runtime::Trainer;

#[test]
fn same_seed_same_progress_and_different_seed_differs() {
    let cfg = lqr_config("mpg_v1", &["train.iterations=60", "algo.batch_reuse=3"]);
    let run = |name: &str, cfg: Config| {
        let dir = tempdir(name);
        Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap();
        progress_without_timing(&dir.join("progress.csv"))
    };
    let a = run("det-a", cfg.clone());
    let b = run("det-b", cfg.clone());
    assert_eq!(a, b);
    let mut other = cfg;
    other.train.seed = 1;
    assert_ne!(a, run("det-c", other));
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    for algo in ["mpg_v1", "sac"] {
        let cfg = lqr_config(
            algo,
            &[
                "train.iterations=100",
                "train.checkpoint_interval=40",
                "train.keep_checkpoints=5",
                "train.eval_interval=20",
                "algo.batch_reuse=3",
            ],
        );
        // A crash after iteration 55, resumed from the checkpoint at 40.
        let (full, cut) = common::run_and_resume_after_a_crash(&cfg, &format!("resume-{algo}"));
        assert_eq!(
            progress_without_timing(&full.join("progress.csv")),
            progress_without_timing(&cut.join("progress.csv")),
            "{algo}"
        );
    }
}
