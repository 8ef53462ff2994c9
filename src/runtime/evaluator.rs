//! Evaluation as in the paper: episodes of the task's episode length without exploration
//! noise, run in parallel as agents of one vectorized environment. The paper's tasks ignore
//! termination here ([`Termination::Continuing`]); with an absorbing termination (Gymnasium's
//! rule) an episode ends at its terminated or truncated step.

use anyhow::Result;

use crate::algo::{Nets, act};
use crate::env::{StepOut, Task, Termination, check_env};
use crate::nn::ParamSet;

/// Mean and (population) standard deviation of the undiscounted, unscaled episode returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalResult {
    /// Mean return.
    pub mean: f64,
    /// Standard deviation of the returns.
    pub std: f64,
}

/// Run `episodes` episodes of at most `episode_len` steps of `task` with the deterministic
/// policy `pi`, starting from the task's reset distribution seeded with `seed`.
pub fn evaluate(
    task: &Task,
    nets: &Nets,
    pi: &ParamSet,
    episodes: usize,
    seed: u64,
) -> Result<EvalResult> {
    let mut env = task.make_env(episodes, seed)?;
    check_env(env.as_mut())?;
    let absorbing = task.spec().termination == Termination::Absorbing;
    let mut obs = Vec::new();
    env.observe(&mut obs);
    let mut out = StepOut::default();
    let mut returns = vec![0.0f64; episodes];
    let mut running = vec![true; episodes];
    let mut unused = rand_pcg::Pcg64Mcg::new(0);
    for _ in 0..task.spec().episode_len {
        let a = act(nets, pi, &obs, None, &mut unused);
        if absorbing {
            env.step_active(&a, &running, &mut out);
        } else {
            env.step(&a, &mut out);
        }
        check_env(env.as_mut())?;
        for (i, (g, r)) in returns.iter_mut().zip(&out.reward).enumerate() {
            if running[i] {
                *g += *r as f64;
            }
            if absorbing && (out.terminated[i] || out.truncated[i]) {
                running[i] = false;
            }
        }
        std::mem::swap(&mut obs, &mut out.next_obs);
        if !running.contains(&true) {
            break;
        }
    }
    let n = episodes as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
    Ok(EvalResult {
        mean,
        std: var.sqrt(),
    })
}
