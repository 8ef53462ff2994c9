//! The rule-based weights of MPG, eqs. (10)–(11) of the paper.

use crate::config::Config;

/// MPG's `(w_data, w_model)` at iteration `k` under `cfg`: eqs. (10)–(11) with
/// `algo.model_weight_min` as the model weight's floor.
pub fn configured_weights(cfg: &Config, k: u64) -> (f64, f64) {
    let a = &cfg.algo;
    let (wd, wm) = mpg_weights(k, a.schedule_iterations, a.eta, cfg.schedule_exponent());
    if wm < a.model_weight_min {
        (1.0 - a.model_weight_min, a.model_weight_min)
    } else {
        (wd, wm)
    }
}

/// `(w_data, w_model)` at iteration `i` for schedule length `t` (T), rate `eta` (η) and
/// exponent `h` (H).
///
/// λ(i) rises linearly from 1−η to 1 over the first half of T and falls back to 1−η over the
/// second; the rule-based errors are `(e_data, e_model) = (1, λ^H)` for `i ≤ T/2` and
/// `(λ^H, 1)` after; the weights are `softmax(1/e)`. Beyond `i = T` the schedule stays at its
/// end point (pure data-driven up to `softmax`), as the paper defines T as the last iteration
/// of the schedule and the reference code clips λ.
pub fn mpg_weights(i: u64, t: u64, eta: f64, h: usize) -> (f64, f64) {
    let tf = t as f64;
    let i = (i.min(t)) as f64;
    let half = tf / 2.0;
    let lambda = if i <= half {
        (1.0 - eta) + 2.0 * i * eta / tf
    } else {
        1.0 - 2.0 * (i - half) * eta / tf
    };
    let lh = lambda.powi(h as i32);
    let (e_data, e_model) = if i <= half { (1.0, lh) } else { (lh, 1.0) };
    softmax2(1.0 / e_data, 1.0 / e_model)
}

fn softmax2(a: f64, b: f64) -> (f64, f64) {
    let m = a.max(b);
    let (ea, eb) = ((a - m).exp(), (b - m).exp());
    (ea / (ea + eb), eb / (ea + eb))
}
