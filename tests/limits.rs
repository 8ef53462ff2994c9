//! Configs that cannot exhaust memory: rollouts longer than an episode and runs whose
//! estimated memory exceeds what is available are refused within seconds, before anything is
//! allocated, through the library (`runtime::train`, resume) and the `mixpg` binary; `--force`
//! on `train` and `bench` (`train.skip_memory_check`) lets a run start anyway; every shipped
//! config passes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mixpg::config::Config;
use mixpg::env::lookup;
use mixpg::runtime::Trainer;
use mixpg::runtime::limits::{available_memory, check_episode_bounds, check_memory, estimate};

const MPG_V1: &str = "configs/path_tracking/mpg_v1.toml";

fn mpg_v1(sets: &[&str]) -> Config {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Config::load(Path::new(MPG_V1), &sets).unwrap()
}

/// Train `cfg` into a fresh directory as `mixpg train` does; the error, which must come
/// within seconds and before the run directory is made.
fn refused(name: &str, cfg: Config) -> String {
    let dir = common::tempdir(name).join("run");
    let started = Instant::now();
    let e = mixpg::runtime::train(cfg, &dir, |_| {}).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(!dir.exists(), "the run directory was created");
    format!("{e:#}")
}

#[test]
fn a_horizon_longer_than_the_episode_is_refused_with_its_bound() {
    let e = refused("horizon", mpg_v1(&["algo.horizon=100000"]));
    assert!(
        e.contains("algo.horizon = 100000 exceeds the task's episode length 200"),
        "{e}"
    );
    // n_step likewise, on the pendulum (episodes of 100 steps); 100 itself is fine.
    let ndpg = |n: &str| {
        Config::load(
            Path::new("configs/pendulum/ndpg.toml"),
            &[format!("algo.n_step={n}")],
        )
        .unwrap()
    };
    let task = lookup("pendulum").unwrap();
    let spec = task.spec();
    let e = format!(
        "{:#}",
        check_episode_bounds(&ndpg("101"), spec).unwrap_err()
    );
    assert!(
        e.contains("algo.n_step = 101 exceeds the task's episode length 100"),
        "{e}"
    );
    check_episode_bounds(&ndpg("100"), spec).unwrap();
    // TD3 does not roll out: its horizon is not checked.
    let td3 = Config::load(
        Path::new("configs/pendulum/td3.toml"),
        &["algo.horizon=1000".to_string()],
    )
    .unwrap();
    check_episode_bounds(&td3, spec).unwrap();
}

#[test]
fn a_huge_replay_buffer_is_refused_naming_its_key_without_overflow() {
    let cfg = mpg_v1(&["algo.buffer_capacity=1000000000000"]);
    let spec = lookup("path_tracking").unwrap();
    let est = estimate(&cfg, &spec).unwrap();
    // 10¹² transitions of 17 floats, and the checkpoint's copy: 136 TB.
    assert_eq!(est.dominant().key, "algo.buffer_capacity");
    assert!(
        (est.total() / 1.36e14 - 1.0).abs() < 0.01,
        "{}",
        est.total()
    );
    if available_memory().is_some() {
        let e = refused("capacity", cfg);
        assert!(
            e.contains("replay buffers: 136000.0 GB with algo.buffer_capacity = 1000000000000"),
            "{e}"
        );
        assert!(e.contains("--force"), "{e}");
    }
    // usize::MAX neither overflows nor allocates.
    let max = mpg_v1(&[&format!("algo.buffer_capacity={}", i64::MAX)]);
    assert!(estimate(&max, &spec).unwrap().total().is_finite());
}

#[test]
fn huge_networks_are_refused_naming_network_hidden() {
    let cfg = mpg_v1(&["network.hidden=[100000, 100000]"]);
    let spec = lookup("path_tracking").unwrap();
    assert_eq!(
        estimate(&cfg, &spec).unwrap().dominant().key,
        "network.hidden"
    );
    if available_memory().is_some() {
        let e = refused("hidden", cfg);
        assert!(
            e.contains("network parameters") && e.contains("network.hidden = [100000, 100000]"),
            "{e}"
        );
    }
}

