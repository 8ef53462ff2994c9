//! Inverted pendulum (cart-pole) task of the MPG paper (section V-A).
//!
//! # Simulator
//! [`PendulumEnv`] is a plain-Rust (f64) re-implementation of the MuJoCo model the reference code
//! simulates: Gym's `inverted_pendulum.xml` with the reference's modifications (shipped as
//! `assets/inverted_pendulum.xml`): slider range ±1000, hinge range ±180°, motor gear 100, joint
//! damping 1 on both joints, armature 0, gravity 9.81, timestep 0.02 with MuJoCo's classical RK4
//! and frame skip 2, so one environment step lasts 0.04 s. Masses and inertias come from the
//! geoms as MuJoCo's `inertiafromgeom` computes them (density 1000, see [`capsule_inertia`]):
//!
//! | body | mass (kg) | CoM in body frame | inertia |
//! |---|---|---|---|
//! | cart (capsule r 0.1, half-length 0.1) | 10.471975512 | 0 | irrelevant (the cart only translates) |
//! | pole (capsule r 0.049, `fromto` 0 0 0 → 0.001 0 0.6) | 5.018591641 | (0.0005, 0, 0.3) | 0.188749767 about the CoM, 0.640424269 about the hinge |
//!
//! With `q = [p, θ]` (θ > 0 tilts the pole's top towards +x) and the pole CoM at `(cx, cz)` in
//! the pole frame, the horizontal and vertical CoM offsets are `a = cx cosθ + cz sinθ` and
//! `b = cz cosθ − cx sinθ`, and the Lagrangian dynamics are
//!
//! ```text
//! [ M+m   m·b ] [p̈]   [ F − c·ṗ + m·a·θ̇² ]
//! [ m·b   J   ] [θ̈] = [ m·g·a − c·θ̇      ]
//! ```
//!
//! with `F = 100·a_t` (the action clipped to [−3, 3]), damping `c = 1`, and `J` the pole inertia
//! about the hinge. With the `mujoco` feature, `tests/env_pendulum_mujoco.rs` checks the masses,
//! inertias and mass matrix against MuJoCo 2.2.2 (to 1e-9) and whole 50-step trajectories under
//! random actions (to ~1e-12 relative, i.e. round-off).
//!
//! **Joint limits are not modelled.** The slider limit (±1000 m) is unreachable in practice. The
//! hinge limit (±180°, a soft constraint in MuJoCo) acts only once the pole has swung over the
//! bottom, i.e. long after the failure threshold |θ| > 0.2; from there on MuJoCo's pole bounces
//! back while ours keeps rotating. This matters only for agents stepped on after a failure
//! without a reset (e.g. the fixed-length evaluation of a policy that drops the pole); random
//! ±3 actions from the reset state reach the limit within 50 steps about half of the time.
//! Neither MuJoCo nor this simulator wraps the hinge angle.
//!
//! # Reward (one for simulator and model)
//! The reference code uses two different rewards: the environment's
//! `−(0.01p² + θ² + 0.1ṗ² + 0.1θ̇²)` and the prior model's `−(0.01p² + θ² + 1e-3ṗ² + 1e-3θ̇²)`,
//! both on the post-step state. Here both the simulator and the model use **one** reward,
//! `r(s, a) = −(0.01p² + θ² + 0.1ṗ² + 0.1θ̇²)` evaluated on the **pre-step** state `s` (the
//! environment's weights). The action does not enter the reward, so `∂r/∂a = 0`; the policy
//! gradient reaches the action only through the dynamics of later steps.
//!
//! # Episodes
//! Reset: `qpos, qvel = 0 + U(−0.01, 0.01)` per component. Termination: not (|p| < 2 and
//! |θ| ≤ 0.2), checked on the post-step state. Truncation: the step count since the last reset
//! reaches 100 (an agent that is not reset keeps stepping and stays truncated).
//!
//! # Prior model
//! [`PendulumModel`] is the differentiable burn version of the same equations with a configurable
//! parameter set ([`PendulumModelConfig`]): [`PendulumModelConfig::mismatched`] is the reference
//! prior model (approximate masses, no damping, one Euler step of 0.04 s, biased noise on `p`),
//! [`PendulumModelConfig::exact`] uses the simulator's parameters and integrator. The model does
//! not clip actions (clipping would cut gradients; the policies' outputs are already bounded).
//! Its fused host step ([`PriorModel::step_host`]) computes the same f32 operations row by row
//! and saves the state at the start of every sub-step; [`PriorModel::step_vjp`] recomputes the
//! sub-step's stages from it and back-propagates through them by hand.
//!
//! # The `mujoco` feature
//! `cargo test --features mujoco` builds a small C shim (`csrc/mujoco_shim.c`) against the system
//! MuJoCo (Debian: `apt-get install libmujoco-dev`, 2.2.2) and enables the `mujoco` submodule and
//! `tests/env_pendulum_mujoco.rs`. The default build does not need MuJoCo. The shipped XML spells
//! out `ctrllimited="false"` (MuJoCo ≥ 2.2 rejects a `ctrlrange` without it; MuJoCo 2.0, which
//! the reference used through mujoco-py, treated it as unlimited), so the semantics are unchanged.

