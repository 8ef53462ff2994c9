//! Path tracking (paper §V-A): a vehicle follows a sinusoidal reference path at 20 m/s.
//!
//! Port of `envs_and_models/path_tracking_env.py` of the reference code (`idthanm/mpg`); see
//! `original-code-notes.md` §1 for the equations and parameters.
//!
//! * **Observation / model state** (6): `[v_x − 20, v_y, r, Δy, Δφ, x]` (the reference ordering),
//!   where `Δy = y − y_ref(x)` (global-y difference at the same `x`, not the perpendicular
//!   distance), `Δφ = φ − φ_ref(x)` wrapped, and `x` the longitudinal position, wrapped modulo
//!   1200 m (the period of the path).
//! * **Action** (2): normalised `a ∈ [−1, 1]²`; steer `δ = a0·1.2π/9` rad, `a_x = a1·3` m/s².
//!   The simulator clips `a` to the bounds; the prior model scales but does not clip.
//! * **Reward** `r(s, a) = −[0.01(v_x−20)² + 0.04Δy² + 0.1Δφ² + 0.02r² + 5δ² + 0.05a_x²]` on
//!   the *pre-step* state and the physical action (unscaled; learners apply `rew_scale`).
//! * **Simulator** ([`PathTrackingEnv`]): linear-tyre bicycle model with the reference's
//!   semi-implicit velocity update, 20 sub-steps of τ = 0.005 s per 0.1 s step; the global pose
//!   is Euler-integrated with the pre-sub-step velocities and heading, `v_x` clipped to [1, 35],
//!   and `Δy`, `Δφ` recomputed against the curved path once per 0.1 s step.
//! * **Prior model** ([`PathTrackingModel`], burn tensors): by default the paper's mismatched
//!   model (one Euler step of 0.1 s, straight-path error kinematics, biased noise `+N(0.5, 0.01)`
//!   on `Δy` every step); [`PathTrackingModelConfig::exact`] switches the mismatch off. Its
//!   fused host step computes the same f32 operations row by row, saving `(v_x, v_y, r, φ)` at
//!   the start of every sub-step for the hand-derived vector-Jacobian product.
//!
//! # Termination (deviation from the reference code)
//!
//! The reference computes the slip-angle bounds as `3μF_z/C` with *negative* cornering
//! stiffnesses, so the bounds are negative and its `done` is always true (every agent is
//! re-initialised after every step). This port implements the intended rule with positive
//! bounds, evaluated on the *post-step* state and the step's clipped action: an agent terminates
//! if `|Δy| > 3`, `|Δφ| > π/4`, `v_x < 2`, `|α_f| > 3μ_f F_zf/|C_f|`, `|α_r| > 3μ_r F_zr/|C_r|`
//! or `|r| > μ_r g/|v_x|`, with `α_f = atan((v_y + a r)/v_x) − δ`, `α_r = atan((v_y − b r)/v_x)`,
//! `μ_{f,r} = √((μF_z)² − F_x²)/F_z`, `F_xf = m a_x/2` and `F_xr = m a_x/2` when braking,
//! `F_xf = 0` and `F_xr = m a_x` otherwise. Learning treats the task as continuing (no `done`
//! masking anywhere, as the reference): termination is only a reset rule of data collection.
//!
//! # Other deviations and choices
//!
//! * Episodes are truncated after 200 steps since the agent's reset (the reference has no time
//!   limit in training; evaluation uses 200 fixed steps).
//! * `v_x` is clipped to [1, 35] after every sub-step (the reference clips after its dynamics
//!   call; with one model step these coincide).
//! * Angles are wrapped to `[−π, π)` (reference: `(−π, π]`), `x` to `[0, 1200)` (reference:
//!   `(0, 1200]`). [`Env::reset_to`] keeps `x` as given (the next step wraps it).
//! * For speed, the simulator keeps `(cos φ, sin φ)` and rotates it by the small angle `r·τ` each
//!   sub-step with a Taylor series instead of evaluating trig functions, evaluates the path with
//!   vectorisable polynomial `sin`/`cos`/`atan` (f32, ≈1e-7 accurate) once per step, and computes
//!   both semi-implicit divisions with one reciprocal. It runs in f32 (reference: f32 TF).
//!   Agents are processed in chunks of 64 lanes by a branch-free kernel compiled three times
//!   (baseline x86-64 = SSE2, AVX2+FMA, AVX-512) and selected at run time ([`Kernel`]); no
//!   `target-cpu` flag is needed and the variants give bit-identical results (no op is fused
//!   or reordered). A single agent still pays for one 64-lane chunk.
//! * The observation caches `v_x − 20`, `Δy` and `Δφ`, so [`Env::reset_to`] round-trips exactly
//!   (the global pose `y`, `φ` is reconstructed from them in f64).
//! * The exact model (`curved_path: true`) also wraps `x` modulo 1200 (the mismatched model, as
//!   the reference, does not). Wrap offsets are computed on detached values, so gradients pass
//!   through wraps as the identity; the `v_x` clamp has zero gradient outside [1, 35].
//! * Reset distribution (per agent, in this sampling order): `x ~ U(0, 600)`, `Δy ~ N(0, 1)`,
//!   `Δφ ~ N(0, π/9)`, `v_x ~ U(15, 25)`, `β ~ N(0, 0.15)`, `v_y = v_x tan β`, `r ~ N(0, 0.3)`
//!   (standard deviations), from a `Pcg64Mcg` seeded by the reset seed.

use std::f32::consts::PI;

use burn::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal};
use rand_pcg::Pcg64Mcg;

use super::{Env, ModelTape, PriorModel, StepOut, TaskSpec, TensorModel, Termination};

