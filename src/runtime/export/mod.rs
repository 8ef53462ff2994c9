//! A run's deterministic policy exported for a controller: an ONNX model, one dependency-free
//! C99 file or one dependency-free Rust file, each computing what [`SavedPolicy::act`] computes
//! (the evaluator's action): the observation times the task's `obs_scale`, the hidden layers
//! with ELU, the output layer (for SAC the mean half), `high ⊙ tanh(·)` unless SAC's
//! `algo.squash` is off, and the clip to the task's action bounds.
//!
//! Weights are written so that they read back bit for bit (protobuf raw data; the shortest
//! decimal that rounds to the same `f32` in C and Rust), and every file is written under a
//! temporary name, then renamed.

mod c;
mod onnx;
mod rust;

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use super::SavedPolicy;
use crate::checkpoint::write_atomic;
use crate::config::AlgoName;

/// What [`export`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// An ONNX model (opset 13): input `obs` `[N, obs_dim]`, output `action` `[N, act_dim]`.
    Onnx,
    /// One C99 file: `void mixpg_policy(const float *obs, float *act)`, no heap, only `expf`.
    C,
    /// One Rust file: `pub fn mixpg_policy(obs: &[f32; OBS], act: &mut [f32; ACT])`.
    Rust,
}

impl ExportFormat {
    /// Every format, as `--format` names them.
    pub const ALL: [(ExportFormat, &'static str); 3] =
        [(Self::Onnx, "onnx"), (Self::C, "c"), (Self::Rust, "rust")];

    /// The format named `name` (`onnx`, `c` or `rust`), or an error listing them.
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(_, n)| *n == lower)
            .map(|(f, _)| *f)
            .with_context(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown export format `{name}` (known: {})",
                    known.join(", ")
                )
            })
    }
}

/// One fully connected layer: `y = x·w + b`, `w` row-major `[input, output]`.
#[derive(Debug, Clone)]
struct Layer {
    input: usize,
    output: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// The computation of a saved policy's deterministic action, with its parameters.
#[derive(Debug, Clone)]
struct PolicyGraph {
    /// What the file says it is: algorithm, task, iteration.
    title: String,
    obs_scale: Vec<f32>,
    /// ELU between layers; the last layer is linear.
    layers: Vec<Layer>,
    /// `high ⊙ tanh(·)` on the last layer's output.
    squash: bool,
    low: Vec<f32>,
    high: Vec<f32>,
}

impl PolicyGraph {
    fn of(p: &SavedPolicy) -> Result<Self> {
        let spec = p.spec();
        let cfg = p.config();
        let act = spec.act_dim;
        let (shapes, values) = (p.params().shapes(), p.params().values());
        let mut layers: Vec<Layer> = shapes
            .chunks_exact(2)
            .zip(values.chunks_exact(2))
            .map(|(s, v)| Layer {
                input: s[0][0],
                output: s[0][1],
                w: v[0].clone(),
                b: v[1].clone(),
            })
            .collect();
        let squash = match cfg.algo.name {
            // SAC's network outputs [mean, log_std]: keep the mean's columns.
            AlgoName::Sac => {
                let last = layers.last_mut().context("the policy has no layer")?;
                let out = last.output;
                last.w = last
                    .w
                    .chunks_exact(out)
                    .flat_map(|row| row[..act].iter().copied())
                    .collect();
                last.b.truncate(act);
                last.output = act;
                cfg.algo.squash
            }
            _ => true,
        };
        ensure!(
            layers.last().is_some_and(|l| l.output == act),
            "the policy's output has not act_dim = {act} columns"
        );
        let finite = layers
            .iter()
            .all(|l| l.w.iter().chain(&l.b).all(|x| x.is_finite()));
        ensure!(
            finite,
            "the policy has non-finite parameters; nothing to export"
        );
        Ok(Self {
            title: format!(
                "mixpg {} policy of {} (iteration {}), exported by mixpg {}",
                cfg.algo.name.as_str(),
                spec.name,
                p.iteration(),
                env!("CARGO_PKG_VERSION")
            ),
            obs_scale: spec.obs_scale.clone(),
            layers,
            squash,
            low: spec.action_low.clone(),
            high: spec.action_high.clone(),
        })
    }

    fn obs_dim(&self) -> usize {
        self.obs_scale.len()
    }

    fn act_dim(&self) -> usize {
        self.high.len()
    }
}

/// Write the policy of the newest checkpoint of `run` to `out` in `format`.
pub fn export(run: &Path, format: ExportFormat, out: &Path) -> Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "cannot write {}: the directory {} does not exist",
            out.display(),
            parent.display()
        );
    }
    if out.is_dir() {
        bail!("cannot write {}: it is a directory", out.display());
    }
    let policy = SavedPolicy::load(run)
        .with_context(|| format!("cannot export the policy of {}", run.display()))?;
    let graph = PolicyGraph::of(&policy)?;
    let bytes = match format {
        ExportFormat::Onnx => onnx::model(&graph),
        ExportFormat::C => c::source(&graph).into_bytes(),
        ExportFormat::Rust => rust::source(&graph).into_bytes(),
    };
    write_atomic(out, &bytes)
}

/// The two stack buffers `a` and `b` that layer `l` reads and writes, in turn (the input is
/// scaled into `a`).
fn buffers(l: usize) -> (&'static str, &'static str) {
    if l.is_multiple_of(2) {
        ("a", "b")
    } else {
        ("b", "a")
    }
}

/// `values` as a comma-separated list of literals that read back as the same `f32`s (the
/// shortest round-trip decimal, `suffix` appended), `per_line` to a line.
fn float_list(values: &[f32], suffix: &str, per_line: usize) -> String {
    values
        .chunks(per_line)
        .map(|line| {
            let items: Vec<String> = line.iter().map(|x| format!("{x:e}{suffix}")).collect();
            format!("    {},\n", items.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_unknown_ones_are_named() {
        assert_eq!(ExportFormat::parse("ONNX").unwrap(), ExportFormat::Onnx);
        assert_eq!(ExportFormat::parse("c").unwrap(), ExportFormat::C);
        let e = ExportFormat::parse("tflite").unwrap_err().to_string();
        assert!(e.contains("`tflite`") && e.contains("onnx, c, rust"), "{e}");
    }

    #[test]
    fn float_literals_read_back_as_the_same_bits() {
        let xs = [
            0.1f32,
            -1.0 / 3.0,
            f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            -0.0,
            123456.79,
        ];
        let text = float_list(&xs, "", 3);
        let back: Vec<f32> = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&xs));
    }
}
