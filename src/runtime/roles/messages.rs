//! What crosses between the roles: parameter snapshots, experience blocks, replayed batches
//! and tagged gradients, each with its byte encoding (see [`super::codec`]).

use anyhow::{Result, ensure};

use super::codec::{Kind, Reader, Writer};
use crate::algo::{GradStats, Grads, Params};
use crate::nn::ParamSet;
use crate::replay::{HostBatch, NStepReturns, ReplayBuffer};

/// Host copy of one parameter set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostSet {
    shapes: Vec<[usize; 2]>,
    values: Vec<Vec<f32>>,
}

impl HostSet {
    /// Copy the host values of `p`.
    fn of(p: &ParamSet) -> Self {
        Self {
            shapes: p.shapes().to_vec(),
            values: p.values().to_vec(),
        }
    }

    /// Rebuild the parameter set (with this thread's tensor cache).
    fn build(&self) -> ParamSet {
        ParamSet::new(self.shapes.clone(), self.values.clone())
    }

    fn encode(&self, w: &mut Writer) {
        encode_set(w, &self.shapes, &self.values);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let n = r.count()?;
        let (mut shapes, mut values) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let s = [r.usize()?, r.usize()?];
            let v = r.f32s()?;
            ensure!(
                s[0].checked_mul(s[1]) == Some(v.len()),
                "corrupt parameter snapshot: a {}x{} tensor with {} values",
                s[0],
                s[1],
                v.len()
            );
            shapes.push(s);
            values.push(v);
        }
        Ok(Self { shapes, values })
    }

    fn encode_opt(s: Option<&Self>, w: &mut Writer) {
        w.flag(s.is_some());
        if let Some(s) = s {
            s.encode(w);
        }
    }

    fn decode_opt(r: &mut Reader<'_>) -> Result<Option<Self>> {
        Ok(if r.flag()? {
            Some(Self::decode(r)?)
        } else {
            None
        })
    }

    fn values_len(&self) -> usize {
        self.values.iter().map(Vec::len).sum()
    }
}

/// Append one parameter set (its shapes and values) to `w`.
fn encode_set(w: &mut Writer, shapes: &[[usize; 2]], values: &[Vec<f32>]) {
    w.u64(shapes.len() as u64);
    for (s, v) in shapes.iter().zip(values) {
        w.u64(s[0] as u64);
        w.u64(s[1] as u64);
        w.f32s(v);
    }
}

/// An immutable snapshot of every parameter at one optimizer iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The optimizer's iteration counter when the snapshot was taken.
    pub version: u64,
    pi: HostSet,
    q1: HostSet,
    q2: Option<HostSet>,
    pi_t: HostSet,
    q1_t: HostSet,
    q2_t: Option<HostSet>,
    log_alpha: HostSet,
}

impl Snapshot {
    /// Copy the host values of `p`.
    pub fn of(version: u64, p: &Params) -> Self {
        Self {
            version,
            pi: HostSet::of(&p.pi),
            q1: HostSet::of(&p.q1),
            q2: p.q2.as_ref().map(HostSet::of),
            pi_t: HostSet::of(&p.pi_t),
            q1_t: HostSet::of(&p.q1_t),
            q2_t: p.q2_t.as_ref().map(HostSet::of),
            log_alpha: HostSet::of(&p.log_alpha),
        }
    }

    /// Rebuild every parameter set (with this thread's tensor caches).
    pub fn params(&self) -> Params {
        Params {
            pi: self.pi.build(),
            q1: self.q1.build(),
            q2: self.q2.as_ref().map(HostSet::build),
            pi_t: self.pi_t.build(),
            q1_t: self.q1_t.build(),
            q2_t: self.q2_t.as_ref().map(HostSet::build),
            log_alpha: self.log_alpha.build(),
        }
    }

    /// Rebuild the policy only (actors).
    pub fn policy(&self) -> ParamSet {
        self.pi.build()
    }

    /// The byte encoding of `Snapshot::of(version, p)`, written straight from `p`.
    pub fn encode(version: u64, p: &Params) -> Vec<u8> {
        let sets = [
            Some(&p.pi),
            Some(&p.q1),
            p.q2.as_ref(),
            Some(&p.pi_t),
            Some(&p.q1_t),
            p.q2_t.as_ref(),
            Some(&p.log_alpha),
        ];
        let n: usize = sets
            .iter()
            .flatten()
            .map(|s| s.values().iter().map(Vec::len).sum::<usize>())
            .sum();
        let mut w = Writer::new(Kind::Snapshot, n * 4 + 256);
        w.u64(version);
        let set = |w: &mut Writer, s: &ParamSet| encode_set(w, s.shapes(), s.values());
        let opt_set = |w: &mut Writer, s: Option<&ParamSet>| {
            w.flag(s.is_some());
            if let Some(s) = s {
                set(w, s);
            }
        };
        set(&mut w, &p.pi);
        set(&mut w, &p.q1);
        opt_set(&mut w, p.q2.as_ref());
        set(&mut w, &p.pi_t);
        set(&mut w, &p.q1_t);
        opt_set(&mut w, p.q2_t.as_ref());
        set(&mut w, &p.log_alpha);
        w.finish()
    }

