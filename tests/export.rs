//! `mixpg export`: the C99 and Rust files, compiled with `cc -std=c99 -Wall -Werror` and
//! `rustc`, act as the run's saved policy does (deterministic, SAC squashed or not, clipped to
//! the bounds) within 1e-5; bad input gets a clear error. (The ONNX model is checked against
//! onnxruntime in python/tests/test_export.py.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use mixpg::cli::Cli;
use mixpg::runtime::export::{ExportFormat, export};
use mixpg::runtime::{SavedPolicy, Trainer};
use rand::{Rng, SeedableRng};

/// A trained run of `algo` on `task` (a few iterations past the warm-up).
fn trained_run(name: &str, task: &str, algo: &str, extra: &[&str]) -> PathBuf {
    let dir = common::tempdir(&format!("export-{name}"));
    let task = format!("task.name=\"{task}\"");
    let mut sets = vec![
        task.as_str(),
        "train.iterations=30",
        "network.hidden=[48, 40]",
    ];
    sets.extend_from_slice(extra);
    let cfg = common::lqr_config(algo, &sets);
    Trainer::new(cfg, &dir.join("run"))
        .unwrap()
        .quiet()
        .run()
        .unwrap();
    dir
}

/// Observations around the task's typical range, some far outside it (so that an unsquashed
/// SAC mean leaves the bounds and is clipped).
fn observations(p: &SavedPolicy, n: usize) -> Vec<f32> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let scale = &p.spec().obs_scale;
    (0..n * scale.len())
        .map(|i| {
            let spread = if (i / scale.len()).is_multiple_of(4) {
                30.0
            } else {
                2.0
            };
            rng.random_range(-spread..spread) / scale[i % scale.len()]
        })
        .collect()
}

