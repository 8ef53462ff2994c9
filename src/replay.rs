//! Replay buffer: a fixed-capacity ring of transitions in contiguous f32 storage.

use burn::tensor::{Device, Tensor};
use rand::Rng;

use crate::checkpoint::Checkpoint;
use crate::nn::{tensor1, tensor2};

/// One sampled mini-batch on the host, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostBatch {
    /// Batch size.
    pub len: usize,
    /// Observations `len × obs_dim`.
    pub obs: Vec<f32>,
    /// Actions `len × act_dim`.
    pub act: Vec<f32>,
    /// Rewards (unscaled) `len`.
    pub rew: Vec<f32>,
    /// Next observations `len × obs_dim`.
    pub next_obs: Vec<f32>,
    /// 1.0 where the transition ended in a failure state.
    pub terminated: Vec<f32>,
    /// 1.0 where the episode was cut by the time limit.
    pub truncated: Vec<f32>,
    /// n-step returns along the stored trajectories (`algo.value_target = "replay"`).
    pub n_step: Option<NStepReturns>,
}

/// Each row's n-step return along the replay's stored trajectory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NStepReturns {
    /// `Σ_{t<m} γ^t r_t` (unscaled) over the `m ≤ n` stored steps from the row's transition.
    pub ret: Vec<f32>,
    /// The state `s_m` to bootstrap from, `len × obs_dim`.
    pub boot_obs: Vec<f32>,
    /// `γ^m`, or 0 where the trajectory ended in an absorbing termination.
    pub discount: Vec<f32>,
}

/// How [`ReplayBuffer::sample_n_step`] follows stored trajectories.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NStepWindow {
    /// Steps n of the return.
    pub n: usize,
    /// Rows between an agent's consecutive transitions (the vectorized env's agent count).
    pub stride: usize,
    /// Discount γ.
    pub gamma: f32,
    /// A terminated transition is absorbing (no bootstrap after it).
    pub absorbing: bool,
}

/// A mini-batch as tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[len, obs_dim]`
    pub obs: Tensor<2>,
    /// `[len, act_dim]`
    pub act: Tensor<2>,
    /// `[len]`
    pub rew: Tensor<1>,
    /// `[len, obs_dim]`
    pub next_obs: Tensor<2>,
    /// `[len]`
    pub terminated: Tensor<1>,
}

impl HostBatch {
    /// Copy to tensors on `device`.
    pub fn to_tensors(&self, obs_dim: usize, act_dim: usize, device: &Device) -> Batch {
        Batch {
            obs: tensor2(self.obs.clone(), self.len, obs_dim, device),
            act: tensor2(self.act.clone(), self.len, act_dim, device),
            rew: tensor1(self.rew.clone(), device),
            next_obs: tensor2(self.next_obs.clone(), self.len, obs_dim, device),
            terminated: tensor1(self.terminated.clone(), device),
        }
    }
}

/// The `f32` values a buffer stores per transition: `s`, `a`, `r`, `s'`, `terminated` and
/// `truncated`.
pub const fn floats_per_transition(obs_dim: usize, act_dim: usize) -> usize {
    2 * obs_dim + act_dim + 3
}

/// Ring buffer of `(s, a, r, s', terminated, truncated)` with O(1) insert and uniform sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBuffer {
    obs_dim: usize,
    act_dim: usize,
    capacity: usize,
    len: usize,
    next: usize,
    inserted: u64,
    obs: Vec<f32>,
    act: Vec<f32>,
    rew: Vec<f32>,
    next_obs: Vec<f32>,
    terminated: Vec<f32>,
    truncated: Vec<f32>,
}