use burn::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64Mcg;

use super::{Env, ModelTape, PriorModel, StepOut, TaskSpec, TensorModel, Termination};
use crate::nn::tensor2;

#[cfg(feature = "mujoco")]
pub mod mujoco;

/// MuJoCo timestep of the reference model (s).
pub const TIMESTEP: f64 = 0.02;
/// MuJoCo steps per environment step.
pub const FRAME_SKIP: usize = 2;
/// Duration of one environment step (s).
pub const STEP_DT: f64 = TIMESTEP * FRAME_SKIP as f64;
/// Motor gear: force on the slider = `GEAR · action`.
pub const GEAR: f64 = 100.0;
/// Gravity (m/s²).
pub const GRAVITY: f64 = 9.81;
/// Geom density (kg/m³, MuJoCo's default).
pub const DENSITY: f64 = 1000.0;
/// Joint damping of both joints in the reference XML.
pub const DAMPING: f64 = 1.0;
/// Action bound (the environment clips to ±`ACTION_BOUND`).
pub const ACTION_BOUND: f32 = 3.0;
/// Evaluation episode length in steps.
pub const EPISODE_LEN: usize = 100;
/// Reward weights on `[p², θ², ṗ², θ̇²]` (the reward is their negated weighted sum).
pub const REWARD_WEIGHTS: [f64; 4] = [0.01, 1.0, 0.1, 0.1];
/// Half-width of the uniform reset noise on every state component.
pub const RESET_NOISE: f64 = 0.01;
/// Healthy region: |p| < `P_LIMIT` ...
pub const P_LIMIT: f64 = 2.0;
/// ... and |θ| ≤ `THETA_LIMIT`.
pub const THETA_LIMIT: f64 = 0.2;

/// The task description.
pub fn spec() -> TaskSpec {
    TaskSpec {
        title: Some("Inverted pendulum".to_string()),
        obs_scale: vec![0.001, 1.0 / 3.0, 0.1, 0.5],
        goals: vec![-20.0, -2.0, -0.1, -0.01],
        min_requirement: Some(-2.0),
        termination: Termination::Continuing,
        ..TaskSpec::new(
            "pendulum",
            4,
            vec![-ACTION_BOUND],
            vec![ACTION_BOUND],
            EPISODE_LEN,
        )
    }
}

/// Volume of a capsule (cylinder of half-length `half_len` plus two hemispheres of `radius`).
pub fn capsule_volume(radius: f64, half_len: f64) -> f64 {
    std::f64::consts::PI * radius * radius * (2.0 * half_len + 4.0 / 3.0 * radius)
}

/// Mass and principal inertia `[I_perp, I_perp, I_axis]` about the CoM of a solid capsule
/// (axis = third principal axis), as MuJoCo 2.x computes them for `inertiafromgeom`: the mass is
/// split between the cylinder and the sphere in proportion to their volumes, the cylinder
/// contributes `m_c (3r² + h²)/12` (perpendicular) and `m_c r²/2` (axial), the two hemispheres
/// `2 m_s r²/5` plus the displacement term `m_s h (3r + 2h)/8` (perpendicular only), with
/// `h = 2 · half_len`.
pub fn capsule_inertia(radius: f64, half_len: f64, density: f64) -> (f64, [f64; 3]) {
    let (r, h) = (radius, 2.0 * half_len);
    let mass = density * capsule_volume(radius, half_len);
    let m_sphere = mass * 4.0 * r / (4.0 * r + 3.0 * h);
    let m_cyl = mass - m_sphere;
    let i_sphere = 2.0 * m_sphere * r * r / 5.0;
    let perp =
        m_cyl * (3.0 * r * r + h * h) / 12.0 + i_sphere + m_sphere * h * (3.0 * r + 2.0 * h) / 8.0;
    let axial = m_cyl * r * r / 2.0 + i_sphere;
    (mass, [perp, perp, axial])
}

