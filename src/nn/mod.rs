//! Neural networks, parameters and their optimisation.
//!
//! Parameters live on the host as flat `f32` vectors (`ParamSet`), the single source of truth
//! for optimisers, target networks, checkpoints and asynchronous snapshots. A forward pass takes
//! the parameters as a slice of tensors, so the caller chooses per network whether they are
//! tracked leaves (gradients wanted) or constants (frozen): see [`ParamSet::track`] and
//! [`ParamSet::frozen`].

pub mod fused;
pub mod init;
pub mod net;
pub mod optim;

use std::sync::OnceLock;

use burn::tensor::{Device, Tensor, TensorData};

pub use fused::{GaussianTape, MlpTape};
pub use net::{DetPolicy, GaussianPolicy, Kernels, Mlp, NetSpec, QNet};
pub use optim::{Adam, AdamConfig, LrSchedule};

/// The device that records gradients: Flex (pure Rust CPU) inside Autodiff.
pub fn device() -> Device {
    Device::flex().autodiff()
}

/// The plain Flex device (no autodiff), for inference and constants.
pub fn plain_device() -> Device {
    Device::flex()
}

/// Build a `[rows, cols]` tensor from row-major data.
pub fn tensor2(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    debug_assert_eq!(data.len(), rows * cols);
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

/// Build a `[n]` tensor.
pub fn tensor1(data: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = data.len();
    Tensor::from_data(TensorData::new(data, [n]), device)
}

/// Copy a tensor's values to the host, row-major.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("mixpg tensors are f32")
}

/// Read a scalar (a one-element tensor).
pub fn scalar(t: Tensor<1>) -> f32 {
    to_vec(t)[0]
}

/// A named list of 2-D parameter tensors (biases are `[1, n]`), stored on the host.
#[derive(Debug, Clone)]
pub struct ParamSet {
    shapes: Vec<[usize; 2]>,
    values: Vec<Vec<f32>>,
    /// burn copies of the values, built on first use after a change (the fused kernels read
    /// `values` directly and never need it).
    cache: OnceLock<Vec<Tensor<2>>>,
}

impl PartialEq for ParamSet {
    fn eq(&self, other: &Self) -> bool {
        self.shapes == other.shapes && self.values == other.values
    }
}

impl ParamSet {
    /// Create from shapes and values (lengths must match the shapes).
    pub fn new(shapes: Vec<[usize; 2]>, values: Vec<Vec<f32>>) -> Self {
        assert_eq!(shapes.len(), values.len());
        for (s, v) in shapes.iter().zip(&values) {
            assert_eq!(s[0] * s[1], v.len(), "parameter shape mismatch");
        }
        Self {
            shapes,
            values,
            cache: OnceLock::new(),
        }
    }

    /// Parameter shapes.
    pub fn shapes(&self) -> &[[usize; 2]] {
        &self.shapes
    }

    /// Parameter values (row-major per tensor).
    pub fn values(&self) -> &[Vec<f32>] {
        &self.values
    }

    /// Mutate the values in place; the tensor copies are rebuilt when next asked for.
    pub fn update(&mut self, f: impl FnOnce(&mut [Vec<f32>])) {
        f(&mut self.values);
        self.cache = OnceLock::new();
    }

    /// The parameters as constants: gradients flow through them to the inputs but are not kept.
    pub fn frozen(&self) -> &[Tensor<2>] {
        self.cache
            .get_or_init(|| build_cache(&self.shapes, &self.values))
    }

    /// The parameters as fresh autodiff leaves whose gradients are kept.
    pub fn track(&self) -> Tracked {
        Tracked {
            leaves: self
                .frozen()
                .iter()
                .map(|t| t.clone().autodiff().require_grad())
                .collect(),
        }
    }

    /// Polyak update `self ← τ·online + (1−τ)·self` (target networks).
    pub fn soft_update_from(&mut self, online: &ParamSet, tau: f32) {
        self.update(|vals| {
            for (t, o) in vals.iter_mut().zip(&online.values) {
                for (x, y) in t.iter_mut().zip(o) {
                    *x = tau * y + (1.0 - tau) * *x;
                }
            }
        });
    }
}

fn build_cache(shapes: &[[usize; 2]], values: &[Vec<f32>]) -> Vec<Tensor<2>> {
    let dev = plain_device();
    shapes
        .iter()
        .zip(values)
        .map(|(s, v)| tensor2(v.clone(), s[0], s[1], &dev))
        .collect()
}

/// Parameters made into autodiff leaves for one gradient computation.
pub struct Tracked {
    /// The leaf tensors, in the `ParamSet`'s order.
    pub leaves: Vec<Tensor<2>>,
}

impl Tracked {
    /// The gradients of the leaves (zeros for a leaf the loss does not reach).
    pub fn grads(&self, grads: &burn::tensor::Gradients) -> Vec<Vec<f32>> {
        self.leaves
            .iter()
            .map(|l| match l.grad(grads) {
                Some(g) => to_vec(g),
                None => vec![0.0; l.shape().num_elements()],
            })
            .collect()
    }
}

/// Global L2 norm of a gradient list.
pub fn global_norm(grads: &[Vec<f32>]) -> f32 {
    // Eight running sums in a fixed order, added up at the end: eight dependency chains that
    // the compiler vectorises instead of one, and the same bits on every instruction set.
    let mut acc = [0.0f64; 8];
    for g in grads {
        let mut chunks = g.chunks_exact(8);
        for c in &mut chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += (x as f64) * (x as f64);
            }
        }
        for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
            *a += (x as f64) * (x as f64);
        }
    }
    acc.iter().sum::<f64>().sqrt() as f32
}

/// Scale gradients so that their global norm is at most `max_norm`; returns the norm before
/// clipping (non-finite if any gradient is non-finite).
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f32) -> f32 {
    let norm = global_norm(grads);
    if norm.is_finite() && norm > max_norm && max_norm > 0.0 {
        let s = max_norm / norm;
        grads
            .iter_mut()
            .flat_map(|g| g.iter_mut())
            .for_each(|x| *x *= s);
    }
    norm
}

/// ELU(x) = max(x, 0) + exp(min(x, 0)) − 1, built from four cheap autodiff primitives
/// (clamp, exp, relu, add) instead of burn's mask-based `elu` (compare, exp, mask_where).
pub fn elu(x: Tensor<2>) -> Tensor<2> {
    let neg = x.clone().clamp_max(0.0).exp().sub_scalar(1.0);
    burn::tensor::activation::relu(x).add(neg)
}
