//! `mixpg bench` / `mixpg report`: grid layout, skip, resume, restart, failures, presets.
//!
//! Everything runs on the small `lqr` task with tiny networks (a run takes well under a
//! second), from a temporary configs directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Parser;
use mixpg::cli::bench::{
    BenchArgs, GridSummary, Preset, ReportArgs, RunStatus, report, run_grid_with,
};
use mixpg::cli::{Cli, Command};

const REPORT_FILES: [&str; 6] = [
    "table1.md",
    "table1.csv",
    "curves.png",
    "curves.svg",
    "convergence.png",
    "timing.png",
];

/// A fresh temporary directory holding `configs/lqr/{mpg_v2,td3}.toml`.
fn setup(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("mixpg-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cfg = root.join("configs").join("lqr");
    std::fs::create_dir_all(&cfg).unwrap();
    for algo in ["mpg_v2", "td3"] {
        std::fs::write(
            cfg.join(format!("{algo}.toml")),
            format!(
                r#"
[task]
name = "lqr"
num_agents = 1
reward_scale = 1.0

[algo]
name = "{algo}"
batch_size = 32
warmup_samples = 200
horizon = 5
n_step = 5
schedule_iterations = 40

[network]
hidden = [16, 16]

[train]
iterations = 60
eval_interval = 20
checkpoint_interval = 20
keep_checkpoints = 5
eval_episodes = 2
"#
            ),
        )
        .unwrap();
    }
    root
}

fn args(root: &Path, algos: &[&str], seeds: u64) -> BenchArgs {
    let mut a = BenchArgs::new("lqr", algos, &root.join("runs"));
    a.configs = root.join("configs");
    a.seeds = Some(seeds);
    a
}

/// Run the grid, returning the summary and the printed lines.
fn grid(a: &BenchArgs) -> (GridSummary, Vec<String>) {
    let lines = Mutex::new(Vec::new());
    let s = run_grid_with(a, &|l: &str| lines.lock().unwrap().push(l.to_string())).unwrap();
    (s, lines.into_inner().unwrap())
}

fn run_dir(root: &Path, algo: &str, seed: u64) -> PathBuf {
    root.join("runs")
        .join("lqr")
        .join(algo)
        .join(format!("seed{seed}"))
}

fn rows(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("progress.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn iteration(row: &str) -> u64 {
    row.split(',').next().unwrap().parse().unwrap()
}

/// The row without its timing columns wall_s, pg_time_ms, update_time_ms (the rest is
/// deterministic in serial mode).
fn without_wall(row: &str) -> String {
    row.split(',')
        .enumerate()
        .filter(|(i, _)| ![1, 9, 10].contains(i))
        .map(|(_, f)| f)
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn grid_writes_runs_and_report_then_skips_finished_runs() {
    let root = setup("grid");
    let mut a = args(&root, &["mpg_v2", "ddpg"], 2);
    a.jobs = 2;
    let (s, lines) = grid(&a);
    s.check().unwrap();
    assert_eq!(s.runs.len(), 4);
    assert_eq!(s.finished(), 4, "{lines:?}");
    for algo in ["mpg_v2", "ddpg"] {
        for seed in 0..2 {
            let d = run_dir(&root, algo, seed);
            let r = rows(&d);
            assert_eq!(iteration(r.last().unwrap()), 60, "{}", d.display());
            assert!(d.join("checkpoints").join("ckpt-000000060").is_dir());
            let cfg = mixpg::config::Config::load(&d.join("config.toml"), &[]).unwrap();
            assert_eq!(cfg.algo.name.as_str(), algo);
            assert_eq!(cfg.train.seed, seed);
            if algo == "ddpg" {
                // DDPG comes from td3.toml with the two documented overrides.
                assert_eq!(cfg.algo.policy_delay, 1);
            }
        }
    }
    for f in REPORT_FILES {
        let p = root.join("runs").join("report").join(f);
        assert!(p.is_file(), "missing {}", p.display());
    }
    let rep = s.report.as_ref().unwrap();
    assert_eq!(rep.runs_used, 4);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("done") && l.contains("lqr/ddpg/seed1"))
    );

    // Second invocation: nothing is trained again, nothing is touched.
    let d = run_dir(&root, "mpg_v2", 1);
    let before = std::fs::read(d.join("progress.csv")).unwrap();
    let mtime = std::fs::metadata(d.join("progress.csv"))
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (s2, lines2) = grid(&a);
    s2.check().unwrap();
    assert_eq!(s2.skipped(), 4, "{lines2:?}");
    assert_eq!(s2.finished(), 0);
    for r in &s2.runs {
        assert_eq!(r.status, RunStatus::Skipped { iteration: 60 });
    }
    assert_eq!(
        lines2.iter().filter(|l| l.contains("skip ")).count(),
        4,
        "{lines2:?}"
    );
    assert_eq!(std::fs::read(d.join("progress.csv")).unwrap(), before);
    let mtime2 = std::fs::metadata(d.join("progress.csv"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, mtime2);

    // `mixpg report` on the same runs.
    let out = root.join("report2");
    let r = report(&ReportArgs {
        runs: vec![root.join("runs")],
        out: out.clone(),
    })
    .unwrap();
    assert_eq!(r.runs_used, 4);
    assert!(out.join("table1.md").is_file());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn interrupted_run_resumes_from_its_checkpoint_exactly() {
    let root = setup("resume");
    let a = args(&root, &["mpg_v2"], 1);
    let (s, _) = grid(&a);
    s.check().unwrap();
    let d = run_dir(&root, "mpg_v2", 0);
    let full = rows(&d);

    // Simulate a kill at iteration 50: the checkpoint of iteration 60 was never written and
    // progress.csv stops at 50.
    std::fs::remove_dir_all(d.join("checkpoints").join("ckpt-000000060")).unwrap();
    let header = std::fs::read_to_string(d.join("progress.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let cut: Vec<&String> = full.iter().filter(|r| iteration(r) <= 50).collect();
    let mut text = header + "\n";
    for r in &cut {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(d.join("progress.csv"), text).unwrap();

    let (s2, lines) = grid(&a);
    s2.check().unwrap();
    match &s2.runs[0].status {
        RunStatus::Finished {
            resumed_from,
            restarted,
            final_eval,
            ..
        } => {
            assert_eq!(*resumed_from, Some(40), "{lines:?}");
            assert!(!restarted);
            assert_eq!(final_eval.unwrap().0, 60);
        }
        other => panic!("expected a resumed run, got {other:?}"),
    }
    assert!(lines.iter().any(|l| l.contains("resume ")), "{lines:?}");
    let again = rows(&d);
    assert_eq!(again.len(), full.len());
    // Rows up to the checkpoint are the original ones, wall-clock included: not restarted.
    for (x, y) in full.iter().zip(&again).filter(|(x, _)| iteration(x) <= 40) {
        assert_eq!(x, y);
    }
    // The serial trainer resumes exactly: the rest matches the uninterrupted run.
    for (x, y) in full.iter().zip(&again) {
        assert_eq!(without_wall(x), without_wall(y));
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn shorter_run_is_extended_by_a_longer_grid() {
    let root = setup("extend");
    let mut a = args(&root, &["ddpg"], 1);
    a.iterations = Some(30);
    grid(&a).0.check().unwrap();
    let d = run_dir(&root, "ddpg", 0);
    let first = rows(&d);
    assert_eq!(iteration(first.last().unwrap()), 30);

    a.iterations = Some(60);
    let (s, lines) = grid(&a);
    s.check().unwrap();
    assert!(
        matches!(
            s.runs[0].status,
            RunStatus::Finished {
                resumed_from: Some(30),
                ..
            }
        ),
        "{lines:?}"
    );
    let after = rows(&d);
    assert_eq!(iteration(after.last().unwrap()), 60);
    assert_eq!(&after[..first.len()], &first[..]);
    let cfg = mixpg::config::Config::load(&d.join("config.toml"), &[]).unwrap();
    assert_eq!(cfg.train.iterations, 60);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn run_without_checkpoint_is_restarted_cleanly() {
    let root = setup("restart");
    let a = args(&root, &["td3"], 1);
    let d = run_dir(&root, "td3", 0);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("progress.csv"),
        "iteration,wall_s,eval_return_mean\n0,0.1,-999\n5,0.2,\n",
    )
    .unwrap();
    std::fs::write(d.join("config.toml"), "garbage").unwrap();
    let (s, lines) = grid(&a);
    s.check().unwrap();
    assert_eq!(
        match &s.runs[0].status {
            RunStatus::Finished {
                resumed_from,
                restarted,
                ..
            } => (*resumed_from, *restarted),
            other => panic!("{other:?}"),
        },
        (None, true)
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("start ") && l.contains("cleared"))
    );
    let r = rows(&d);
    assert_eq!(iteration(&r[0]), 0);
    assert_eq!(iteration(r.last().unwrap()), 60);
    assert!(!r[0].contains("-999"));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn failed_run_is_reported_and_the_others_continue() {
    let root = setup("fail");
    // A run directory holding a run of another configuration must not be taken over.
    let d = run_dir(&root, "mpg_v2", 0);
    let mut other = args(&root, &["mpg_v2"], 1);
    other.set = vec!["algo.gamma=0.9".into()];
    other.iterations = Some(20);
    other.no_report = true;
    grid(&other).0.check().unwrap();
    let before = std::fs::read(d.join("progress.csv")).unwrap();

    let a = args(&root, &["mpg_v2", "td3"], 1);
    let (s, lines) = grid(&a);
    let err = s.check().unwrap_err().to_string();
    assert!(err.contains("1 of 2 runs failed"), "{err}");
    assert!(err.contains("lqr/mpg_v2/seed0"), "{err}");
    match &s.runs[0].status {
        RunStatus::Failed { error } => {
            assert!(error.contains("different configuration"), "{error}");
            assert!(error.contains("algo.gamma"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.runs[1].status, RunStatus::Finished { .. }));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("FAILED") && l.contains("mpg_v2"))
    );
    assert_eq!(std::fs::read(d.join("progress.csv")).unwrap(), before);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_names_and_missing_configs_give_clear_errors_before_anything_runs() {
    let root = setup("bad");
    let a = args(&root, &["mpg_v2", "dqn"], 1);
    let e = format!("{:#}", a.plan().unwrap_err());
    assert!(e.contains("unknown algorithm `dqn`"), "{e}");
    assert!(e.contains("mpg_v1") && e.contains("sac"), "{e}");
    assert!(!root.join("runs").exists());

    let mut b = args(&root, &["mpg_v2"], 1);
    b.task = Some("cartpole".into());
    let e = format!("{:#}", b.plan().unwrap_err());
    assert!(e.contains("unknown task `cartpole`"), "{e}");

    let c = args(&root, &["sac"], 1);
    let e = format!("{:#}", c.plan().unwrap_err());
    assert!(e.contains("no config for lqr/sac"), "{e}");

    let mut d = args(&root, &["mpg_v2"], 1);
    d.set = vec!["algo.gammma=0.9".into()];
    assert!(d.plan().is_err());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn presets_resolve_and_explicit_flags_override_them() {
    let q = Preset::Quick.values();
    assert_eq!((q.seeds, q.iterations), (3, 6000));
    assert_eq!(q.tasks, ["path_tracking", "pendulum"]);
    assert_eq!(q.algos, ["mpg_v1", "mpg_v2", "ndpg", "nadp", "td3", "sac"]);
    let p = Preset::Paper.values();
    assert_eq!((p.seeds, p.iterations), (5, 100_000));

    // The repository's configs: the whole paper grid resolves.
    let mut a = BenchArgs::new("all", &[], Path::new("unused"));
    a.task = None;
    a.preset = Some(Preset::Paper);
    a.configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let plan = a.plan().unwrap();
    assert_eq!(plan.runs.len(), 2 * 6 * 5);
    assert!(plan.runs.iter().all(|r| r.cfg.train.iterations == 100_000
        && r.cfg.train.eval_interval == 3000
        && r.cfg.train.seed == r.seed));

    // Flags win over the preset.
    let root = setup("preset");
    let mut b = args(&root, &["mpg_v2"], 2);
    b.preset = Some(Preset::Quick);
    b.iterations = Some(50);
    b.set = vec!["train.eval_interval=7".into()];
    let plan = b.plan().unwrap();
    assert_eq!(plan.runs.len(), 2);
    let c = &plan.runs[1].cfg;
    assert_eq!(c.task.name, "lqr");
    assert_eq!(c.train.iterations, 50);
    assert_eq!(c.train.eval_interval, 7);
    assert_eq!(c.train.checkpoint_interval, 3000);
    assert_eq!(c.train.seed, 1);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn command_line_parses() {
    let cli = Cli::try_parse_from([
        "mixpg",
        "bench",
        "--task",
        "all",
        "--algos",
        "mpg_v1,td3",
        "--algos",
        "sac",
        "--seeds",
        "2",
        "--out",
        "x",
        "--jobs",
        "2",
        "--preset",
        "quick",
        "--set",
        "a.b=1",
    ])
    .unwrap();
    match cli.command {
        Command::Bench(b) => {
            assert_eq!(b.algos, ["mpg_v1", "td3", "sac"]);
            assert_eq!(b.jobs, 2);
            assert_eq!(b.preset, Some(Preset::Quick));
            assert_eq!(b.configs, Path::new("configs"));
        }
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["mixpg", "bench", "--task", "lqr"]).is_err());
    assert!(matches!(
        Cli::try_parse_from(["mixpg", "report", "--runs", "r", "--out", "o"])
            .unwrap()
            .command,
        Command::Report(_)
    ));
}

#[test]
fn table1_preset_is_five_seeds_of_twenty_thousand_iterations() {
    let mut a = BenchArgs::new("all", &[], Path::new("unused"));
    a.task = None;
    a.preset = Some(Preset::Table1);
    a.configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let plan = a.plan().unwrap();
    assert_eq!(plan.runs.len(), 2 * 6 * 5);
    for r in &plan.runs {
        let t = &r.cfg.train;
        assert_eq!(
            (
                t.iterations,
                t.eval_interval,
                t.eval_episodes,
                t.checkpoint_interval
            ),
            (20_000, 1000, 5, 1000)
        );
        assert_eq!(t.seed, r.seed);
    }
    let cli = Cli::try_parse_from(["mixpg", "bench", "--preset", "table1", "--out", "x"]);
    assert!(cli.is_ok());
}
