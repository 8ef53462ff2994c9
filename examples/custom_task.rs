//! Your own task, trained with MPG-v2 through mixpg's public API, without editing mixpg:
//! `cargo run --release --example custom_task -- [ITERATIONS] [OUT_DIR]`.
//!
//! The plant is a kinematic vehicle keeping its lane at a target speed: state
//! `[lateral offset e (m), heading error ψ (rad), speed v (m/s)]`, actions
//! `[steering angle δ ∈ [−0.5, 0.5] rad, acceleration a ∈ [−3, 1.5] m/s²]` (an asymmetric box),
//! 0.1 s steps:
//!
//! ```text
//! e' = e + v·sin ψ·dt      ψ' = ψ + v/L·tan δ·dt      v' = v + (a − c·v²)·dt
//! r  = −(e² + 0.5ψ² + 0.05(v − 10)² + 0.1δ² + 0.01a²)
//! ```
//!
//! Its prior model is deliberately mismatched: small angles (`sin ψ ≈ ψ`, `tan δ ≈ δ`), a
//! wheelbase 20 % short and no drag. The model gives MPG a host step with a hand-written
//! vector-Jacobian product, the fused core's fast path; a model written on burn tensors would be
//! given with `Task::with_tensor_model` and differentiated by autodiff instead.

use std::path::PathBuf;

use anyhow::Result;
use mixpg::config::Config;
use mixpg::env::{Env, ModelTape, PriorModel, StepOut, Task, TaskSpec, Termination};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

const DT: f32 = 0.1;
const WHEELBASE: f32 = 2.5;
const DRAG: f32 = 0.01;
const V_REF: f32 = 10.0;
const EPISODE_LEN: usize = 100;

/// The task's description: 3 observations, 2 actions in an asymmetric box, 100-step episodes.
pub fn spec() -> TaskSpec {
    TaskSpec {
        title: Some("Lane keeping (example)".to_string()),
        obs_scale: vec![0.5, 2.0, 0.1],
        goals: vec![-100.0, -30.0, -10.0],
        min_requirement: Some(-30.0),
        termination: Termination::Continuing,
        ..TaskSpec::new(
            "lane_keeping",
            3,
            vec![-0.5, -3.0],
            vec![0.5, 1.5],
            EPISODE_LEN,
        )
    }
}

/// The reward of one state and action.
fn reward(s: &[f32], a: &[f32]) -> f32 {
    let (e, psi, v) = (s[0], s[1], s[2]);
    -(e * e + 0.5 * psi * psi + 0.05 * (v - V_REF).powi(2) + 0.1 * a[0] * a[0] + 0.01 * a[1] * a[1])
}

/// The true simulator: `n` vehicles stepped in one call.
pub struct LaneEnv {
    spec: TaskSpec,
    state: Vec<f32>,
    steps: Vec<usize>,
    done: Vec<bool>,
    rng: Pcg64Mcg,
}

impl LaneEnv {
    /// `n` vehicles, reset with `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut env = Self {
            spec: spec(),
            state: vec![0.0; 3 * n],
            steps: vec![0; n],
            done: vec![false; n],
            rng: Pcg64Mcg::seed_from_u64(seed),
        };
        env.reset(seed);
        env
    }

    fn reset_agent(&mut self, i: usize) {
        let s = [
            self.rng.random_range(-2.0..2.0),
            self.rng.random_range(-0.3..0.3),
            self.rng.random_range(7.0..13.0),
        ];
        self.state[3 * i..3 * i + 3].copy_from_slice(&s);
        self.steps[i] = 0;
        self.done[i] = false;
    }
}

impl Env for LaneEnv {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn num_agents(&self) -> usize {
        self.steps.len()
    }

    fn reset(&mut self, seed: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(seed);
        for i in 0..self.num_agents() {
            self.reset_agent(i);
        }
    }

    fn reset_done(&mut self) {
        for i in 0..self.num_agents() {
            if self.done[i] {
                self.reset_agent(i);
            }
        }
    }

    fn reset_to(&mut self, states: &[f32]) {
        let n = states.len() / 3;
        self.state = states.to_vec();
        self.steps = vec![0; n];
        self.done = vec![false; n];
    }

    fn observe(&self, out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(&self.state);
    }