/// Physical parameters of the simulator (f64).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PendulumPhysics {
    /// Cart mass (kg).
    pub cart_mass: f64,
    /// Pole mass (kg).
    pub pole_mass: f64,
    /// Pole CoM `(x, z)` in the pole frame (m); the hinge is at the origin.
    pub pole_com: [f64; 2],
    /// Pole inertia about the hinge axis (kg·m²).
    pub pole_inertia: f64,
    /// Viscous damping on both joints (force = −damping · qvel).
    pub damping: f64,
    /// Gravity (m/s²).
    pub gravity: f64,
    /// Force per unit action on the slider.
    pub gear: f64,
    /// Integrator timestep (s).
    pub timestep: f64,
    /// RK4 steps per environment step.
    pub frame_skip: usize,
}

impl Default for PendulumPhysics {
    fn default() -> Self {
        Self::mujoco()
    }
}

impl PendulumPhysics {
    /// The reference MuJoCo model's parameters, derived from its geoms.
    pub fn mujoco() -> Self {
        let (cart_mass, _) = capsule_inertia(0.1, 0.1, DENSITY);
        let (tip_x, tip_z) = (0.001f64, 0.6f64);
        let len = tip_x.hypot(tip_z);
        let (pole_mass, inertia) = capsule_inertia(0.049, len / 2.0, DENSITY);
        let pole_com = [tip_x / 2.0, tip_z / 2.0];
        // The hinge axis (y) is a principal axis of the tilted capsule: parallel-axis theorem.
        let pole_inertia = inertia[1] + pole_mass * (pole_com[0].powi(2) + pole_com[1].powi(2));
        Self {
            cart_mass,
            pole_mass,
            pole_com,
            pole_inertia,
            damping: DAMPING,
            gravity: GRAVITY,
            gear: GEAR,
            timestep: TIMESTEP,
            frame_skip: FRAME_SKIP,
        }
    }

    /// Generalized accelerations `[p̈, θ̈]` at state `[p, θ, ṗ, θ̇]` under slider force `force`.
    #[inline]
    pub fn accel(&self, s: [f64; 4], force: f64) -> [f64; 2] {
        let (sin, cos) = s[1].sin_cos();
        let [cx, cz] = self.pole_com;
        let m = self.pole_mass;
        let a = cx * cos + cz * sin;
        let mb = m * (cz * cos - cx * sin);
        let d11 = self.cart_mass + m;
        let d22 = self.pole_inertia;
        let f1 = force - self.damping * s[2] + m * a * s[3] * s[3];
        let f2 = m * self.gravity * a - self.damping * s[3];
        let det = d11 * d22 - mb * mb;
        [(d22 * f1 - mb * f2) / det, (d11 * f2 - mb * f1) / det]
    }

    #[inline]
    fn deriv(&self, s: [f64; 4], force: f64) -> [f64; 4] {
        let [pdd, tdd] = self.accel(s, force);
        [s[2], s[3], pdd, tdd]
    }

