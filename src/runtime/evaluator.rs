//! Evaluation as in the paper: episodes of the task's fixed length without exploration noise,
//! run in parallel as agents of one vectorized environment, ignoring termination.

use anyhow::Result;

use crate::algo::{Nets, act};
use crate::env::{StepOut, make_env};
use crate::nn::ParamSet;

/// Mean and (population) standard deviation of the undiscounted, unscaled episode returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalResult {
    /// Mean return.
    pub mean: f64,
    /// Standard deviation of the returns.
    pub std: f64,
}

/// Run `episodes` episodes of `nets.spec.episode_len` steps with the deterministic policy
/// `pi`, starting from the task's reset distribution seeded with `seed`.
pub fn evaluate(nets: &Nets, pi: &ParamSet, episodes: usize, seed: u64) -> Result<EvalResult> {
    let mut env = make_env(nets.spec.name, episodes, seed)?;
    let mut obs = Vec::new();
    env.observe(&mut obs);
    let mut out = StepOut::default();
    let mut returns = vec![0.0f64; episodes];
    let mut unused = rand_pcg::Pcg64Mcg::new(0);
    for _ in 0..nets.spec.episode_len {
        let a = act(nets, pi, &obs, None, &mut unused);
        env.step(&a, &mut out);
        for (g, r) in returns.iter_mut().zip(&out.reward) {
            *g += *r as f64;
        }
        std::mem::swap(&mut obs, &mut out.next_obs);
    }
    let n = episodes as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
    Ok(EvalResult {
        mean,
        std: var.sqrt(),
    })
}
