//! Short learning smoke tests on the paper's tasks: a few hundred iterations of MPG-v2 with the
//! paper's settings reach a clearly better return than the initial policy.

mod common;

use common::{eval_returns, tempdir};
use mixpg::config::Config;
use mixpg::runtime::Trainer;

fn smoke(task: &str, bound: f64) {
    let sets: Vec<String> = [
        "train.iterations=300",
        "train.eval_interval=100",
        "algo.warmup_samples=1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let path = format!("configs/{task}/mpg_v2.toml");
    let cfg = Config::load(std::path::Path::new(&path), &sets).unwrap();
    let dir = tempdir(&format!("smoke-{task}"));
    Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap();
    let evals = eval_returns(&dir.join("progress.csv"));
    let (first, last) = (evals[0].1, evals.last().unwrap().1);
    assert!(
        last > first / 20.0 && last > bound,
        "{task}: eval return {first} → {last}"
    );
}

#[test]
fn mpg_v2_learns_path_tracking() {
    // Initial policy ≈ −11 000; the paper's minimum requirement is −30.
    smoke("path_tracking", -200.0);
}

#[test]
fn mpg_v2_learns_the_pendulum() {
    // Initial policy ≈ −900; the paper's minimum requirement is −2.
    smoke("pendulum", -20.0);
}
