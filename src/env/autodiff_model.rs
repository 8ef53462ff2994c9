//! [`AutodiffModel`]: a prior model written only on burn tensors ([`TensorModel`]) made into a
//! [`PriorModel`] for the fused learning core: its host step runs the tensor step on the plain
//! device, and its vector-Jacobian product re-runs the step on tracked inputs and lets burn
//! autodiff back-propagate the cotangents. Correct for any tensor model; slower than a
//! hand-written host step (one autodiff graph per model step).

use rand_pcg::Pcg64Mcg;

use super::{ModelPath, ModelTape, PriorModel, TaskSpec, TensorModel};
use crate::nn::{plain_device, tensor1, tensor2, to_vec};

/// A [`TensorModel`] as a [`PriorModel`] whose VJP burn autodiff computes.
pub struct AutodiffModel<M> {
    model: M,
}

impl<M: TensorModel> AutodiffModel<M> {
    /// Wrap a tensor model.
    pub fn new(model: M) -> Self {
        Self { model }
    }
}

impl<M: TensorModel> PriorModel for AutodiffModel<M> {
    fn spec(&self) -> &TaskSpec {
        self.model.spec()
    }

    fn draw_noise(&self, batch: usize, rng: &mut Pcg64Mcg, noise: &mut Vec<f32>) {
        self.model.draw_noise(batch, rng, noise);
    }

    fn noise_mean(&self) -> Option<f32> {
        self.model.noise_mean()
    }

    /// Runs the tensor step; the tape keeps the inputs and the noise (in `saved`).
    fn step_host(
        &self,
        state: &[f32],
        action: &[f32],
        noise: &[f32],
        next: &mut [f32],
        reward: &mut [f32],
        tape: &mut ModelTape,
    ) {
        let spec = self.model.spec();
        let batch = state.len() / spec.obs_dim;
        tape.record(state, action, noise.len());
        tape.saved.copy_from_slice(noise);
        let dev = plain_device();
        let s = tensor2(state.to_vec(), batch, spec.obs_dim, &dev);
        let a = tensor2(action.to_vec(), batch, spec.act_dim, &dev);
        let (n, r) = self.model.step(s, a, noise);
        next.copy_from_slice(&to_vec(n));
        reward.copy_from_slice(&to_vec(r));
    }

    /// Re-runs the step on tracked inputs and back-propagates
    /// `Σ next ⊙ d_next + Σ reward ⊙ d_reward`.
    fn step_vjp(
        &self,
        tape: &ModelTape,
        d_next: &[f32],
        d_reward: &[f32],
        d_state: &mut [f32],
        d_action: &mut [f32],
    ) {
        let spec = self.model.spec();
        let batch = tape.state.len() / spec.obs_dim;
        let dev = plain_device();
        let leaf = |v: &[f32], cols: usize| {
            tensor2(v.to_vec(), batch, cols, &dev)
                .autodiff()
                .require_grad()
        };
        let s = leaf(&tape.state, spec.obs_dim);
        let a = leaf(&tape.action, spec.act_dim);
        let (n, r) = self.model.step(s.clone(), a.clone(), &tape.saved);
        let ad = n.device();
        let objective = n
            .mul(tensor2(d_next.to_vec(), batch, spec.obs_dim, &ad))
            .sum()
            .add(r.mul(tensor1(d_reward.to_vec(), &ad)).sum());
        let grads = objective.backward();
        let grad_of = |t: &burn::tensor::Tensor<2>, out: &mut [f32]| match t.grad(&grads) {
            Some(g) => out.copy_from_slice(&to_vec(g)),
            None => out.fill(0.0),
        };
        grad_of(&s, d_state);
        grad_of(&a, d_action);
    }

    fn tensor(&self) -> Option<&dyn TensorModel> {
        Some(&self.model)
    }

    fn path(&self) -> ModelPath {
        ModelPath::Autodiff
    }
}