impl ReplayBuffer {
    /// An empty buffer holding at most `capacity` transitions (storage is allocated up front).
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize) -> Self {
        assert!(capacity > 0, "replay capacity must be positive");
        Self {
            obs_dim,
            act_dim,
            capacity,
            len: 0,
            next: 0,
            inserted: 0,
            obs: vec![0.0; capacity * obs_dim],
            act: vec![0.0; capacity * act_dim],
            rew: vec![0.0; capacity],
            next_obs: vec![0.0; capacity * obs_dim],
            terminated: vec![0.0; capacity],
            truncated: vec![0.0; capacity],
        }
    }

    /// Stored transitions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of transitions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Transitions inserted since creation (including overwritten ones).
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// Insert one transition, overwriting the oldest when full.
    pub fn push(
        &mut self,
        obs: &[f32],
        act: &[f32],
        rew: f32,
        next_obs: &[f32],
        terminated: bool,
        truncated: bool,
    ) {
        let (o, a, i) = (self.obs_dim, self.act_dim, self.next);
        self.obs[i * o..(i + 1) * o].copy_from_slice(obs);
        self.act[i * a..(i + 1) * a].copy_from_slice(act);
        self.rew[i] = rew;
        self.next_obs[i * o..(i + 1) * o].copy_from_slice(next_obs);
        self.terminated[i] = terminated as u8 as f32;
        self.truncated[i] = truncated as u8 as f32;
        self.next = (i + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
        self.inserted += 1;
    }

    /// Insert a vectorized step: row `k` of each argument is agent `k`'s transition.
    pub fn push_rows(
        &mut self,
        obs: &[f32],
        act: &[f32],
        rew: &[f32],
        next_obs: &[f32],
        terminated: &[bool],
        truncated: &[bool],
    ) {
        let (o, a) = (self.obs_dim, self.act_dim);
        for k in 0..rew.len() {
            self.push(
                &obs[k * o..(k + 1) * o],
                &act[k * a..(k + 1) * a],
                rew[k],
                &next_obs[k * o..(k + 1) * o],
                terminated[k],
                truncated[k],
            );
        }
    }

    /// Sample `n` transitions uniformly with replacement.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> HostBatch {
        self.gather(&self.sample_indices(n, rng))
    }

    /// [`ReplayBuffer::sample`] (the same draws) with each row's n-step return along its
    /// stored trajectory: the transition `stride` rows later continues it when it was stored
    /// later and starts where this one ended (the same observation, bit for bit); the walk
    /// stops after `n` steps, at a truncation or termination, or where the trajectory is not
    /// stored (a reset, an overwritten or another buffer's transition) and bootstraps there.
    pub fn sample_n_step(&self, n: usize, rng: &mut impl Rng, w: &NStepWindow) -> HostBatch {
        let idx = self.sample_indices(n, rng);
        let mut b = self.gather(&idx);
        let o = self.obs_dim;
        let mut nb = NStepReturns {
            ret: Vec::with_capacity(n),
            boot_obs: Vec::with_capacity(n * o),
            discount: Vec::with_capacity(n),
        };
        for &start in &idx {
            let (mut cur, mut ret, mut disc) = (start, 0.0f32, 1.0f32);
            for m in 1..=w.n.max(1) {
                ret += disc * self.rew[cur];
                disc *= w.gamma;
                let terminated = self.terminated[cur] > 0.0;
                if terminated && w.absorbing {
                    disc = 0.0;
                    break;
                }
                if m == w.n || terminated || self.truncated[cur] > 0.0 {
                    break;
                }
                match self.continuation(cur, w.stride) {
                    Some(next) => cur = next,
                    None => break,
                }
            }
            nb.ret.push(ret);
            nb.boot_obs
                .extend_from_slice(&self.next_obs[cur * o..(cur + 1) * o]);
            nb.discount.push(disc);
        }
        b.n_step = Some(nb);
        b
    }

    /// Uniform indices of stored transitions.
    fn sample_indices(&self, n: usize, rng: &mut impl Rng) -> Vec<usize> {
        assert!(self.len > 0, "cannot sample from an empty replay buffer");
        (0..n).map(|_| rng.random_range(0..self.len)).collect()
    }

    /// The transitions at `idx` as a batch.
    fn gather(&self, idx: &[usize]) -> HostBatch {
        let (o, a, n) = (self.obs_dim, self.act_dim, idx.len());
        let mut b = HostBatch {
            len: n,
            obs: Vec::with_capacity(n * o),
            act: Vec::with_capacity(n * a),
            rew: Vec::with_capacity(n),
            next_obs: Vec::with_capacity(n * o),
            terminated: Vec::with_capacity(n),
            truncated: Vec::with_capacity(n),
            n_step: None,
        };
        for &i in idx {
            b.obs.extend_from_slice(&self.obs[i * o..(i + 1) * o]);
            b.act.extend_from_slice(&self.act[i * a..(i + 1) * a]);
            b.rew.push(self.rew[i]);
            b.next_obs
                .extend_from_slice(&self.next_obs[i * o..(i + 1) * o]);
            b.terminated.push(self.terminated[i]);
            b.truncated.push(self.truncated[i]);
        }
        b
    }

    /// The stored transition that continues transition `i`'s trajectory `stride` rows later,
    /// if there is one.
    fn continuation(&self, i: usize, stride: usize) -> Option<usize> {
        let cap = self.capacity;
        let oldest = if self.len < cap { 0 } else { self.next };
        let rank = |j: usize| (j + cap - oldest) % cap;
        let j = (i + stride) % cap;
        let o = self.obs_dim;
        let later = rank(j) > rank(i) && rank(j) < self.len;
        let same = |k: usize| self.obs[j * o + k].to_bits() == self.next_obs[i * o + k].to_bits();
        (later && (0..o).all(same)).then_some(j)
    }

    /// The storage arrays in a fixed order, for checkpoints.
    pub fn arrays(&self) -> [(&'static str, &[f32]); 6] {
        [
            ("obs", &self.obs),
            ("act", &self.act),
            ("rew", &self.rew),
            ("next_obs", &self.next_obs),
            ("terminated", &self.terminated),
            ("truncated", &self.truncated),
        ]
    }

    /// Ring position counters `(len, next, inserted)`, for checkpoints.
    pub fn counters(&self) -> (usize, usize, u64) {
        (self.len, self.next, self.inserted)
    }

    /// Rebuild from checkpointed arrays and counters; errors name what does not fit.
    pub fn restore(
        capacity: usize,
        obs_dim: usize,
        act_dim: usize,
        counters: (usize, usize, u64),
        mut arrays: impl FnMut(&str, usize) -> anyhow::Result<Vec<f32>>,
    ) -> anyhow::Result<Self> {
        let (len, next, inserted) = counters;
        anyhow::ensure!(
            len <= capacity && next < capacity,
            "replay counters (len {len}, next {next}) do not fit capacity {capacity}"
        );
        Ok(Self {
            obs_dim,
            act_dim,
            capacity,
            len,
            next,
            inserted,
            obs: arrays("obs", capacity * obs_dim)?,
            act: arrays("act", capacity * act_dim)?,
            rew: arrays("rew", capacity)?,
            next_obs: arrays("next_obs", capacity * obs_dim)?,
            terminated: arrays("terminated", capacity)?,
            truncated: arrays("truncated", capacity)?,
        })
    }

    /// Store the storage and counters in a checkpoint under `prefix` (e.g. `replay`).
    pub fn save_to(&self, ck: &mut Checkpoint, prefix: &str) {
        for (name, data) in self.arrays() {
            ck.set_array(&format!("{prefix}/{name}"), vec![data.len()], data.to_vec());
        }
        let (len, next, inserted) = self.counters();
        ck.set_counter(&format!("{prefix}/len"), len as u64);
        ck.set_counter(&format!("{prefix}/next"), next as u64);
        ck.set_counter(&format!("{prefix}/inserted"), inserted);
    }

    /// Restore a buffer stored by [`ReplayBuffer::save_to`]; errors name what is missing or
    /// does not fit.
    pub fn restore_from(
        ck: &Checkpoint,
        prefix: &str,
        capacity: usize,
        obs_dim: usize,
        act_dim: usize,
    ) -> anyhow::Result<Self> {
        let counters = (
            ck.counter(&format!("{prefix}/len"))? as usize,
            ck.counter(&format!("{prefix}/next"))? as usize,
            ck.counter(&format!("{prefix}/inserted"))?,
        );
        Self::restore(capacity, obs_dim, act_dim, counters, |name, n| {
            ck.array(&format!("{prefix}/{name}"), &[n])
        })
    }
}
