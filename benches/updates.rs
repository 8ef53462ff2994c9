//! Update-step benchmarks at batch 256 with 2×256 ELU networks on path tracking, on one thread:
//! critic update, data-driven actor update, H=25 BPTT actor update (n-step ADP / MPG's model
//! part; also on the pendulum, `bptt_h25_pendulum`; both also with eq. (6)'s `first_action`
//! reading, `…_first_action`, where only `a_0` carries `∇θ`), with the default fused kernels
//! (`update_b256/…`) and with burn autodiff (`update_b256_autodiff/…`); the two BPTT updates on
//! a two-thread pool (`update_b256_2threads/…`, `update_b256_2threads_autodiff/…`); the H=25
//! BPTT update through a learned model (`learned_model/…`: a 5-member ensemble of 2×200 MLPs,
//! one member and the mean, next to the path-tracking prior model) and the model's fit per 1000
//! transitions; and the ELU activation (ours vs burn's) forward+backward.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use mixpg::algo::learned::{LearnedModel, Selection};
use mixpg::algo::policy::{self, PolicyCtx};
use mixpg::algo::{Agent, Learner, Nets, bptt};
use mixpg::config::{Config, ModelConfig};
use mixpg::env::{PriorModel, make_model, task_spec};
use mixpg::nn::{self, device, tensor2};
use mixpg::replay::{HostBatch, ReplayBuffer};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::ThreadPool;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The config file `configs/{task}/{file}.toml` run as algorithm `algo`.
fn config(task: &str, file: &str, algo: &str, kernels: &str) -> Config {
    let path = format!("configs/{task}/{file}.toml");
    let set = [
        format!("algo.name={algo}"),
        format!("network.kernels=\"{kernels}\""),
    ];
    Config::load(std::path::Path::new(&path), &set).expect("config")
}

fn batch(rng: &mut Pcg64Mcg, n: usize) -> HostBatch {
    let obs: Vec<f32> = (0..n * 6).map(|_| rng.random_range(-1.0..1.0)).collect();
    HostBatch {
        len: n,
        act: (0..n * 2).map(|_| rng.random_range(-1.0..1.0)).collect(),
        rew: (0..n).map(|_| rng.random_range(-1.0..0.0)).collect(),
        next_obs: obs.clone(),
        obs,
        terminated: vec![0.0; n],
        truncated: vec![0.0; n],
        n_step: None,
    }
}

/// A rayon pool of `threads` threads; every benchmarked update runs inside it.
fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a benchmark thread pool")
}

/// The update benchmarks with `network.kernels = kernels` in group `group`, on `pool`.
fn update_group(c: &mut Criterion, group: &str, kernels: &str, pool: &ThreadPool) {
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let spec = task_spec("path_tracking").unwrap();
    let b = batch(&mut rng, 256);
    let mut g = c.benchmark_group(group);
    g.sample_size(20);

    // Critic: one-step target + Q loss gradient + Adam step (DDPG's critic).
    let cfg = config("path_tracking", "td3", "ddpg", kernels);
    let nets = Nets::new(&cfg, &spec);
    let mut agent = Agent::new(&nets, &cfg, &mut rng);
    let mut learner = Learner::new(
        nets.clone(),
        &cfg,
        Some(make_model("path_tracking", true).unwrap()),
        None,
        0,
    );
    let tb = learner.targets(&agent.params, b.clone()).unwrap();
    g.bench_function("critic", |bench| {
        bench.iter(|| {
            pool.install(|| {
                let grads = learner.compute(&agent.params, &tb, 1, false);
                agent.apply(grads, 1);
            })
        })
    });

    // Data-driven actor: ∇θ Q(s, π(s)) + Adam step; then the model-driven actor: H = 25 BPTT
    // through the path-tracking prior model + Adam step.
    for (name, task, file, algo) in [
        ("actor_pg", "path_tracking", "td3", "ddpg"),
        ("bptt_h25", "path_tracking", "nadp", "nadp"),
        ("bptt_h25_pendulum", "pendulum", "nadp", "nadp"),
    ] {
        actor_bench(&mut g, name, [task, file, algo, kernels], pool, &mut rng);
    }
    for (name, task) in [
        ("bptt_h25_first_action", "path_tracking"),
        ("bptt_h25_pendulum_first_action", "pendulum"),
    ] {
        first_action_bench(&mut g, name, [task, kernels], pool, &mut rng);
    }
    g.finish();
}