/// Run a compiled driver on `obs` (one observation per line) and parse its actions.
fn run_driver(exe: &Path, obs: &[f32], obs_dim: usize) -> Vec<f32> {
    let input: String = obs
        .chunks(obs_dim)
        .map(|row| {
            let cells: Vec<String> = row.iter().map(|x| format!("{x:e}")).collect();
            cells.join(" ") + "\n"
        })
        .collect();
    let dir = exe.parent().unwrap();
    std::fs::write(dir.join("obs.txt"), input).unwrap();
    let out = Command::new(exe)
        .stdin(std::fs::File::open(dir.join("obs.txt")).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

fn compile(cmd: &mut Command) {
    let out = cmd.output().expect("the compiler runs");
    assert!(
        out.status.success(),
        "compilation failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const C_DRIVER: &str = r#"
#include <stdio.h>
void mixpg_policy(const float *obs, float *act);
#define MAX_DIM 64
int main(void) {
    float obs[MAX_DIM], act[MAX_DIM];
    int i;
    for (;;) {
        for (i = 0; i < OBS; i++) {
            if (scanf("%f", &obs[i]) != 1) {
                return 0;
            }
        }
        mixpg_policy(obs, act);
        for (i = 0; i < ACT; i++) {
            printf("%.9g\n", (double)act[i]);
        }
    }
}
"#;

const RUST_DRIVER: &str = r#"
#[path = "policy.rs"]
mod policy;
use std::io::Read;
fn main() {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).unwrap();
    let values: Vec<f32> = text.split_whitespace().map(|x| x.parse().unwrap()).collect();
    for row in values.chunks_exact(policy::OBS) {
        let mut act = [0.0f32; policy::ACT];
        policy::mixpg_policy(row.try_into().unwrap(), &mut act);
        for a in act {
            println!("{a:e}");
        }
    }
}
"#;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn exported_c_and_rust_policies_act_as_the_saved_policy() {
    for (name, task, algo, extra) in [
        ("pendulum-td3", "pendulum", "td3", &[][..]),
        ("path-tracking-mpg", "path_tracking", "mpg_v1", &[][..]),
        ("lqr-sac", "lqr", "sac", &[][..]),
        (
            "lqr-sac-unsquashed",
            "lqr",
            "sac",
            &["algo.squash=false"][..],
        ),
    ] {
        let dir = trained_run(name, task, algo, extra);
        let run = dir.join("run");
        let p = SavedPolicy::load(&run).unwrap();
        let (o, a) = (p.spec().obs_dim, p.spec().act_dim);
        let obs = observations(&p, 64);
        let expected = p.act(&obs).unwrap();
        let (low, high) = (&p.spec().action_low, &p.spec().action_high);
        let clipped = expected
            .iter()
            .enumerate()
            .filter(|(i, x)| **x == low[i % a] || **x == high[i % a])
            .count();
        if name.ends_with("unsquashed") {
            assert!(clipped > 0, "{name}: the test never reaches the clip");
        }

        export(&run, ExportFormat::C, &dir.join("policy.c")).unwrap();
        std::fs::write(
            dir.join("main.c"),
            format!("#define OBS {o}\n#define ACT {a}\n{C_DRIVER}"),
        )
        .unwrap();
        let c_exe = dir.join("policy-c");
        compile(
            Command::new("cc")
                .args([
                    "-std=c99",
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                    "-pedantic",
                    "-O2",
                    "-o",
                ])
                .arg(&c_exe)
                .arg(dir.join("policy.c"))
                .arg(dir.join("main.c"))
                .arg("-lm"),
        );
        let by_c = run_driver(&c_exe, &obs, o);
        let d = max_abs_diff(&by_c, &expected);
        assert!(d <= 1e-5, "{name}: C differs by {d}");

        export(&run, ExportFormat::Rust, &dir.join("policy.rs")).unwrap();
        std::fs::write(dir.join("main.rs"), RUST_DRIVER).unwrap();
        let rust_exe = dir.join("policy-rust");
        compile(
            Command::new("rustc")
                .args(["--edition", "2021", "-O", "-D", "warnings", "-o"])
                .arg(&rust_exe)
                .arg(dir.join("main.rs")),
        );
        let by_rust = run_driver(&rust_exe, &obs, o);
        let d = max_abs_diff(&by_rust, &expected);
        assert!(d <= 1e-5, "{name}: Rust differs by {d}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn export_refuses_bad_input_with_a_clear_error() {
    let dir = trained_run("errors", "lqr", "td3", &[]);
    let run = dir.join("run");
    let err = |r: anyhow::Result<()>| format!("{:#}", r.unwrap_err());

    let e = err(export(
        &run,
        ExportFormat::Onnx,
        &dir.join("missing/p.onnx"),
    ));
    assert!(e.contains("does not exist") && e.contains("missing"), "{e}");
    let e = err(export(&run, ExportFormat::Onnx, &dir));
    assert!(e.contains("is a directory"), "{e}");
    let empty = common::tempdir("export-no-checkpoint");
    let e = err(export(&empty, ExportFormat::Onnx, &dir.join("p.onnx")));
    assert!(
        e.contains("cannot export") && e.contains("config.toml"),
        "{e}"
    );
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let e = err(export(&run, ExportFormat::C, &dir.join("p.c")));
    assert!(e.contains("no checkpoint"), "{e}");
    assert!(!dir.join("p.c").exists());

    let e = Cli::try_parse_from([
        "mixpg", "export", "--run", "r", "--format", "tflite", "--out", "p",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("unknown export format `tflite` (known: onnx, c, rust)"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn the_onnx_model_holds_the_weights_bit_for_bit() {
    let dir = trained_run("onnx-bits", "pendulum", "td3", &[]);
    let run = dir.join("run");
    let out = dir.join("policy.onnx");
    export(&run, ExportFormat::Onnx, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let p = SavedPolicy::load(&run).unwrap();
    for w in p.params().values() {
        let raw: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(
            bytes.windows(raw.len()).any(|win| win == raw.as_slice()),
            "a parameter tensor is missing from the model"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