    /// The byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let sets = [&self.pi, &self.q1, &self.pi_t, &self.q1_t];
        let n: usize = sets.iter().map(|s| s.values_len()).sum::<usize>()
            + self.q2.as_ref().map_or(0, HostSet::values_len) * 2;
        let mut w = Writer::new(Kind::Snapshot, n * 4 + 256);
        w.u64(self.version);
        self.pi.encode(&mut w);
        self.q1.encode(&mut w);
        HostSet::encode_opt(self.q2.as_ref(), &mut w);
        self.pi_t.encode(&mut w);
        self.q1_t.encode(&mut w);
        HostSet::encode_opt(self.q2_t.as_ref(), &mut w);
        self.log_alpha.encode(&mut w);
        w.finish()
    }

    /// The version of an encoded snapshot, without decoding the parameters.
    pub fn version_in(bytes: &[u8]) -> Result<u64> {
        Reader::new(bytes, Kind::Snapshot)?.u64()
    }

    /// Decode [`Snapshot::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, Kind::Snapshot)?;
        let s = Self {
            version: r.u64()?,
            pi: HostSet::decode(&mut r)?,
            q1: HostSet::decode(&mut r)?,
            q2: HostSet::decode_opt(&mut r)?,
            pi_t: HostSet::decode(&mut r)?,
            q1_t: HostSet::decode(&mut r)?,
            q2_t: HostSet::decode_opt(&mut r)?,
            log_alpha: HostSet::decode(&mut r)?,
        };
        r.end()?;
        Ok(s)
    }
}

/// A block of transitions from one actor collection (row-major, one row per agent-step).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Experience {
    /// Observations.
    pub obs: Vec<f32>,
    /// Actions taken (with exploration).
    pub act: Vec<f32>,
    /// Unscaled rewards.
    pub rew: Vec<f32>,
    /// Next observations.
    pub next_obs: Vec<f32>,
    /// Failure flags.
    pub terminated: Vec<bool>,
    /// Time-limit flags.
    pub truncated: Vec<bool>,
}

impl Experience {
    /// Transitions in the block.
    pub fn len(&self) -> usize {
        self.rew.len()
    }

    /// True when the block holds no transition.
    pub fn is_empty(&self) -> bool {
        self.rew.is_empty()
    }

    /// The byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.obs.len() * 2 + self.act.len() + self.rew.len();
        let mut w = Writer::new(Kind::Experience, n * 4 + 64);
        w.f32s(&self.obs);
        w.f32s(&self.act);
        w.f32s(&self.rew);
        w.f32s(&self.next_obs);
        w.bools(&self.terminated);
        w.bools(&self.truncated);
        w.finish()
    }

    /// Decode [`Experience::to_bytes`]; the arrays must agree on the number of transitions.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, Kind::Experience)?;
        let e = Self {
            obs: r.f32s()?,
            act: r.f32s()?,
            rew: r.f32s()?,
            next_obs: r.f32s()?,
            terminated: r.bools()?,
            truncated: r.bools()?,
        };
        r.end()?;
        let n = e.rew.len();
        ensure!(
            e.terminated.len() == n
                && e.truncated.len() == n
                && e.obs.len() == e.next_obs.len()
                && (n == 0 || (e.obs.len().is_multiple_of(n) && e.act.len().is_multiple_of(n))),
            "corrupt experience block: arrays of different lengths"
        );
        Ok(e)
    }
}

/// The byte encoding of a replayed batch.
pub fn batch_to_bytes(b: &HostBatch) -> Vec<u8> {
    let n = b.obs.len() * 2 + b.act.len() + b.rew.len() * 3;
    let mut w = Writer::new(Kind::Batch, n * 4 + 64);
    w.u64(b.len as u64);
    for v in [
        &b.obs,
        &b.act,
        &b.rew,
        &b.next_obs,
        &b.terminated,
        &b.truncated,
    ] {
        w.f32s(v);
    }
    w.u64(b.n_step.is_some() as u64);
    if let Some(ns) = &b.n_step {
        w.f32s(&ns.ret);
        w.f32s(&ns.boot_obs);
        w.f32s(&ns.discount);
    }
    w.finish()
}

/// Decode [`batch_to_bytes`].
pub fn batch_from_bytes(bytes: &[u8]) -> Result<HostBatch> {
    let mut r = Reader::new(bytes, Kind::Batch)?;
    let b = HostBatch {
        len: r.usize()?,
        obs: r.f32s()?,
        act: r.f32s()?,
        rew: r.f32s()?,
        next_obs: r.f32s()?,
        terminated: r.f32s()?,
        truncated: r.f32s()?,
        n_step: None,
    };
    let n_step = match r.u64()? {
        0 => None,
        _ => Some(NStepReturns {
            ret: r.f32s()?,
            boot_obs: r.f32s()?,
            discount: r.f32s()?,
        }),
    };
    r.end()?;
    ensure!(
        n_step.as_ref().is_none_or(|ns| ns.ret.len() == b.len
            && ns.discount.len() == b.len
            && ns.boot_obs.len() == b.obs.len()),
        "corrupt replay batch: n-step returns of another size"
    );
    let b = HostBatch { n_step, ..b };
    ensure!(
        b.rew.len() == b.len && b.terminated.len() == b.len && b.truncated.len() == b.len,
        "corrupt replay batch: {} rows but {} rewards",
        b.len,
        b.rew.len()
    );
    Ok(b)
}

