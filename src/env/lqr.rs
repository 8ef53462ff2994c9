//! A small linear-quadratic regulator task with a known optimum, for tests and smoke runs.
//!
//! Double integrator with step 0.1 s: `p' = p + 0.1 v`, `v' = v + 0.1 a`, reward
//! `r(s, a) = −(p² + 0.1 v² + 0.01 a²)` on the pre-step state, `a ∈ [−2, 2]`, episodes of 50
//! steps, reset `p, v ~ U(−1, 1)`. It never terminates. The prior model is the exact linear
//! system, optionally with a bias `+0.05` added to `v` each step as its mismatch.

use burn::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{Env, ModelTape, PriorModel, StepOut, TaskSpec, TensorModel, Termination};

const DT: f32 = 0.1;
const W_P: f32 = 1.0;
const W_V: f32 = 0.1;
const W_A: f32 = 0.01;
const MODEL_BIAS: f32 = 0.05;

/// The task description.
pub fn spec() -> TaskSpec {
    TaskSpec {
        title: Some("LQR (test task)".to_string()),
        // 50 steps from p, v ~ U(-1, 1); the optimal return is roughly -2.
        goals: vec![-20.0, -10.0, -5.0, -3.0],
        min_requirement: Some(-10.0),
        termination: Termination::Continuing,
        ..TaskSpec::new("lqr", 2, vec![-2.0], vec![2.0], 50)
    }
}

/// The reward of one agent.
pub fn reward(s: &[f32], a: f32) -> f32 {
    -(W_P * s[0] * s[0] + W_V * s[1] * s[1] + W_A * a * a)
}

/// The vectorized simulator.
pub struct LqrEnv {
    spec: TaskSpec,
    state: Vec<f32>,
    steps: Vec<usize>,
    done: Vec<bool>,
    rng: Pcg64Mcg,
}

impl LqrEnv {
    /// `num_agents` agents, seeded.
    pub fn new(num_agents: usize, seed: u64) -> Self {
        let mut env = Self {
            spec: spec(),
            state: vec![0.0; 2 * num_agents],
            steps: vec![0; num_agents],
            done: vec![false; num_agents],
            rng: Pcg64Mcg::seed_from_u64(seed),
        };
        env.reset(seed);
        env
    }

    fn reset_agent(&mut self, k: usize) {
        self.state[2 * k] = self.rng.random_range(-1.0..1.0);
        self.state[2 * k + 1] = self.rng.random_range(-1.0..1.0);
        self.steps[k] = 0;
        self.done[k] = false;
    }
}

impl Env for LqrEnv {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }
    fn num_agents(&self) -> usize {
        self.steps.len()
    }
    fn reset(&mut self, seed: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(seed);
        for k in 0..self.num_agents() {
            self.reset_agent(k);
        }
    }
    fn reset_done(&mut self) {
        for k in 0..self.num_agents() {
            if self.done[k] {
                self.reset_agent(k);
            }
        }
    }
    fn reset_to(&mut self, states: &[f32]) {
        let n = states.len() / 2;
        self.state = states.to_vec();
        self.steps = vec![0; n];
        self.done = vec![false; n];
    }
    fn observe(&self, out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(&self.state);
    }
    fn step(&mut self, actions: &[f32], out: &mut StepOut) {
        let n = self.num_agents();
        out.reward.clear();
        out.terminated.clear();
        out.truncated.clear();
        for (k, a) in actions.iter().enumerate().take(n) {
            let a = a.clamp(-2.0, 2.0);
            let (p, v) = (self.state[2 * k], self.state[2 * k + 1]);
            out.reward.push(reward(&[p, v], a));
            self.state[2 * k] = p + DT * v;
            self.state[2 * k + 1] = v + DT * a;
            self.steps[k] += 1;
            let truncated = self.steps[k] >= self.spec.episode_len;
            self.done[k] = truncated;
            out.terminated.push(false);
            out.truncated.push(truncated);
        }
        self.observe(&mut out.next_obs);
    }
    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut) {
        assert_eq!(active.len(), self.num_agents(), "one active flag per agent");
        let held: Vec<(usize, [f32; 2], usize, bool)> = (0..active.len())
            .filter(|&k| !active[k])
            .map(|k| {
                let s = [self.state[2 * k], self.state[2 * k + 1]];
                (k, s, self.steps[k], self.done[k])
            })
            .collect();
        self.step(actions, out);
        for (k, s, steps, done) in held {
            self.state[2 * k..2 * k + 2].copy_from_slice(&s);
            self.steps[k] = steps;
            self.done[k] = done;
            super::hold_row(out, k, &s);
        }
    }
}

/// The differentiable prior model.
pub struct LqrModel {
    spec: TaskSpec,
    mismatch: bool,
}

impl LqrModel {
    /// The exact linear model, plus a constant bias on `v` when `mismatch`.
    pub fn new(mismatch: bool) -> Self {
        Self {
            spec: spec(),
            mismatch,
        }
    }
}

impl LqrModel {
    /// The reward `r(s, a)` on tensors, `[batch]`.
    pub fn reward(&self, state: Tensor<2>, action: Tensor<2>) -> Tensor<1> {
        let p = state.clone().narrow(1, 0, 1);
        let v = state.narrow(1, 1, 1);
        p.powi_scalar(2)
            .mul_scalar(W_P)
            .add(v.powi_scalar(2).mul_scalar(W_V))
            .add(action.powi_scalar(2).mul_scalar(W_A))
            .neg()
            .squeeze_dim(1)
    }
}

impl TensorModel for LqrModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }
    fn step(&self, state: Tensor<2>, action: Tensor<2>, _noise: &[f32]) -> (Tensor<2>, Tensor<1>) {
        let r = self.reward(state.clone(), action.clone());
        let p = state.clone().narrow(1, 0, 1);
        let v = state.narrow(1, 1, 1);
        let p2 = p.add(v.clone().mul_scalar(DT));
        let mut v2 = v.add(action.mul_scalar(DT));
        if self.mismatch {
            v2 = v2.add_scalar(MODEL_BIAS);
        }
        (Tensor::cat(vec![p2, v2], 1), r)
    }
}

impl PriorModel for LqrModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }
    fn tensor(&self) -> Option<&dyn TensorModel> {
        Some(self)
    }
    fn step_host(
        &self,
        state: &[f32],
        action: &[f32],
        _noise: &[f32],
        next: &mut [f32],
        reward: &mut [f32],
        tape: &mut ModelTape,
    ) {
        tape.record(state, action, 0);
        let bias = if self.mismatch { MODEL_BIAS } else { 0.0 };
        let rows = state.chunks_exact(2).zip(next.chunks_exact_mut(2));
        for (((s, n), &a), r) in rows.zip(action).zip(reward.iter_mut()) {
            let (p, v) = (s[0], s[1]);
            *r = -(p * p * W_P + v * v * W_V + a * a * W_A);
            n[0] = p + v * DT;
            n[1] = v + a * DT + bias;
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
        for (i, ((s, &a), &dr)) in tape
            .state
            .chunks_exact(2)
            .zip(&tape.action)
            .zip(d_reward)
            .enumerate()
        {
            let (p, v) = (s[0], s[1]);
            let (dp2, dv2) = (d_next[2 * i], d_next[2 * i + 1]);
            d_state[2 * i] = dp2 - dr * 2.0 * W_P * p;
            d_state[2 * i + 1] = dp2 * DT + dv2 - dr * 2.0 * W_V * v;
            d_action[i] = dv2 * DT - dr * 2.0 * W_A * a;
        }
    }
}
