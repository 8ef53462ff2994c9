//! Gymnasium's episode rule for tasks whose termination is absorbing: a terminated transition's
//! value target does not bootstrap (a truncated one does), an evaluation episode ends at its
//! terminated or truncated step, and a model rollout adds no reward or value after a step its
//! model says terminated. The paper's tasks (continuing) keep every target and episode as before.

mod common;

use common::lqr_config;
use mixpg::algo::policy::PolicyCtx;
use mixpg::algo::{Agent, Nets, bptt, targets};
use mixpg::config::Config;
use mixpg::env::lqr::{self, LqrModel};
use mixpg::env::{Env, ModelTape, PriorModel, StepOut, Task, TaskSpec, Termination};
use mixpg::replay::HostBatch;
use mixpg::runtime::evaluate;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn spec(termination: Termination) -> TaskSpec {
    TaskSpec {
        termination,
        ..lqr::spec()
    }
}

fn nets(cfg: &Config, termination: Termination) -> Nets {
    Nets::new(cfg, &spec(termination))
}

#[test]
fn one_step_targets_do_not_bootstrap_after_an_absorbing_termination() {
    let cfg = lqr_config("td3", &["algo.target_noise=0.0"]);
    let batch = HostBatch {
        len: 3,
        obs: vec![0.1, 0.2, 0.3, -0.4, 0.5, 0.6],
        act: vec![0.1, -0.2, 0.3],
        rew: vec![-1.0, -2.0, -3.0],
        next_obs: vec![0.2, 0.1, -0.3, 0.4, 0.6, 0.5],
        terminated: vec![1.0, 0.0, 0.0],
        truncated: vec![0.0, 1.0, 0.0],
        n_step: None,
    };
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let n = nets(&cfg, Termination::Absorbing);
    let p = Agent::new(&n, &cfg, &mut rng).params;
    let target = |n: &Nets| targets::one_step(n, &cfg, &p, &batch, &mut Pcg64Mcg::seed_from_u64(0));
    let absorbing = target(&n);
    let continuing = target(&nets(&cfg, Termination::Continuing));
    let scale = cfg.task.reward_scale as f32;
    assert_eq!(absorbing[0], -scale, "terminated: the reward alone");
    assert_ne!(
        continuing[0], absorbing[0],
        "continuing tasks bootstrap through it"
    );
    assert_eq!(
        absorbing[1..],
        continuing[1..],
        "truncated and running rows bootstrap"
    );
}

/// Every agent earns 1 per step; agent `i` terminates at its step `3 + 2i` and is truncated at
/// 8 steps.
struct CountingEnv {
    spec: TaskSpec,
    steps: Vec<usize>,
}

impl Env for CountingEnv {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }
    fn num_agents(&self) -> usize {
        self.steps.len()
    }
    fn reset(&mut self, _seed: u64) {
        self.steps.fill(0);
    }
    fn reset_done(&mut self) {}
    fn reset_to(&mut self, states: &[f32]) {
        self.steps = vec![0; states.len() / 2];
    }
    fn observe(&self, out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.steps.iter().flat_map(|&s| [s as f32 * 0.01, 0.0]));
    }
    fn step(&mut self, actions: &[f32], out: &mut StepOut) {
        let active = vec![true; self.num_agents()];
        self.step_active(actions, &active, out);
    }
    fn step_active(&mut self, _actions: &[f32], active: &[bool], out: &mut StepOut) {
        let n = self.num_agents();
        out.reward = vec![0.0; n];
        out.terminated = vec![false; n];
        out.truncated = vec![false; n];
        for (i, _) in active.iter().enumerate().filter(|(_, a)| **a) {
            self.steps[i] += 1;
            out.reward[i] = 1.0;
            out.terminated[i] = self.steps[i] == 3 + 2 * i;
            out.truncated[i] = self.steps[i] == 8;
        }
        self.observe(&mut out.next_obs);
    }
}

#[test]
fn evaluation_episodes_end_at_an_absorbing_termination() {
    let cfg = lqr_config("td3", &[]);
    for (termination, want) in [
        // Agents 0, 1, 2 terminate after 3, 5 and 7 steps; agent 3 is truncated at 8.
        (Termination::Absorbing, (3.0 + 5.0 + 7.0 + 8.0) / 4.0),
        // The paper's rule: every episode runs its length (50 steps), termination ignored.
        (Termination::Continuing, 50.0),
    ] {
        let s = spec(termination);
        let env_spec = s.clone();
        let task = Task::new(s, move |n, _| {
            Ok(Box::new(CountingEnv {
                spec: env_spec.clone(),
                steps: vec![0; n],
            }) as Box<dyn Env>)
        })
        .unwrap();
        let n = Nets::new(&cfg, task.spec());
        let p = Agent::new(&n, &cfg, &mut Pcg64Mcg::seed_from_u64(1)).params;
        let e = evaluate(&task, &n, &p.pi, 4, 0).unwrap();
        assert_eq!(e.mean, want, "{termination:?}");
    }
}

/// The LQR model, with rows terminating where the next position leaves `[-0.6, 0.6]`.
struct TerminatingLqr {
    inner: LqrModel,
    spec: TaskSpec,
    report: bool,
}