/// Front cornering stiffness [N/rad] (negative sign convention).
pub const C_F: f32 = -128_915.5;
/// Rear cornering stiffness [N/rad].
pub const C_R: f32 = -85_943.6;
/// Distance from the centre of gravity to the front axle [m].
pub const L_A: f32 = 1.06;
/// Distance from the centre of gravity to the rear axle [m].
pub const L_B: f32 = 1.85;
/// Vehicle mass [kg].
pub const MASS: f32 = 1412.0;
/// Yaw moment of inertia [kg·m²].
pub const I_Z: f32 = 1536.7;
/// Tyre-road friction coefficient.
pub const MU: f32 = 1.0;
/// Gravity [m/s²].
pub const GRAVITY: f32 = 9.81;
/// Static front axle load [N].
pub const F_ZF: f32 = L_B * MASS * GRAVITY / (L_A + L_B);
/// Static rear axle load [N].
pub const F_ZR: f32 = L_A * MASS * GRAVITY / (L_A + L_B);
/// Steering scale: `δ = a0 · STEER_SCALE` (24°).
pub const STEER_SCALE: f32 = 1.2 * PI / 9.0;
/// Acceleration scale: `a_x = a1 · ACC_SCALE`.
pub const ACC_SCALE: f32 = 3.0;
/// Duration of one environment step [s].
pub const DT: f32 = 0.1;
/// Sub-steps per environment step in the simulator.
pub const SUBSTEPS: usize = 20;
/// Period of the reference path [m].
pub const PATH_PERIOD: f32 = 1200.0;
/// Target speed; the observation holds `v_x − V_REF`.
pub const V_REF: f32 = 20.0;
/// Speed bounds applied after every (sub-)step.
pub const VX_MIN: f32 = 1.0;
/// Upper speed bound.
pub const VX_MAX: f32 = 35.0;
/// Episode length (truncation) in steps.
pub const EPISODE_LEN: usize = 200;
/// Mean of the mismatched model's biased noise on `Δy`.
pub const NOISE_MEAN: f32 = 0.5;
/// Standard deviation of the mismatched model's biased noise on `Δy`.
pub const NOISE_STD: f32 = 0.01;

const TAU: f32 = DT / SUBSTEPS as f32;
/// Coupling coefficients of the semi-implicit lateral update.
const K1: f32 = L_A * C_F - L_B * C_R;
/// See [`K1`].
const K2: f32 = L_A * L_A * C_F + L_B * L_B * C_R;
const TWO_PI: f32 = 2.0 * PI;
/// Path components `(amplitude, wavelength)`: y_ref = Σ A sin(2πx/λ).
const PATH: [(f32, f32); 3] = [(7.5, 200.0), (2.5, 300.0), (-5.0, 400.0)];

/// The task description.
pub fn spec() -> TaskSpec {
    TaskSpec {
        title: Some("Path tracking".to_string()),
        obs_scale: vec![1.0, 1.0, 2.0, 1.0, 2.4, 1.0 / 1200.0],
        goals: vec![-100.0, -30.0, -10.0, -5.0],
        min_requirement: Some(-30.0),
        termination: Termination::Continuing,
        ..TaskSpec::new(
            "path_tracking",
            6,
            vec![-1.0, -1.0],
            vec![1.0, 1.0],
            EPISODE_LEN,
        )
    }
}

/// Reference path `y_ref(x)` (f64, exact trig).
pub fn y_ref(x: f64) -> f64 {
    PATH.iter()
        .map(|&(a, l)| a as f64 * (std::f64::consts::TAU * x / l as f64).sin())
        .sum()
}

/// Reference heading `φ_ref(x) = atan(dy_ref/dx)` (f64, exact trig).
pub fn phi_ref(x: f64) -> f64 {
    let w = std::f64::consts::TAU;
    PATH.iter()
        .map(|&(a, l)| a as f64 * w / l as f64 * (w * x / l as f64).cos())
        .sum::<f64>()
        .atan()
}

#[doc(hidden)]
/// Test hooks for the vectorisable math (not part of the task API).
pub mod fast_math {
    /// `floor`.
    pub fn floor(v: f32) -> f32 {
        super::floor_fast(v)
    }
    /// `(sin 2πu, cos 2πu)`.
    pub fn sincos_turns(u: f32) -> (f32, f32) {
        super::sincos_turns(u)
    }
    /// `atan`.
    pub fn atan(v: f32) -> f32 {
        super::atan_fast(v)
    }
}

/// Wrap an angle to `[−π, π)`.
pub fn wrap_angle(a: f32) -> f32 {
    a - TWO_PI * ((a + PI) / TWO_PI).floor()
}

/// The reward `r(s, a)` for an observation and a normalised action (clipped to [−1, 1]).
pub fn reward(obs: &[f32], action: &[f32]) -> f32 {
    let delta = action[0].clamp(-1.0, 1.0) * STEER_SCALE;
    let ax = action[1].clamp(-1.0, 1.0) * ACC_SCALE;
    reward_phys(obs[0], obs[2], obs[3], obs[4], delta, ax)
}

#[inline(always)]
fn reward_phys(dvx: f32, r: f32, dy: f32, dphi: f32, delta: f32, ax: f32) -> f32 {
    -(0.01 * dvx * dvx
        + 0.04 * dy * dy
        + 0.1 * dphi * dphi
        + 0.02 * r * r
        + 5.0 * delta * delta
        + 0.05 * ax * ax)
}

// ---------------------------------------------------------------------------------------------
// Vectorisable f32 math (branch-free; LLVM turns the `if`s into selects).
// ---------------------------------------------------------------------------------------------

/// 1.5·2²³: adding and subtracting it rounds an f32 with |v| < 2²² to the nearest integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `floor(v)` without a libm call (SSE2 has no vector floor); exact for every f32.
#[inline(always)]
fn floor_fast(v: f32) -> f32 {
    const TWO23: f32 = 8_388_608.0;
    let a = v.abs();
    // |v| < 2²³: adding 2²³ rounds |v| to an integer; larger values are integers already.
    let ra = (a + TWO23) - TWO23;
    let t = if a < TWO23 { ra.copysign(v) } else { v };
    if t > v { t - 1.0 } else { t }
}

