//! The learned dynamics model of `task.model = "learned"`: an ensemble of MLPs fitted to the
//! replay buffer, run by BPTT exactly as a prior model is.
//!
//! Each member maps the normalised `(obs, act)` to the normalised change of observation, the
//! reward and, for a task whose termination is absorbing, a termination logit. The networks
//! are [`Mlp`]s on the fused host kernels ([`crate::nn::fused`]): the step is their forward
//! pass, its vector-Jacobian product their input gradient, the fit their parameter gradient
//! with the crate's [`Adam`]. The normaliser (mean and std of every input and output
//! coordinate) is refitted on the whole replay at every fit; the input centring is applied on
//! the host and the input scale is the network's own input scale, so the network's input
//! gradient is the gradient w.r.t. the raw observation and action.
//!
//! A step runs one member ([`Selection::Member`], drawn per policy gradient by the learner) or
//! all of them and averages their predictions ([`Selection::Mean`]); the same model is a
//! [`TensorModel`] (burn tensors, differentiated by autodiff), the reference the fused path is
//! tested against.

use std::ops::Range;
use std::time::Instant;

use anyhow::{Result, ensure};
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::config::ModelConfig;
use crate::env::{ModelTape, PriorModel, TaskSpec, TensorModel, Termination};
use crate::nn::{
    Adam, AdamConfig, LrSchedule, Mlp, MlpTape, ParamSet, device, plain_device, tensor2,
};
use crate::replay::ReplayBuffer;

/// Where a learner's checkpoint keeps its learned model.
pub const CHECKPOINT_PREFIX: &str = "learned_model";

/// The smallest std a normalised coordinate is divided by (a constant coordinate).
const STD_FLOOR: f32 = 1e-4;
/// The most held-out transitions a fit evaluates per epoch (the held-out split is
/// `model.holdout` of the replay, capped here so that a fit's cost does not grow with it).
const HOLDOUT_MAX: usize = 4096;
/// Gain of the members' output layers at initialisation (predictions start near the mean).
const OUT_GAIN: f32 = 0.1;

/// Mean and std of every coordinate of the model's inputs `(obs, act)` and outputs
/// `(Δobs, reward)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normaliser {
    /// Input means, `obs_dim + act_dim`.
    pub in_mean: Vec<f32>,
    /// Input stds.
    pub in_std: Vec<f32>,
    /// Output means, `obs_dim + 1`.
    pub out_mean: Vec<f32>,
    /// Output stds.
    pub out_std: Vec<f32>,
}

impl Normaliser {
    fn identity(n_in: usize, n_out: usize) -> Self {
        Self {
            in_mean: vec![0.0; n_in],
            in_std: vec![1.0; n_in],
            out_mean: vec![0.0; n_out],
            out_std: vec![1.0; n_out],
        }
    }
}

/// Which members a model step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// One member.
    Member(usize),
    /// Every member, predictions averaged.
    Mean,
}

/// Diagnostics of a fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FitStats {
    /// Held-out root-mean-square error of the ensemble mean's next observation before the fit.
    pub error_before: f64,
    /// The same after the fit (the `model_error` column).
    pub model_error: f64,
    /// Std of the members' predicted next observations, averaged over the held-out rows and
    /// coordinates (the `model_disagreement` column).
    pub disagreement: f64,
    /// Wall time of the fit, ms.
    pub fit_ms: f64,
    /// Transitions inserted into the replay when the fit ran.
    pub transitions: u64,
    /// Gradient steps taken, summed over the members.
    pub steps: usize,
}

/// An ensemble of MLP dynamics models with its normaliser, optimisers and fit RNG.
pub struct LearnedModel {
    spec: TaskSpec,
    cfg: ModelConfig,
    /// The model predicts termination (a task with absorbing termination).
    terminates: bool,
    mlp: Mlp,
    members: Vec<ParamSet>,
    adams: Vec<Adam>,
    norm: Normaliser,
    selection: Selection,
    rng: Pcg64Mcg,
    stats: Option<FitStats>,
}

/// A training set in the networks' coordinates: centred inputs and normalised targets.
struct Data {
    /// Centred inputs `[rows, obs + act]`.
    x: Vec<f32>,
    /// Targets `[rows, out]`: normalised `Δobs` and reward, then the termination flag.
    t: Vec<f32>,
}

