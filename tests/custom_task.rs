//! A task defined outside mixpg (`examples/custom_task.rs`) through the public API: it learns
//! with MPG-v2, runs by name once registered (a grid on the generic configs, its report and its
//! saved policy), and what the task cannot do is refused before a run directory exists; an
//! environment that fails mid-run stops the run with a checkpoint and its error.

mod common;
#[allow(dead_code)]
#[path = "../examples/custom_task.rs"]
mod custom_task;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{eval_returns, tempdir};
use custom_task::{LaneEnv, config, spec, task};
use mixpg::env::{Env, PriorModel, StepOut, Task, TaskSpec, register};
use mixpg::grid::{GridOptions, run_grid};
use mixpg::runtime::{SavedPolicy, Trainer, train_task};

#[test]
fn the_example_task_learns_with_mpg_v2() {
    let dir = tempdir("custom-learns");
    train_task(config(800).unwrap(), task().unwrap(), &dir, |_| {}).unwrap();
    let evals = eval_returns(&dir.join("progress.csv"));
    let (first, best) = (
        evals[0].1,
        evals.iter().map(|e| e.1).fold(f64::MIN, f64::max),
    );
    assert!(
        first < -150.0 && best > -40.0,
        "lane keeping: eval return {first} → best {best}"
    );
    // The run describes its task, so its report needs no code of the task.
    let runs = mixpg::report::load_runs(&dir).unwrap().runs;
    assert_eq!(runs[0].task.display_name(), "Lane keeping (example)");
    assert_eq!(runs[0].task.goals(), [-100.0, -30.0, -10.0]);
}

