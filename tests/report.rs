//! Report on synthetic runs with hand-computed expectations.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use mixpg::report::{AlgoRow, parse_progress, write_report};

const HEADER: &str = "iteration,wall_s,env_steps,eval_return_mean,eval_return_std,w_data,w_model,q_loss,policy_loss,pg_time_ms,update_time_ms";

/// Fresh scratch directory under the system temp dir (no tempfile crate).
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mixpg-report-test-{}-{}-{}",
        std::process::id(),
        name,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The display names of a table's rows, in order.
fn row_names(rows: &[AlgoRow]) -> Vec<&str> {
    rows.iter().map(|r| r.display.as_str()).collect()
}

/// progress.csv with evaluations at the given iterations plus a non-evaluation row after each
/// (empty eval cells), with timing values `pg`/`upd` on every row (empty `pg` on eval rows).
fn progress(evals: &[(u64, f64)], pg: f64, upd: f64) -> String {
    let mut s = format!("{HEADER}\n");
    for &(it, r) in evals {
        s.push_str(&format!("{it},1.0,{it},{r},0.5,0.1,0.9,1.0,-1.0,,{upd}\n"));
        let it2 = it + 1000;
        s.push_str(&format!("{it2},2.0,{it2},,,0.1,0.9,1.0,-1.0,{pg},{upd}\n"));
    }
    s
}

fn write_run(
    root: &Path,
    task: &str,
    algo: &str,
    seed: u32,
    csv: Option<&str>,
    config: Option<&str>,
) {
    let dir = root.join(task).join(algo).join(format!("seed{seed}"));
    fs::create_dir_all(&dir).unwrap();
    if let Some(c) = csv {
        fs::write(dir.join("progress.csv"), c).unwrap();
    }
    if let Some(c) = config {
        fs::write(dir.join("config.toml"), c).unwrap();
    }
}

fn config(task: &str, algo: &str) -> String {
    format!(
        "seed = 1\n\n[task]\nname = \"{task}\"\nhorizon = 200\n\n[algo]\nname = \"{algo}\"\nlr = 0.001\n"
    )
}

/// Builds the synthetic runs directory used by most tests.
fn fixture() -> PathBuf {
    let root = scratch("runs");
    let runs = root.join("RUNS");
    let pt = "path_tracking";
    let mpg = [
        vec![(0, -500.0), (3000, -50.0), (6000, -20.0), (9000, -8.0)],
        // Exactly -30 at 9000 (goal reached with equality), then worse: best is -30.
        vec![
            (0, -600.0),
            (3000, -120.0),
            (6000, -40.0),
            (9000, -30.0),
            (12000, -60.0),
        ],
        vec![(0, -400.0), (3000, -90.0), (6000, -9.0), (9000, -4.0)],
    ];
    for (s, ev) in mpg.iter().enumerate() {
        write_run(
            &runs,
            pt,
            "mpg_v1",
            s as u32,
            Some(&progress(ev, 10.0 + s as f64, 2.0)),
            Some(&config(pt, "mpg_v1")),
        );
    }
    // TD3 never reaches any goal. Best returns -150 and -200.
    write_run(
        &runs,
        pt,
        "td3",
        0,
        Some(&progress(
            &[(0, -700.0), (3000, -150.0), (6000, -300.0)],
            1.0,
            1.5,
        )),
        Some(&config(pt, "td3")),
    );
    // No config.toml: task/algo from the path.
    write_run(
        &runs,
        pt,
        "td3",
        1,
        Some(&progress(&[(0, -800.0), (3000, -200.0)], 1.2, 1.4)),
        None,
    );
    // Pendulum SAC, one seed.
    write_run(
        &runs,
        "pendulum",
        "sac",
        0,
        Some(&progress(
            &[(0, -50.0), (3000, -1.5), (6000, -0.05)],
            0.5,
            0.7,
        )),
        Some(&config("pendulum", "sac")),
    );

    // Bad runs, to be skipped.
    let bad_csv = format!("{HEADER}\n0,1.0,0,-500,1,0.1,0.9,1,1,1,1\n3000,1.0,0,-400,1,0.1\n");
    write_run(
        &runs,
        pt,
        "ddpg",
        0,
        Some(&bad_csv),
        Some(&config(pt, "ddpg")),
    );
    write_run(
        &runs,
        "pendulum",
        "nadp",
        0,
        Some(&progress(&[(0, -5.0)], 1.0, 1.0)),
        Some("[task\nname = "),
    );
    write_run(
        &runs,
        "pendulum",
        "nadp",
        1,
        None,
        Some(&config("pendulum", "nadp")),
    );
    root
}