impl LearnedModel {
    /// A fresh ensemble for `spec` with the settings `cfg`, initialised from `seed` (which
    /// also seeds the fits' shuffles).
    pub fn new(spec: &TaskSpec, cfg: &ModelConfig, seed: u64) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let (o, a) = (spec.obs_dim, spec.act_dim);
        let terminates = spec.termination == Termination::Absorbing;
        let norm = Normaliser::identity(o + a, o + 1);
        let mlp = build_mlp(cfg, &norm, o + 1 + terminates as usize);
        let members: Vec<ParamSet> = (0..cfg.ensemble.max(1))
            .map(|_| mlp.init(OUT_GAIN, &mut rng))
            .collect();
        let lr = LrSchedule::linear(cfg.lr, cfg.lr, 1);
        let adams = members
            .iter()
            .map(|p| Adam::new(AdamConfig::default(), lr.clone(), p))
            .collect();
        Self {
            spec: spec.clone(),
            cfg: cfg.clone(),
            terminates,
            mlp,
            members,
            adams,
            norm,
            selection: Selection::Mean,
            rng,
            stats: None,
        }
    }

    /// Number of members.
    pub fn ensemble(&self) -> usize {
        self.members.len()
    }

    /// The members' parameters.
    pub fn members(&self) -> &[ParamSet] {
        &self.members
    }

    /// The network architecture shared by the members.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The normaliser of the last fit.
    pub fn normaliser(&self) -> &Normaliser {
        &self.norm
    }

    /// The members the next steps run.
    pub fn selection(&self) -> Selection {
        self.selection
    }

    /// Run `selection` from the next step on.
    pub fn select(&mut self, selection: Selection) {
        if let Selection::Member(m) = selection {
            assert!(m < self.members.len(), "ensemble member {m} out of range");
        }
        self.selection = selection;
    }

    /// Diagnostics of the last fit (`None` before the first).
    pub fn stats(&self) -> Option<FitStats> {
        self.stats
    }

    /// Whether the model's term may be used: it has been fitted on at least
    /// `model.warmup_steps` transitions.
    pub fn ready(&self) -> bool {
        self.stats
            .is_some_and(|s| s.transitions >= self.cfg.warmup_steps)
    }

    fn out_dim(&self) -> usize {
        self.spec.obs_dim + 1 + self.terminates as usize
    }

    fn range(&self, selection: Selection) -> Range<usize> {
        match selection {
            Selection::Member(m) => m..m + 1,
            Selection::Mean => 0..self.members.len(),
        }
    }

    /// The centred inputs `[(obs − mean), (act − mean)]` of a batch into `x`.
    fn centre(&self, obs: &[f32], act: &[f32], x: &mut [f32]) {
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        let m = &self.norm.in_mean;
        let rows = x.chunks_exact_mut(o + a).zip(obs.chunks_exact(o));
        for ((row, s), u) in rows.zip(act.chunks_exact(a)) {
            for j in 0..o {
                row[j] = s[j] - m[j];
            }
            for j in 0..a {
                row[o + j] = u[j] - m[o + j];
            }
        }
    }

    /// The prediction of the members `members` (averaged) from the centred inputs in
    /// `tape.saved`: `next`, `reward` and, for a terminating task, `tape.terminated`.
    fn predict(
        &self,
        members: Range<usize>,
        state: &[f32],
        next: &mut [f32],
        reward: &mut [f32],
        tape: &mut ModelTape,
    ) {
        let o = self.spec.obs_dim;
        let (out, batch) = (self.out_dim(), reward.len());
        let w = 1.0 / members.len() as f32;
        let ModelTape {
            saved,
            nets,
            terminated,
            ..
        } = tape;
        nets.resize_with(members.len(), MlpTape::default);
        next.copy_from_slice(state);
        reward.fill(0.0);
        let mut p_term = vec![0.0f32; if self.terminates { batch } else { 0 }];
        let (mean, std) = (&self.norm.out_mean, &self.norm.out_std);
        for (i, m) in members.enumerate() {
            let params = self.members[m].values();
            let y = self.mlp.forward_host(params, saved, batch, &mut nets[i]);
            for (r, row) in y.chunks_exact(out).enumerate() {
                for j in 0..o {
                    next[r * o + j] += w * (mean[j] + std[j] * row[j]);
                }
                reward[r] += w * (mean[o] + std[o] * row[o]);
                if let Some(p) = p_term.get_mut(r) {
                    *p += w * sigmoid(row[o + 1]);
                }
            }
        }
        terminated.clear();
        terminated.extend(p_term.iter().map(|p| *p > 0.5));
    }

    /// Root-mean-square error of the ensemble mean's next observation against `next_obs`, and
    /// the members' disagreement (std of their next observations, averaged over rows and
    /// coordinates), on the transitions `(obs, act, next_obs)`.
    pub fn one_step_error(&self, obs: &[f32], act: &[f32], next_obs: &[f32]) -> (f64, f64) {
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        let batch = obs.len() / o;
        if batch == 0 {
            return (0.0, 0.0);
        }
        let mut tape = ModelTape::default();
        tape.record(&[], &[], batch * (o + a));
        let mut x = std::mem::take(&mut tape.saved);
        self.centre(obs, act, &mut x);
        tape.saved = x;
        let mut reward = vec![0.0; batch];
        let k = self.members.len();
        let preds: Vec<Vec<f32>> = (0..k)
            .map(|m| {
                let mut next = vec![0.0; batch * o];
                self.predict(m..m + 1, obs, &mut next, &mut reward, &mut tape);
                next
            })
            .collect();
        let (mut sq, mut spread) = (0.0f64, 0.0f64);
        for (i, truth) in next_obs.iter().enumerate() {
            let mean = preds.iter().map(|p| p[i] as f64).sum::<f64>() / k as f64;
            sq += (mean - *truth as f64).powi(2);
            let var = preds
                .iter()
                .map(|p| (p[i] as f64 - mean).powi(2))
                .sum::<f64>()
                / k as f64;
            spread += var.sqrt();
        }
        let n = next_obs.len() as f64;
        ((sq / n).sqrt(), spread / n)
    }

    /// Fit the ensemble to the transitions in `replay`: the normaliser refitted on all of
    /// them, a held-out split (`model.holdout`, at most 4096 rows), then per member epochs of
    /// shuffled mini-batches with early stopping on the held-out loss (the best parameters
    /// kept). `None` (nothing done) with fewer than two transitions.
    pub fn fit(&mut self, replay: &ReplayBuffer) -> Option<FitStats> {
        let start = Instant::now();
        let n = replay.len();
        if n < 2 {
            return None;
        }
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        let [obs, act, rew, next_obs, terminated, _] = replay.arrays().map(|(_, v)| v);
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut self.rng);
        let held =
            ((self.cfg.holdout * n as f64).round() as usize).clamp(1, HOLDOUT_MAX.min(n - 1));
        let (hold_idx, train_idx) = idx.split_at(held);
        let gather = |rows: &[usize], v: &[f32], d: usize| -> Vec<f32> {
            rows.iter()
                .flat_map(|&i| &v[i * d..(i + 1) * d])
                .copied()
                .collect()
        };
        let (h_obs, h_act, h_next) = (
            gather(hold_idx, obs, o),
            gather(hold_idx, act, a),
            gather(hold_idx, next_obs, o),
        );
        let error_before = self.one_step_error(&h_obs, &h_act, &h_next).0;

        self.norm = normaliser(&obs[..n * o], &act[..n * a], &rew[..n], &next_obs[..n * o]);
        self.mlp = build_mlp(&self.cfg, &self.norm, self.out_dim());
        let data = |rows: &[usize]| {
            let (s, u, s2) = (
                gather(rows, obs, o),
                gather(rows, act, a),
                gather(rows, next_obs, o),
            );
            let mut x = vec![0.0; rows.len() * (o + a)];
            self.centre(&s, &u, &mut x);
            let out = self.out_dim();
            let (mean, std) = (&self.norm.out_mean, &self.norm.out_std);
            let mut t = vec![0.0; rows.len() * out];
            for (k, &i) in rows.iter().enumerate() {
                let row = &mut t[k * out..(k + 1) * out];
                for j in 0..o {
                    row[j] = (s2[k * o + j] - s[k * o + j] - mean[j]) / std[j];
                }
                row[o] = (rew[i] - mean[o]) / std[o];
                if self.terminates {
                    row[o + 1] = terminated[i];
                }
            }
            Data { x, t }
        };
        let (train, hold) = (data(train_idx), data(hold_idx));
        let mut steps = 0;
        for m in 0..self.members.len() {
            steps += self.fit_member(m, &train, &hold);
        }
        let (model_error, disagreement) = self.one_step_error(&h_obs, &h_act, &h_next);
        let stats = FitStats {
            error_before,
            model_error,
            disagreement,
            fit_ms: start.elapsed().as_secs_f64() * 1e3,
            transitions: replay.inserted(),
            steps,
        };
        self.stats = Some(stats);
        Some(stats)
    }

    /// Train member `m` on `train` with early stopping on `hold`; returns its gradient steps.
    fn fit_member(&mut self, m: usize, train: &Data, hold: &Data) -> usize {
        let (n_in, out) = (self.mlp.in_dim(), self.out_dim());
        let rows = train.t.len() / out;
        let mut order: Vec<usize> = (0..rows).collect();
        let mut tape = MlpTape::default();
        let (mut x, mut t, mut d_y) = (Vec::new(), Vec::new(), Vec::new());
        let mut best = (self.loss(m, hold, &mut tape), self.members[m].clone());
        let (mut steps, mut bad) = (0, 0);
        'epochs: for _ in 0..self.cfg.max_epochs {
            order.shuffle(&mut self.rng);
            for chunk in order.chunks(self.cfg.batch) {
                if steps == self.cfg.max_steps {
                    break;
                }
                x.clear();
                t.clear();
                for &i in chunk {
                    x.extend_from_slice(&train.x[i * n_in..(i + 1) * n_in]);
                    t.extend_from_slice(&train.t[i * out..(i + 1) * out]);
                }
                let b = chunk.len();
                let params = self.members[m].values();
                let y = self.mlp.forward_host(params, &x, b, &mut tape);
                d_y.clear();
                d_y.extend(y.iter().zip(&t).enumerate().map(|(k, (y, t))| {
                    let p = if self.terminates && k % out == out - 1 {
                        sigmoid(*y)
                    } else {
                        *y
                    };
                    (p - t) / b as f32
                }));
                let mut grads: Vec<Vec<f32>> = params.iter().map(|v| vec![0.0; v.len()]).collect();
                self.mlp
                    .backward_host(params, &tape, &d_y, Some(&mut grads), None);
                self.adams[m].apply(&mut self.members[m], &grads);
                steps += 1;
            }
            let l = self.loss(m, hold, &mut tape);
            if l < best.0 {
                best = (l, self.members[m].clone());
                bad = 0;
            } else {
                bad += 1;
            }
            if bad >= self.cfg.patience || steps == self.cfg.max_steps {
                break 'epochs;
            }
        }
        self.members[m] = best.1;
        steps
    }

    /// Member `m`'s mean loss on `data`: half the squared error of the normalised outputs plus,
    /// for a terminating task, the termination's cross-entropy.
    fn loss(&self, m: usize, data: &Data, tape: &mut MlpTape) -> f64 {
        let out = self.out_dim();
        let rows = data.t.len() / out;
        let y = self
            .mlp
            .forward_host(self.members[m].values(), &data.x, rows, tape);
        let mut sum = 0.0f64;
        for (k, (y, t)) in y.iter().zip(&data.t).enumerate() {
            sum += if self.terminates && k % out == out - 1 {
                // log(1 + e^y) − t·y, stably.
                (y.max(0.0) + (-y.abs()).exp().ln_1p() - t * y) as f64
            } else {
                0.5 * ((y - t) as f64).powi(2)
            };
        }
        sum / rows as f64
    }

    /// Store the members, their optimisers, the normaliser, the fit RNG and the last fit's
    /// diagnostics under `prefix`.
    pub fn save(&self, ck: &mut Checkpoint, prefix: &str) -> Result<()> {
        for (m, (p, adam)) in self.members.iter().zip(&self.adams).enumerate() {
            ck.set_params(&format!("{prefix}/member{m}"), p);
            ck.set_adam(&format!("{prefix}/adam{m}"), adam);
        }
        ck.set_json(&format!("{prefix}/normaliser"), &self.norm)?;
        ck.set_json(&format!("{prefix}/rng"), &self.rng)?;
        ck.set_json(&format!("{prefix}/stats"), &self.stats)
    }

    /// Restore what [`LearnedModel::save`] stored under `prefix`.
    pub fn load(&mut self, ck: &Checkpoint, prefix: &str) -> Result<()> {
        let norm: Normaliser = ck.json(&format!("{prefix}/normaliser"))?;
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        ensure!(
            norm.in_mean.len() == o + a && norm.out_mean.len() == o + 1,
            "the checkpoint's learned model has other dimensions than task `{}`",
            self.spec.name
        );
        for m in 0..self.members.len() {
            let p = ck.params(&format!("{prefix}/member{m}"), &self.members[m])?;
            self.adams[m] = ck.adam(&format!("{prefix}/adam{m}"), &p)?;
            self.members[m] = p;
        }
        self.mlp = build_mlp(&self.cfg, &norm, self.out_dim());
        self.norm = norm;
        self.rng = ck.json(&format!("{prefix}/rng"))?;
        self.stats = ck.json(&format!("{prefix}/stats"))?;
        Ok(())
    }
}