    fn step(&mut self, actions: &[f32], out: &mut StepOut) {
        let active = vec![true; self.num_agents()];
        self.step_active(actions, &active, out);
    }

    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut) {
        let n = self.num_agents();
        out.next_obs.resize(3 * n, 0.0);
        out.reward.resize(n, 0.0);
        out.terminated.resize(n, false);
        out.truncated.resize(n, false);
        for i in 0..n {
            let s = &mut self.state[3 * i..3 * i + 3];
            if !active[i] {
                out.next_obs[3 * i..3 * i + 3].copy_from_slice(s);
                (out.reward[i], out.terminated[i], out.truncated[i]) = (0.0, false, false);
                continue;
            }
            let (lo, hi) = (&self.spec.action_low, &self.spec.action_high);
            let a = [
                actions[2 * i].clamp(lo[0], hi[0]),
                actions[2 * i + 1].clamp(lo[1], hi[1]),
            ];
            out.reward[i] = reward(s, &a);
            let (e, psi, v) = (s[0], s[1], s[2]);
            s[0] = e + v * psi.sin() * DT;
            s[1] = psi + v / WHEELBASE * a[0].tan() * DT;
            s[2] = (v + (a[1] - DRAG * v * v) * DT).max(0.0);
            self.steps[i] += 1;
            out.terminated[i] = false;
            out.truncated[i] = self.steps[i] >= EPISODE_LEN;
            self.done[i] = out.truncated[i];
            out.next_obs[3 * i..3 * i + 3].copy_from_slice(s);
        }
    }
}

/// The prior model: small angles, a wheelbase 20 % short, no drag.
pub struct LaneModel {
    spec: TaskSpec,
}

/// The model's wheelbase.
const MODEL_WHEELBASE: f32 = 0.8 * WHEELBASE;

impl PriorModel for LaneModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn step_host(
        &self,
        state: &[f32],
        action: &[f32],
        _noise: &[f32],
        next: &mut [f32],
        reward_out: &mut [f32],
        tape: &mut ModelTape,
    ) {
        tape.record(state, action, 0);
        let rows = state.chunks_exact(3).zip(action.chunks_exact(2));
        for (i, (s, a)) in rows.enumerate() {
            let (e, psi, v) = (s[0], s[1], s[2]);
            reward_out[i] = reward(s, a);
            next[3 * i] = e + v * psi * DT;
            next[3 * i + 1] = psi + v / MODEL_WHEELBASE * a[0] * DT;
            next[3 * i + 2] = v + a[1] * DT;
        }
    }

    fn step_vjp(
        &self,
        tape: &ModelTape,
        d_next: &[f32],
        d_reward: &[f32],
        d_state: &mut [f32],
        d_action: &mut [f32],
    ) {
        let rows = tape.state.chunks_exact(3).zip(tape.action.chunks_exact(2));
        for (i, (s, a)) in rows.enumerate() {
            let (e, psi, v) = (s[0], s[1], s[2]);
            let (ge, gpsi, gv) = (d_next[3 * i], d_next[3 * i + 1], d_next[3 * i + 2]);
            let gr = d_reward[i];
            d_state[3 * i] = ge - gr * 2.0 * e;
            d_state[3 * i + 1] = ge * v * DT + gpsi - gr * psi;
            d_state[3 * i + 2] =
                ge * psi * DT + gpsi * a[0] * DT / MODEL_WHEELBASE + gv - gr * 0.1 * (v - V_REF);
            d_action[2 * i] = gpsi * v * DT / MODEL_WHEELBASE - gr * 0.2 * a[0];
            d_action[2 * i + 1] = gv * DT - gr * 0.02 * a[1];
        }
    }
}

/// The task as a value: its description, simulator and prior model.
pub fn task() -> Result<Task> {
    Ok(Task::new(spec(), |n, seed| {
        Ok(Box::new(LaneEnv::new(n, seed)) as Box<dyn Env>)
    })?
    .with_model(|| Ok(Box::new(LaneModel { spec: spec() }) as Box<dyn PriorModel>)))
}

/// MPG-v2 on the task: the generic MPG-v2 settings with a few of the task's own.
pub fn config(iterations: u64) -> Result<Config> {
    let text = std::fs::read_to_string("configs/generic/mpg_v2.toml")?;
    let sets: Vec<String> = [
        "task.name=lane_keeping".to_string(),
        "task.num_agents=8".to_string(),
        "algo.warmup_samples=2000".to_string(),
        "algo.collect_steps=8".to_string(),
        "algo.collect_interval=4".to_string(),
        "algo.schedule_iterations=2000".to_string(),
        "network.hidden=[64, 64]".to_string(),
        format!("train.iterations={iterations}"),
        format!("train.eval_interval={}", (iterations / 4).max(1)),
        "train.log_interval=10".to_string(),
    ]
    .to_vec();
    Config::from_toml_str(&text, &sets)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args.next().map_or(Ok(2000), |s| s.parse())?;
    let out = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "runs/lane_keeping".to_string()),
    );
    let cfg = config(iterations)?;
    mixpg::runtime::train_task(cfg, task()?, &out, |_| {})?;
    let report = mixpg::report::load_runs(&out)?;
    for run in &report.runs {
        println!("{}", mixpg::report::run_digest(run));
    }
    Ok(())
}