/// `(sin 2πu, cos 2πu)` for an angle `u` in turns, |u| < 2²⁰.
#[inline(always)]
fn sincos_turns(u: f32) -> (f32, f32) {
    let t = u * 4.0 + ROUND_MAGIC;
    let q = t.to_bits() & 3;
    let k = t - ROUND_MAGIC;
    let x = (u - k * 0.25) * TWO_PI; // in [−π/4, π/4]
    let z = x * x;
    // Cephes sinf / cosf minimax polynomials on [−π/4, π/4].
    let s = ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * x + x;
    let c = ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
    let swap = q & 1 != 0;
    let (s0, c0) = if swap { (c, -s) } else { (s, c) };
    let neg = if q & 2 != 0 { -1.0 } else { 1.0 };
    (s0 * neg, c0 * neg)
}

/// `atan(v)` (Cephes atanf, ≈1e-7 relative).
#[inline(always)]
fn atan_fast(v: f32) -> f32 {
    let a = v.abs();
    let big = a > 2.414_213_6;
    let mid = a > 0.414_213_57;
    let num = if big {
        -1.0
    } else if mid {
        a - 1.0
    } else {
        a
    };
    let den = if big {
        a
    } else if mid {
        a + 1.0
    } else {
        1.0
    };
    let y0 = if big {
        PI / 2.0
    } else if mid {
        PI / 4.0
    } else {
        0.0
    };
    let x = num / den;
    let z = x * x;
    let y = y0
        + (((8.053_744_5e-2 * z - 1.387_768_6e-1) * z + 1.997_771_1e-1) * z - 3.333_295e-1) * z * x
        + x;
    if v < 0.0 { -y } else { y }
}

/// `(y_ref(x), φ_ref(x))` with the fast functions.
#[inline(always)]
fn path_fast(x: f32) -> (f32, f32) {
    let mut y = 0.0;
    let mut dydx = 0.0;
    for &(a, l) in &PATH {
        let (s, c) = sincos_turns(x * (1.0 / l));
        y += a * s;
        dydx += a * (TWO_PI / l) * c;
    }
    (y, atan_fast(dydx))
}

#[inline(always)]
fn clip_vx(v: f32) -> f32 {
    let v = if v < VX_MIN { VX_MIN } else { v };
    if v > VX_MAX { VX_MAX } else { v }
}

/// Friction utilisations `(μ_f, μ_r)` left for lateral force at longitudinal acceleration `ax`.
#[inline(always)]
fn mu_fr(ax: f32) -> (f32, f32) {
    let fxf = if ax < 0.0 { MASS * ax * 0.5 } else { 0.0 };
    let fxr = if ax < 0.0 { MASS * ax * 0.5 } else { MASS * ax };
    let mf = ((MU * F_ZF) * (MU * F_ZF) - fxf * fxf).max(0.0).sqrt() / F_ZF;
    let mr = ((MU * F_ZR) * (MU * F_ZR) - fxr * fxr).max(0.0).sqrt() / F_ZR;
    (mf, mr)
}

// ---------------------------------------------------------------------------------------------
// Simulator
// ---------------------------------------------------------------------------------------------

/// Agents processed together by the kernel (fixed trip counts for auto-vectorisation).
const LANES: usize = 64;

/// One chunk of agents, structure of arrays.
#[derive(Clone, Copy)]
struct Chunk {
    /// Cached `v_x − 20` (observation).
    dvx: [f32; LANES],
    vx: [f32; LANES],
    vy: [f32; LANES],
    r: [f32; LANES],
    x: [f32; LANES],
    y: [f32; LANES],
    phi: [f32; LANES],
    dy: [f32; LANES],
    dphi: [f32; LANES],
    delta: [f32; LANES],
    ax: [f32; LANES],
    reward: [f32; LANES],
    term: [bool; LANES],
}

impl Chunk {
    const fn new() -> Self {
        Self {
            dvx: [0.0; LANES],
            vx: [V_REF; LANES],
            vy: [0.0; LANES],
            r: [0.0; LANES],
            x: [0.0; LANES],
            y: [0.0; LANES],
            phi: [0.0; LANES],
            dy: [0.0; LANES],
            dphi: [0.0; LANES],
            delta: [0.0; LANES],
            ax: [0.0; LANES],
            reward: [0.0; LANES],
            term: [false; LANES],
        }
    }
}

