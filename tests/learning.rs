//! Every algorithm learns the `lqr` task (a smoke test of the whole serial training loop).

mod common;

use common::{eval_returns, lqr_config, tempdir};
use mixpg::config::AlgoName;
use mixpg::runtime::Trainer;

#[test]
fn every_algorithm_learns_the_lqr_task() {
    // Optimal expected return of the unconstrained 50-step LQR from U(−1, 1)² is −2.42;
    // the initial policy's is in the thousands.
    for algo in AlgoName::ALL {
        let dir = tempdir(&format!("smoke-{}", algo.as_str()));
        let mut extra = vec![];
        if matches!(algo, AlgoName::MpgV1 | AlgoName::Ndpg | AlgoName::Nadp) {
            extra.push("algo.batch_reuse=5");
        }
        let cfg = lqr_config(algo.as_str(), &extra);
        Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap();
        let evals = eval_returns(&dir.join("progress.csv"));
        let (first, last) = (evals[0].1, evals.last().unwrap().1);
        assert_eq!(evals.last().unwrap().0, 400);
        assert!(
            last > first / 20.0 && last > -100.0,
            "{}: eval return {first} → {last}",
            algo.as_str()
        );
        if matches!(algo, AlgoName::MpgV1 | AlgoName::MpgV2) {
            assert!(last > -15.0, "{}: {last}", algo.as_str());
        }
    }
}