/// The byte encoding of a whole replay buffer (storage and ring counters).
pub fn replay_to_bytes(rb: &ReplayBuffer) -> Vec<u8> {
    let arrays = rb.arrays();
    let n: usize = arrays.iter().map(|(_, a)| a.len()).sum();
    let mut w = Writer::new(Kind::Replay, n * 4 + 128);
    let (len, next, inserted) = rb.counters();
    for x in [rb.capacity(), len, next] {
        w.u64(x as u64);
    }
    w.u64(inserted);
    for (_, a) in arrays {
        w.f32s(a);
    }
    w.finish()
}

/// Decode [`replay_to_bytes`] into a buffer with these dimensions.
pub fn replay_from_bytes(bytes: &[u8], obs_dim: usize, act_dim: usize) -> Result<ReplayBuffer> {
    let mut r = Reader::new(bytes, Kind::Replay)?;
    let capacity = r.usize()?;
    let counters = (r.usize()?, r.usize()?, r.u64()?);
    let mut arrays = Vec::new();
    for _ in 0..6 {
        arrays.push(r.f32s()?);
    }
    r.end()?;
    let mut arrays = arrays.into_iter();
    ReplayBuffer::restore(capacity, obs_dim, act_dim, counters, |name, n| {
        let a = arrays.next().unwrap_or_default();
        ensure!(
            a.len() == n,
            "replay array {name} holds {} values, expected {n}",
            a.len()
        );
        Ok(a)
    })
}

/// A gradient tagged with the parameter version it was computed from.
#[derive(Debug, Clone)]
pub struct TaggedGrads {
    /// The gradients and their stats.
    pub grads: Grads,
    /// Version of the snapshot used.
    pub version: u64,
}

fn put_nested(w: &mut Writer, g: &[Vec<f32>]) {
    w.u64(g.len() as u64);
    for v in g {
        w.f32s(v);
    }
}

fn get_nested(r: &mut Reader<'_>) -> Result<Vec<Vec<f32>>> {
    let n = r.count()?;
    (0..n).map(|_| r.f32s()).collect()
}

fn put_opt_nested(w: &mut Writer, g: Option<&Vec<Vec<f32>>>) {
    w.flag(g.is_some());
    if let Some(g) = g {
        put_nested(w, g);
    }
}

fn get_opt_nested(r: &mut Reader<'_>) -> Result<Option<Vec<Vec<f32>>>> {
    Ok(if r.flag()? {
        Some(get_nested(r)?)
    } else {
        None
    })
}

impl TaggedGrads {
    /// The byte encoding (gradients, stats and version).
    pub fn to_bytes(&self) -> Vec<u8> {
        let g = &self.grads;
        let n: usize = g.q1.iter().map(Vec::len).sum::<usize>() * 2
            + g.pi.as_ref().map_or(0, |p| p.iter().map(Vec::len).sum());
        let mut w = Writer::new(Kind::Grads, n * 4 + 256);
        w.u64(self.version);
        put_nested(&mut w, &g.q1);
        put_opt_nested(&mut w, g.q2.as_ref());
        put_opt_nested(&mut w, g.pi.as_ref());
        w.flag(g.log_alpha.is_some());
        if let Some(a) = g.log_alpha {
            w.f32(a);
        }
        let s = &g.stats;
        w.f64(s.q_loss);
        w.opt_f64(s.policy_loss);
        w.opt_f64(s.pg_time_ms);
        w.f64(s.terminated_frac);
        w.f64(s.q_grad_norm);
        w.opt_f64(s.pi_grad_norm);
        w.f64(s.model_error.unwrap_or(f64::NAN));
        w.finish()
    }

    /// Decode [`TaggedGrads::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, Kind::Grads)?;
        let version = r.u64()?;
        let q1 = get_nested(&mut r)?;
        let q2 = get_opt_nested(&mut r)?;
        let pi = get_opt_nested(&mut r)?;
        let log_alpha = if r.flag()? { Some(r.f32()?) } else { None };
        let stats = GradStats {
            q_loss: r.f64()?,
            policy_loss: r.opt_f64()?,
            pg_time_ms: r.opt_f64()?,
            terminated_frac: r.f64()?,
            q_grad_norm: r.f64()?,
            pi_grad_norm: r.opt_f64()?,
            model_error: Some(r.f64()?).filter(|e| !e.is_nan()),
        };
        r.end()?;
        Ok(Self {
            grads: Grads {
                q1,
                q2,
                pi,
                log_alpha,
                stats,
            },
            version,
        })
    }
}
