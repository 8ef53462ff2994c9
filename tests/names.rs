//! Task and algorithm names in kebab case (and `inverted-pendulum`) wherever a name is taken:
//! config files, `--set`, `mixpg bench --task/--algos`, and the task registry.

use clap::Parser;
use mixpg::cli::{Cli, Command};
use mixpg::config::{AlgoName, Config};
use mixpg::env::{canonical_task, lookup, make_env, make_model, task_spec};
use mixpg::grid::Preset;

fn config(task: &str, algo: &str) -> anyhow::Result<Config> {
    Config::from_toml_str(
        &format!("[task]\nname = \"{task}\"\n[algo]\nname = \"{algo}\"\n"),
        &[],
    )
}

#[test]
fn configs_accept_kebab_case_and_store_snake_case() {
    let c = config("path-tracking", "mpg-v2").unwrap();
    assert_eq!(c.task.name, "path_tracking");
    assert_eq!(c.algo.name, AlgoName::MpgV2);
    assert!(c.to_toml().contains("name = \"path_tracking\""));
    assert!(c.to_toml().contains("name = \"mpg_v2\""));
    for alias in ["inverted-pendulum", "inverted_pendulum", "pendulum"] {
        assert_eq!(config(alias, "mpg-v1").unwrap().task.name, "pendulum");
    }
    let c = Config::from_toml_str(
        "[task]\nname = \"lqr\"\n[algo]\nname = \"td3\"\n",
        &["algo.name=mpg-v1".into(), "task.name=path-tracking".into()],
    )
    .unwrap();
    assert_eq!(
        (c.task.name.as_str(), c.algo.name),
        ("path_tracking", AlgoName::MpgV1)
    );
    let c = config("path-trackin", "td3").unwrap();
    let e = format!("{:#}", lookup(&c.task.name).unwrap_err());
    assert!(e.contains("unknown task `path_trackin`"), "{e}");
    assert!(config("lqr", "mpg-v3").is_err());
}

#[test]
fn registry_and_algorithm_names_parse_both_cases() {
    assert_eq!(canonical_task("path-tracking"), Some("path_tracking"));
    assert_eq!(canonical_task("inverted-pendulum"), Some("pendulum"));
    assert_eq!(canonical_task("cartpole"), None);
    assert_eq!(task_spec("inverted-pendulum").unwrap().name, "pendulum");
    assert_eq!(
        make_env("path-tracking", 2, 0).unwrap().spec().name,
        "path_tracking"
    );
    assert_eq!(
        make_model("inverted-pendulum", true).unwrap().spec().name,
        "pendulum"
    );
    for a in AlgoName::ALL {
        assert_eq!(AlgoName::parse(a.as_str()), Some(a));
        assert_eq!(AlgoName::parse(&a.as_str().replace('_', "-")), Some(a));
    }
    assert_eq!(AlgoName::parse("mpg-v3"), None);
    assert_eq!(Preset::parse("quick"), Some(Preset::Quick));
    assert_eq!(Preset::parse("nope"), None);
    assert!(Preset::names().contains(&"paper".to_string()));
}

#[test]
fn bench_flags_accept_kebab_case() {
    let cli = Cli::parse_from([
        "mixpg",
        "bench",
        "--task",
        "path-tracking,inverted-pendulum",
        "--algos",
        "mpg-v2,td3",
        "--out",
        "unused",
    ]);
    let Command::Bench(args) = cli.command else {
        panic!("not bench")
    };
    let plan = args.plan().unwrap();
    let labels: Vec<String> = plan.runs.iter().map(|r| r.label()).collect();
    assert_eq!(
        labels,
        [
            "path_tracking/mpg_v2/seed0",
            "path_tracking/td3/seed0",
            "pendulum/mpg_v2/seed0",
            "pendulum/td3/seed0"
        ]
    );
    assert!(plan.runs[0].dir.ends_with("path_tracking/mpg_v2/seed0"));
}
