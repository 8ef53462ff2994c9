//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use mixpg::config::Config;
use mixpg::runtime::{AsyncTrainer, RunSummary};

/// A small configuration on the `lqr` task: small networks, short horizons, fast learning rates.
pub fn lqr_config(algo: &str, extra: &[&str]) -> Config {
    lqr_config_result(algo, extra).expect("test config")
}

/// [`lqr_config`] with the error kept (for tests of bad values).
pub fn lqr_config_result(algo: &str, extra: &[&str]) -> anyhow::Result<Config> {
    let text = format!(
        r#"
[task]
name = "lqr"
num_agents = 4
reward_scale = 1.0
[algo]
name = "{algo}"
batch_size = 64
buffer_capacity = 20000
warmup_samples = 500
collect_steps = 4
collect_interval = 1
horizon = 10
n_step = 10
batch_reuse = 1
policy_delay = 1
schedule_iterations = 300
q_lr = {{ initial = 1e-3, final_lr = 1e-4, steps = 1000 }}
policy_lr = {{ initial = 1e-3, final_lr = 1e-4, steps = 1000 }}
[network]
hidden = [32, 32]
[train]
iterations = 400
eval_interval = 100
checkpoint_interval = 100
log_interval = 10
"#
    );
    let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    Config::from_toml_str(&text, &sets)
}

/// A fresh temporary directory.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mixpg-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The rows of a progress.csv with the timing columns (wall_s, pg_time_ms, update_time_ms,
/// model_fit_ms) blanked, for comparisons across runs.
pub fn progress_without_timing(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let timing: Vec<usize> = ["wall_s", "pg_time_ms", "update_time_ms", "model_fit_ms"]
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    lines
        .map(|l| {
            l.split(',')
                .enumerate()
                .map(|(i, x)| if timing.contains(&i) { "" } else { x })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// The evaluation returns `(iteration, mean)` of a progress.csv.
pub fn eval_returns(path: &std::path::Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            c[3].parse::<f64>().ok().map(|m| (c[0].parse().unwrap(), m))
        })
        .collect()
}

/// The small asynchronous run of the runtime tests: MPG-v2 on `lqr`, 1 actor, 2 buffers,
/// 2 learners, 600 iterations.
pub const ASYNC_LQR: &str = r#"
[task]
name = "lqr"
num_agents = 8
reward_scale = 1.0

[algo]
name = "mpg_v2"
batch_size = 64
buffer_capacity = 20000
warmup_samples = 400
collect_steps = 8
collect_interval = 2
policy_delay = 1
horizon = 10
batch_reuse = 1
rollout_gradient = "all_actions"  # as the shipped MPG-v2 configs
schedule_iterations = 300
q_lr = { initial = 2e-3, final_lr = 2e-4, steps = 2000 }
policy_lr = { initial = 1e-3, final_lr = 1e-4, steps = 2000 }

[network]
hidden = [32, 32]

[train]
iterations = 600
eval_interval = 200
checkpoint_interval = 200
log_interval = 10
eval_episodes = 10

[runtime]
mode = "async"
actors = 1
buffers = 2
learners = 2
"#;

/// [`ASYNC_LQR`] with `--set`-style overrides.
pub fn async_lqr_config(sets: &[&str]) -> Config {
    async_lqr_config_result(sets).expect("test config")
}

/// [`async_lqr_config`] with the error kept (for tests of bad values).
pub fn async_lqr_config_result(sets: &[&str]) -> anyhow::Result<Config> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Config::from_toml_str(ASYNC_LQR, &sets)
}

/// Run `t` on its own thread; the test fails if it has not finished within `limit` (a hang).
pub fn run_bounded(
    mut t: AsyncTrainer,
    limit: Duration,
) -> (anyhow::Result<RunSummary>, AsyncTrainer) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = t.run();
        let _ = tx.send((r, t));
    });
    rx.recv_timeout(limit)
        .expect("the async run did not finish in time (hang or deadlock?)")
}

/// Train `cfg` twice: once uninterrupted into `NAME-full`, once into `NAME-cut` cut back as by
/// a crash after iteration 55 (only the checkpoint at 40 kept, `progress.csv` up to 55) and
/// resumed; returns both directories. `cfg` runs 100 iterations with checkpoints every 40.
pub fn run_and_resume_after_a_crash(
    cfg: &mixpg::config::Config,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    use mixpg::runtime::Trainer;
    let full = tempdir(&format!("{name}-full"));
    Trainer::new(cfg.clone(), &full)
        .unwrap()
        .quiet()
        .run()
        .unwrap();
    let cut = tempdir(&format!("{name}-cut"));
    Trainer::new(cfg.clone(), &cut)
        .unwrap()
        .quiet()
        .run()
        .unwrap();
    for k in [80, 100] {
        std::fs::remove_dir_all(cut.join(format!("checkpoints/ckpt-{k:09}"))).unwrap();
    }
    let text = std::fs::read_to_string(cut.join("progress.csv")).unwrap();
    let kept: Vec<&str> = text.lines().take_while(|l| !l.starts_with("60,")).collect();
    std::fs::write(cut.join("progress.csv"), kept.join("\n") + "\n").unwrap();
    let mut t = Trainer::resume(&cut).unwrap().quiet();
    assert_eq!(t.iteration(), 40);
    t.run().unwrap();
    (full, cut)
}

/// Every element within `rel` of the reference, relative to the element or, near zero, to a
/// thousandth of the reference's largest magnitude.
pub fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], rel: f32) {
    let (got, want): (Vec<f32>, Vec<f32>) = (got.concat(), want.concat());
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: zero reference gradient");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = rel * w.abs().max(1e-3 * scale);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: fused {g} vs autodiff {w} (tolerance {tol})"
        );
    }
}
