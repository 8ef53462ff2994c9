//! Update-step benchmarks at batch 256 with 2×256 ELU networks on path tracking, on one thread:
//! critic update, data-driven actor update, H=25 BPTT actor update (n-step ADP / MPG's model
//! part), with the default fused kernels (`update_b256/…`) and with burn autodiff
//! (`update_b256_autodiff/…`), and the ELU activation (ours vs burn's) forward+backward.

use criterion::{Criterion, criterion_group, criterion_main};
use mixpg::algo::policy::{self, PolicyCtx};
use mixpg::algo::{Agent, Learner, Nets};
use mixpg::config::Config;
use mixpg::env::{make_model, task_spec};
use mixpg::nn::{self, device, tensor2};
use mixpg::replay::HostBatch;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The path-tracking config file `file`.toml run as algorithm `algo`.
fn config(file: &str, algo: &str, kernels: &str) -> Config {
    let path = format!("configs/path_tracking/{file}.toml");
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
    }
}

/// The three update benchmarks with `network.kernels = kernels` in group `group`.
fn update_group(c: &mut Criterion, group: &str, kernels: &str) {
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let spec = task_spec("path_tracking").unwrap();
    let b = batch(&mut rng, 256);
    let mut g = c.benchmark_group(group);
    g.sample_size(20);

    // Critic: one-step target + Q loss gradient + Adam step (DDPG's critic).
    let cfg = config("td3", "ddpg", kernels);
    let nets = Nets::new(&cfg, &spec);
    let mut agent = Agent::new(&nets, &cfg, &mut rng);
    let mut learner = Learner::new(
        nets.clone(),
        &cfg,
        make_model("path_tracking", true).unwrap(),
        None,
        0,
    );
    let tb = learner.targets(&agent.params, b.clone());
    g.bench_function("critic", |bench| {
        bench.iter(|| {
            let grads = learner.compute(&agent.params, &tb, 1, false);
            agent.apply(grads, 1);
        })
    });

    // Data-driven actor: ∇θ Q(s, π(s)) + Adam step; then the model-driven actor: H = 25 BPTT
    // through the path-tracking prior model + Adam step.
    let model = make_model("path_tracking", true).unwrap();
    for (name, file, algo) in [("actor_pg", "td3", "ddpg"), ("bptt_h25", "nadp", "nadp")] {
        let cfg = config(file, algo, kernels);
        let nets = Nets::new(&cfg, &spec);
        let mut agent = Agent::new(&nets, &cfg, &mut rng);
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let ctx = PolicyCtx {
                    nets: &nets,
                    cfg: &cfg,
                    p: &agent.params,
                    model: model.as_ref(),
                };
                let out = policy::gradient(ctx, &b.obs, 0, &mut rng);
                agent.pi_adam.apply(&mut agent.params.pi, &out.grads);
            })
        });
    }
    g.finish();
}

fn updates(c: &mut Criterion) {
    // One thread (burn-flex and the fused kernels both use the global rayon pool), so the
    // ratios compare the kernels and not the thread counts.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("one-thread global pool");
    update_group(c, "update_b256", "fused");
    update_group(c, "update_b256_autodiff", "autodiff");
    let mut rng = Pcg64Mcg::seed_from_u64(1);

    // One Adam step on a 2×256 Q network's parameters: host values only (the tensor cache is
    // rebuilt lazily, as the fused path needs it never), and followed by the tensor-cache
    // rebuild every step paid before (what the autodiff path still pays when it reads them).
    let cfg = config("td3", "td3", "fused");
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
