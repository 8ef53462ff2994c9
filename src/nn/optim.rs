//! Adam with a polynomial learning-rate schedule, on host-side parameters.

use serde::{Deserialize, Serialize};

use super::ParamSet;
use super::fused::multiversion;

/// Learning rate decaying polynomially from `initial` to `final_lr` over `steps` optimiser
/// steps, constant afterwards: `lr(t) = (initial − final)(1 − min(t, N)/N)^power + final`
/// (TensorFlow's `PolynomialDecay`; `power = 1` is linear).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrSchedule {
    /// Rate at step 0.
    pub initial: f64,
    /// Rate from step `steps` on.
    pub final_lr: f64,
    /// Number of optimiser steps of the decay.
    pub steps: u64,
    /// Exponent of the decay (1 = linear).
    #[serde(default = "one")]
    pub power: f64,
}

fn one() -> f64 {
    1.0
}

impl LrSchedule {
    /// A linear decay.
    pub fn linear(initial: f64, final_lr: f64, steps: u64) -> Self {
        Self {
            initial,
            final_lr,
            steps,
            power: 1.0,
        }
    }

    /// The rate at optimiser step `t`.
    pub fn at(&self, t: u64) -> f64 {
        if self.steps == 0 {
            return self.final_lr;
        }
        let frac = 1.0 - (t.min(self.steps) as f64 / self.steps as f64);
        (self.initial - self.final_lr) * frac.powf(self.power) + self.final_lr
    }
}

/// Adam hyper-parameters (defaults: TensorFlow's, as the reference code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// First-moment decay.
    #[serde(default = "beta1")]
    pub beta1: f64,
    /// Second-moment decay.
    #[serde(default = "beta2")]
    pub beta2: f64,
    /// Denominator epsilon.
    #[serde(default = "eps")]
    pub eps: f64,
}

fn beta1() -> f64 {
    0.9
}
fn beta2() -> f64 {
    0.999
}
fn eps() -> f64 {
    1e-7
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: beta1(),
            beta2: beta2(),
            eps: eps(),
        }
    }
}

/// Adam optimiser state for one `ParamSet` (moments and step count), serialisable for
/// checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    /// Hyper-parameters.
    pub config: AdamConfig,
    /// Learning-rate schedule over this optimiser's own steps.
    pub schedule: LrSchedule,
    /// Steps taken so far.
    pub step: u64,
    /// First moments.
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
}

impl Adam {
    /// Fresh state sized for `params`.
    pub fn new(config: AdamConfig, schedule: LrSchedule, params: &ParamSet) -> Self {
        let zeros: Vec<Vec<f32>> = params.values().iter().map(|v| vec![0.0; v.len()]).collect();
        Self {
            config,
            schedule,
            step: 0,
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.schedule.at(self.step)
    }

    /// Descend along `grads` (gradients of a loss to minimise) and advance the schedule.
    pub fn apply(&mut self, params: &mut ParamSet, grads: &[Vec<f32>]) {
        let lr = self.lr();
        self.step += 1;
        let t = self.step as f64;
        let (b1, b2) = (self.config.beta1, self.config.beta2);
        let alpha = (lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t))) as f32;
        let c = AdamStep {
            alpha,
            b1: b1 as f32,
            b2: b2 as f32,
            eps: self.config.eps as f32,
        };
        let (ms, vs) = (&mut self.m, &mut self.v);
        params.update(|vals| {
            for (((p, g), m), v) in vals
                .iter_mut()
                .zip(grads)
                .zip(ms.iter_mut())
                .zip(vs.iter_mut())
            {
                adam_step(p, g, m, v, c);
            }
        });
    }
}

/// The coefficients of one Adam step.
#[derive(Clone, Copy)]
struct AdamStep {
    alpha: f32,
    b1: f32,
    b2: f32,
    eps: f32,
}

multiversion! {
    /// One Adam step on one tensor `p` with gradient `g` and moments `m`, `v` (element-wise,
    /// so every instruction set gives the same bits).
    fn adam_step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamStep) {
        let n = p.len().min(g.len()).min(m.len()).min(v.len());
        let (p, g, m, v) = (&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
        for i in 0..n {
            m[i] = c.b1 * m[i] + (1.0 - c.b1) * g[i];
            v[i] = c.b2 * v[i] + (1.0 - c.b2) * g[i] * g[i];
            p[i] -= c.alpha * m[i] / (v[i].sqrt() + c.eps);
        }
    }
}
