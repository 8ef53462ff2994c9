//! Multi-layer perceptrons, the deterministic and Gaussian policy heads and the Q network.
//!
//! Each network is a description (layer sizes, scales) plus a `forward` that takes the
//! parameters as tensors, so the same code runs with tracked or frozen parameters.

use burn::tensor::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{ParamSet, elu, init::orthogonal, tensor2};

/// Hidden layer sizes of every network (paper: two hidden layers of 256 ELU units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Which implementation computes forwards and gradients (`network.kernels`).
    #[serde(default)]
    pub kernels: Kernels,
}

impl Default for NetSpec {
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            kernels: Kernels::default(),
        }
    }
}

/// Implementation of the network passes: `"fused"` (default) runs the hand-written host
/// kernels of [`super::fused`]; `"autodiff"` runs burn's autodiff, the reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Kernels {
    /// Hand-written GEMM-based forward/backward passes on the host.
    #[default]
    Fused,
    /// burn autodiff on the Flex backend.
    Autodiff,
}

impl TryFrom<String> for Kernels {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "fused" => Ok(Self::Fused),
            "autodiff" => Ok(Self::Autodiff),
            _ => Err(format!(
                "network.kernels = {s:?} is not known (use \"fused\" or \"autodiff\")"
            )),
        }
    }
}

/// A fully connected network `in → hidden (ELU) … → out` with an input scale.
///
/// Parameters are `[w0, b0, w1, b1, …]`, `w` of shape `[in, out]`, `b` of shape `[1, out]`.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub(super) sizes: Vec<usize>,
    in_scale: Tensor<2>,
    pub(super) in_scale_host: Vec<f32>,
}

impl Mlp {
    /// An MLP with the given input scale (its length is the input size).
    pub fn new(in_scale: &[f32], hidden: &[usize], out: usize, device: &Device) -> Self {
        let mut sizes = vec![in_scale.len()];
        sizes.extend_from_slice(hidden);
        sizes.push(out);
        Self {
            sizes,
            in_scale: tensor2(in_scale.to_vec(), 1, in_scale.len(), device),
            in_scale_host: in_scale.to_vec(),
        }
    }

    /// Orthogonal initialisation: gain √2 for hidden layers, `out_gain` for the output layer,
    /// zero biases (as the reference code).
    pub fn init(&self, out_gain: f32, rng: &mut impl Rng) -> ParamSet {
        let mut shapes = Vec::new();
        let mut values = Vec::new();
        let layers = self.sizes.len() - 1;
        for l in 0..layers {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let gain = if l + 1 == layers {
                out_gain
            } else {
                std::f32::consts::SQRT_2
            };
            shapes.push([i, o]);
            values.push(orthogonal(i, o, gain, rng));
            shapes.push([1, o]);
            values.push(vec![0.0; o]);
        }
        ParamSet::new(shapes, values)
    }

    /// Forward pass `[batch, in] → [batch, out]` (linear output).
    pub fn forward(&self, params: &[Tensor<2>], x: Tensor<2>) -> Tensor<2> {
        let layers = self.sizes.len() - 1;
        debug_assert_eq!(params.len(), 2 * layers);
        let mut h = x.mul(self.in_scale.clone());
        for l in 0..layers {
            h = h
                .matmul(params[2 * l].clone())
                .add(params[2 * l + 1].clone());
            if l + 1 < layers {
                h = elu(h);
            }
        }
        h
    }
}

/// The affine map of `tanh(u) ∈ [−1, 1]` onto an action box `[low, high]`:
/// `mid + half ⊙ tanh(u)` with `mid = (low + high)/2`, `half = (high − low)/2`.
#[derive(Debug, Clone)]
pub struct ActionBox {
    half: Tensor<2>,
    mid: Tensor<2>,
    pub(super) half_host: Vec<f32>,
    pub(super) mid_host: Vec<f32>,
    /// `mid` is zero (a symmetric box): no offset is added.
    pub(super) centred: bool,
}

