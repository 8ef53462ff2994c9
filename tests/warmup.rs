//! The warm-up's actions: `algo.warmup_actions = "uniform"` acts uniformly at random in the
//! action box for the warm-up's transitions (serial: the first `algo.warmup_samples`; async:
//! each actor its share, unless it starts with an updated policy), then with the policy; `"policy"` (the default) acts with the initial
//! policy and its exploration noise throughout.

mod common;

use std::sync::{Arc, Mutex};

use common::{lqr_config, tempdir};
use mixpg::algo::{Agent, Nets};
use mixpg::env::{Env, StepOut, Task, TaskSpec, lookup};
use mixpg::runtime::roles::{ActorCore, Snapshot};
use mixpg::runtime::train_task;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

/// The actions every environment instance received, one list per instance in creation order.
type Recorded = Arc<Mutex<Vec<Arc<Mutex<Vec<f32>>>>>>;

/// The `lqr` simulator, recording the actions it is stepped with.
struct RecordingEnv {
    inner: Box<dyn Env>,
    actions: Arc<Mutex<Vec<f32>>>,
}

impl Env for RecordingEnv {
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
        self.actions.lock().unwrap().extend_from_slice(actions);
        self.inner.step(actions, out);
    }
    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut) {
        self.inner.step_active(actions, active, out);
    }
}

/// The `lqr` task with recording environments, and the recordings.
fn recording_lqr() -> (Task, Recorded) {
    let lqr = lookup("lqr").unwrap();
    let recorded: Recorded = Arc::default();
    let envs = recorded.clone();
    let inner = lqr.clone();
    let task = Task::new(lqr.spec().clone(), move |n, seed| {
        let actions = Arc::new(Mutex::new(Vec::new()));
        envs.lock().unwrap().push(actions.clone());
        Ok(Box::new(RecordingEnv {
            inner: inner.make_env(n, seed)?,
            actions,
        }) as Box<dyn Env>)
    })
    .unwrap()
    .with_model(move || lqr.make_model(true));
    (task, recorded)
}

/// Whether `a` (one action dimension on [−2, 2], the `lqr` box) looks uniform on the box:
/// every quarter of it holds 15–35 % of the values and the extremes come near both bounds.
fn looks_uniform(a: &[f32]) -> bool {
    let quarter = |q: usize| {
        let (lo, hi) = (-2.0 + q as f32, -1.0 + q as f32);
        a.iter().filter(|x| **x >= lo && **x < hi).count() as f64 / a.len() as f64
    };
    let spread = (0..4).all(|q| (0.15..=0.35).contains(&quarter(q)));
    let min = a.iter().copied().fold(f32::INFINITY, f32::min);
    let max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    spread && min < -1.8 && max > 1.8
}

/// Train on the recording `lqr` task; the recorded actions of every environment instance.
fn run(name: &str, extra: &[&str]) -> Vec<Vec<f32>> {
    let dir = tempdir(name);
    let (task, recorded) = recording_lqr();
    let mut sets = vec!["train.iterations=40", "train.eval_episodes=1"];
    sets.extend_from_slice(extra);
    train_task(lqr_config("td3", &sets), task, &dir, |_| {}).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let envs = recorded.lock().unwrap();
    envs.iter().map(|a| a.lock().unwrap().clone()).collect()
}

#[test]
fn a_uniform_warm_up_acts_uniformly_in_the_box_then_with_the_policy() {
    // lqr_config: 4 agents, warm-up of 500 transitions, 4 steps per iteration.
    let envs = run("warmup-uniform", &["algo.warmup_actions=\"uniform\""]);
    let collector: Vec<&Vec<f32>> = envs
        .iter()
        .filter(|a| a.len() >= 500 && looks_uniform(&a[..500]))
        .collect();
    assert_eq!(
        collector.len(),
        1,
        "one collecting environment acts uniformly first"
    );
    let after = &collector[0][500..];
    assert!(
        after.len() >= 40 * 4 * 4,
        "{} transitions after the warm-up",
        after.len()
    );
    assert!(!looks_uniform(after), "the policy acts after the warm-up");
}

#[test]
fn the_default_warm_up_acts_with_the_initial_policy() {
    let envs = run("warmup-policy", &[]);
    assert!(
        envs.iter().any(|a| a.len() >= 500),
        "no environment collected the warm-up"
    );
    assert!(
        envs.iter()
            .all(|a| a.len() < 500 || !looks_uniform(&a[..500])),
        "the initial policy's actions look uniform"
    );
}

/// The actions of an asynchronous actor's first `collections` collections, started with a
/// policy snapshot of `version`.
fn actor_actions(extra: &[&str], version: u64, collections: usize) -> Vec<f32> {
    let mut sets = vec!["runtime.mode=\"async\"", "runtime.actors=2"];
    sets.extend_from_slice(extra);
    let cfg = lqr_config("td3", &sets);
    let task = lookup("lqr").unwrap();
    let nets = Nets::new(&cfg, task.spec());
    let agent = Agent::new(&nets, &cfg, &mut Pcg64Mcg::seed_from_u64(0));
    let snapshot = Snapshot::of(version, &agent.params);
    let mut actor = ActorCore::new(&cfg, &task, 1, 2, &snapshot).unwrap();
    (0..collections)
        .flat_map(|_| actor.collect().unwrap().act)
        .collect()
}

#[test]
fn asynchronous_actors_each_act_uniformly_for_their_share_of_the_warm_up() {
    // lqr_config: warm-up 500, 4 agents × 4 steps per collection; 2 actors: 250 each, i.e. 63
    // vectorized steps (252 transitions) uniformly, then the policy.
    let uniform = ["algo.warmup_actions=\"uniform\""];
    let a = actor_actions(&uniform, 0, 32);
    assert!(looks_uniform(&a[..252]), "an actor's share of the warm-up");
    assert!(!looks_uniform(&a[252..]), "the policy after the share");
    // An actor (re)started with an updated policy acts with it from the start.
    assert!(!looks_uniform(&actor_actions(&uniform, 3, 16)));
    assert!(!looks_uniform(&actor_actions(&[], 0, 16)));
}
