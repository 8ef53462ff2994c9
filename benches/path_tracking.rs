//! Path tracking throughput: simulator agent-steps/s (per kernel) and the prior model's
//! forward + backward step at batch 256, autodiff (burn) and fused (host step + VJP).

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use mixpg::env::path_tracking::{
    Kernel, PathTrackingEnv, PathTrackingModel, PathTrackingModelConfig,
};
use mixpg::env::{Env, ModelTape, PriorModel, StepOut, TensorModel};
use mixpg::nn::{device, tensor2};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn simulator(c: &mut Criterion) {
    let mut kernels = vec![Kernel::Generic];
    if Kernel::detect() != Kernel::Generic {
        kernels.push(Kernel::Avx2);
    }
    if Kernel::detect() == Kernel::Avx512 {
        kernels.push(Kernel::Avx512);
    }
    let mut g = c.benchmark_group("path_tracking_sim");
    for &kernel in &kernels {
        for n in [1usize, 64, 512] {
            let mut env = PathTrackingEnv::new(n, 0);
            env.set_kernel(kernel);
            let mut rng = Pcg64Mcg::seed_from_u64(1);
            // Small actions and resets of finished agents keep the states realistic.
            let actions: Vec<f32> = (0..2 * n).map(|_| rng.random_range(-0.05..0.05)).collect();
            let mut out = StepOut::default();
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new(format!("{kernel:?}"), n), &n, |b, _| {
                b.iter(|| {
                    env.step(black_box(&actions), &mut out);
                    env.reset_done();
                })
            });
        }
    }
    g.finish();
}

fn model(c: &mut Criterion) {
    let batch = 256;
    let model = PathTrackingModel::new(PathTrackingModelConfig::mismatched());
    let env = PathTrackingEnv::new(batch, 0);
    let mut states = Vec::new();
    env.observe(&mut states);
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let actions: Vec<f32> = (0..2 * batch)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let dev = device();
    let mut g = c.benchmark_group("path_tracking_model");
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function("mismatched_fwd_bwd_256", |b| {
        b.iter(|| {
            let s = tensor2(states.clone(), batch, 6, &dev).require_grad();
            let a = tensor2(actions.clone(), batch, 2, &dev).require_grad();
            let (ns, r) = model.step_with(s.clone(), a.clone(), &mut rng);
            let loss = ns.sum().add(r.sum());
            let grads = loss.backward();
            black_box((s.grad(&grads), a.grad(&grads)))
        })
    });
    let (mut noise, mut tape) = (Vec::new(), ModelTape::default());
    let (mut next, mut reward) = (vec![0.0; batch * 6], vec![0.0; batch]);
    let (ones_next, ones_reward) = (vec![1.0; batch * 6], vec![1.0; batch]);
    let (mut d_state, mut d_action) = (vec![0.0; batch * 6], vec![0.0; batch * 2]);
    g.bench_function("mismatched_fused_fwd_bwd_256", |b| {
        b.iter(|| {
            PriorModel::draw_noise(&model, batch, &mut rng, &mut noise);
            model.step_host(&states, &actions, &noise, &mut next, &mut reward, &mut tape);
            model.step_vjp(&tape, &ones_next, &ones_reward, &mut d_state, &mut d_action);
            black_box((&d_state, &d_action));
        })
    });
    g.finish();
}

criterion_group!(benches, simulator, model);
criterion_main!(benches);