/// Advance one chunk by one 0.1 s step (reward, 20 sub-steps, path errors, termination).
#[inline(always)]
fn kernel(c: &mut Chunk) {
    let mut cs = [0.0f32; LANES];
    let mut sn = [0.0f32; LANES];
    for i in 0..LANES {
        c.reward[i] = reward_phys(c.dvx[i], c.r[i], c.dy[i], c.dphi[i], c.delta[i], c.ax[i]);
        let (s, co) = sincos_turns(c.phi[i] * (1.0 / TWO_PI));
        sn[i] = s;
        cs[i] = co;
    }
    for _ in 0..SUBSTEPS {
        for i in 0..LANES {
            let (vx, vy, r, co, s) = (c.vx[i], c.vy[i], c.r[i], cs[i], sn[i]);
            c.x[i] += TAU * (vx * co - vy * s);
            c.y[i] += TAU * (vx * s + vy * co);
            let th = TAU * r;
            let th2 = th * th;
            let ct = 1.0 - th2 * (0.5 - th2 * (1.0 / 24.0));
            let st = th * (1.0 - th2 * (1.0 / 6.0));
            cs[i] = co * ct - s * st;
            sn[i] = s * ct + co * st;
            c.phi[i] += th;
            let delta = c.delta[i];
            let d1 = MASS * vx - TAU * (C_F + C_R);
            let d2 = TAU * K2 - I_Z * vx;
            let inv = 1.0 / (d1 * d2);
            let nvy =
                MASS * vy * vx + TAU * K1 * r - TAU * C_F * delta * vx - TAU * MASS * vx * vx * r;
            let nr = -I_Z * r * vx - TAU * K1 * vy + TAU * L_A * C_F * delta * vx;
            c.vy[i] = nvy * (d2 * inv);
            c.r[i] = nr * (d1 * inv);
            c.vx[i] = clip_vx(vx + TAU * (c.ax[i] + vy * r));
        }
    }
    for i in 0..LANES {
        let x = c.x[i] - PATH_PERIOD * floor_fast(c.x[i] * (1.0 / PATH_PERIOD));
        c.x[i] = x;
        c.dvx[i] = c.vx[i] - V_REF;
        let phi = c.phi[i];
        let phi = phi - TWO_PI * floor_fast((phi + PI) * (1.0 / TWO_PI));
        c.phi[i] = phi;
        let (yr, pr) = path_fast(x);
        let dy = c.y[i] - yr;
        let d = phi - pr;
        let dphi = d - TWO_PI * floor_fast((d + PI) * (1.0 / TWO_PI));
        c.dy[i] = dy;
        c.dphi[i] = dphi;
        // Termination on the post-step state and this step's action.
        let (vx, vy, r) = (c.vx[i], c.vy[i], c.r[i]);
        let (mf, mr) = mu_fr(c.ax[i]);
        let alpha_f = atan_fast((vy + L_A * r) / vx) - c.delta[i];
        let alpha_r = atan_fast((vy - L_B * r) / vx);
        let bf = 3.0 * mf * F_ZF / -C_F;
        let br = 3.0 * mr * F_ZR / -C_R;
        let rb = mr * GRAVITY / vx.abs();
        c.term[i] = (dy.abs() > 3.0)
            | (dphi.abs() > PI / 4.0)
            | (vx < 2.0)
            | (alpha_f.abs() > bf)
            | (alpha_r.abs() > br)
            | (r.abs() > rb);
    }
}

