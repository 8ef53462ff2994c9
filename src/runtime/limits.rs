//! What a run may ask of the machine, checked before anything is allocated: rollouts no longer
//! than an episode, and an estimate of the memory the config takes within what is available.
//!
//! The estimate adds up the large allocations of a run (f64 arithmetic, so that no config can
//! overflow it): the replay buffers (their layout in [`crate::replay`], with the copy a
//! checkpoint makes), the parameters with their copies (online, target, Adam's two moments,
//! a gradient, the checkpoint's copy; in async mode also each learner's snapshot and gradient
//! (on Ray, the threads of the one learner group a node runs),
//! each actor's policy and the gradient queue), each learner's activations, the BPTT tape of
//! the model rollout (states, actions, rewards, the policy's and the model's saved values at
//! every step of `algo.horizon`), the n-step rollouts, data collection (the vector
//! environments and the experience queue) and evaluation. A run whose estimate exceeds
//! `MemAvailable` of `/proc/meminfo` is refused with the part that dominates, unless
//! `train.skip_memory_check` (`mixpg train --force`) is set.

use anyhow::{Result, bail};
use rand::SeedableRng;

use crate::algo::Nets;
use crate::config::{AlgoName, Config, MemberChoice, Mode, ModelKind};
use crate::env::{ModelTape, Task, TaskSpec};
use crate::replay::floats_per_transition;

/// Bytes of an `f32`.
const F32: f64 = 4.0;
/// Bytes in a GB (10⁹, as `free -g` would not, but as the message says).
const GB: f64 = 1e9;

/// One part of a run's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPart {
    /// What takes the memory.
    pub what: &'static str,
    /// The config key it grows with.
    pub key: &'static str,
    /// That key's value, as the config says it.
    pub value: String,
    /// Estimated bytes.
    pub bytes: f64,
}

/// The estimated memory of a run, by part.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    /// The parts, in a fixed order.
    pub parts: Vec<MemoryPart>,
}

impl MemoryEstimate {
    /// Total estimated bytes.
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// The largest part.
    pub fn dominant(&self) -> &MemoryPart {
        self.parts
            .iter()
            .max_by(|a, b| a.bytes.total_cmp(&b.bytes))
            .expect("an estimate has parts")
    }
}

