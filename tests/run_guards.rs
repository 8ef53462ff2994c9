//! A serial run aborts with a clear message on persistent non-finite gradients, keeping the
//! rows already written, and refuses a directory that already holds a run.

mod common;

use common::{lqr_config, tempdir};
use mixpg::runtime::Trainer;

#[test]
fn persistent_non_finite_gradients_abort_with_a_clear_message() {
    let cfg = lqr_config(
        "ddpg",
        &[
            "algo.q_lr={ initial = 1e38, final_lr = 1e38, steps = 1 }",
            "train.max_nonfinite_streak=5",
        ],
    );
    let dir = tempdir("nonfinite");
    let err = Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("non-finite"), "{msg}");
    // The rows written before the abort are kept, with the skipped-step counter.
    let text = std::fs::read_to_string(dir.join("progress.csv")).unwrap();
    assert!(text.lines().count() >= 2);
}

#[test]
fn a_second_train_into_the_same_directory_is_refused() {
    let dir = tempdir("twice");
    let cfg = lqr_config("td3", &["train.iterations=5"]);
    Trainer::new(cfg.clone(), &dir)
        .unwrap()
        .quiet()
        .run()
        .unwrap();
    let err = format!("{:#}", Trainer::new(cfg, &dir).err().unwrap());
    assert!(err.contains("already holds a run"), "{err}");
}
