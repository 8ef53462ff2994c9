//! Faults and data safety of both runtimes: the regression tests of the bugs B1–B5 (issue 10),
//! faults injected into every role, kill -9 and resume, corrupt and unwritable checkpoints.
//! Small networks on `lqr`, so the module runs in seconds.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::run_bounded;
use mixpg::checkpoint::Checkpoint;
use mixpg::config::Config;
use mixpg::runtime::AsyncTrainer;
use mixpg::runtime::serial::latest_checkpoint;

fn cfg(sets: &[&str]) -> Config {
    common::async_lqr_config(sets)
}

fn cfg_err(sets: &[&str]) -> String {
    format!("{:#}", common::async_lqr_config_result(sets).unwrap_err())
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mixpg-faults-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn mixpg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mixpg"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Run in a thread; fail the test instead of hanging.
/// The rows of `progress.csv` as cells.
fn rows(dir: &Path) -> Vec<Vec<String>> {
    fs::read_to_string(dir.join("progress.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

/// (iteration, env_steps, nonfinite_skipped) of a row.
fn counts(row: &[String]) -> (u64, u64, u64) {
    (
        row[0].parse().unwrap(),
        row[2].parse().unwrap(),
        row[11].parse().unwrap(),
    )
}

/// The newest checkpoint loads and holds iteration `k`.
fn assert_checkpoint_at(dir: &Path, k: u64) {
    let ck = Checkpoint::load(&latest_checkpoint(dir).unwrap().unwrap()).unwrap();
    assert_eq!(ck.counter("iteration").unwrap(), k);
}

/// B1: a buffer stopped by a fault no longer stalls shutdown for 60 s, and the final checkpoint
/// is still written (without that buffer's contents).
#[test]
fn b1_dead_buffer_stops_quickly_with_a_final_checkpoint() {
    let dir = tempdir("b1");
    let c = cfg(&[
        "train.iterations=100000",
        "runtime.on_panic=\"stop\"",
        "runtime.inject_panic=\"buffer:0:50\"",
    ]);
    let t = AsyncTrainer::new(c, &dir).unwrap().quiet();
    let t0 = Instant::now();
    let (r, t) = run_bounded(t, Duration::from_secs(120));
    let took = t0.elapsed();
    let err = format!("{:#}", r.unwrap_err());
    assert!(
        err.contains("buffer #0") && err.contains("panicked"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "shutdown took {took:?}");
    let k = t.iteration();
    assert_eq!(counts(rows(&dir).last().unwrap()).0, k);
    assert_checkpoint_at(&dir, k);
    let ck = Checkpoint::load(&latest_checkpoint(&dir).unwrap().unwrap()).unwrap();
    assert!(
        ck.counter("replay/len").is_err(),
        "the dead buffer was saved"
    );
    assert!(ck.counter("replay1/len").unwrap() > 0);
    // The run resumes (buffer 0 starts empty and is refilled).
    fs::write(
        dir.join("config.toml"),
        fs::read_to_string(dir.join("config.toml"))
            .unwrap()
            .replace("inject_panic = \"buffer:0:50\"", ""),
    )
    .unwrap();
    let resumed = AsyncTrainer::resume(&dir)
        .unwrap()
        .quiet()
        .time_limit(Duration::from_millis(1500));
    let (r, resumed) = run_bounded(resumed, Duration::from_secs(60));
    r.unwrap();
    assert!(resumed.iteration() > k);
    let _ = fs::remove_dir_all(&dir);
}

/// B2: after a resume the actors stay paced (one collection per `collect_interval` updates of
/// the session), instead of running free until the absolute version's budget is used.
#[test]
fn b2_resumed_actors_are_paced_by_the_session_updates() {
    let dir = tempdir("b2");
    let c = cfg(&["runtime.actors=1", "train.iterations=600"]);
    let (r, _) = run_bounded(
        AsyncTrainer::new(c, &dir).unwrap().quiet(),
        Duration::from_secs(120),
    );
    r.unwrap();
    let before = counts(rows(&dir).last().unwrap());
    assert_eq!(before.0, 600);
    let text = fs::read_to_string(dir.join("config.toml")).unwrap();
    fs::write(
        dir.join("config.toml"),
        text.replace("iterations = 600", "iterations = 700"),
    )
    .unwrap();
    let (r, _) = run_bounded(
        AsyncTrainer::resume(&dir).unwrap().quiet(),
        Duration::from_secs(120),
    );
    r.unwrap();
    let after = counts(rows(&dir).last().unwrap());
    assert_eq!(after.0, 700);
    // 100 updates / collect_interval 2 + 1 in flight, of 8 steps × 8 agents each.
    let per_collection = 64;
    let budget = (100 / 2 + 1 + 1) * per_collection;
    assert!(
        after.1 - before.1 <= budget,
        "{} transitions collected in 100 resumed updates (paced budget {budget})",
        after.1 - before.1
    );
    let _ = fs::remove_dir_all(&dir);
}

/// B3: with one buffer, a restarted (empty) buffer is refilled by unpaced actors instead of
/// livelocking the run.
#[test]
fn b3_restarted_single_buffer_is_refilled() {
    let dir = tempdir("b3");
    let c = cfg(&[
        "runtime.buffers=1",
        "runtime.experience_queue=2",
        "runtime.gradient_queue=2",
        "algo.collect_interval=50",
        "algo.warmup_samples=2000",
        "train.iterations=300",
        "train.eval_interval=300",
        "train.checkpoint_interval=300",
        "runtime.on_panic=\"restart\"",
        "runtime.inject_panic=\"buffer:0:200\"",
    ]);
    let (r, t) = run_bounded(
        AsyncTrainer::new(c, &dir).unwrap().quiet(),
        Duration::from_secs(90),
    );
    let s = r.unwrap();
    assert_eq!(t.iteration(), 300);
    assert_eq!(s.restarts, 1, "{:?}", s.faults);
    assert!(s.faults[0].contains("buffer #0"), "{:?}", s.faults);
    let _ = fs::remove_dir_all(&dir);
}

/// B4: a non-finite gradient is skipped once and never re-applied by gradient reuse.
#[test]
fn b4_nonfinite_gradient_is_not_reused() {
    let dir = tempdir("b4");
    let c = cfg(&[
        "runtime.learners=1",
        "train.iterations=200",
        "algo.batch_size=256",
        "algo.horizon=25",
        "runtime.grad_max_reuse=25",
        "runtime.inject_panic=\"learner:0:3:nan\"",
    ]);
    let (r, t) = run_bounded(
        AsyncTrainer::new(c, &dir).unwrap().quiet(),
        Duration::from_secs(120),
    );
    let s = r.unwrap();
    assert_eq!(t.iteration(), 200);
    let last = counts(rows(&dir).last().unwrap());
    assert_eq!(last.2, 1, "non-finite steps counted");
    // Reuse did happen around it (otherwise the test proves nothing).
    assert!(s.staleness.iter().any(|&x| x > 0));
    let _ = fs::remove_dir_all(&dir);
}

/// B5: a buffer smaller than the warm-up is rejected up front (it used to hang both runtimes).
#[test]
fn b5_buffer_smaller_than_warmup_is_rejected() {
    let e = cfg_err(&["runtime.mode=\"serial\"", "algo.buffer_capacity=300"]);
    assert!(
        e.contains("algo.buffer_capacity") && e.contains("algo.warmup_samples"),
        "{e}"
    );
    // Async: each buffer needs its share, ceil(400 / 2) = 200.
    cfg(&["algo.buffer_capacity=200"]);
    let e = cfg_err(&["algo.buffer_capacity=199"]);
    assert!(
        e.contains("algo.buffer_capacity")
            && e.contains("algo.warmup_samples")
            && e.contains("runtime.buffers")
            && e.contains("per buffer"),
        "{e}"
    );
    // The reported reproduction ends at once with the message instead of spinning.
    let out = tempdir("b5");
    let o = mixpg()
        .args(["train", "--config"])
        .arg(repo("configs/pendulum/td3.toml"))
        .args(["--set", "algo.buffer_capacity=1000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("algo.buffer_capacity") && err.contains("algo.warmup_samples"),
        "{err}"
    );
    assert!(!out.join("progress.csv").exists());
}

#[test]
fn runtime_settings_out_of_range_are_rejected() {
    let e = cfg_err(&["runtime.experience_queue=1000000000"]);
    assert!(e.contains("runtime.experience_queue"), "{e}");
    let e = cfg_err(&["runtime.gradient_queue=1000000000"]);
    assert!(e.contains("runtime.gradient_queue"), "{e}");
    let e = cfg_err(&["runtime.inject_panic=\"buffer:2:10\""]);
    assert!(
        e.contains("runtime.inject_panic") && e.contains("runtime.buffers"),
        "{e}"
    );
    let e = cfg_err(&["runtime.inject_panic=\"learner:0:10:inf\""]);
    assert!(e.contains("runtime.inject_panic"), "{e}");
    cfg(&["runtime.inject_panic=\"learner:1:10:nan\""]);
    cfg(&["runtime.inject_panic=\"checkpoint:0:10\""]);
    // 1e-3 × 200 transitions of warm-up per buffer cannot pay for one batch of 64.
    let e = cfg_err(&["runtime.samples_per_insert=0.001"]);
    assert!(
        e.contains("runtime.samples_per_insert") && e.contains("algo.batch_size"),
        "{e}"
    );
    cfg(&["runtime.samples_per_insert=0"]);
    cfg(&["runtime.samples_per_insert=0.5"]);
}

// ---------------------------------------------------------------------------------------------
// Data safety: corrupt checkpoints, leftovers, locks, signals, kill -9, disk full.

/// Write the LQR config in `mode` with `sets` applied to `dir/cfg.toml`.
fn config_file(dir: &Path, mode: &str, sets: &[&str]) -> PathBuf {
    let mut all = vec![format!("runtime.mode=\"{mode}\"")];
    all.extend(sets.iter().map(|s| s.to_string()));
    let c = Config::from_toml_str(common::ASYNC_LQR, &all).unwrap();
    fs::create_dir_all(dir).unwrap();
    let path = dir.join("cfg.toml");
    fs::write(&path, c.to_toml()).unwrap();
    path
}

/// Set `train.iterations` of a run's config.toml.
fn set_iterations(run: &Path, n: u64) {
    let p = run.join("config.toml");
    let text = fs::read_to_string(&p).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("iterations = "))
        .unwrap();
    fs::write(&p, text.replace(line, &format!("iterations = {n}"))).unwrap();
}

fn run_cli(args: &[&str], run: &Path) -> (bool, String) {
    let o = mixpg().args(args).arg(run).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn ckpt(run: &Path, k: u64) -> PathBuf {
    run.join("checkpoints").join(format!("ckpt-{k:09}"))
}

/// A short serial run in `root/run` with checkpoints at 20 and 40.
fn short_serial_run(root: &Path) -> PathBuf {
    let c = config_file(
        root,
        "serial",
        &[
            "train.iterations=40",
            "train.checkpoint_interval=20",
            "train.eval_interval=20",
        ],
    );
    let run = root.join("run");
    let o = mixpg()
        .args(["train", "--config"])
        .arg(&c)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ckpt(&run, 20).exists() && ckpt(&run, 40).exists());
    run
}

#[test]
fn resume_and_eval_fall_back_to_the_newest_checkpoint_that_loads() {
    for (case, damage) in [("flip", 0usize), ("truncate", 1), ("meta", 2), ("shape", 3)] {
        let root = tempdir(&format!("fallback-{case}"));
        let run = short_serial_run(&root);
        let newest = ckpt(&run, 40);
        match damage {
            0 => {
                let p = newest.join("arrays.bin");
                let mut b = fs::read(&p).unwrap();
                b[1000] ^= 0x40;
                fs::write(&p, b).unwrap();
            }
            1 => {
                let p = newest.join("arrays.bin");
                let b = fs::read(&p).unwrap();
                fs::write(&p, &b[..b.len() / 2]).unwrap();
            }
            2 => {
                // Valid JSON with a changed counter: only the meta checksum catches it.
                let p = newest.join("meta.json");
                let t = fs::read_to_string(&p).unwrap();
                assert!(t.contains("\"iteration\": 40"));
                fs::write(&p, t.replace("\"iteration\": 40", "\"iteration\": 41")).unwrap();
            }
            _ => {
                // A shape whose size overflows, with a matching meta checksum.
                let p = newest.join("meta.json");
                let t = fs::read_to_string(&p).unwrap();
                let t = t.replacen("\"shape\": [", "\"shape\": [4611686018427387904, ", 1);
                fs::write(&p, &t).unwrap();
                fs::write(
                    newest.join("meta.fnv1a"),
                    format!("{:016x}\n", mixpg::checkpoint::fnv1a(t.as_bytes())),
                )
                .unwrap();
            }
        }
        let err = format!("{:#}", Checkpoint::load(&newest).unwrap_err());
        assert!(err.contains("corrupt"), "{case}: {err}");
        let (ok, stderr) = run_cli(&["eval", "--episodes", "2", "--run"], &run);
        assert!(ok, "{case}: {stderr}");
        assert!(
            stderr.contains("warning") && stderr.contains("ckpt-000000040"),
            "{case}: {stderr}"
        );
        set_iterations(&run, 60);
        let (ok, stderr) = run_cli(&["resume", "--run"], &run);
        assert!(ok, "{case}: {stderr}");
        assert!(
            stderr.contains("ckpt-000000040") && stderr.contains("iteration 20"),
            "{case}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        let its: Vec<u64> = rows(&run).iter().map(|r| counts(r).0).collect();
        assert!(its.windows(2).all(|w| w[0] < w[1]), "{case}: {its:?}");
        assert_eq!(*its.last().unwrap(), 60);
        assert_checkpoint_at(&run, 60);
        let _ = fs::remove_dir_all(&root);
    }
}

#[test]
fn no_loadable_checkpoint_is_a_clear_error() {
    let root = tempdir("none-loads");
    let run = short_serial_run(&root);
    for k in [20, 40] {
        fs::write(ckpt(&run, k).join("meta.json"), "{").unwrap();
    }
    let (ok, stderr) = run_cli(&["resume", "--run"], &run);
    assert!(!ok);
    assert!(
        stderr.contains("no checkpoint") && stderr.contains("can be loaded"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_second_process_on_one_run_is_refused_and_a_stale_lock_is_taken_over() {
    let root = tempdir("lock");
    let run = short_serial_run(&root);
    assert!(!run.join("lock").exists(), "the lock outlived the run");
    set_iterations(&run, 60);
    // A live holder (this test process) is named in the error.
    let me = std::process::id();
    fs::write(run.join("lock"), format!("{me}\n")).unwrap();
    let (ok, stderr) = run_cli(&["resume", "--run"], &run);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("process {me}")) && stderr.contains("lock"),
        "{stderr}"
    );
    assert_eq!(
        counts(rows(&run).last().unwrap()).0,
        40,
        "the run was touched"
    );
    // In-process too: a trainer holds the lock until its run ends.
    fs::remove_file(run.join("lock")).unwrap();
    let held = mixpg::runtime::Trainer::resume(&run).unwrap();
    let err = format!("{:#}", mixpg::runtime::Trainer::resume(&run).err().unwrap());
    assert!(err.contains(&format!("process {me}")), "{err}");
    drop(held);
    // A holder that no longer runs (kill -9) is taken over with a warning.
    fs::write(run.join("lock"), "4194999\n").unwrap();
    let (ok, stderr) = run_cli(&["resume", "--run"], &run);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("4194999"), "{stderr}");
    assert!(!run.join("lock").exists());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn leftover_temporary_checkpoints_are_pruned() {
    let root = tempdir("tmp-prune");
    let run = short_serial_run(&root);
    let left = run.join("checkpoints").join("ckpt-000000050.tmp");
    fs::create_dir_all(&left).unwrap();
    fs::write(left.join("arrays.bin"), b"partial").unwrap();
    set_iterations(&run, 60);
    let (ok, stderr) = run_cli(&["resume", "--run"], &run);
    assert!(ok, "{stderr}");
    assert!(!left.exists());
    let _ = fs::remove_dir_all(&root);
}

/// Wait until `run` has a checkpoint with `iteration >= k` (the child still running).
fn wait_for_checkpoint(child: &mut std::process::Child, run: &Path, k: u64) {
    let t0 = Instant::now();
    loop {
        if let Some(p) = latest_checkpoint(run).ok().flatten()
            && p.file_name().unwrap().to_string_lossy()[5..]
                .parse::<u64>()
                .unwrap()
                >= k
        {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its checkpoint at {k}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint at {k}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for a child with a bound; its stderr.
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> (bool, String) {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < limit, "the process did not end in {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn sigterm_and_sighup_stop_with_a_final_row_and_checkpoint_in_both_modes() {
    for (mode, signal) in [("serial", "TERM"), ("async", "HUP"), ("async", "TERM")] {
        let root = tempdir(&format!("signal-{mode}-{signal}"));
        let c = config_file(
            &root,
            mode,
            &[
                "train.iterations=1000000",
                "train.checkpoint_interval=50",
                "train.eval_interval=1000000",
            ],
        );
        let run = root.join("run");
        let mut child = mixpg()
            .args(["train", "--config"])
            .arg(&c)
            .arg("--out")
            .arg(&run)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_checkpoint(&mut child, &run, 50);
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let (ok, stderr) = wait_bounded(child, Duration::from_secs(60));
        assert!(ok, "{mode} {signal}: {stderr}");
        assert!(stderr.contains("interrupt"), "{mode} {signal}: {stderr}");
        let k = counts(rows(&run).last().unwrap()).0;
        assert!(k >= 50, "{mode} {signal}");
        assert_checkpoint_at(&run, k);
        assert!(!run.join("lock").exists());
        let _ = fs::remove_dir_all(&root);
    }
}

#[test]
fn kill_9_then_resume_replays_the_rows_of_an_uninterrupted_run() {
    let root = tempdir("kill9");
    let sets = [
        "train.iterations=600",
        "train.checkpoint_interval=50",
        "train.eval_interval=300",
    ];
    let c = config_file(&root, "serial", &sets);
    let run = root.join("run");
    let mut child = mixpg()
        .args(["train", "--config"])
        .arg(&c)
        .arg("--out")
        .arg(&run)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_checkpoint(&mut child, &run, 100);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = counts(rows(&run).last().unwrap()).0;
    assert!(killed_at < 600, "the run was not interrupted");
    let (ok, stderr) = run_cli(&["resume", "--run"], &run);
    assert!(ok, "{stderr}");
    // The uninterrupted reference, in-process.
    let mut all = vec!["runtime.mode=\"serial\"".to_string()];
    all.extend(sets.iter().map(|s| s.to_string()));
    let reference = root.join("reference");
    mixpg::runtime::Trainer::new(
        Config::from_toml_str(common::ASYNC_LQR, &all).unwrap(),
        &reference,
    )
    .unwrap()
    .quiet()
    .run()
    .unwrap();
    let strip = |d: &Path| -> Vec<Vec<String>> {
        rows(d)
            .into_iter()
            .map(|mut r| {
                for i in [1, 9, 10] {
                    r[i].clear(); // wall_s, pg_time_ms, update_time_ms
                }
                r
            })
            .collect()
    };
    let (got, want) = (strip(&run), strip(&reference));
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_full_disk_fails_the_checkpoint_clearly_and_keeps_the_older_ones() {
    let root = tempdir("disk-full");
    let run = short_serial_run(&root);
    set_iterations(&run, 60);
    let size = fs::metadata(ckpt(&run, 40).join("arrays.bin"))
        .unwrap()
        .len();
    // Files may not grow past half a checkpoint (ulimit -f counts 512-byte blocks in sh);
    // SIGXFSZ is ignored so that the write fails with EFBIG like on a full disk.
    let blocks = size / 2 / 512;
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" resume --run \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_mixpg"))
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("ckpt-000000060.tmp") && stderr.contains("arrays.bin"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!ckpt(&run, 60).exists());
    for k in [20, 40] {
        Checkpoint::load(&ckpt(&run, k)).unwrap();
    }
    assert!(!run.join("lock").exists());
    // With space again the run continues from 40 and the partial write is cleared.
    let (ok, stderr) = run_cli(&["resume", "--run"], &run);
    assert!(ok, "{stderr}");
    assert_checkpoint_at(&run, 60);
    assert!(!run.join("checkpoints").join("ckpt-000000060.tmp").exists());
    let _ = fs::remove_dir_all(&root);
}

// ---------------------------------------------------------------------------------------------
// The fault matrix: each role × on_panic × 1 and 2 buffers.

/// Rewrite a run's config.toml without the injected fault and with `n` iterations.
fn without_fault(run: &Path, n: u64) {
    let p = run.join("config.toml");
    let text: String = fs::read_to_string(&p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("inject_panic"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&p, text).unwrap();
    set_iterations(run, n);
}

/// Inject `fault` with `on_panic` and `buffers`; check the end, the reason, the last
/// checkpoint and that a resume continues to the end.
fn fault_case(fault: &str, on_panic: &str, buffers: usize) {
    let case = format!("{fault} {on_panic} buffers={buffers}");
    let dir = tempdir(&format!(
        "matrix-{}-{on_panic}-{buffers}",
        fault.replace(':', "_")
    ));
    let n = 200;
    // One learner for a learner fault, so that the faulty learner cannot be left out of the run
    // by a machine too loaded to start it before the other finishes (the actor is already one).
    let learners = if fault.starts_with("learner") { 1 } else { 2 };
    let c = cfg(&[
        &format!("runtime.learners={learners}"),
        &format!("runtime.buffers={buffers}"),
        &format!("train.iterations={n}"),
        "train.checkpoint_interval=50",
        "train.eval_interval=100",
        &format!("runtime.on_panic=\"{on_panic}\""),
        &format!("runtime.inject_panic=\"{fault}\""),
    ]);
    let t0 = Instant::now();
    let (r, t) = run_bounded(
        AsyncTrainer::new(c, &dir).unwrap().quiet(),
        Duration::from_secs(60),
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(30), "{case}: took {took:?}");
    let k = t.iteration();
    let role = fault.split(':').next().unwrap();
    let resume_from = if role == "checkpoint" {
        // Every checkpoint write from iteration 100 on fails; the run stops at the first one
        // (with either on_panic) and keeps the checkpoint of 50.
        let err = format!("{:#}", r.unwrap_err());
        assert!(
            err.contains("checkpoint of iteration 100") && err.contains("injected"),
            "{case}: {err}"
        );
        assert_eq!(k, 100, "{case}");
        assert_checkpoint_at(&dir, 50);
        50
    } else if on_panic == "stop" {
        let err = format!("{:#}", r.unwrap_err());
        assert!(
            err.contains(&format!("{role} #0")) && err.contains("panicked"),
            "{case}: {err}"
        );
        eprintln!("matrix: {case}: {err}");
        assert!(k < n, "{case}");
        assert_eq!(counts(rows(&dir).last().unwrap()).0, k, "{case}");
        assert_checkpoint_at(&dir, k);
        k
    } else {
        let s = r.unwrap();
        assert_eq!(k, n, "{case}");
        assert_eq!(s.restarts, 1, "{case}: {:?}", s.faults);
        assert!(
            s.faults[0].contains(&format!("{role} #0")) && s.faults[0].contains("panicked"),
            "{case}: {:?}",
            s.faults
        );
        assert_checkpoint_at(&dir, n);
        n
    };
    eprintln!("matrix: {case}: ended at iteration {k} in {took:.1?}, resumed from {resume_from}");
    let target = resume_from.max(n) + 50;
    without_fault(&dir, target);
    let resumed = AsyncTrainer::resume(&dir).unwrap().quiet();
    assert_eq!(resumed.iteration(), resume_from, "{case}");
    let (r, resumed) = run_bounded(resumed, Duration::from_secs(60));
    r.unwrap();
    assert_eq!(resumed.iteration(), target, "{case}");
    assert_checkpoint_at(&dir, target);
    let its: Vec<u64> = rows(&dir).iter().map(|r| counts(r).0).collect();
    assert!(its.windows(2).all(|w| w[0] < w[1]), "{case}: {its:?}");
    let _ = fs::remove_dir_all(&dir);
}

fn fault_matrix(fault: &str) {
    for on_panic in ["stop", "restart"] {
        for buffers in [1, 2] {
            fault_case(fault, on_panic, buffers);
        }
    }
}

#[test]
fn matrix_buffer_faults() {
    fault_matrix("buffer:0:50");
}

#[test]
fn matrix_actor_faults() {
    fault_matrix("actor:0:30");
}

#[test]
fn matrix_learner_faults() {
    fault_matrix("learner:0:5");
}

#[test]
fn matrix_checkpoint_write_faults() {
    fault_matrix("checkpoint:0:100");
}

#[test]
fn resume_cuts_both_logs_after_the_checkpoint_and_drops_torn_rows() {
    let dir = tempdir("logs");
    let (r, _) = run_bounded(
        AsyncTrainer::new(cfg(&[]), &dir).unwrap().quiet(),
        Duration::from_secs(120),
    );
    r.unwrap();
    // As after a kill -9 between the checkpoints of 400 and 600, with a torn last row.
    fs::remove_dir_all(ckpt(&dir, 600)).unwrap();
    let mut text = fs::read_to_string(dir.join("progress.csv")).unwrap();
    text.push('3');
    fs::write(dir.join("progress.csv"), text).unwrap();
    let rt_rows = |d: &Path| -> Vec<u64> {
        fs::read_to_string(d.join("runtime.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect()
    };
    assert!(rt_rows(&dir).iter().any(|&k| k > 400));
    let t = AsyncTrainer::resume(&dir).unwrap();
    assert_eq!(t.iteration(), 400);
    let its: Vec<u64> = rows(&dir).iter().map(|r| counts(r).0).collect();
    assert_eq!(*its.last().unwrap(), 400, "{its:?}");
    assert!(
        rows(&dir)
            .iter()
            .all(|r| r.len() == mixpg::runtime::progress::COLUMNS.len())
    );
    let rt = rt_rows(&dir);
    assert!(rt.iter().all(|&k| k <= 400), "{rt:?}");
    drop(t);
    let _ = fs::remove_dir_all(&dir);
}

/// A second `run` of one async trainer is refused: it would checkpoint empty buffers over the
/// final checkpoint of the first.
#[test]
fn an_async_trainer_runs_once() {
    let dir = tempdir("twice");
    let c = cfg(&["train.iterations=50", "train.checkpoint_interval=50"]);
    let (r, mut t) = run_bounded(
        AsyncTrainer::new(c, &dir).unwrap().quiet(),
        Duration::from_secs(60),
    );
    r.unwrap();
    let err = format!("{:#}", t.run().unwrap_err());
    assert!(
        err.contains("already run") && err.contains("resume"),
        "{err}"
    );
    let ck = Checkpoint::load(&latest_checkpoint(&dir).unwrap().unwrap()).unwrap();
    assert!(ck.counter("replay/len").unwrap() + ck.counter("replay1/len").unwrap() >= 400);
    let _ = fs::remove_dir_all(&dir);
}