    /// One classical RK4 step of length `h` (MuJoCo's `mj_RungeKutta` with N = 4).
    #[inline]
    pub fn rk4(&self, s: [f64; 4], force: f64, h: f64) -> [f64; 4] {
        let add = |x: [f64; 4], k: [f64; 4], c: f64| std::array::from_fn(|i| x[i] + c * k[i]);
        let k1 = self.deriv(s, force);
        let k2 = self.deriv(add(s, k1, h / 2.0), force);
        let k3 = self.deriv(add(s, k2, h / 2.0), force);
        let k4 = self.deriv(add(s, k3, h), force);
        std::array::from_fn(|i| s[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
    }

    /// One environment step: `frame_skip` RK4 steps with force `gear · action` (the action is
    /// used as given; [`PendulumEnv`] clips it first).
    #[inline]
    pub fn step(&self, s: [f64; 4], action: f64) -> [f64; 4] {
        let force = self.gear * action;
        let mut s = s;
        for _ in 0..self.frame_skip {
            s = self.rk4(s, force, self.timestep);
        }
        s
    }

    /// Total mechanical energy (kinetic + gravitational potential, zero at the hinge height).
    pub fn energy(&self, s: [f64; 4]) -> f64 {
        let (sin, cos) = s[1].sin_cos();
        let [cx, cz] = self.pole_com;
        let m = self.pole_mass;
        let b = cz * cos - cx * sin;
        let kinetic = 0.5 * (self.cart_mass + m) * s[2] * s[2]
            + m * b * s[2] * s[3]
            + 0.5 * self.pole_inertia * s[3] * s[3];
        kinetic + m * self.gravity * b
    }
}

/// The reward on a (pre-step) state: `−(0.01p² + θ² + 0.1ṗ² + 0.1θ̇²)`.
pub fn reward(s: [f64; 4]) -> f64 {
    -(0..4).map(|i| REWARD_WEIGHTS[i] * s[i] * s[i]).sum::<f64>()
}

/// The failure rule: not (|p| < 2 and |θ| ≤ 0.2).
pub fn is_failure(s: [f64; 4]) -> bool {
    !(s[0].abs() < P_LIMIT && s[1].abs() <= THETA_LIMIT)
}

/// The vectorized inverted-pendulum simulator (see the module documentation).
#[derive(Debug, Clone)]
pub struct PendulumEnv {
    spec: TaskSpec,
    physics: PendulumPhysics,
    states: Vec<[f64; 4]>,
    steps: Vec<usize>,
    done: Vec<bool>,
    rng: Pcg64Mcg,
}

impl PendulumEnv {
    /// `num_agents` agents with the reference physics, reset with `seed`.
    pub fn new(num_agents: usize, seed: u64) -> Self {
        Self::with_physics(num_agents, seed, PendulumPhysics::mujoco())
    }

    /// Same with custom physics (e.g. damping 0 for energy checks).
    pub fn with_physics(num_agents: usize, seed: u64, physics: PendulumPhysics) -> Self {
        let mut env = Self {
            spec: spec(),
            physics,
            states: vec![[0.0; 4]; num_agents],
            steps: vec![0; num_agents],
            done: vec![false; num_agents],
            rng: Pcg64Mcg::seed_from_u64(seed),
        };
        env.reset(seed);
        env
    }

    /// The physical parameters.
    pub fn physics(&self) -> &PendulumPhysics {
        &self.physics
    }

    /// The exact f64 states `[p, θ, ṗ, θ̇]`.
    pub fn states(&self) -> &[[f64; 4]] {
        &self.states
    }

    /// Steps taken by each agent since its last reset.
    pub fn step_counts(&self) -> &[usize] {
        &self.steps
    }

    fn reset_agent(&mut self, i: usize) {
        let rng = &mut self.rng;
        self.states[i] = std::array::from_fn(|_| rng.random_range(-RESET_NOISE..RESET_NOISE));
        self.steps[i] = 0;
        self.done[i] = false;
    }
}

impl Env for PendulumEnv {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn num_agents(&self) -> usize {
        self.states.len()
    }

    fn reset(&mut self, seed: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(seed);
        for i in 0..self.states.len() {
            self.reset_agent(i);
        }
    }

    fn reset_done(&mut self) {
        for i in 0..self.states.len() {
            if self.done[i] {
                self.reset_agent(i);
            }
        }
    }

    fn reset_to(&mut self, states: &[f32]) {
        assert_eq!(states.len() % 4, 0, "pendulum states are 4-dimensional");
        let n = states.len() / 4;
        self.states = states
            .chunks_exact(4)
            .map(|c| std::array::from_fn(|j| c[j] as f64))
            .collect();
        self.steps = vec![0; n];
        self.done = vec![false; n];
    }

    fn observe(&self, out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.states.iter().flat_map(|s| s.iter().map(|&x| x as f32)));
    }

    fn step(&mut self, actions: &[f32], out: &mut StepOut) {
        let n = self.states.len();
        assert_eq!(actions.len(), n, "one action per agent");
        out.next_obs.clear();
        out.reward.clear();
        out.terminated.clear();
        out.truncated.clear();
        let agents = self
            .states
            .iter_mut()
            .zip(&mut self.steps)
            .zip(&mut self.done);
        for (((state, steps), done), &a) in agents.zip(actions) {
            let s = *state;
            let a = a.clamp(-ACTION_BOUND, ACTION_BOUND) as f64;
            let next = self.physics.step(s, a);
            *state = next;
            *steps += 1;
            let terminated = is_failure(next);
            let truncated = *steps >= EPISODE_LEN;
            *done = terminated || truncated;
            out.next_obs.extend(next.iter().map(|&x| x as f32));
            out.reward.push(reward(s) as f32);
            out.terminated.push(terminated);
            out.truncated.push(truncated);
        }
    }

    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut) {
        assert_eq!(active.len(), self.states.len(), "one active flag per agent");
        let held: Vec<(usize, [f64; 4], usize, bool)> = (0..active.len())
            .filter(|&i| !active[i])
            .map(|i| (i, self.states[i], self.steps[i], self.done[i]))
            .collect();
        self.step(actions, out);
        for (i, state, steps, done) in held {
            self.states[i] = state;
            self.steps[i] = steps;
            self.done[i] = done;
            super::hold_row(out, i, &state.map(|x| x as f32));
        }
    }
}

