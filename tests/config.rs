//! Configuration: errors name the key; overrides apply; the resolved config round-trips.

use mixpg::config::{AlgoName, Config, RolloutGradient, SacAction};

const MIN: &str = r#"
[task]
name = "path_tracking"
[algo]
name = "mpg_v1"
"#;

fn err(text: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    format!("{:#}", Config::from_toml_str(text, &sets).unwrap_err())
}

#[test]
fn defaults_are_the_papers() {
    let c = Config::from_toml_str(MIN, &[]).unwrap();
    assert_eq!(c.algo.name, AlgoName::MpgV1);
    assert_eq!(c.algo.gamma, 0.98);
    assert_eq!(c.algo.batch_size, 256);
    assert_eq!(c.algo.horizon, 25);
    assert_eq!(c.algo.rollout_gradient, RolloutGradient::FirstAction);
    assert_eq!(c.algo.sac_action, SacAction::Clipped);
    assert_eq!(c.train.eval_interval, 3000);
    assert_eq!(c.network.hidden, vec![256, 256]);
    assert_eq!(c.schedule_exponent(), 25);
}

#[test]
fn unknown_keys_are_named() {
    let e = err(&format!("{MIN}gama = 0.9\n"), &[]);
    assert!(e.contains("gama"), "{e}");
    let e = err(&format!("{MIN}[trian]\niterations = 3\n"), &[]);
    assert!(e.contains("trian"), "{e}");
    let e = err(MIN, &["algo.horizn=3"]);
    assert!(e.contains("horizn"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = err(MIN, &["algo.gamma=1.5"]);
    assert!(e.contains("algo.gamma"), "{e}");
    // A config names a task; the run refuses one that is not registered, before it makes
    // its directory.
    let cfg = Config::from_toml_str(MIN, &["task.name=cartpole".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("mixpg-unknown-task-{}", std::process::id()));
    let e = format!(
        "{:#}",
        mixpg::runtime::train(cfg, &dir, |_| {}).unwrap_err()
    );
    assert!(e.contains("unknown task `cartpole`"), "{e}");
    assert!(!dir.exists());
    let e = err(MIN, &["algo.name=ppo"]);
    assert!(e.contains("ppo"), "{e}");
    let e = err(MIN, &["algo.batch_size=-3"]);
    assert!(e.contains("batch_size") || e.contains("-3"), "{e}");
    let e = err(MIN, &["gamma"]);
    assert!(e.contains("key=value"), "{e}");
    let e = err(MIN, &["algo.sac_action=tanh"]);
    assert!(e.contains("tanh") && e.contains("clipped"), "{e}");
}

#[test]
fn overrides_apply_and_resolved_config_round_trips() {
    let sets = vec![
        "algo.gamma=0.9".to_string(),
        "algo.rollout_gradient=all_actions".to_string(),
        "algo.sac_action=raw".to_string(),
        "network.hidden=[32, 32]".to_string(),
        "train.seed=7".to_string(),
    ];
    let c = Config::from_toml_str(MIN, &sets).unwrap();
    assert_eq!(c.algo.gamma, 0.9);
    assert_eq!(c.algo.rollout_gradient, RolloutGradient::AllActions);
    assert_eq!(c.algo.sac_action, SacAction::Raw);
    assert_eq!(c.network.hidden, vec![32, 32]);
    assert_eq!(c.train.seed, 7);
    let again = Config::from_toml_str(&c.to_toml(), &[]).unwrap();
    assert_eq!(c, again);
    // The resolved config names the default model too, so a report over prior- and
    // learned-model runs labels both rows by value.
    assert!(c.to_toml().contains("model = \"prior\""), "{}", c.to_toml());
}

/// Every shipped config collects 512 transitions per 10 iterations, as the reference's worker
/// batch (path tracking 8 agents × 64 steps, pendulum 1 × 512).
#[test]
fn shipped_configs_collect_as_the_reference() {
    for task in ["path_tracking", "pendulum"] {
        for algo in AlgoName::ALL {
            if algo == AlgoName::Ddpg {
                continue; // built from td3.toml by `mixpg bench`
            }
            let path = format!(
                "{}/configs/{task}/{}.toml",
                env!("CARGO_MANIFEST_DIR"),
                algo.as_str()
            );
            let c = Config::load(std::path::Path::new(&path), &[]).unwrap();
            let per_collection = c.task.num_agents * c.algo.collect_steps;
            assert_eq!(per_collection, 512, "{path}");
            assert_eq!(c.algo.collect_interval, 10, "{path}");
        }
    }
}

/// SAC squashes its Gaussian into the bounds on both tasks: unsquashed, its policy gradient
/// vanishes once the mean leaves them (docs/design.md, "SAC on path tracking").
#[test]
fn shipped_sac_configs_squash() {
    for task in ["path_tracking", "pendulum"] {
        let path = format!("{}/configs/{task}/sac.toml", env!("CARGO_MANIFEST_DIR"));
        let c = Config::load(std::path::Path::new(&path), &[]).unwrap();
        assert!(c.algo.squash, "{path}");
    }
}

#[test]
fn serial_runs_ignore_the_asynchronous_rate_limit() {
    // A warm-up of 4 transitions before batches of 256: fine in serial mode, where
    // runtime.samples_per_insert paces nothing; the asynchronous buffers still check it.
    let small = ["algo.warmup_samples=4", "algo.batch_size=256"].map(String::from);
    Config::from_toml_str(MIN, &small).unwrap();
    let mut sets = small.to_vec();
    sets.push("runtime.mode=async".to_string());
    let e = format!("{:#}", Config::from_toml_str(MIN, &sets).unwrap_err());
    assert!(e.contains("runtime.samples_per_insert"), "{e}");
}