/// What an actor-update bench works on: config, prior model, networks, agent and a random
/// batch of 256 observations.
struct ActorSetup {
    cfg: Config,
    model: Box<dyn PriorModel>,
    nets: Nets,
    agent: Agent,
    obs: Vec<f32>,
}

impl ActorSetup {
    /// The policy-gradient context over this set-up's current parameters.
    fn ctx<'a>(&'a self, workspace: &'a bptt::Workspace) -> PolicyCtx<'a> {
        PolicyCtx {
            nets: &self.nets,
            cfg: &self.cfg,
            p: &self.agent.params,
            model: Some(self.model.as_ref()),
            bptt: workspace,
        }
    }
}

fn actor_setup(cfg: Config, task: &str, rng: &mut Pcg64Mcg) -> ActorSetup {
    let spec = task_spec(task).unwrap();
    let model = make_model(task, cfg.task.model_mismatch).unwrap();
    let nets = Nets::new(&cfg, &spec);
    let agent = Agent::new(&nets, &cfg, rng);
    let obs: Vec<f32> = (0..256 * spec.obs_dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    ActorSetup {
        cfg,
        model,
        nets,
        agent,
        obs,
    }
}

/// One eq. (6) `first_action` BPTT update (H = 25, weight 1, Adam step) on `task` with
/// `network.kernels = kernels` at batch 256, on `pool`.
fn first_action_bench(
    g: &mut BenchmarkGroup<WallTime>,
    name: &str,
    [task, kernels]: [&str; 2],
    pool: &ThreadPool,
    rng: &mut Pcg64Mcg,
) {
    let mut s = actor_setup(config(task, "nadp", "nadp", kernels), task, rng);
    let workspace = bptt::Workspace::default();
    g.bench_function(name, |bench| {
        bench.iter(|| {
            pool.install(|| {
                let ctx = s.ctx(&workspace);
                let (grads, _) = match kernels {
                    "fused" => bptt::model_return_grad(ctx, &s.obs, false, 1.0, rng),
                    _ => policy::model_return_grad_autodiff(ctx, &s.obs, false, 1.0, rng),
                };
                s.agent.pi_adam.apply(&mut s.agent.params.pi, &grads);
            })
        })
    });
}

/// One actor update (policy gradient + Adam step) of `algo` (config `file`) on `task` with
/// `network.kernels = kernels` at batch 256, on `pool`.
fn actor_bench(
    g: &mut BenchmarkGroup<WallTime>,
    name: &str,
    [task, file, algo, kernels]: [&str; 4],
    pool: &ThreadPool,
    rng: &mut Pcg64Mcg,
) {
    let mut s = actor_setup(config(task, file, algo, kernels), task, rng);
    let workspace = bptt::Workspace::default();
    g.bench_function(name, |bench| {
        bench.iter(|| {
            pool.install(|| {
                let ctx = s.ctx(&workspace);
                let out = policy::gradient(ctx, &s.obs, 0, rng);
                s.agent.pi_adam.apply(&mut s.agent.params.pi, &out.grads);
            })
        })
    });
}

/// The two BPTT updates with `network.kernels = kernels` in group `group`, on `pool`.
fn bptt_group(c: &mut Criterion, group: &str, kernels: &str, pool: &ThreadPool) {
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    let mut g = c.benchmark_group(group);
    g.sample_size(20);
    for (name, task) in [
        ("bptt_h25", "path_tracking"),
        ("bptt_h25_pendulum", "pendulum"),
    ] {
        actor_bench(
            &mut g,
            name,
            [task, "nadp", "nadp", kernels],
            pool,
            &mut rng,
        );
    }
    g.finish();
}

/// The H = 25 BPTT update of n-step ADP on path tracking through the prior model and through a
/// learned ensemble (5 members of 2×200, default `[model]`: one member, then the mean), and one
/// epoch of the ensemble's fit on 1000 transitions, on `pool`.
fn learned_group(c: &mut Criterion, pool: &ThreadPool) {
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let spec = task_spec("path_tracking").unwrap();
    let mut g = c.benchmark_group("learned_model");
    g.sample_size(20);
    let prior = ["path_tracking", "nadp", "nadp", "fused"];
    actor_bench(&mut g, "bptt_h25_prior", prior, pool, &mut rng);
    for (name, selection) in [
        ("bptt_h25_one_member", Selection::Member(0)),
        ("bptt_h25_mean_of_5", Selection::Mean),
    ] {
        let mut model = LearnedModel::new(&spec, &ModelConfig::default(), 0);
        model.select(selection);
        let mut s = actor_setup(
            config("path_tracking", "nadp", "nadp", "fused"),
            "path_tracking",
            &mut rng,
        );
        s.model = Box::new(model);
        let workspace = bptt::Workspace::default();
        g.bench_function(name, |bench| {
            bench.iter(|| {
                pool.install(|| {
                    let out = policy::gradient(s.ctx(&workspace), &s.obs, 0, &mut rng);
                    s.agent.pi_adam.apply(&mut s.agent.params.pi, &out.grads);
                })
            })
        });
    }
    let (o, a) = (spec.obs_dim, spec.act_dim);
    let mut replay = ReplayBuffer::new(1000, o, a);
    while replay.len() < 1000 {
        let mut row =
            |d: usize| -> Vec<f32> { (0..d).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let (s, u, s2) = (row(o), row(a), row(o));
        replay.push(&s, &u, -1.0, &s2, false, false);
    }
    let one_epoch = ModelConfig {
        max_epochs: 1,
        ..ModelConfig::default()
    };
    let mut model = LearnedModel::new(&spec, &one_epoch, 0);
    g.bench_function("fit_1000_transitions_one_epoch", |bench| {
        bench.iter(|| pool.install(|| model.fit(&replay)))
    });
    g.finish();
}

fn updates(c: &mut Criterion) {
    // One thread (burn-flex and the fused kernels use the current rayon pool: the global one
    // outside `install`), so the ratios compare the kernels and not the thread counts.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("one-thread global pool");
    let one = pool(1);
    update_group(c, "update_b256", "fused", &one);
    update_group(c, "update_b256_autodiff", "autodiff", &one);
    learned_group(c, &one);
    // Both cores: the fused BPTT splits the batch across them, burn's matmuls use them.
    let two = pool(2);
    bptt_group(c, "update_b256_2threads", "fused", &two);
    bptt_group(c, "update_b256_2threads_autodiff", "autodiff", &two);
    let mut rng = Pcg64Mcg::seed_from_u64(1);

    // One Adam step on a 2×256 Q network's parameters: host values only (the tensor cache is
    // rebuilt lazily, as the fused path needs it never), and followed by the tensor-cache
    // rebuild every step paid before (what the autodiff path still pays when it reads them).
    let cfg = config("path_tracking", "td3", "td3", "fused");
    let nets = Nets::new(&cfg, &task_spec("path_tracking").unwrap());
    let mut agent = Agent::new(&nets, &cfg, &mut rng);
    let grads: Vec<Vec<f32>> = agent
        .params
        .q1
        .values()
        .iter()
        .map(|v| v.iter().map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut g = c.benchmark_group("adam_q256");
    g.bench_function("host_only", |bench| {
        bench.iter(|| agent.q1_adam.apply(&mut agent.params.q1, &grads))
    });
    g.bench_function("with_cache_rebuild", |bench| {
        bench.iter(|| {
            agent.q1_adam.apply(&mut agent.params.q1, &grads);
            agent.params.q1.frozen().len()
        })
    });
    g.finish();

    // ELU forward + backward on [256, 256].
    let mut g = c.benchmark_group("elu_256x256");
    let x: Vec<f32> = (0..256 * 256)
        .map(|_| rng.random_range(-3.0..3.0))
        .collect();
    g.bench_function("mixpg", |bench| {
        bench.iter(|| {
            let t = tensor2(x.clone(), 256, 256, &device()).require_grad();
            nn::elu(t).sum().backward()
        })
    });
    g.bench_function("burn", |bench| {
        bench.iter(|| {
            let t = tensor2(x.clone(), 256, 256, &device()).require_grad();
            burn::tensor::activation::elu(t, 1.0).sum().backward()
        })
    });
    g.finish();
}

criterion_group!(benches, updates);
criterion_main!(benches);