/// Parameters of the differentiable prior model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PendulumModelConfig {
    /// Add biased Gaussian noise `N(noise_mean, noise_std)` to the next cart position.
    pub noise: bool,
    /// Mean of the cart-position noise.
    pub noise_mean: f32,
    /// Standard deviation of the cart-position noise.
    pub noise_std: f32,
    /// Cart mass (kg).
    pub cart_mass: f32,
    /// Pole mass (kg).
    pub pole_mass: f32,
    /// Pole CoM `(x, z)` in the pole frame (m).
    pub pole_com: [f32; 2],
    /// Pole inertia about the hinge (kg·m²).
    pub pole_inertia: f32,
    /// Viscous damping on both joints.
    pub damping: f32,
    /// Integration sub-steps per model step of 0.04 s.
    pub substeps: usize,
    /// Classical RK4 sub-steps (else explicit Euler).
    pub rk4: bool,
}

impl PendulumModelConfig {
    /// The reference prior model: M = 9.42, m = 4.89, l = 0.6 (CoM at l/2, inertia m·l²/3 about
    /// the hinge), no damping, one Euler step of 0.04 s, and `p' += N(0.1, 0.5)` every step.
    pub fn mismatched() -> Self {
        let (m, l) = (4.89f32, 0.6f32);
        Self {
            noise: true,
            noise_mean: 0.1,
            noise_std: 0.5,
            cart_mass: 9.42,
            pole_mass: m,
            pole_com: [0.0, l / 2.0],
            pole_inertia: m * l * l / 3.0,
            damping: 0.0,
            substeps: 1,
            rk4: false,
        }
    }

    /// The simulator's parameters and integrator (RK4, 2 × 0.02 s), without noise.
    pub fn exact() -> Self {
        let p = PendulumPhysics::mujoco();
        Self {
            noise: false,
            noise_mean: 0.0,
            noise_std: 0.0,
            cart_mass: p.cart_mass as f32,
            pole_mass: p.pole_mass as f32,
            pole_com: [p.pole_com[0] as f32, p.pole_com[1] as f32],
            pole_inertia: p.pole_inertia as f32,
            damping: p.damping as f32,
            substeps: p.frame_skip,
            rk4: true,
        }
    }
}

/// The differentiable prior model (burn tensors; see [`PendulumModelConfig`]). Actions are not
/// clipped (so gradients are never cut); force = 100 · action.
#[derive(Debug, Clone)]
pub struct PendulumModel {
    spec: TaskSpec,
    config: PendulumModelConfig,
}

type Cols = [Tensor<2>; 4];

