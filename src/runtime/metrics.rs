//! Metrics of a run: running means between two progress rows and the non-finite step guard.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::evaluator::EvalResult;
use super::progress::Row;
use crate::algo::{GradStats, Grads, schedule::configured_weights};
use crate::config::{AlgoName, Config};

/// Running means between two log rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Accum {
    pub(super) q_loss: (f64, u64),
    pub(super) policy_loss: (f64, u64),
    pub(super) pg_time: (f64, u64),
    pub(super) update_time: (f64, u64),
    #[serde(default)]
    pub(super) terminated_frac: (f64, u64),
    #[serde(default)]
    pub(super) q_grad_norm: (f64, u64),
    #[serde(default)]
    pub(super) pi_grad_norm: (f64, u64),
    #[serde(default)]
    pub(super) model_error: (f64, u64),
    #[serde(default)]
    pub(super) model_disagreement: (f64, u64),
    #[serde(default)]
    pub(super) model_fit_ms: (f64, u64),
}

impl Accum {
    /// Record the losses, diagnostics and policy-gradient time of an applied gradient.
    pub(super) fn record(&mut self, s: &GradStats) {
        push(&mut self.q_loss, s.q_loss);
        if let Some(l) = s.policy_loss {
            push(&mut self.policy_loss, l);
        }
        if let Some(t) = s.pg_time_ms {
            push(&mut self.pg_time, t);
        }
        push(&mut self.terminated_frac, s.terminated_frac);
        push(&mut self.q_grad_norm, s.q_grad_norm);
        if let Some(g) = s.pi_grad_norm {
            push(&mut self.pi_grad_norm, g);
        }
        if let Some(e) = s.model_error {
            push(&mut self.model_error, e);
        }
    }

    /// A progress row from these means (taken since the previous row); the caller fills in
    /// `nonfinite_skipped` and `staleness`.
    pub(super) fn row(
        self,
        cfg: &Config,
        k: u64,
        wall: f64,
        env_steps: u64,
        eval: Option<EvalResult>,
    ) -> Row {
        let (w_data, w_model) = weights(cfg, k);
        Row {
            iteration: k,
            wall_s: wall,
            env_steps,
            eval_mean: eval.map(|e| e.mean),
            eval_std: eval.map(|e| e.std),
            w_data,
            w_model,
            q_loss: mean(self.q_loss),
            policy_loss: mean(self.policy_loss),
            pg_time_ms: mean(self.pg_time),
            update_time_ms: mean(self.update_time),
            nonfinite_skipped: 0,
            staleness: None,
            terminated_frac: mean(self.terminated_frac),
            q_grad_norm: mean(self.q_grad_norm),
            pi_grad_norm: mean(self.pi_grad_norm),
            model_error: mean(self.model_error),
            model_disagreement: mean(self.model_disagreement),
            model_fit_ms: mean(self.model_fit_ms),
        }
    }
}

/// Consecutive and total non-finite steps; aborts the run after too long a streak.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct NonFinite {
    pub(super) total: u64,
    pub(super) streak: u64,
}

impl NonFinite {
    /// `Ok(true)` when `grads` may be applied, `Ok(false)` to skip it, an error to abort.
    pub(super) fn check(&mut self, grads: &Grads, k: u64, max_streak: u64) -> Result<bool> {
        if grads.is_finite() {
            self.streak = 0;
            return Ok(true);
        }
        self.total += 1;
        self.streak += 1;
        if self.streak >= max_streak {
            bail!(
                "aborting at iteration {k}: {} consecutive steps had non-finite losses or gradients \
                 (last q_loss {}, policy_loss {:?}); lower the learning rates or check the task",
                self.streak,
                grads.stats.q_loss,
                grads.stats.policy_loss
            );
        }
        Ok(false)
    }
}

/// Add `x` to a running (sum, count).
pub(super) fn push(a: &mut (f64, u64), x: f64) {
    a.0 += x;
    a.1 += 1;
}

/// The mean of a running (sum, count), if any.
pub(super) fn mean(a: (f64, u64)) -> Option<f64> {
    (a.1 > 0).then(|| a.0 / a.1 as f64)
}

/// The `(w_data, w_model)` an algorithm uses at iteration `k`.
pub(super) fn weights(cfg: &Config, k: u64) -> (f64, f64) {
    match cfg.algo.name {
        AlgoName::MpgV1 | AlgoName::MpgV2 => configured_weights(cfg, k),
        AlgoName::Nadp => (0.0, 1.0),
        _ => (1.0, 0.0),
    }
}