impl PriorModel for TerminatingLqr {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }
    fn step_host(
        &self,
        state: &[f32],
        action: &[f32],
        noise: &[f32],
        next: &mut [f32],
        reward: &mut [f32],
        tape: &mut ModelTape,
    ) {
        self.inner
            .step_host(state, action, noise, next, reward, tape);
        if self.report {
            tape.terminated = next.chunks_exact(2).map(|s| s[0].abs() > 0.6).collect();
        }
    }
    fn step_vjp(
        &self,
        tape: &ModelTape,
        d_next: &[f32],
        d_reward: &[f32],
        d_state: &mut [f32],
        d_action: &mut [f32],
    ) {
        self.inner
            .step_vjp(tape, d_next, d_reward, d_state, d_action);
    }
}

/// `J_H` and its gradient from the fused BPTT of n-step ADP on `model`.
fn model_return(
    cfg: &Config,
    n: &Nets,
    p: &mixpg::algo::Params,
    model: &dyn PriorModel,
    obs: &[f32],
) -> (Vec<Vec<f32>>, f64) {
    let ws = bptt::Workspace::default();
    let ctx = PolicyCtx {
        nets: n,
        cfg,
        p,
        model: Some(model),
        bptt: &ws,
    };
    bptt::model_return_grad(ctx, obs, true, 1.0, &mut Pcg64Mcg::seed_from_u64(0))
}

#[test]
fn model_rollouts_stop_at_an_absorbing_termination() {
    let cfg = lqr_config("nadp", &["algo.horizon=8", "network.hidden=[16, 16]"]);
    let n = nets(&cfg, Termination::Absorbing);
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let p = Agent::new(&n, &cfg, &mut rng).params;
    let obs: Vec<f32> = (0..2 * 64).map(|_| rng.random_range(-0.6..0.6)).collect();
    let model = |report| TerminatingLqr {
        inner: LqrModel::new(true),
        spec: spec(Termination::Absorbing),
        report,
    };
    let (g, j) = model_return(&cfg, &n, &p, &model(true), &obs);
    let (_, j_full) = model_return(&cfg, &n, &p, &model(false), &obs);
    assert!(
        j > j_full,
        "terminated rows stop paying costs: {j} vs {j_full}"
    );

    // The value by hand: rewards until (and with) the terminating step, no tail after it.
    let (gamma, scale) = (cfg.algo.gamma as f32, cfg.task.reward_scale as f32);
    let m = model(true);
    let mut s = obs.clone();
    let (mut alive, mut total, mut disc) = (vec![1.0f32; 64], vec![0.0f32; 64], 1.0f32);
    let (mut next, mut reward, mut tape) = (vec![0.0; 128], vec![0.0; 64], ModelTape::default());
    for _ in 0..cfg.algo.horizon {
        let a = mixpg::algo::fused::act(&n, &p.pi, &s);
        m.step_host(&s, &a, &[], &mut next, &mut reward, &mut tape);
        for i in 0..64 {
            total[i] += disc * scale * reward[i] * alive[i];
            if tape.terminated[i] {
                alive[i] = 0.0;
            }
        }
        disc *= gamma;
        std::mem::swap(&mut s, &mut next);
    }
    let tail = mixpg::algo::fused::target_q(
        &n,
        &online_as_target(&p),
        &s,
        &mixpg::algo::fused::act(&n, &p.pi, &s),
        true,
    );
    let want: f64 = (0..64)
        .map(|i| (total[i] + disc * alive[i] * tail[i]) as f64)
        .sum::<f64>()
        / 64.0;
    assert!(
        (j - want).abs() < 1e-4 * want.abs().max(1.0),
        "J_H {j} vs {want} by hand"
    );

    // The gradient against central differences of J_H along a random direction (the
    // terminations stay put for a small step).
    let dir: Vec<Vec<f32>> =
        p.pi.values()
            .iter()
            .map(|v| v.iter().map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
    let eps = 1e-3f32;
    let shifted = |p: &mixpg::algo::Params, sign: f32| {
        let mut q = p.clone();
        q.pi.update(|vals| {
            for (v, d) in vals.iter_mut().zip(&dir) {
                v.iter_mut().zip(d).for_each(|(x, y)| *x += sign * eps * y);
            }
        });
        q
    };
    let (_, jp) = model_return(&cfg, &n, &shifted(&p, 1.0), &m, &obs);
    let (_, jm) = model_return(&cfg, &n, &shifted(&p, -1.0), &m, &obs);
    let fd = (jp - jm) / (2.0 * eps as f64);
    // g is the gradient of −J_H.
    let analytic: f64 = g
        .iter()
        .zip(&dir)
        .map(|(g, d)| {
            g.iter()
                .zip(d)
                .map(|(a, b)| -(*a as f64) * *b as f64)
                .sum::<f64>()
        })
        .sum();
    assert!(
        (fd - analytic).abs() < 0.02 * analytic.abs().max(1e-3),
        "directional derivative: finite differences {fd} vs BPTT {analytic}"
    );
}

/// The online Q1 as the "target" argument of `fused::target_q`, which reads `q1_t`.
fn online_as_target(p: &mixpg::algo::Params) -> mixpg::algo::Params {
    let mut q = p.clone();
    q.q1_t = p.q1.clone();
    q
}