/// The members' network: input scale `1 / std` (the centring is done on the host).
fn build_mlp(cfg: &ModelConfig, norm: &Normaliser, out: usize) -> Mlp {
    let scale: Vec<f32> = norm.in_std.iter().map(|s| 1.0 / s).collect();
    Mlp::new(&scale, &cfg.hidden, out, &device())
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Mean and std (floored) of every coordinate of `(obs, act)` and `(next_obs − obs, rew)`.
fn normaliser(obs: &[f32], act: &[f32], rew: &[f32], next_obs: &[f32]) -> Normaliser {
    let n = rew.len();
    let (o, a) = (obs.len() / n, act.len() / n);
    let stats = |d: usize, value: &dyn Fn(usize, usize) -> f32| -> (Vec<f32>, Vec<f32>) {
        (0..d)
            .map(|j| {
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for i in 0..n {
                    let v = value(i, j) as f64;
                    s += v;
                    s2 += v * v;
                }
                let mean = s / n as f64;
                let var = (s2 / n as f64 - mean * mean).max(0.0);
                (mean as f32, (var.sqrt() as f32).max(STD_FLOOR))
            })
            .unzip()
    };
    let (in_mean, in_std) = stats(o + a, &|i, j| {
        if j < o {
            obs[i * o + j]
        } else {
            act[i * a + j - o]
        }
    });
    let (out_mean, out_std) = stats(o + 1, &|i, j| {
        if j < o {
            next_obs[i * o + j] - obs[i * o + j]
        } else {
            rew[i]
        }
    });
    Normaliser {
        in_mean,
        in_std,
        out_mean,
        out_std,
    }
}

impl PriorModel for LearnedModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
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
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        let batch = reward.len();
        tape.record(state, action, batch * (o + a));
        let mut x = std::mem::take(&mut tape.saved);
        self.centre(state, action, &mut x);
        tape.saved = x;
        self.predict(self.range(self.selection), state, next, reward, tape);
    }

    fn step_vjp(
        &self,
        tape: &ModelTape,
        d_next: &[f32],
        d_reward: &[f32],
        d_state: &mut [f32],
        d_action: &mut [f32],
    ) {
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        let (out, batch) = (self.out_dim(), d_reward.len());
        let members = self.range(self.selection);
        let w = 1.0 / members.len() as f32;
        let std = &self.norm.out_std;
        let mut d_y = vec![0.0f32; batch * out];
        for (r, row) in d_y.chunks_exact_mut(out).enumerate() {
            for j in 0..o {
                row[j] = w * std[j] * d_next[r * o + j];
            }
            row[o] = w * std[o] * d_reward[r];
        }
        d_state.copy_from_slice(d_next);
        d_action.fill(0.0);
        let mut d_x = vec![0.0f32; batch * (o + a)];
        for (i, m) in members.enumerate() {
            let params = self.members[m].values();
            self.mlp
                .backward_host(params, &tape.nets[i], &d_y, None, Some(&mut d_x));
            for (r, g) in d_x.chunks_exact(o + a).enumerate() {
                let ds = &mut d_state[r * o..(r + 1) * o];
                ds.iter_mut().zip(&g[..o]).for_each(|(d, x)| *d += x);
                let da = &mut d_action[r * a..(r + 1) * a];
                da.iter_mut().zip(&g[o..]).for_each(|(d, x)| *d += x);
            }
        }
    }

    fn tensor(&self) -> Option<&dyn TensorModel> {
        Some(self)
    }
}