impl PendulumModel {
    /// A model with the given parameters.
    pub fn new(config: PendulumModelConfig) -> Self {
        assert!(config.substeps >= 1, "at least one sub-step");
        Self {
            spec: spec(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PendulumModelConfig {
        &self.config
    }

    /// Time derivative of the state columns `[p, θ, ṗ, θ̇]` (each `[batch, 1]`).
    fn deriv(&self, s: &Cols, force: &Tensor<2>) -> Cols {
        let c = &self.config;
        let m = c.pole_mass;
        let [cx, cz] = c.pole_com;
        let (sin, cos) = (s[1].clone().sin(), s[1].clone().cos());
        let (a, b) = if cx == 0.0 {
            (sin.mul_scalar(cz), cos.mul_scalar(cz))
        } else {
            (
                cos.clone().mul_scalar(cx).add(sin.clone().mul_scalar(cz)),
                cos.mul_scalar(cz).sub(sin.mul_scalar(cx)),
            )
        };
        let mb = b.mul_scalar(m);
        let d11 = c.cart_mass + m;
        let d22 = c.pole_inertia;
        let thd = s[3].clone();
        let mut f1 = force
            .clone()
            .add(a.clone().mul(thd.clone().square()).mul_scalar(m));
        let mut f2 = a.mul_scalar(m * GRAVITY as f32);
        if c.damping != 0.0 {
            f1 = f1.sub(s[2].clone().mul_scalar(c.damping));
            f2 = f2.sub(thd.clone().mul_scalar(c.damping));
        }
        let inv_det = mb.clone().square().neg().add_scalar(d11 * d22).recip();
        let pdd = f1
            .clone()
            .mul_scalar(d22)
            .sub(mb.clone().mul(f2.clone()))
            .mul(inv_det.clone());
        let tdd = f2.mul_scalar(d11).sub(mb.mul(f1)).mul(inv_det);
        [s[2].clone(), thd, pdd, tdd]
    }

    fn axpy(s: &Cols, k: &Cols, h: f32) -> Cols {
        std::array::from_fn(|i| s[i].clone().add(k[i].clone().mul_scalar(h)))
    }

    /// The deterministic part of one model step (no noise), `[batch, 4]` → `[batch, 4]`.
    pub fn dynamics(&self, state: Tensor<2>, action: Tensor<2>) -> Tensor<2> {
        let c = &self.config;
        let force = action.mul_scalar(GEAR as f32);
        let mut s: Cols = std::array::from_fn(|i| state.clone().narrow(1, i, 1));
        let h = STEP_DT as f32 / c.substeps as f32;
        for _ in 0..c.substeps {
            s = if c.rk4 {
                let k1 = self.deriv(&s, &force);
                let k2 = self.deriv(&Self::axpy(&s, &k1, h / 2.0), &force);
                let k3 = self.deriv(&Self::axpy(&s, &k2, h / 2.0), &force);
                let k4 = self.deriv(&Self::axpy(&s, &k3, h), &force);
                std::array::from_fn(|i| {
                    let sum = k1[i]
                        .clone()
                        .add(k2[i].clone().add(k3[i].clone()).mul_scalar(2.0))
                        .add(k4[i].clone());
                    s[i].clone().add(sum.mul_scalar(h / 6.0))
                })
            } else {
                let k = self.deriv(&s, &force);
                Self::axpy(&s, &k, h)
            };
        }
        Tensor::cat(s.to_vec(), 1)
    }
}

/// One host row `[p, θ, ṗ, θ̇]`.
type Row = [f32; 4];

/// What the derivative of one row needs for its vector-Jacobian product.
struct DerivParts {
    a: f32,
    b: f32,
    mb: f32,
    f1: f32,
    f2: f32,
    inv_det: f32,
}

impl PendulumModel {
    /// Host version of [`Self::deriv`] for one row (same operations and order).
    fn deriv_row(&self, s: &Row, force: f32) -> (Row, DerivParts) {
        let c = &self.config;
        let m = c.pole_mass;
        let [cx, cz] = c.pole_com;
        let (sin, cos) = (s[1].sin(), s[1].cos());
        let (a, b) = if cx == 0.0 {
            (sin * cz, cos * cz)
        } else {
            (cos * cx + sin * cz, cos * cz - sin * cx)
        };
        let mb = b * m;
        let (d11, d22) = (c.cart_mass + m, c.pole_inertia);
        let thd = s[3];
        let mut f1 = force + a * (thd * thd) * m;
        let mut f2 = a * (m * GRAVITY as f32);
        if c.damping != 0.0 {
            f1 -= s[2] * c.damping;
            f2 -= thd * c.damping;
        }
        let inv_det = 1.0 / (-(mb * mb) + d11 * d22);
        let pdd = (f1 * d22 - mb * f2) * inv_det;
        let tdd = (f2 * d11 - mb * f1) * inv_det;
        let parts = DerivParts {
            a,
            b,
            mb,
            f1,
            f2,
            inv_det,
        };
        ([s[2], thd, pdd, tdd], parts)
    }

    /// Vector-Jacobian product of [`Self::deriv_row`]: adds `gᵀ ∂f/∂s` to `d_s` and returns
    /// `gᵀ ∂f/∂force`.
    fn deriv_row_vjp(&self, s: &Row, parts: &DerivParts, g: &Row, d_s: &mut Row) -> f32 {
        let c = &self.config;
        let m = c.pole_mass;
        let (d11, d22) = (c.cart_mass + m, c.pole_inertia);
        let DerivParts {
            a,
            b,
            mb,
            f1,
            f2,
            inv_det,
        } = *parts;
        let thd = s[3];
        d_s[2] += g[0];
        d_s[3] += g[1];
        let big_p = f1 * d22 - mb * f2;
        let big_t = f2 * d11 - mb * f1;
        let g_p = g[2] * inv_det;
        let g_t = g[3] * inv_det;
        let g_inv = g[2] * big_p + g[3] * big_t;
        let g_det = -g_inv * inv_det * inv_det;
        let g_f1 = g_p * d22 - g_t * mb;
        let g_f2 = g_t * d11 - g_p * mb;
        let g_mb = -g_p * f2 - g_t * f1 - 2.0 * mb * g_det;
        let g_a = g_f1 * m * thd * thd + g_f2 * m * GRAVITY as f32;
        d_s[3] += g_f1 * 2.0 * m * a * thd - g_f2 * c.damping;
        d_s[2] -= g_f1 * c.damping;
        let g_b = g_mb * m;
        // ∂a/∂θ = b and ∂b/∂θ = −a (rotation of the centre of mass).
        d_s[1] += g_a * b - g_b * a;
        g_f1
    }

    /// The four RK4 stage states of a sub-step from `s` and their derivatives.
    fn rk4_stages(&self, s: &Row, force: f32, h: f32) -> ([Row; 4], [(Row, DerivParts); 4]) {
        let axpy = |x: &Row, k: &Row, c: f32| -> Row { std::array::from_fn(|i| x[i] + k[i] * c) };
        let k1 = self.deriv_row(s, force);
        let s2 = axpy(s, &k1.0, h / 2.0);
        let k2 = self.deriv_row(&s2, force);
        let s3 = axpy(s, &k2.0, h / 2.0);
        let k3 = self.deriv_row(&s3, force);
        let s4 = axpy(s, &k3.0, h);
        let k4 = self.deriv_row(&s4, force);
        ([*s, s2, s3, s4], [k1, k2, k3, k4])
    }
}

impl PendulumModel {
    /// The model's reward `r(s')` on tensors, `[batch]` (of the state it is given).
    pub fn reward(&self, state: Tensor<2>, _action: Tensor<2>) -> Tensor<1> {
        let [batch, _] = state.dims();
        let w: Vec<f32> = REWARD_WEIGHTS.iter().map(|&w| -w as f32).collect();
        let w = tensor2(w, 1, 4, &state.device());
        state.square().mul(w).sum_dim(1).reshape([batch])
    }
}

impl TensorModel for PendulumModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn step(&self, state: Tensor<2>, action: Tensor<2>, noise: &[f32]) -> (Tensor<2>, Tensor<1>) {
        let reward = self.reward(state.clone(), action.clone());
        let mut next = self.dynamics(state, action);
        if !noise.is_empty() {
            let [batch, _] = next.dims();
            let mut rows = vec![0.0f32; batch * 4];
            for (row, &n) in rows.chunks_exact_mut(4).zip(noise) {
                row[0] = n;
            }
            let dev = next.device();
            next = next.add(tensor2(rows, batch, 4, &dev));
        }
        (next, reward)
    }

    fn draw_noise(&self, batch: usize, rng: &mut Pcg64Mcg, noise: &mut Vec<f32>) {
        noise.clear();
        let c = &self.config;
        if c.noise {
            let normal =
                Normal::new(c.noise_mean, c.noise_std).expect("noise std must be finite and >= 0");
            noise.extend((0..batch).map(|_| normal.sample(rng)));
        }
    }

    fn noise_mean(&self) -> Option<f32> {
        self.config.noise.then_some(self.config.noise_mean)
    }
}

impl PriorModel for PendulumModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn draw_noise(&self, batch: usize, rng: &mut Pcg64Mcg, noise: &mut Vec<f32>) {
        TensorModel::draw_noise(self, batch, rng, noise);
    }

    fn noise_mean(&self) -> Option<f32> {
        TensorModel::noise_mean(self)
    }

    fn tensor(&self) -> Option<&dyn TensorModel> {
        Some(self)
    }

    fn step_host(
        &self,
        state: &[f32],
        action: &[f32],
        noise: &[f32],
        next: &mut [f32],
        reward: &mut [f32],
        tape: &mut ModelTape,
    ) {
        let c = &self.config;
        let subs = c.substeps;
        tape.record(state, action, state.len() * subs);
        let h = STEP_DT as f32 / subs as f32;
        let w: Row = std::array::from_fn(|i| -REWARD_WEIGHTS[i] as f32);
        for (i, (row, saved)) in state
            .chunks_exact(4)
            .zip(tape.saved.chunks_exact_mut(4 * subs))
            .enumerate()
        {
            let mut s: Row = std::array::from_fn(|j| row[j]);
            reward[i] = (0..4).map(|j| s[j] * s[j] * w[j]).sum();
            let force = action[i] * GEAR as f32;
            for sub in saved.chunks_exact_mut(4) {
                sub.copy_from_slice(&s);
                s = if c.rk4 {
                    let (_, k) = self.rk4_stages(&s, force, h);
                    std::array::from_fn(|j| {
                        let sum = k[0].0[j] + (k[1].0[j] + k[2].0[j]) * 2.0 + k[3].0[j];
                        s[j] + sum * (h / 6.0)
                    })
                } else {
                    let (k, _) = self.deriv_row(&s, force);
                    std::array::from_fn(|j| s[j] + k[j] * h)
                };
            }
            if let Some(&n) = noise.get(i) {
                s[0] += n;
            }
            next[4 * i..4 * i + 4].copy_from_slice(&s);
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
        let c = &self.config;
        let subs = c.substeps;
        let h = STEP_DT as f32 / subs as f32;
        let weights = [h / 6.0, h / 3.0, h / 3.0, h / 6.0];
        let shifts = [h / 2.0, h / 2.0, h];
        for (i, saved) in tape.saved.chunks_exact(4 * subs).enumerate() {
            let force = tape.action[i] * GEAR as f32;
            let mut g: Row = std::array::from_fn(|j| d_next[4 * i + j]);
            let mut g_force = 0.0;
            for sub in saved.chunks_exact(4).rev() {
                let s: Row = std::array::from_fn(|j| sub[j]);
                let mut d_s = g;
                if c.rk4 {
                    // s' = s + Σ_j w_j k_j with k_j = f(s_j) and s_{j+1} = s + c_j k_j.
                    let (st, k) = self.rk4_stages(&s, force, h);
                    let mut g_k: [Row; 4] =
                        std::array::from_fn(|j| std::array::from_fn(|l| g[l] * weights[j]));
                    for j in (0..4).rev() {
                        let mut d_stage = [0.0; 4];
                        g_force += self.deriv_row_vjp(&st[j], &k[j].1, &g_k[j], &mut d_stage);
                        for l in 0..4 {
                            d_s[l] += d_stage[l];
                            if j > 0 {
                                g_k[j - 1][l] += d_stage[l] * shifts[j - 1];
                            }
                        }
                    }
                } else {
                    let (_, parts) = self.deriv_row(&s, force);
                    let g_k: Row = std::array::from_fn(|l| g[l] * h);
                    g_force += self.deriv_row_vjp(&s, &parts, &g_k, &mut d_s);
                }
                g = d_s;
            }
            let row = &tape.state[4 * i..4 * i + 4];
            for j in 0..4 {
                d_state[4 * i + j] = g[j] - d_reward[i] * 2.0 * REWARD_WEIGHTS[j] as f32 * row[j];
            }
            d_action[i] = g_force * GEAR as f32;
        }
    }
}