#[test]
fn a_registered_task_runs_by_name_on_the_generic_configs() {
    register(task().unwrap()).unwrap();
    assert!(register(task().unwrap()).is_err(), "names are unique");
    let root = tempdir("custom-grid");
    let mut grid = GridOptions::new("lane-keeping", &["td3", "mpg_v2"], &root.join("runs"));
    grid.iterations = Some(200);
    grid.set = [
        "algo.warmup_samples=500",
        "train.eval_interval=100",
        "network.hidden=[32, 32]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let summary = run_grid(&grid).unwrap();
    summary.check().unwrap();
    let report = summary.report.expect("the grid's report");
    assert_eq!(
        report.tables[0].task.display_name(),
        "Lane keeping (example)"
    );
    let run = root.join("runs/lane_keeping/mpg_v2/seed0");
    let policy = SavedPolicy::load(&run).unwrap();
    let a = policy.act(&[0.5, 0.1, 9.0]).unwrap();
    let s = spec();
    for (d, x) in a.iter().enumerate() {
        assert!((s.action_low[d]..=s.action_high[d]).contains(x), "{a:?}");
    }
    // Its bytes carry the task description: they load in a process that never saw the task.
    let back = SavedPolicy::from_bytes(&policy.to_bytes()).unwrap();
    assert_eq!(back.spec(), policy.spec());
}

/// `spec()` with a simulator that cannot be set to a state.
fn unsettable() -> TaskSpec {
    TaskSpec {
        settable: false,
        ..spec()
    }
}

#[test]
fn what_the_task_cannot_do_is_refused_before_the_run_starts() {
    let root = tempdir("custom-refused");
    let env = |n, seed| Ok(Box::new(LaneEnv::new(n, seed)) as Box<dyn Env>);
    let cases: Vec<(Task, Vec<&str>, &str)> = vec![
        (
            Task::new(spec(), env).unwrap(),
            vec![],
            "learns through a differentiable prior model",
        ),
        (
            Task::new(unsettable(), env).unwrap(),
            vec!["algo.name=ndpg", "algo.value_target=env"],
            "cannot be set to a state",
        ),
        (
            task().unwrap(),
            vec!["network.kernels=autodiff"],
            "has no burn-tensor step",
        ),
        (
            task().unwrap(),
            vec!["task.model_mismatch=false"],
            "exact model",
        ),
    ];
    for (i, (task, sets, want)) in cases.into_iter().enumerate() {
        let mut cfg = config(10).unwrap();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        cfg = mixpg::config::Config::from_toml_str(&cfg.to_toml(), &sets).unwrap();
        let dir = root.join(format!("case{i}"));
        let e = format!("{:#}", train_task(cfg, task, &dir, |_| {}).unwrap_err());
        assert!(e.contains(want), "case {i}: {e}");
        assert!(!dir.join("progress.csv").exists(), "case {i} started a run");
    }
    // A simulator or model of another shape is named.
    let wrong = Task::new(spec(), |_, _| {
        Ok(Box::new(mixpg::env::lqr::LqrEnv::new(1, 0)) as Box<dyn Env>)
    })
    .unwrap();
    let e = format!("{:#}", wrong.make_env(1, 0).err().unwrap());
    assert!(e.contains("obs_dim 2") && e.contains("the task 3"), "{e}");
    let wrong_model = task()
        .unwrap()
        .with_model(|| Ok(Box::new(mixpg::env::lqr::LqrModel::new(true)) as Box<dyn PriorModel>));
    let e = format!("{:#}", wrong_model.make_model(true).err().unwrap());
    assert!(e.contains("prior model"), "{e}");
}

/// The example's simulator failing at its `fail_at`-th step (counted over all instances).
struct FailingEnv {
    inner: LaneEnv,
    steps: Arc<AtomicUsize>,
    fail_at: usize,
    failed: bool,
}

impl Env for FailingEnv {
    fn spec(&self) -> &TaskSpec {
        self.inner.spec()
    }
    fn num_agents(&self) -> usize {
        self.inner.num_agents()
    }
    fn reset(&mut self, seed: u64) {
        self.inner.reset(seed);
    }
    fn reset_done(&mut self) {
        self.inner.reset_done();
    }
    fn reset_to(&mut self, states: &[f32]) {
        self.inner.reset_to(states);
    }
    fn observe(&self, out: &mut Vec<f32>) {
        self.inner.observe(out);
    }
    fn step(&mut self, actions: &[f32], out: &mut StepOut) {
        self.inner.step(actions, out);
        self.failed = self.steps.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at;
    }
    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut) {
        self.inner.step_active(actions, active, out);
    }
    fn take_error(&mut self) -> Option<anyhow::Error> {
        std::mem::take(&mut self.failed).then(|| anyhow::anyhow!("the plant's PLC timed out"))
    }
}

#[test]
fn a_failing_environment_stops_the_run_with_a_checkpoint_and_its_error() {
    let dir = tempdir("custom-failing");
    let steps = Arc::new(AtomicUsize::new(0));
    let counter = steps.clone();
    // The evaluation at iteration 0 and the warm-up take their steps first; the collector's
    // environment fails during training.
    let failing = Task::new(spec(), move |n, seed| {
        Ok(Box::new(FailingEnv {
            inner: LaneEnv::new(n, seed),
            steps: counter.clone(),
            fail_at: 400,
            failed: false,
        }) as Box<dyn Env>)
    })
    .unwrap()
    .with_model(|| task()?.make_model(true));
    let cfg = config(1000).unwrap();
    let e = format!("{:#}", train_task(cfg, failing, &dir, |_| {}).unwrap_err());
    assert!(e.contains("the plant's PLC timed out"), "{e}");
    assert!(e.contains("a checkpoint was written"), "{e}");
    let ckpt = mixpg::runtime::serial::latest_checkpoint(&dir).unwrap();
    assert!(ckpt.is_some(), "no final checkpoint");
    // Once the plant works again the run continues from it.
    let mut resumed = Trainer::resume_task(&dir, task().unwrap()).unwrap().quiet();
    let k = resumed.iteration();
    assert!(k > 0 && k < 1000, "stopped at {k}");
    resumed.run().unwrap();
    assert_eq!(resumed.iteration(), 1000);
}