impl TensorModel for LearnedModel {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn step(&self, state: Tensor<2>, action: Tensor<2>, _noise: &[f32]) -> (Tensor<2>, Tensor<1>) {
        let (o, a) = (self.spec.obs_dim, self.spec.act_dim);
        let dev = plain_device();
        let row = |v: &[f32]| tensor2(v.to_vec(), 1, v.len(), &dev);
        let nm = &self.norm;
        let x = Tensor::cat(
            vec![
                state.clone().sub(row(&nm.in_mean[..o])),
                action.sub(row(&nm.in_mean[o..o + a])),
            ],
            1,
        );
        let members = self.range(self.selection);
        let w = 1.0 / members.len() as f32;
        let mut sum: Option<(Tensor<2>, Tensor<2>)> = None;
        for m in members {
            let y = self.mlp.forward(self.members[m].frozen(), x.clone());
            let d = y
                .clone()
                .narrow(1, 0, o)
                .mul(row(&nm.out_std[..o]))
                .add(row(&nm.out_mean[..o]));
            let r = y
                .narrow(1, o, 1)
                .mul(row(&nm.out_std[o..]))
                .add(row(&nm.out_mean[o..]));
            sum = Some(match sum {
                Some((sd, sr)) => (sd.add(d), sr.add(r)),
                None => (d, r),
            });
        }
        let (d, r) = sum.expect("an ensemble has at least one member");
        let next = state.add(d.mul_scalar(w));
        (next, r.mul_scalar(w).squeeze_dim(1))
    }
}