impl ActionBox {
    /// The box `[low, high]` per dimension.
    pub fn new(low: &[f32], high: &[f32], device: &Device) -> Self {
        let half_host: Vec<f32> = low.iter().zip(high).map(|(l, h)| 0.5 * (h - l)).collect();
        let mid_host: Vec<f32> = low.iter().zip(high).map(|(l, h)| 0.5 * (h + l)).collect();
        let d = half_host.len();
        Self {
            half: tensor2(half_host.clone(), 1, d, device),
            mid: tensor2(mid_host.clone(), 1, d, device),
            centred: mid_host.iter().all(|m| *m == 0.0),
            half_host,
            mid_host,
        }
    }

    /// `mid + half ⊙ t` for `t = tanh(u)`.
    pub fn map(&self, t: Tensor<2>) -> Tensor<2> {
        let a = t.mul(self.half.clone());
        if self.centred {
            a
        } else {
            a.add(self.mid.clone())
        }
    }

    /// `mid + half · t` for dimension `j` on the host.
    pub(super) fn map_host(&self, j: usize, t: f32) -> f32 {
        if self.centred {
            t * self.half_host[j]
        } else {
            t * self.half_host[j] + self.mid_host[j]
        }
    }

    /// `Σ log half`, the log-determinant of the map.
    pub(super) fn log_det(&self) -> f32 {
        self.half_host.iter().map(|h| h.ln()).sum()
    }
}

/// Deterministic policy `a = mid + half ⊙ tanh(MLP(s))` on the action box (`high ⊙ tanh` for
/// a symmetric box).
#[derive(Debug, Clone)]
pub struct DetPolicy {
    /// The network producing the pre-tanh action.
    pub mlp: Mlp,
    pub(super) bounds: ActionBox,
}

impl DetPolicy {
    /// A policy for observations scaled by `obs_scale` and actions bounded by `±action_high`.
    pub fn new(obs_scale: &[f32], action_high: &[f32], spec: &NetSpec, device: &Device) -> Self {
        let low: Vec<f32> = action_high.iter().map(|h| -h).collect();
        Self::with_bounds(obs_scale, &low, action_high, spec, device)
    }

    /// A policy for observations scaled by `obs_scale` and actions in `[low, high]`.
    pub fn with_bounds(
        obs_scale: &[f32],
        low: &[f32],
        high: &[f32],
        spec: &NetSpec,
        device: &Device,
    ) -> Self {
        Self {
            mlp: Mlp::new(obs_scale, &spec.hidden, high.len(), device),
            bounds: ActionBox::new(low, high, device),
        }
    }

    /// Initial parameters.
    pub fn init(&self, rng: &mut impl Rng) -> ParamSet {
        self.mlp.init(1.0, rng)
    }

    /// Actions for a batch of observations.
    pub fn forward(&self, params: &[Tensor<2>], obs: Tensor<2>) -> Tensor<2> {
        self.bounds.map(self.mlp.forward(params, obs).tanh())
    }
}

/// Action-value network `Q(s, a)`: an MLP on `concat(s ⊙ obs_scale, a)`.
#[derive(Debug, Clone)]
pub struct QNet {
    /// The network on the concatenated input.
    pub mlp: Mlp,
}

impl QNet {
    /// A Q network; the action enters unscaled.
    pub fn new(obs_scale: &[f32], act_dim: usize, spec: &NetSpec, device: &Device) -> Self {
        let mut scale = obs_scale.to_vec();
        scale.extend(std::iter::repeat_n(1.0, act_dim));
        Self {
            mlp: Mlp::new(&scale, &spec.hidden, 1, device),
        }
    }

    /// Initial parameters.
    pub fn init(&self, rng: &mut impl Rng) -> ParamSet {
        self.mlp.init(1.0, rng)
    }

    /// Q values `[batch]`.
    pub fn forward(&self, params: &[Tensor<2>], obs: Tensor<2>, act: Tensor<2>) -> Tensor<1> {
        let x = Tensor::cat(vec![obs, act], 1);
        self.mlp.forward(params, x).squeeze_dim(1)
    }
}

/// Diagonal Gaussian policy: an MLP gives mean and log-std (clipped to `[LOG_STD_MIN,
/// LOG_STD_MAX]`); actions are `mean + std·ε` (reparameterised), optionally squashed onto the
/// action box as `mid + half ⊙ tanh(u)`.
#[derive(Debug, Clone)]
pub struct GaussianPolicy {
    /// The network producing `[mean, log_std]`.
    pub mlp: Mlp,
    pub(super) act_dim: usize,
    pub(super) squash: bool,
    pub(super) bounds: ActionBox,
    pub(super) log_half: f32,
}