fn kernel_generic(c: &mut Chunk) {
    kernel(c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn kernel_avx2(c: &mut Chunk) {
    kernel(c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
fn kernel_avx512(c: &mut Chunk) {
    kernel(c)
}

/// Which compiled kernel runs (runtime CPU feature detection; results are bit-identical since
/// no operation is reordered or fused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Baseline target features.
    Generic,
    /// AVX2 + FMA (x86-64).
    Avx2,
    /// AVX-512 (x86-64).
    Avx512,
}

impl Kernel {
    /// The best kernel for this CPU.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernel::Avx2;
            }
        }
        Kernel::Generic
    }

    fn run(self, c: &mut Chunk) {
        match self {
            Kernel::Generic => kernel_generic(c),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` verified the CPU supports the enabled features.
            Kernel::Avx2 => unsafe { kernel_avx2(c) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx512 => unsafe { kernel_avx512(c) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => kernel_generic(c),
        }
    }
}

/// The true path-tracking simulator: `num_agents` vehicles in structure-of-arrays f32.
pub struct PathTrackingEnv {
    spec: TaskSpec,
    n: usize,
    rng: Pcg64Mcg,
    kernel: Kernel,
    /// Cached `v_x − 20` (observation; `reset_to` round-trips exactly).
    dvx: Vec<f32>,
    vx: Vec<f32>,
    vy: Vec<f32>,
    r: Vec<f32>,
    x: Vec<f32>,
    /// Global lateral position.
    y: Vec<f32>,
    /// Global heading, wrapped.
    phi: Vec<f32>,
    /// Cached lateral error (observation).
    dy: Vec<f32>,
    /// Cached heading error (observation).
    dphi: Vec<f32>,
    steps: Vec<u32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    chunk: Box<Chunk>,
}

impl PathTrackingEnv {
    /// Agent `i`'s state fields, in the order dvx, vx, vy, r, x, y, phi, dy, dphi (saved and
    /// restored around a step by `step_active`).
    fn fields_mut(&mut self, i: usize) -> [&mut f32; 9] {
        [
            &mut self.dvx[i],
            &mut self.vx[i],
            &mut self.vy[i],
            &mut self.r[i],
            &mut self.x[i],
            &mut self.y[i],
            &mut self.phi[i],
            &mut self.dy[i],
            &mut self.dphi[i],
        ]
    }

    /// `num_agents` agents reset from the initial distribution with `seed`.
    pub fn new(num_agents: usize, seed: u64) -> Self {
        let mut env = Self {
            spec: spec(),
            n: 0,
            rng: Pcg64Mcg::seed_from_u64(seed),
            kernel: Kernel::detect(),
            dvx: Vec::new(),
            vx: Vec::new(),
            vy: Vec::new(),
            r: Vec::new(),
            x: Vec::new(),
            y: Vec::new(),
            phi: Vec::new(),
            dy: Vec::new(),
            dphi: Vec::new(),
            steps: Vec::new(),
            terminated: Vec::new(),
            truncated: Vec::new(),
            chunk: Box::new(Chunk::new()),
        };
        env.resize(num_agents);
        env.reset(seed);
        env
    }

    /// Force a kernel (e.g. [`Kernel::Generic`] for comparisons); must be supported by the CPU.
    pub fn set_kernel(&mut self, kernel: Kernel) {
        let best = Kernel::detect();
        let ok = match kernel {
            Kernel::Generic => true,
            Kernel::Avx2 => best != Kernel::Generic,
            Kernel::Avx512 => best == Kernel::Avx512,
        };
        assert!(ok, "kernel {kernel:?} is not supported by this CPU");
        self.kernel = kernel;
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Steps since each agent's last reset.
    pub fn steps_since_reset(&self) -> &[u32] {
        &self.steps
    }

    fn resize(&mut self, n: usize) {
        self.n = n;
        for v in [
            &mut self.dvx,
            &mut self.vx,
            &mut self.vy,
            &mut self.r,
            &mut self.x,
            &mut self.y,
            &mut self.phi,
            &mut self.dy,
            &mut self.dphi,
        ] {
            v.resize(n, 0.0);
        }
        self.steps.resize(n, 0);
        self.terminated.resize(n, false);
        self.truncated.resize(n, false);
    }

    fn set_agent(&mut self, i: usize, obs: &[f32]) {
        let x = obs[5];
        let (dy, dphi) = (obs[3], wrap_angle(obs[4]));
        self.dvx[i] = obs[0];
        self.vx[i] = obs[0] + V_REF;
        self.vy[i] = obs[1];
        self.r[i] = obs[2];
        self.x[i] = x;
        self.y[i] = (y_ref(x as f64) + dy as f64) as f32;
        self.phi[i] = wrap_angle((phi_ref(x as f64) + dphi as f64) as f32);
        self.dy[i] = dy;
        self.dphi[i] = dphi;
        self.steps[i] = 0;
        self.terminated[i] = false;
        self.truncated[i] = false;
    }

    fn sample_agent(&mut self, i: usize) {
        let rng = &mut self.rng;
        let x: f32 = rng.random_range(0.0..600.0);
        let dy: f32 = rng.sample(StandardNormal);
        let dphi = rng.sample::<f32, _>(StandardNormal) * (PI / 9.0);
        let vx: f32 = rng.random_range(15.0..25.0);
        let beta = rng.sample::<f32, _>(StandardNormal) * 0.15;
        let r = rng.sample::<f32, _>(StandardNormal) * 0.3;
        let obs = [vx - V_REF, vx * beta.tan(), r, dy, dphi, x];
        self.set_agent(i, &obs);
    }
}

impl Env for PathTrackingEnv {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn num_agents(&self) -> usize {
        self.n
    }

    fn reset(&mut self, seed: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(seed);
        for i in 0..self.n {
            self.sample_agent(i);
        }
    }

    fn reset_done(&mut self) {
        for i in 0..self.n {
            if self.terminated[i] || self.truncated[i] {
                self.sample_agent(i);
            }
        }
    }

    fn reset_to(&mut self, states: &[f32]) {
        assert_eq!(states.len() % 6, 0, "reset_to expects rows of 6 values");
        self.resize(states.len() / 6);
        for (i, row) in states.chunks_exact(6).enumerate() {
            self.set_agent(i, row);
        }
    }

    fn observe(&self, out: &mut Vec<f32>) {
        out.clear();
        out.reserve(self.n * 6);
        for i in 0..self.n {
            out.extend_from_slice(&[
                self.dvx[i],
                self.vy[i],
                self.r[i],
                self.dy[i],
                self.dphi[i],
                self.x[i],
            ]);
        }
    }

    fn step(&mut self, actions: &[f32], out: &mut StepOut) {
        let n = self.n;
        assert_eq!(actions.len(), n * 2, "actions must be num_agents * 2");
        out.next_obs.resize(n * 6, 0.0);
        out.reward.resize(n, 0.0);
        out.terminated.resize(n, false);
        out.truncated.resize(n, false);
        let kernel = self.kernel;
        let c = &mut *self.chunk;
        let mut start = 0;
        while start < n {
            let len = LANES.min(n - start);
            let rg = start..start + len;
            c.dvx[..len].copy_from_slice(&self.dvx[rg.clone()]);
            c.vx[..len].copy_from_slice(&self.vx[rg.clone()]);
            c.vy[..len].copy_from_slice(&self.vy[rg.clone()]);
            c.r[..len].copy_from_slice(&self.r[rg.clone()]);
            c.x[..len].copy_from_slice(&self.x[rg.clone()]);
            c.y[..len].copy_from_slice(&self.y[rg.clone()]);
            c.phi[..len].copy_from_slice(&self.phi[rg.clone()]);
            c.dy[..len].copy_from_slice(&self.dy[rg.clone()]);
            c.dphi[..len].copy_from_slice(&self.dphi[rg.clone()]);
            for (j, a) in actions[2 * start..2 * (start + len)]
                .chunks_exact(2)
                .enumerate()
            {
                c.delta[j] = a[0].clamp(-1.0, 1.0) * STEER_SCALE;
                c.ax[j] = a[1].clamp(-1.0, 1.0) * ACC_SCALE;
            }
            if len < LANES {
                // Benign padding for the unused lanes.
                c.vx[len..].fill(V_REF);
                for v in [
                    &mut c.dvx,
                    &mut c.vy,
                    &mut c.r,
                    &mut c.x,
                    &mut c.y,
                    &mut c.phi,
                    &mut c.dy,
                    &mut c.dphi,
                    &mut c.delta,
                    &mut c.ax,
                ] {
                    v[len..].fill(0.0);
                }
            }
            kernel.run(c);
            self.dvx[rg.clone()].copy_from_slice(&c.dvx[..len]);
            self.vx[rg.clone()].copy_from_slice(&c.vx[..len]);
            self.vy[rg.clone()].copy_from_slice(&c.vy[..len]);
            self.r[rg.clone()].copy_from_slice(&c.r[..len]);
            self.x[rg.clone()].copy_from_slice(&c.x[..len]);
            self.y[rg.clone()].copy_from_slice(&c.y[..len]);
            self.phi[rg.clone()].copy_from_slice(&c.phi[..len]);
            self.dy[rg.clone()].copy_from_slice(&c.dy[..len]);
            self.dphi[rg.clone()].copy_from_slice(&c.dphi[..len]);
            out.reward[rg.clone()].copy_from_slice(&c.reward[..len]);
            for j in 0..len {
                let i = start + j;
                let o = &mut out.next_obs[6 * i..6 * i + 6];
                o[0] = c.dvx[j];
                o[1] = c.vy[j];
                o[2] = c.r[j];
                o[3] = c.dy[j];
                o[4] = c.dphi[j];
                o[5] = c.x[j];
                self.steps[i] = self.steps[i].saturating_add(1);
                let trunc = self.steps[i] as usize >= EPISODE_LEN;
                self.terminated[i] = c.term[j];
                self.truncated[i] = trunc;
                out.terminated[i] = c.term[j];
                out.truncated[i] = trunc;
            }
            start += len;
        }
    }

    fn step_active(&mut self, actions: &[f32], active: &[bool], out: &mut StepOut) {
        assert_eq!(active.len(), self.n, "one active flag per agent");
        let held: Vec<(usize, [f32; 9], u32, bool, bool)> = (0..self.n)
            .filter(|&i| !active[i])
            .map(|i| {
                let f = self.fields_mut(i).map(|v| *v);
                (i, f, self.steps[i], self.terminated[i], self.truncated[i])
            })
            .collect();
        self.step(actions, out);
        for (i, f, steps, term, trunc) in held {
            for (v, x) in self.fields_mut(i).into_iter().zip(f) {
                *v = x;
            }
            self.steps[i] = steps;
            self.terminated[i] = term;
            self.truncated[i] = trunc;
            let obs = [f[0], f[2], f[3], f[7], f[8], f[4]];
            super::hold_row(out, i, &obs);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prior model
// ---------------------------------------------------------------------------------------------

/// Switches of the prior model's mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathTrackingModelConfig {
    /// Add the biased noise `N(0.5, 0.01)` to `Δy` every step.
    pub noise: bool,
    /// Euler sub-steps per 0.1 s step (`τ = 0.1/substeps`).
    pub substeps: usize,
    /// Propagate `Δy`, `Δφ` against the curved reference path (and wrap `x` modulo 1200)
    /// instead of the straight-path error kinematics.
    pub curved_path: bool,
}

impl PathTrackingModelConfig {
    /// The paper's prior model: one Euler step of 0.1 s, straight path, biased noise.
    pub fn mismatched() -> Self {
        Self {
            noise: true,
            substeps: 1,
            curved_path: false,
        }
    }

    /// Mismatch switched off: the simulator's integration, no noise.
    pub fn exact() -> Self {
        Self {
            noise: false,
            substeps: SUBSTEPS,
            curved_path: true,
        }
    }

    /// [`Self::mismatched`] if `mismatch`, else [`Self::exact`].
    pub fn mismatch_flag(mismatch: bool) -> Self {
        if mismatch {
            Self::mismatched()
        } else {
            Self::exact()
        }
    }
}

impl Default for PathTrackingModelConfig {
    fn default() -> Self {
        Self::mismatched()
    }
}

/// The differentiable prior model of path tracking (burn tensors).
#[derive(Debug, Clone)]
pub struct PathTrackingModel {
    spec: TaskSpec,
    cfg: PathTrackingModelConfig,
}

impl PathTrackingModel {
    /// A model with the given mismatch switches.
    pub fn new(cfg: PathTrackingModelConfig) -> Self {
        assert!(cfg.substeps >= 1, "substeps must be at least 1");
        Self { spec: spec(), cfg }
    }

    /// The configuration.
    pub fn config(&self) -> PathTrackingModelConfig {
        self.cfg
    }
}

fn col(t: &Tensor<2>, i: usize) -> Tensor<2> {
    t.clone().narrow(1, i, 1)
}

/// Subtract `period·floor((v + shift)/period)`, the offset computed without gradient.
fn wrap_t(v: Tensor<2>, shift: f32, period: f32) -> Tensor<2> {
    let k = v
        .clone()
        .detach()
        .add_scalar(shift)
        .div_scalar(period)
        .floor()
        .mul_scalar(period);
    v.sub(k)
}

/// `(y_ref(x), φ_ref(x))` on tensors.
fn path_t(x: &Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let mut y: Option<Tensor<2>> = None;
    let mut d: Option<Tensor<2>> = None;
    for &(a, l) in &PATH {
        let arg = x.clone().mul_scalar(TWO_PI / l);
        let s = arg.clone().sin().mul_scalar(a);
        let c = arg.cos().mul_scalar(a * TWO_PI / l);
        y = Some(match y {
            Some(t) => t.add(s),
            None => s,
        });
        d = Some(match d {
            Some(t) => t.add(c),
            None => c,
        });
    }
    (y.expect("path terms"), d.expect("path terms").atan())
}

/// `(y_ref, dy_ref/dx, d²y_ref/dx²)` at `x` with the same f32 operations as [`path_t`].
fn path_row(x: f32) -> (f32, f32, f32) {
    let (mut y, mut d, mut dd) = (0.0, 0.0, 0.0);
    for &(a, l) in &PATH {
        let arg = x * (TWO_PI / l);
        let (s, c) = (arg.sin(), arg.cos());
        y += s * a;
        d += c * (a * TWO_PI / l);
        dd -= s * (a * TWO_PI / l * (TWO_PI / l));
    }
    (y, d, dd)
}

/// Saved values per sub-step: `v_x, v_y, r, φ` at its start.
const SAVED_PER_SUBSTEP: usize = 4;

impl PathTrackingModel {
    /// Values saved per row: every sub-step's start, then `x` before the final wrap.
    fn saved_per_row(&self) -> usize {
        SAVED_PER_SUBSTEP * self.cfg.substeps + 1
    }
}

impl PathTrackingModel {
    /// The reward `r(s, a)` on tensors, `[batch]`.
    pub fn reward(&self, state: Tensor<2>, action: Tensor<2>) -> Tensor<1> {
        let [b, _] = state.dims();
        let dvx = col(&state, 0);
        let r = col(&state, 2);
        let dy = col(&state, 3);
        let dphi = col(&state, 4);
        let delta = col(&action, 0).mul_scalar(STEER_SCALE);
        let ax = col(&action, 1).mul_scalar(ACC_SCALE);
        let cost = dvx
            .square()
            .mul_scalar(0.01)
            .add(dy.square().mul_scalar(0.04))
            .add(dphi.square().mul_scalar(0.1))
            .add(r.square().mul_scalar(0.02))
            .add(delta.square().mul_scalar(5.0))
            .add(ax.square().mul_scalar(0.05));
        cost.neg().reshape([b])
    }
}

impl TensorModel for PathTrackingModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn step(&self, state: Tensor<2>, action: Tensor<2>, noise: &[f32]) -> (Tensor<2>, Tensor<1>) {
        let reward = self.reward(state.clone(), action.clone());
        let [b, _] = state.dims();
        let cfg = self.cfg;
        let tau = DT / cfg.substeps as f32;
        let mut vx = col(&state, 0).add_scalar(V_REF);
        let mut vy = col(&state, 1);
        let mut r = col(&state, 2);
        let mut x = col(&state, 5);
        let delta = col(&action, 0).mul_scalar(STEER_SCALE);
        let ax = col(&action, 1).mul_scalar(ACC_SCALE);
        // Pose relative to the global frame (curved path) or to a straight path (Δy, Δφ).
        let (mut y, mut phi) = if cfg.curved_path {
            let (yr, pr) = path_t(&x);
            (col(&state, 3).add(yr), col(&state, 4).add(pr))
        } else {
            (col(&state, 3), col(&state, 4))
        };
        for _ in 0..cfg.substeps {
            let c = phi.clone().cos();
            let s = phi.clone().sin();
            let nx = x.add(
                vx.clone()
                    .mul(c.clone())
                    .sub(vy.clone().mul(s.clone()))
                    .mul_scalar(tau),
            );
            let ny = y.add(vx.clone().mul(s).add(vy.clone().mul(c)).mul_scalar(tau));
            let nphi = phi.add(r.clone().mul_scalar(tau));
            let vx_delta = vx.clone().mul(delta.clone());
            let nvy_num = vy
                .clone()
                .mul(vx.clone())
                .mul_scalar(MASS)
                .add(r.clone().mul_scalar(tau * K1))
                .sub(vx_delta.clone().mul_scalar(tau * C_F))
                .sub(vx.clone().square().mul(r.clone()).mul_scalar(tau * MASS));
            let nvy_den = vx.clone().mul_scalar(MASS).add_scalar(-tau * (C_F + C_R));
            let nr_num = r
                .clone()
                .mul(vx.clone())
                .mul_scalar(-I_Z)
                .sub(vy.clone().mul_scalar(tau * K1))
                .add(vx_delta.mul_scalar(tau * L_A * C_F));
            let nr_den = vx.clone().mul_scalar(-I_Z).add_scalar(tau * K2);
            let nvx = vx
                .add(ax.clone().add(vy.clone().mul(r.clone())).mul_scalar(tau))
                .clamp(VX_MIN, VX_MAX);
            vy = nvy_num.div(nvy_den);
            r = nr_num.div(nr_den);
            vx = nvx;
            x = nx;
            y = ny;
            phi = nphi;
        }
        let (mut dy, dphi) = if cfg.curved_path {
            let (yr, pr) = path_t(&x);
            x = wrap_t(x, 0.0, PATH_PERIOD);
            (y.sub(yr), phi.sub(pr))
        } else {
            (y, phi)
        };
        let dphi = wrap_t(dphi, PI, TWO_PI);
        if !noise.is_empty() {
            let noise = Tensor::<2>::from_data(
                burn::tensor::TensorData::new(noise.to_vec(), [b, 1]),
                &dy.device(),
            );
            dy = dy.add(noise);
        }
        let next = Tensor::cat(vec![vx.sub_scalar(V_REF), vy, r, dy, dphi, x], 1);
        (next, reward)
    }

    fn draw_noise(&self, batch: usize, rng: &mut Pcg64Mcg, noise: &mut Vec<f32>) {
        noise.clear();
        if self.cfg.noise {
            let normal = Normal::new(NOISE_MEAN, NOISE_STD).expect("valid normal");
            noise.extend((0..batch).map(|_| normal.sample(rng)));
        }
    }

    fn noise_mean(&self) -> Option<f32> {
        self.cfg.noise.then_some(NOISE_MEAN)
    }
}

impl PriorModel for PathTrackingModel {
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
        let cfg = self.cfg;
        let per_row = self.saved_per_row();
        tape.record(state, action, state.len() / 6 * per_row);
        let tau = DT / cfg.substeps as f32;
        let rows = state.chunks_exact(6).zip(action.chunks_exact(2));
        let outs = next
            .chunks_exact_mut(6)
            .zip(tape.saved.chunks_exact_mut(per_row));
        for (i, ((st, act), (out, saved))) in rows.zip(outs).enumerate() {
            let (dvx, r0, dy0, dphi0) = (st[0], st[2], st[3], st[4]);
            let delta = act[0] * STEER_SCALE;
            let ax = act[1] * ACC_SCALE;
            reward[i] = -(dvx * dvx * 0.01
                + dy0 * dy0 * 0.04
                + dphi0 * dphi0 * 0.1
                + r0 * r0 * 0.02
                + delta * delta * 5.0
                + ax * ax * 0.05);
            let (mut vx, mut vy, mut r, mut x) = (dvx + V_REF, st[1], r0, st[5]);
            let (mut y, mut phi) = if cfg.curved_path {
                let (yr, d, _) = path_row(x);
                (dy0 + yr, dphi0 + d.atan())
            } else {
                (dy0, dphi0)
            };
            for sub in saved[..per_row - 1].chunks_exact_mut(SAVED_PER_SUBSTEP) {
                sub.copy_from_slice(&[vx, vy, r, phi]);
                let (c, s) = (phi.cos(), phi.sin());
                x += (vx * c - vy * s) * tau;
                y += (vx * s + vy * c) * tau;
                phi += r * tau;
                let vx_delta = vx * delta;
                let nvy_num = vy * vx * MASS + r * (tau * K1)
                    - vx_delta * (tau * C_F)
                    - vx * vx * r * (tau * MASS);
                let nvy_den = vx * MASS + -tau * (C_F + C_R);
                let nr_num = r * vx * -I_Z - vy * (tau * K1) + vx_delta * (tau * L_A * C_F);
                let nr_den = vx * -I_Z + tau * K2;
                let nvx = (vx + (ax + vy * r) * tau).clamp(VX_MIN, VX_MAX);
                vy = nvy_num / nvy_den;
                r = nr_num / nr_den;
                vx = nvx;
            }
            saved[per_row - 1] = x;
            let (mut dy, dphi) = if cfg.curved_path {
                let (yr, d, _) = path_row(x);
                x -= (x / PATH_PERIOD).floor() * PATH_PERIOD;
                (y - yr, phi - d.atan())
            } else {
                (y, phi)
            };
            let dphi = dphi - ((dphi + PI) / TWO_PI).floor() * TWO_PI;
            if let Some(&n) = noise.get(i) {
                dy += n;
            }
            out.copy_from_slice(&[vx - V_REF, vy, r, dy, dphi, x]);
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
        let cfg = self.cfg;
        let per_row = self.saved_per_row();
        let tau = DT / cfg.substeps as f32;
        let rows = tape.state.chunks_exact(6).zip(tape.action.chunks_exact(2));
        let ins = rows.zip(tape.saved.chunks_exact(per_row));
        let grads = d_state
            .chunks_exact_mut(6)
            .zip(d_action.chunks_exact_mut(2));
        for (i, (((st, act), saved), (ds, da))) in ins.zip(grads).enumerate() {
            let g = &d_next[6 * i..6 * i + 6];
            let delta = act[0] * STEER_SCALE;
            let ax = act[1] * ACC_SCALE;
            let (mut g_vx, mut g_vy, mut g_r) = (g[0], g[1], g[2]);
            // The wraps of x and Δφ and the additive noise pass gradients unchanged.
            let (g_y, mut g_phi, mut g_x) = (g[3], g[4], g[5]);
            if cfg.curved_path {
                // Δy = y − y_ref(x), Δφ = φ − atan(y_ref'(x)) at the pre-wrap x.
                let (_, d, dd) = path_row(saved[per_row - 1]);
                g_x -= g_y * d + g_phi * dd / (1.0 + d * d);
            }
            let (mut g_delta, mut g_ax) = (0.0, 0.0);
            for sub in saved[..per_row - 1].chunks_exact(SAVED_PER_SUBSTEP).rev() {
                let (vx, vy, r, phi) = (sub[0], sub[1], sub[2], sub[3]);
                let (c, s) = (phi.cos(), phi.sin());
                // v_x' = clamp(v_x + τ(a_x + v_y r)): no gradient outside the bounds.
                let u = vx + (ax + vy * r) * tau;
                let g_u = if (VX_MIN..=VX_MAX).contains(&u) {
                    g_vx
                } else {
                    0.0
                };
                // v_y' = num_y / den_y and r' = num_r / den_r.
                let nvy_den = vx * MASS + -tau * (C_F + C_R);
                let nr_den = vx * -I_Z + tau * K2;
                let nvy_num = vy * vx * MASS + r * (tau * K1)
                    - vx * delta * (tau * C_F)
                    - vx * vx * r * (tau * MASS);
                let nr_num = r * vx * -I_Z - vy * (tau * K1) + vx * delta * (tau * L_A * C_F);
                let g_ny = g_vy / nvy_den;
                let g_ny_den = -g_vy * nvy_num / (nvy_den * nvy_den);
                let g_nr = g_r / nr_den;
                let g_nr_den = -g_r * nr_num / (nr_den * nr_den);
                let mut n_vx = g_u
                    + g_ny * (vy * MASS - delta * (tau * C_F) - 2.0 * vx * r * (tau * MASS))
                    + g_ny_den * MASS
                    + g_nr * (-I_Z * r + delta * (tau * L_A * C_F))
                    - g_nr_den * I_Z;
                let mut n_vy = g_u * tau * r + g_ny * vx * MASS - g_nr * (tau * K1);
                let n_r = g_u * tau * vy + g_ny * (tau * K1 - vx * vx * (tau * MASS))
                    - g_nr * vx * I_Z
                    + g_phi * tau;
                g_delta += -g_ny * vx * (tau * C_F) + g_nr * vx * (tau * L_A * C_F);
                g_ax += g_u * tau;
                // x' = x + τ(v_x cos φ − v_y sin φ), y' = y + τ(v_x sin φ + v_y cos φ).
                n_vx += (g_x * c + g_y * s) * tau;
                n_vy += (g_y * c - g_x * s) * tau;
                g_phi += (g_y * (vx * c - vy * s) - g_x * (vx * s + vy * c)) * tau;
                (g_vx, g_vy, g_r) = (n_vx, n_vy, n_r);
            }
            if cfg.curved_path {
                // y = Δy + y_ref(x), φ = Δφ + atan(y_ref'(x)) at the input x.
                let (_, d, dd) = path_row(st[5]);
                g_x += g_y * d + g_phi * dd / (1.0 + d * d);
            }
            let gr = d_reward[i];
            ds[0] = g_vx - gr * 0.02 * st[0];
            ds[1] = g_vy;
            ds[2] = g_r - gr * 0.04 * st[2];
            ds[3] = g_y - gr * 0.08 * st[3];
            ds[4] = g_phi - gr * 0.2 * st[4];
            ds[5] = g_x;
            da[0] = (g_delta - gr * 10.0 * delta) * STEER_SCALE;
            da[1] = (g_ax - gr * 0.1 * ax) * ACC_SCALE;
        }
    }
}