#[test]
fn the_check_compares_with_the_memory_given_and_force_skips_it() {
    let cfg = mpg_v1(&[]);
    let spec = lookup("path_tracking").unwrap();
    let total = estimate(&cfg, &spec).unwrap().total();
    check_memory(&cfg, &spec, Some(total * 1.01)).unwrap();
    let e = format!(
        "{:#}",
        check_memory(&cfg, &spec, Some(total * 0.5)).unwrap_err()
    );
    assert!(e.contains("more than the"), "{e}");
    check_memory(&cfg, &spec, None).unwrap();
    let forced = mpg_v1(&["train.skip_memory_check=true"]);
    check_memory(&forced, &spec, Some(1.0)).unwrap();
}

#[test]
fn async_mode_counts_every_buffer_and_learner() {
    let spec = lookup("path_tracking").unwrap();
    let serial = estimate(&mpg_v1(&[]), &spec).unwrap();
    let four = mpg_v1(&[
        "runtime.mode=\"async\"",
        "runtime.buffers=4",
        "runtime.learners=4",
    ]);
    let four = estimate(&four, &spec).unwrap();
    // Four buffers, each also copied for its checkpoint: 4 × 3 / 2 of the serial replay.
    assert_eq!(four.parts[0].bytes, serial.parts[0].bytes * 6.0);
    // Four learners' BPTT tapes.
    assert_eq!(four.parts[3].bytes, serial.parts[3].bytes * 4.0);
    assert!(four.parts[1].bytes > serial.parts[1].bytes);
}

#[test]
fn every_shipped_config_passes_its_checks() {
    for task in ["path_tracking", "pendulum"] {
        let spec = lookup(task).unwrap();
        for entry in std::fs::read_dir(Path::new("configs").join(task)).unwrap() {
            let path = entry.unwrap().path();
            let cfg = Config::load(&path, &[]).unwrap();
            check_episode_bounds(&cfg, spec.spec()).unwrap();
            let gb = estimate(&cfg, &spec).unwrap().total() / 1e9;
            assert!(gb < 1.0, "{}: {gb} GB", path.display());
        }
    }
}

#[test]
fn resume_checks_the_config_again() {
    let dir = common::tempdir("limits-resume");
    let cfg = common::lqr_config("td3", &["train.iterations=20"]);
    Trainer::new(cfg, &dir).unwrap().quiet().run().unwrap();
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let huge = text.replace("buffer_capacity = 20000", "buffer_capacity = 1000000000000");
    assert_ne!(huge, text);
    std::fs::write(&path, &huge).unwrap();
    if available_memory().is_some() {
        let e = format!("{:#}", Trainer::resume(&dir).err().unwrap());
        assert!(e.contains("algo.buffer_capacity"), "{e}");
    }
    // The key that forces it is kept in the run's config, so that resume honours it.
    let forced = huge.replace("skip_memory_check = false", "skip_memory_check = true");
    assert_ne!(forced, huge);
    std::fs::write(
        &path,
        forced.replace("buffer_capacity = 1000000000000", "buffer_capacity = 20000"),
    )
    .unwrap();
    Trainer::resume(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_binary_refuses_each_input_within_seconds() {
    let dir = common::tempdir("limits-cli");
    for (set, says) in [
        (
            "algo.horizon=100000",
            "exceeds the task's episode length 200",
        ),
        (
            "algo.buffer_capacity=1000000000000",
            "algo.buffer_capacity = 1000000000000",
        ),
        (
            "network.hidden=[100000,100000]",
            "network.hidden = [100000, 100000]",
        ),
    ] {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_mixpg"))
            .args(["train", "--config", MPG_V1, "--out"])
            .arg(dir.join("run"))
            .args(["--set", set])
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "{set}");
        assert!(!out.status.success(), "{set}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let memory = !set.starts_with("algo.horizon");
        if !memory || available_memory().is_some() {
            assert!(stderr.contains(says), "{stderr}");
        }
        assert!(!dir.join("run").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn force_on_train_and_bench_sets_the_config_key() {
    let args = mixpg::cli::TrainArgs {
        config: MPG_V1.into(),
        out: "unused".into(),
        seed: None,
        iterations: None,
        set: vec![],
        force: true,
    };
    assert!(args.resolve().unwrap().train.skip_memory_check);
    let args = mixpg::cli::TrainArgs {
        force: false,
        ..args
    };
    assert!(!args.resolve().unwrap().train.skip_memory_check);

    let mut bench = mixpg::cli::bench::BenchArgs::new("path_tracking", &["td3"], "unused".as_ref());
    let plan = bench.plan().unwrap();
    assert!(!plan.runs[0].cfg.train.skip_memory_check);
    bench.force = true;
    let plan = bench.plan().unwrap();
    assert!(plan.runs[0].cfg.train.skip_memory_check);
}
