//! A run's saved policy loaded for inference: the deterministic action of its latest
//! checkpoint (the mean for SAC), as the evaluator uses it, and a byte form for pickling.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use rand::SeedableRng;

use crate::algo::{Agent, Nets, act};
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::env::{TaskSpec, lookup};
use crate::nn::ParamSet;
use crate::runtime::rundir::read_task_spec;
use crate::runtime::serial::latest_checkpoint;

/// Leading bytes of [`SavedPolicy::to_bytes`] (name and format version; version 2 carries
/// the task description, version 1 named a built-in task).
const MAGIC: &[u8; 12] = b"mixpg-pol-v2";
/// Leading bytes of the first format (config, no task description).
const MAGIC_V1: &[u8; 12] = b"mixpg-pol-v1";

/// The description of a run's task: its `task.toml`, or the registered task of its config.
fn run_task_spec(run: &Path, cfg: &Config) -> Result<TaskSpec> {
    match read_task_spec(run)? {
        Some(spec) => Ok(spec),
        None => Ok(lookup(&cfg.task.name)?.spec().clone()),
    }
}

/// The policy network of a run with its parameters.
#[derive(Debug, Clone)]
pub struct SavedPolicy {
    cfg: Config,
    nets: Nets,
    pi: ParamSet,
    iteration: u64,
}

impl SavedPolicy {
    /// The policy of the latest checkpoint of the run directory `run`.
    pub fn load(run: &Path) -> Result<Self> {
        let cfg = Config::load(&run.join("config.toml"), &[])?;
        let ckpt = latest_checkpoint(run)?
            .with_context(|| format!("{} has no checkpoint to load", run.display()))?;
        let ck = Checkpoint::load(&ckpt)?;
        let spec = run_task_spec(run, &cfg)?;
        let nets = Nets::new(&cfg, &spec);
        let mut agent = Agent::new(&nets, &cfg, &mut rand_pcg::Pcg64Mcg::seed_from_u64(0));
        agent.load(&ck)?;
        Ok(Self {
            iteration: ck.counter("iteration")?,
            pi: agent.params.pi,
            cfg,
            nets,
        })
    }

    /// The task the policy acts in.
    pub fn spec(&self) -> &TaskSpec {
        &self.nets.spec
    }

    /// The run's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The training iteration of the checkpoint.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The policy parameters.
    pub fn params(&self) -> &ParamSet {
        &self.pi
    }

    /// Deterministic actions (row-major `n * act_dim`, within the bounds) for observations
    /// (row-major `n * obs_dim`).
    pub fn act(&self, obs: &[f32]) -> Result<Vec<f32>> {
        let d = self.nets.spec.obs_dim;
        ensure!(
            obs.len().is_multiple_of(d),
            "observations must be rows of {d} values (got {} values)",
            obs.len()
        );
        if obs.is_empty() {
            return Ok(Vec::new());
        }
        let mut unused = rand_pcg::Pcg64Mcg::new(0);
        Ok(act(&self.nets, &self.pi, obs, None, &mut unused))
    }

    /// The policy as bytes: the config and the task description (TOML), the iteration and
    /// the parameters (f32 LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let toml = self.cfg.to_toml();
        let spec = toml::to_string(&self.nets.spec).expect("task descriptions serialise");
        let mut b = Vec::with_capacity(64 + toml.len() + spec.len());
        b.extend_from_slice(MAGIC);
        for text in [&toml, &spec] {
            b.extend_from_slice(&(text.len() as u64).to_le_bytes());
            b.extend_from_slice(text.as_bytes());
        }
        b.extend_from_slice(&self.iteration.to_le_bytes());
        b.extend_from_slice(&(self.pi.shapes().len() as u64).to_le_bytes());
        for (s, v) in self.pi.shapes().iter().zip(self.pi.values()) {
            b.extend_from_slice(&(s[0] as u64).to_le_bytes());
            b.extend_from_slice(&(s[1] as u64).to_le_bytes());
            for x in v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        }
        b
    }

    /// The policy written by [`SavedPolicy::to_bytes`]; errors on any malformed input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.take(MAGIC.len())?;
        if magic != MAGIC && magic != MAGIC_V1 {
            bail!("not a mixpg policy (bad header)");
        }
        let cfg = Config::from_toml_str(r.text("config")?, &[]).context("policy config")?;
        let spec = if magic == MAGIC {
            let spec: TaskSpec =
                toml::from_str(r.text("task description")?).context("policy task description")?;
            spec.validate()?;
            spec
        } else {
            lookup(&cfg.task.name)?.spec().clone()
        };
        let iteration = r.u64()?;
        let nets = Nets::new(&cfg, &spec);
        let like = Agent::new(&nets, &cfg, &mut rand_pcg::Pcg64Mcg::seed_from_u64(0))
            .params
            .pi;
        let count = r.len()?;
        ensure!(
            count == like.shapes().len(),
            "policy has {count} tensors, its config needs {}",
            like.shapes().len()
        );
        let mut shapes = Vec::with_capacity(count);
        let mut values = Vec::with_capacity(count);
        for expected in like.shapes() {
            let shape = [r.len()?, r.len()?];
            ensure!(
                shape == *expected,
                "policy tensor of shape {shape:?}, its config needs {expected:?}"
            );
            let raw = r.take(shape[0] * shape[1] * 4)?;
            values.push(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            );
            shapes.push(shape);
        }
        ensure!(r.pos == bytes.len(), "trailing bytes after the policy");
        Ok(Self {
            cfg,
            nets,
            pi: ParamSet::new(shapes, values),
            iteration,
        })
    }
}

/// A bounds-checked cursor over bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .context("policy bytes are truncated")?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).context("length out of range")
    }

    /// A length-prefixed UTF-8 text.
    fn text(&mut self, what: &str) -> Result<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).with_context(|| format!("policy {what} is not UTF-8"))
    }
}