/// Lower clip of the log standard deviation (reference code).
pub const LOG_STD_MIN: f32 = -5.0;
/// Upper clip of the log standard deviation (reference code).
pub const LOG_STD_MAX: f32 = 1.0;

/// A sampled action with its log-density.
pub struct GaussianSample {
    /// The action (squashed and scaled when the policy squashes).
    pub action: Tensor<2>,
    /// log π(a|s), `[batch]`.
    pub log_prob: Tensor<1>,
}

impl GaussianPolicy {
    /// A Gaussian policy; with `squash` the action is `high ⊙ tanh(u)` in `±action_high`.
    pub fn new(
        obs_scale: &[f32],
        action_high: &[f32],
        squash: bool,
        spec: &NetSpec,
        device: &Device,
    ) -> Self {
        let low: Vec<f32> = action_high.iter().map(|h| -h).collect();
        Self::with_bounds(obs_scale, &low, action_high, squash, spec, device)
    }

    /// A Gaussian policy for actions in `[low, high]`; with `squash` the action is
    /// `mid + half ⊙ tanh(u)`.
    pub fn with_bounds(
        obs_scale: &[f32],
        low: &[f32],
        high: &[f32],
        squash: bool,
        spec: &NetSpec,
        device: &Device,
    ) -> Self {
        let act_dim = high.len();
        let bounds = ActionBox::new(low, high, device);
        Self {
            mlp: Mlp::new(obs_scale, &spec.hidden, 2 * act_dim, device),
            act_dim,
            squash,
            log_half: bounds.log_det(),
            bounds,
        }
    }

    /// Initial parameters.
    pub fn init(&self, rng: &mut impl Rng) -> ParamSet {
        self.mlp.init(1.0, rng)
    }

    /// Mean and clipped log-std, each `[batch, act_dim]`.
    pub fn mean_log_std(&self, params: &[Tensor<2>], obs: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let out = self.mlp.forward(params, obs);
        let mean = out.clone().narrow(1, 0, self.act_dim);
        let log_std = out
            .narrow(1, self.act_dim, self.act_dim)
            .clamp(LOG_STD_MIN, LOG_STD_MAX);
        (mean, log_std)
    }

    /// The deterministic action used for evaluation: the (squashed) mean.
    pub fn mode(&self, params: &[Tensor<2>], obs: Tensor<2>) -> Tensor<2> {
        let (mean, _) = self.mean_log_std(params, obs);
        self.squash_action(mean)
    }

    fn squash_action(&self, u: Tensor<2>) -> Tensor<2> {
        if self.squash {
            self.bounds.map(u.tanh())
        } else {
            u
        }
    }

    /// Reparameterised sample with standard-normal noise `eps` (`[batch, act_dim]`).
    pub fn sample(&self, params: &[Tensor<2>], obs: Tensor<2>, eps: Tensor<2>) -> GaussianSample {
        let (mean, log_std) = self.mean_log_std(params, obs);
        let u = mean.add(log_std.clone().exp().mul(eps.clone()));
        let half_log_2pi = 0.5 * (2.0 * std::f32::consts::PI).ln();
        let mut log_prob = eps
            .powi_scalar(2)
            .mul_scalar(-0.5)
            .sub(log_std)
            .sub_scalar(half_log_2pi)
            .sum_dim(1);
        if self.squash {
            // log|d a / d u| = Σ log(half) + log(1 − tanh²u), computed stably as
            // 2·(log 2 − u − softplus(−2u)).
            let neg2u = u.clone().mul_scalar(-2.0);
            let softplus = burn::tensor::activation::relu(neg2u.clone())
                .add(neg2u.abs().neg().exp().add_scalar(1.0).log());
            let log_det = u
                .clone()
                .neg()
                .sub(softplus)
                .add_scalar(std::f32::consts::LN_2)
                .mul_scalar(2.0)
                .sum_dim(1)
                .add_scalar(self.log_half);
            log_prob = log_prob.sub(log_det);
        }
        GaussianSample {
            action: self.squash_action(u),
            log_prob: log_prob.squeeze_dim(1),
        }
    }
}