/// Parameters of a fully connected network `input → hidden … → output`.
fn mlp_params(input: usize, hidden: &[usize], output: usize) -> f64 {
    let mut sizes = vec![input as f64];
    sizes.extend(hidden.iter().map(|&h| h as f64));
    sizes.push(output as f64);
    sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

/// Values the model's host step saves per row (measured on one row of the task's model; for a
/// learned model, its centred input and each member's activations).
fn model_saved_per_row(cfg: &Config, task: &Task) -> Result<f64> {
    let spec = task.spec();
    if cfg.task.model == ModelKind::Learned {
        let n_in = (spec.obs_dim + spec.act_dim) as f64;
        let members = match cfg.model.member {
            MemberChoice::Random => 1.0,
            MemberChoice::Mean => cfg.model.ensemble as f64,
        };
        let per_member = n_in + learned_widths(cfg, spec);
        return Ok(2.0 * n_in + members * per_member);
    }
    let model = task.make_model(cfg.task.model_mismatch)?;
    let mut noise = Vec::new();
    model.draw_noise(1, &mut rand_pcg::Pcg64Mcg::seed_from_u64(0), &mut noise);
    let mut tape = ModelTape::default();
    let (mut next, mut reward) = (vec![0.0; spec.obs_dim], [0.0]);
    let (state, action) = (vec![0.0; spec.obs_dim], vec![0.0; spec.act_dim]);
    model.step_host(&state, &action, &noise, &mut next, &mut reward, &mut tape);
    Ok((tape.state.len() + tape.action.len() + tape.saved.len()) as f64)
}

/// The hidden and output widths of a learned model's member (`Δobs`, reward, a termination
/// logit).
fn learned_widths(cfg: &Config, spec: &TaskSpec) -> f64 {
    let hidden: usize = cfg.model.hidden.iter().sum();
    (hidden + spec.obs_dim + 2) as f64
}

/// The learned model's memory: each member's parameters with its Adam state, gradient, best
/// copy and checkpoint copy, and a fit's copy of the replay in the networks' coordinates (with
/// its shuffled indices); 0 with a prior model.
fn learned_model_bytes(cfg: &Config, spec: &TaskSpec) -> f64 {
    if cfg.task.model != ModelKind::Learned {
        return 0.0;
    }
    let (o, a) = (spec.obs_dim as f64, spec.act_dim as f64);
    let m = &cfg.model;
    let params = mlp_params(spec.obs_dim + spec.act_dim, &m.hidden, spec.obs_dim + 2);
    let data = cfg.algo.buffer_capacity as f64 * (2.0 * o + a + (o + a) + (o + 2.0) + 4.0);
    (m.ensemble as f64 * params * 6.0 + data) * F32
}

/// The estimated memory of `cfg` on `task` (nothing is allocated).
pub fn estimate(cfg: &Config, task: &Task) -> Result<MemoryEstimate> {
    let spec = task.spec();
    let (a, r, t) = (&cfg.algo, &cfg.runtime, &cfg.train);
    let (obs, act) = (spec.obs_dim as f64, spec.act_dim as f64);
    let hidden = &cfg.network.hidden;
    let batch = a.batch_size as f64;
    let asynchronous = r.mode != Mode::Serial;
    // Learner threads on this machine; on Ray a node runs one learner group.
    let learners = match r.mode {
        Mode::Serial => 1,
        Mode::Async => r.learners,
        Mode::Ray => r
            .learners_per_group
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    } as f64;
    let q_nets = if Nets::new(cfg, spec).twin_q() {
        2.0
    } else {
        1.0
    };
    let policy_out = if a.name == AlgoName::Sac {
        2.0 * act
    } else {
        act
    };
    let transition = floats_per_transition(spec.obs_dim, spec.act_dim) as f64;

    // Replay: the buffers, a checkpoint's copy and, in async mode, the copy sent to it.
    let (buffers, copies) = if asynchronous {
        (r.buffers as f64, 3.0)
    } else {
        (1.0, 2.0)
    };
    let replay = buffers * a.buffer_capacity as f64 * transition * F32 * copies;

    // Parameters: online, target, Adam m and v, a gradient, the checkpoint's copy; async adds
    // every learner's snapshot (online and target) and gradient, every actor's policy and the
    // queued gradients.
    let pi = mlp_params(spec.obs_dim, hidden, policy_out as usize);
    let q = mlp_params(spec.obs_dim + spec.act_dim, hidden, 1);
    let set = (pi + q_nets * q) * F32;
    let mut param_copies = 6.0;
    if asynchronous {
        param_copies += 3.0 * learners + 2.0 * r.actors as f64 + r.gradient_queue as f64;
    }
    let params = set * param_copies;

    // Activations of one learner: every layer's output for the batch, saved, its gradient and
    // a scratch copy, for the online and target policy and Q networks.
    let widths = |input: f64, out: f64| input + hidden.iter().map(|&h| h as f64).sum::<f64>() + out;
    let activations = learners
        * batch
        * 3.0
        * 2.0
        * (widths(obs, policy_out) + q_nets * widths(obs + act, 1.0))
        * F32;

    // BPTT: per step and row the state, action and reward, the policy's tape (scaled input,
    // each layer, tanh and the action) and the model's tape.
    let bptt = if a.name.needs_model() {
        let per_row = obs + act + 1.0 + widths(obs, 3.0 * act) + model_saved_per_row(cfg, task)?;
        learners * (a.horizon as f64 + 1.0) * batch * per_row * F32
    } else {
        0.0
    };

    // n-step targets: a batch-sized environment and the policy's pass per learner.
    let n_step = if a.name.n_step_critic() {
        learners * batch * (transition + widths(obs, act)) * F32
    } else {
        0.0
    };

    // Collection: each actor's agents and block of transitions, queued blocks in async mode.
    let actors = if asynchronous { r.actors as f64 } else { 1.0 };
    let agents = cfg.task.num_agents as f64;
    let block = a.collect_steps as f64 * agents * transition;
    let queued = if asynchronous {
        r.experience_queue as f64
    } else {
        0.0
    };
    let collection =
        (actors * (block + agents * (transition + widths(obs, act))) + queued * block) * F32;

    // Evaluation: one agent per episode.
    let evaluation = t.eval_episodes as f64 * (transition + widths(obs, act)) * F32;

    let hidden_text = format!(
        "[{}]",
        hidden
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let part = |what, key, value: String, bytes| MemoryPart {
        what,
        key,
        value,
        bytes,
    };
    Ok(MemoryEstimate {
        parts: vec![
            part(
                "replay buffers",
                "algo.buffer_capacity",
                a.buffer_capacity.to_string(),
                replay,
            ),
            part(
                "network parameters and optimiser state",
                "network.hidden",
                hidden_text,
                params,
            ),
            part(
                "network activations",
                "algo.batch_size",
                a.batch_size.to_string(),
                activations,
            ),
            part(
                "the BPTT tape of the model rollout",
                "algo.horizon",
                a.horizon.to_string(),
                bptt,
            ),
            part(
                "n-step target rollouts",
                "algo.batch_size",
                a.batch_size.to_string(),
                n_step,
            ),
            part(
                "data collection",
                "task.num_agents",
                cfg.task.num_agents.to_string(),
                collection,
            ),
            part(
                "evaluation",
                "train.eval_episodes",
                t.eval_episodes.to_string(),
                evaluation,
            ),
            part(
                "the learned model and a fit's copy of the replay",
                "model.ensemble",
                cfg.model.ensemble.to_string(),
                learned_model_bytes(cfg, spec),
            ),
        ],
    })
}

/// The memory available to a new run: `MemAvailable` of `/proc/meminfo` in bytes, `None` where
/// it cannot be read (then the memory is not checked).
pub fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Refuse a config whose rollouts are longer than the task's episode (`algo.horizon` for the
/// algorithms that roll out the model, `algo.n_step` for those with n-step targets).
pub fn check_episode_bounds(cfg: &Config, spec: &TaskSpec) -> Result<()> {
    let a = &cfg.algo;
    for (used, key, value) in [
        (a.name.needs_model(), "algo.horizon", a.horizon),
        (a.name.n_step_critic(), "algo.n_step", a.n_step),
    ] {
        if used && value > spec.episode_len {
            bail!(
                "invalid value for `{key}`: {key} = {value} exceeds the task's episode length \
                 {} ({}); use at most {}",
                spec.episode_len,
                spec.name,
                spec.episode_len
            );
        }
    }
    Ok(())
}

/// Refuse a config whose estimated memory exceeds `available` bytes (`None`: not checked),
/// naming the part that dominates and its key; `train.skip_memory_check` skips this.
pub fn check_memory(cfg: &Config, task: &Task, available: Option<f64>) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    if cfg.train.skip_memory_check {
        return Ok(());
    }
    let e = estimate(cfg, task)?;
    let total = e.total();
    if total > available {
        let d = e.dominant();
        bail!(
            "the run would need about {:.1} GB of memory, more than the {:.1} GB available \
             (MemAvailable); most of it is {}: {:.1} GB with {} = {}; lower {}, or start it \
             anyway with `mixpg train --force` (config key train.skip_memory_check = true)",
            total / GB,
            available / GB,
            d.what,
            d.bytes / GB,
            d.key,
            d.value,
            d.key
        );
    }
    Ok(())
}

/// The checks a run makes before it starts (new or resumed): episode bounds, then memory
/// against what is available now.
pub fn check_run(cfg: &Config, task: &Task) -> Result<()> {
    check_episode_bounds(cfg, task.spec())?;
    check_memory(cfg, task, available_memory())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(algo: &str, sets: &[&str]) -> Config {
        let text = format!("[task]\nname = \"path_tracking\"\n[algo]\nname = \"{algo}\"\n");
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::from_toml_str(&text, &sets).unwrap()
    }

    #[test]
    fn the_replay_part_is_the_buffer_layout() {
        let cfg = config("td3", &["algo.buffer_capacity=5000"]);
        let spec = crate::env::lookup("path_tracking").unwrap();
        let e = estimate(&cfg, &spec).unwrap();
        // 5000 transitions of (2·6 + 2 + 3) floats, and a checkpoint's copy.
        assert_eq!(e.parts[0].bytes, 5000.0 * 17.0 * 4.0 * 2.0);
        // TD3: twin Q, a 256-256 policy (6 → 2) and Q (8 → 1).
        let pi = 6.0 * 256.0 + 256.0 + 256.0 * 256.0 + 256.0 + 256.0 * 2.0 + 2.0;
        let q = 8.0 * 256.0 + 256.0 + 256.0 * 256.0 + 256.0 + 256.0 + 1.0;
        assert_eq!(e.parts[1].bytes, (pi + 2.0 * q) * 4.0 * 6.0);
        // No model rollout, no n-step targets.
        assert_eq!(e.parts[3].bytes, 0.0);
        assert_eq!(e.parts[4].bytes, 0.0);
    }

    #[test]
    fn the_bptt_tape_grows_with_the_horizon_and_the_learners() {
        let spec = crate::env::lookup("path_tracking").unwrap();
        let tape = |sets: &[&str]| estimate(&config("mpg_v1", sets), &spec).unwrap().parts[3].bytes;
        let one = tape(&["algo.horizon=10"]);
        assert!(one > 0.0);
        assert!((tape(&["algo.horizon=21"]) / one - 2.0).abs() < 1e-12);
        let four = tape(&[
            "algo.horizon=10",
            "runtime.mode=\"async\"",
            "runtime.learners=4",
        ]);
        assert!((four / one - 4.0).abs() < 1e-12);
        // On Ray a node holds one learner group: its threads count, not runtime.learners.
        let group = tape(&[
            "algo.horizon=10",
            "runtime.mode=\"ray\"",
            "runtime.learners=12",
            "runtime.learners_per_group=4",
        ]);
        assert!((group / one - 4.0).abs() < 1e-12);
    }
}