fn cells(md: &str, task_heading: &str, algo: &str) -> Vec<String> {
    let sec = md
        .split(&format!("## {task_heading}\n"))
        .nth(1)
        .expect("task section");
    let line = sec
        .lines()
        .find(|l| l.starts_with(&format!("| {algo} |")))
        .unwrap_or_else(|| panic!("row {algo} in {task_heading}"));
    line.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn table_values_by_hand() {
    let root = fixture();
    let out = root.join("out");
    let summary = write_report(&root.join("RUNS"), &out).unwrap();
    assert_eq!(summary.runs_used, 6);
    assert_eq!(summary.skipped.len(), 3, "{:?}", summary.skipped);

    let pt = summary
        .tables
        .iter()
        .find(|t| t.task.name() == "path_tracking")
        .unwrap();
    assert_eq!(pt.goals, vec![-100.0, -30.0, -10.0, -5.0]);
    let names = row_names(&pt.rows);
    assert_eq!(names, ["MPG-v1", "TD3"]);
    let mpg = &pt.rows[0];
    // Best per seed: -8, -30, -4 → mean -14, s = sqrt(172) ... CI = t(0.975,2) * s / sqrt(3).
    assert_eq!(mpg.best_returns, vec![-8.0, -30.0, -4.0]);
    assert!((mpg.performance.mean + 14.0).abs() < 1e-9);
    let s = ((36.0 + 256.0 + 100.0) / 2.0f64).sqrt();
    let ci = 4.302_652_7 * s / 3f64.sqrt();
    assert!((mpg.performance.ci95.unwrap() - ci).abs() < 1e-6);
    assert!((ci - 34.7779).abs() < 1e-3);
    // Reach iterations per seed.
    assert_eq!(
        mpg.reach[0].per_seed,
        vec![Some(3000), Some(6000), Some(3000)]
    );
    assert_eq!(
        mpg.reach[1].per_seed,
        vec![Some(6000), Some(9000), Some(6000)]
    );
    assert_eq!(mpg.reach[2].per_seed, vec![Some(9000), None, Some(6000)]);
    assert_eq!(mpg.reach[3].per_seed, vec![None, None, Some(9000)]);
    assert_eq!(mpg.reach[0].mean(), Some(4000.0));
    assert!((mpg.reach[0].stats.ci95.unwrap() - 4302.6527).abs() < 1e-3);
    // Averaged over the 2 seeds that reached -10 only.
    assert_eq!(mpg.reach[2].reached, 2);
    assert_eq!(mpg.reach[2].mean(), Some(7500.0));
    let td3 = &pt.rows[1];
    assert!(
        td3.reach
            .iter()
            .all(|g| g.reached == 0 && g.mean().is_none())
    );
    assert_eq!(td3.best_returns, vec![-150.0, -200.0]);

    let md = fs::read_to_string(out.join("table1.md")).unwrap();
    let row = cells(&md, "Path tracking", "MPG-v1");
    assert_eq!(
        row,
        [
            "MPG-v1",
            "3",
            "**-14.00 ± 34.78**",
            "-24.00 ± 77.61",
            "**4000 ± 4303**",
            "**7000 ± 4303**",
            "7500 ± 19059 (2/3)",
            "9000 (1/3)"
        ]
    );
    let row = cells(&md, "Path tracking", "TD3");
    assert_eq!(
        row,
        [
            "TD3",
            "2",
            "-175.00 ± 317.66",
            "-250.00 ± 635.31",
            "–",
            "–",
            "–",
            "–"
        ]
    );
    assert!(md.contains("| Algorithm | Seeds | Performance | Final | Iterations to -100 | Iterations to -30 | Iterations to -10 | Iterations to -5 |"));
    // One seed: mean only, no CI.
    let row = cells(&md, "Inverted pendulum", "SAC");
    assert_eq!(
        row,
        [
            "SAC",
            "1",
            "**-0.05**",
            "-0.05",
            "**3000**",
            "**3000**",
            "**6000**",
            "–"
        ]
    );
    assert!(md.contains("## Skipped runs"));
    // Below each algorithm's rows, the paper's, in italics.
    assert!(
        md.contains(
            "| *MPG-v1 (paper, 100k)* | 5 | *-3.73 ± 1.16* | – | *3000 ± 0* | *9000 ± 4898* |"
        ),
        "{md}"
    );
    assert!(!md.contains("| DDPG |"));

    let csv = fs::read_to_string(out.join("table1.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 7 + 4 * 4 + 4);
    assert_eq!(
        &header[..8],
        [
            "task",
            "algo",
            "algorithm",
            "n_seeds",
            "perf_mean",
            "perf_ci95",
            "perf_std",
            "goal_1"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3);
    let r = rows.iter().find(|r| r[1] == "mpg_v1").unwrap();
    assert_eq!(&r[..4], ["path_tracking", "mpg_v1", "MPG-v1", "3"]);
    assert_eq!(r[4].parse::<f64>().unwrap(), -14.0);
    assert!((r[5].parse::<f64>().unwrap() - ci).abs() < 1e-6);
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    assert_eq!(r[col("goal_3")], "-10");
    assert_eq!(r[col("reach_3_mean")], "7500");
    assert_eq!(r[col("reach_3_seeds")], "2");
    assert_eq!(r[col("reach_4_ci95")], "");
    // The final returns -8, -60, -4 (the last evaluation of each seed).
    assert_eq!(r[col("final_mean")], "-24");
    assert!((r[col("final_ci95")].parse::<f64>().unwrap() - 77.606_943).abs() < 1e-5);
    assert_eq!((r[col("iterations")], r[col("variant")]), ("12000", ""));
    let t = rows.iter().find(|r| r[1] == "td3").unwrap();
    assert_eq!((t[col("reach_1_mean")], t[col("reach_1_seeds")]), ("", "0"));
    let sac = rows.iter().find(|r| r[1] == "sac").unwrap();
    assert_eq!((sac[0], sac[5], sac[6]), ("pendulum", "", ""));
    fs::remove_dir_all(&root).ok();
}

#[test]
fn bad_runs_are_skipped_with_reasons() {
    let root = fixture();
    let summary = write_report(&root.join("RUNS"), &root.join("out")).unwrap();
    let reason = |frag: &str| {
        summary
            .skipped
            .iter()
            .find(|s| s.dir.to_string_lossy().contains(frag))
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{frag} not skipped: {:?}", summary.skipped))
    };
    let r = reason("ddpg");
    assert!(
        r.contains("progress.csv") && r.contains("line 3") && r.contains("fields"),
        "{r}"
    );
    assert!(reason("nadp/seed0").contains("invalid TOML"));
    assert!(reason("nadp/seed1").contains("progress.csv is missing"));
    let md = fs::read_to_string(root.join("out/table1.md")).unwrap();
    assert!(md.contains("line 3: 6 fields, header has 11"), "{md}");
    fs::remove_dir_all(&root).ok();
}

#[test]
fn no_valid_run_is_an_error() {
    let root = scratch("allbad");
    let bad = format!("{HEADER}\n0,1.0,0,abc,1,0.1,0.9,1,1,1,1\n");
    write_run(
        &root,
        "pendulum",
        "td3",
        0,
        Some(&bad),
        Some(&config("pendulum", "td3")),
    );
    let err = write_report(&root, &root.join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no valid run") && err.contains("not a number"),
        "{err}"
    );
    assert!(write_report(&root.join("does-not-exist"), &root.join("out2")).is_err());
    fs::remove_dir_all(&root).ok();
}

#[test]
fn progress_parsing_rules() {
    let p = parse_progress(&progress(&[(3000, -2.0), (0, -9.0)], 4.0, 5.0)).unwrap();
    assert_eq!(p.evals, vec![(0, -9.0), (3000, -2.0)]);
    assert_eq!(p.rows, 4);
    assert_eq!(p.pg_time_ms, vec![4.0, 4.0]); // empty on eval rows: skipped
    assert_eq!(p.update_time_ms.len(), 4);
    // Non-finite eval is not an evaluation point; a bad number is an error.
    let t = format!("{HEADER}\n0,1,0,nan,,,,,,1,1\n3000,1,0,-3,,,,,,1,1\n");
    assert_eq!(parse_progress(&t).unwrap().evals, vec![(3000, -3.0)]);
    let t = format!("{HEADER}\n0,1,0,-1,,,,,,x,1\n");
    assert!(parse_progress(&t).unwrap_err().contains("pg_time_ms"));
    assert!(
        parse_progress("a,b\n1,2\n")
            .unwrap_err()
            .contains("iteration")
    );
    assert!(parse_progress("").is_err());
    let t = format!("{HEADER}\n-5,1,0,-1,,,,,,1,1\n");
    assert!(parse_progress(&t).unwrap_err().contains("iteration"));
}

#[test]
fn figures_are_written() {
    let root = fixture();
    let out = root.join("out");
    let summary = write_report(&root.join("RUNS"), &out).unwrap();
    const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    for name in ["curves.png", "convergence.png", "timing.png"] {
        let p = out.join(name);
        assert!(summary.files.contains(&p), "{name} not in summary");
        let bytes = fs::read(&p).unwrap();
        assert!(bytes.len() > 1000, "{name} too small");
        assert_eq!(bytes[..8], PNG_MAGIC, "{name} is not a PNG");
    }
    let svg = fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("MPG-v1") && svg.contains("Inverted pendulum"));
    for name in ["table1.md", "table1.csv"] {
        assert!(fs::metadata(out.join(name)).unwrap().len() > 0);
    }
    fs::remove_dir_all(&root).ok();
}

#[test]
fn config_wins_over_path_with_warning() {
    let root = scratch("mismatch");
    let ev = progress(&[(0, -10.0), (3000, -1.0)], 1.0, 1.0);
    write_run(
        &root,
        "pendulum",
        "td3",
        0,
        Some(&ev),
        Some(&config("pendulum", "mpg_v2")),
    );
    let summary = write_report(&root, &root.join("out")).unwrap();
    assert_eq!(summary.tables[0].rows[0].algo, "mpg_v2");
    assert_eq!(summary.warnings.len(), 1);
    assert!(summary.warnings[0].contains("using the config"));
    fs::remove_dir_all(&root).ok();
}

#[test]
fn runs_differing_in_a_config_key_become_labelled_rows() {
    // Bookkeeping keys (log interval, TensorBoard, the memory check) differ too: no variant.
    let root = scratch("variants");
    let pt = "path_tracking";
    let cfg = |reading: &str, seed: u32| {
        format!(
            "[task]\nname = \"{pt}\"\n\n[algo]\nname = \"mpg_v1\"\nrollout_gradient = \"{reading}\"\n\n[train]\nseed = {seed}\nlog_interval = {}\ntensorboard = {}\nskip_memory_check = {}\n",
            seed + 1,
            seed.is_multiple_of(2),
            seed == 3
        )
    };
    let curves = [
        (0, "all_actions", -50.0),
        (1, "all_actions", -20.0),
        (2, "first_action", -8.0),
        (3, "first_action", -4.0),
    ];
    for (seed, reading, best) in curves {
        write_run(
            &root,
            pt,
            "mpg_v1",
            seed,
            Some(&progress(&[(0, -500.0), (3000, best)], 1.0, 1.0)),
            Some(&cfg(reading, seed)),
        );
    }
    let summary = write_report(&root, &root.join("out")).unwrap();
    let rows = &summary.tables[0].rows;
    let names = row_names(rows);
    assert_eq!(
        names,
        [
            "MPG-v1 [rollout_gradient=all_actions]",
            "MPG-v1 [rollout_gradient=first_action]"
        ]
    );
    assert_eq!(rows[0].best_returns, vec![-50.0, -20.0]);
    assert_eq!(rows[1].best_returns, vec![-8.0, -4.0]);
    let md = fs::read_to_string(root.join("out/table1.md")).unwrap();
    assert!(
        md.contains("| MPG-v1 [rollout_gradient=first_action] |"),
        "{md}"
    );
    // table1.csv names the algorithm and the variant in columns of their own.
    let csv = fs::read_to_string(root.join("out/table1.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(rows[0].starts_with("path_tracking,mpg_v1,"), "{csv}");
    assert!(
        rows[0].ends_with(",3000,rollout_gradient=all_actions")
            && rows[1].ends_with(",3000,rollout_gradient=first_action"),
        "{csv}"
    );
    // Each variant has its own colour in every figure, ...
    let grouped = mixpg::report::group_runs(mixpg::report::load_runs(&root).unwrap().runs);
    let colors = mixpg::report::plots::Colors::new(&grouped);
    let keys: Vec<&String> = grouped.values().flatten().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(colors.of(keys[0]), colors.of(keys[1]));
    // ... a shade of their algorithm's, the second variant's curve dashed.
    assert_eq!(
        colors.of(keys[0]),
        mixpg::report::plots::algo_color("mpg_v1")
    );
    assert!(!colors.dashed(keys[0]) && colors.dashed(keys[1]));

    // A key missing from a config counts as its default: a run written before the key existed
    // (or one that leaves it out) joins the runs that spell the default out, and is labelled by
    // the default where another run differs.
    let partial = scratch("variants-partial");
    let labels = |readings: &[Option<&str>]| -> Vec<String> {
        fs::remove_dir_all(&partial).ok();
        for (seed, reading) in readings.iter().enumerate() {
            let extra = reading.map_or(String::new(), |r| format!("rollout_gradient = \"{r}\"\n"));
            let text = format!("[task]\nname = \"{pt}\"\n\n[algo]\nname = \"mpg_v1\"\n{extra}");
            write_run(
                &partial,
                pt,
                "mpg_v1",
                seed as u32,
                Some(&progress(&[(0, -500.0), (3000, -9.0)], 1.0, 1.0)),
                Some(&text),
            );
        }
        let summary = write_report(&partial, &partial.join("out")).unwrap();
        summary.tables[0]
            .rows
            .iter()
            .map(|r| r.display.clone())
            .collect()
    };
    assert_eq!(labels(&[None, Some("first_action")]), ["MPG-v1"]);
    assert_eq!(
        labels(&[None, Some("all_actions")]),
        [
            "MPG-v1 [rollout_gradient=all_actions]",
            "MPG-v1 [rollout_gradient=first_action]"
        ]
    );
    // A config that no longer parses is compared as written: its missing key is `(unset)`.
    fs::remove_dir_all(&partial).ok();
    for (seed, text) in [
        (
            0,
            format!("[task]\nname = \"{pt}\"\n\n[algo]\nname = \"mpg_v1\"\nno_such_key = 1\n"),
        ),
        (
            1,
            format!(
                "[task]\nname = \"{pt}\"\n\n[algo]\nname = \"mpg_v1\"\nrollout_gradient = \"first_action\"\n"
            ),
        ),
    ] {
        write_run(
            &partial,
            pt,
            "mpg_v1",
            seed,
            Some(&progress(&[(0, -500.0), (3000, -9.0)], 1.0, 1.0)),
            Some(&text),
        );
    }
    let summary = write_report(&partial, &partial.join("out")).unwrap();
    let names = row_names(&summary.tables[0].rows);
    assert!(
        names.iter().any(|n| n.contains("rollout_gradient=(unset)")),
        "{names:?}"
    );
    fs::remove_dir_all(&root).ok();
    fs::remove_dir_all(&partial).ok();
}

#[test]
fn two_grids_reported_together_get_rows_labelled_by_their_differing_key() {
    // Two bench grids with the same layout (task/algo/seedN), differing in one config key.
    let root = scratch("two-grids");
    let pt = "path_tracking";
    for (grid, collect, best) in [
        ("default", "done", -300.0),
        ("reference", "every_step", -4.0),
    ] {
        for seed in 0..2 {
            let text = format!(
                "[task]\nname = \"{pt}\"\n\n[algo]\nname = \"mpg_v1\"\n\n[train]\nseed = {seed}\ncollect_reset = \"{collect}\"\n"
            );
            write_run(
                &root.join(grid),
                pt,
                "mpg_v1",
                seed,
                Some(&progress(&[(0, -500.0), (3000, best)], 1.0, 1.0)),
                Some(&text),
            );
        }
    }
    let out = root.join("out");
    let summary =
        mixpg::report::write_report_of(&[root.join("default"), root.join("reference")], &out)
            .unwrap();
    assert_eq!(summary.runs_used, 4);
    let rows = &summary.tables[0].rows;
    let names = row_names(rows);
    assert_eq!(
        names,
        [
            "MPG-v1 [collect_reset=done]",
            "MPG-v1 [collect_reset=every_step]"
        ]
    );
    assert_eq!(rows[0].best_returns, vec![-300.0, -300.0]);
    assert_eq!(rows[1].best_returns, vec![-4.0, -4.0]);
    let csv = fs::read_to_string(out.join("table1.csv")).unwrap();
    assert!(csv.contains(",3000,collect_reset=every_step\n"), "{csv}");

    // A missing directory among them is an error naming it; none given is an error too.
    let err = mixpg::report::write_report_of(&[root.join("default"), root.join("nope")], &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
    let none: [PathBuf; 0] = [];
    assert!(mixpg::report::write_report_of(&none, &out).is_err());
    fs::remove_dir_all(&root).ok();
}

#[test]
fn learning_curves_are_median_and_interquartile_range() {
    let root = fixture();
    let loaded = mixpg::report::load_runs(&root.join("RUNS")).unwrap();
    let mpg: Vec<_> = loaded
        .runs
        .into_iter()
        .filter(|r| r.algo == "mpg_v1")
        .collect();
    let pts = mixpg::report::plots::curve_points(&mpg);
    // Iteration 3000: seeds at -50, -120, -90 → sorted -120, -90, -50.
    let (it, q25, med, q75) = pts[1];
    assert_eq!(it, 3000.0);
    assert_eq!((q25, med, q75), (-105.0, -90.0, -70.0));
    // Iteration 12000: only one seed (-60).
    assert_eq!(pts.last().unwrap(), &(12000.0, -60.0, -60.0, -60.0));
    fs::remove_dir_all(&root).ok();
}

/// The digest `mixpg train` prints after a run: last and best returns, and the first evaluation
/// that reached each goal (the minimum requirement named).
#[test]
fn run_digest_names_the_best_return_and_the_goals_reached() {
    let root = scratch("digest");
    let csv = progress(&[(0, -500.0), (3000, -25.0), (6000, -40.0)], 1.0, 2.0);
    write_run(
        &root,
        "path_tracking",
        "mpg_v1",
        0,
        Some(&csv),
        Some(&config("path_tracking", "mpg_v1")),
    );
    let runs = mixpg::report::load_runs(&root).unwrap().runs;
    let digest = mixpg::report::run_digest(&runs[0]);
    assert!(
        digest.starts_with(
            "evaluation return -40.00 at iteration 6000, best -25.00 at iteration 3000"
        ),
        "{digest}"
    );
    assert!(
        digest.contains("goal -100: reached at iteration 3000"),
        "{digest}"
    );
    assert!(
        digest.contains("goal -30 (the task's minimum requirement): reached at iteration 3000"),
        "{digest}"
    );
    assert!(digest.contains("goal -10: not reached"), "{digest}");
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn tasks_without_goals_get_no_convergence_figure() {
    // A Gymnasium task without a reward threshold has no goals: curves and timing are drawn,
    // the convergence figure (empty otherwise) is not, and an earlier one is removed.
    let root = scratch("no-goals");
    let runs = root.join("RUNS");
    for seed in 0..2 {
        write_run(
            &runs,
            "Pendulum_v1",
            "td3",
            seed,
            Some(&progress(
                &[(0, -1500.0), (3000, -300.0), (6000, -150.0)],
                1.0,
                2.0,
            )),
            Some(&config("Pendulum_v1", "td3")),
        );
        let dir = runs.join("Pendulum_v1/td3").join(format!("seed{seed}"));
        fs::write(
            dir.join("task.toml"),
            "name = \"Pendulum_v1\"\ntitle = \"Pendulum-v1\"\nobs_dim = 3\nact_dim = 1\n\
             action_low = [-2.0]\naction_high = [2.0]\nepisode_len = 200\n\
             obs_scale = [1.0, 1.0, 1.0]\ngoals = []\n",
        )
        .unwrap();
    }
    let out = root.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("convergence.png"), b"an earlier report's figure").unwrap();
    let summary = write_report(&runs, &out).unwrap();
    assert!(out.join("curves.png").is_file() && out.join("timing.png").is_file());
    assert!(
        !out.join("convergence.png").exists(),
        "no goals, no convergence figure"
    );
    assert!(!summary.files.contains(&out.join("convergence.png")));
    let md = fs::read_to_string(out.join("table1.md")).unwrap();
    assert!(md.contains("Pendulum-v1") && md.contains("TD3"), "{md}");
    fs::remove_dir_all(&root).ok();
}

#[test]
fn settings_of_a_runtime_a_run_did_not_use_are_no_variant() {
    // Serial runs written when Ray's round size defaulted to 2 (spelled out in their configs)
    // and runs with today's default are one experiment; asynchronous runs that differ in it
    // are two.
    let root = scratch("unused-runtime");
    let pt = "path_tracking";
    let cfg = |algo: &str, runtime: &str| {
        format!("[task]\nname = \"{pt}\"\n\n[algo]\nname = \"{algo}\"\n\n[runtime]\n{runtime}")
    };
    let runs = [
        ("mpg_v1", 0, "round_gradients_per_learner = 2\n"),
        ("mpg_v1", 1, ""),
        (
            "td3",
            0,
            "mode = \"async\"\nround_gradients_per_learner = 2\n",
        ),
        ("td3", 1, "mode = \"async\"\n"),
    ];
    for (algo, seed, runtime) in runs {
        write_run(
            &root,
            pt,
            algo,
            seed,
            Some(&progress(&[(0, -500.0), (3000, -20.0)], 1.0, 1.0)),
            Some(&cfg(algo, runtime)),
        );
    }
    let summary = write_report(&root, &root.join("out")).unwrap();
    let names = row_names(&summary.tables[0].rows);
    assert_eq!(
        names,
        [
            "MPG-v1",
            "TD3 [round_gradients_per_learner=2]",
            "TD3 [round_gradients_per_learner=8]"
        ]
    );
    fs::remove_dir_all(&root).ok();
}
