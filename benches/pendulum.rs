//! Inverted pendulum: simulator throughput and model step forward + backward at batch 256,
//! autodiff (burn) and fused (host step + VJP).

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use mixpg::env::pendulum::{PendulumEnv, PendulumModel, PendulumModelConfig};
use mixpg::env::{Env, ModelTape, PriorModel, StepOut, TensorModel};
use mixpg::nn::{device, tensor2};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn simulator(c: &mut Criterion) {
    let mut group = c.benchmark_group("pendulum_sim_step");
    for &n in &[1usize, 64] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut env = PendulumEnv::new(n, 0);
            let mut rng = Pcg64Mcg::seed_from_u64(1);
            let actions: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
            let mut out = StepOut::default();
            b.iter(|| {
                env.step(&actions, &mut out);
                env.reset_done();
            });
        });
    }
    group.finish();
}

fn model(c: &mut Criterion) {
    let mut group = c.benchmark_group("pendulum_model_fwd_bwd");
    let batch = 256;
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    let states: Vec<f32> = (0..batch * 4)
        .map(|_| rng.random_range(-0.1..0.1))
        .collect();
    let actions: Vec<f32> = (0..batch).map(|_| rng.random_range(-3.0..3.0)).collect();
    let dev = device();
    for (name, cfg) in [
        ("mismatched", PendulumModelConfig::mismatched()),
        ("exact", PendulumModelConfig::exact()),
    ] {
        let model = PendulumModel::new(cfg);
        group.throughput(criterion::Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(name, batch), |b| {
            b.iter(|| {
                let s = tensor2(states.clone(), batch, 4, &dev).require_grad();
                let a = tensor2(actions.clone(), batch, 1, &dev).require_grad();
                let (next, r) = model.step_with(s.clone(), a.clone(), &mut rng);
                let loss = next.sum().add(r.sum());
                let grads = loss.backward();
                (s.grad(&grads), a.grad(&grads))
            });
        });
        let (mut noise, mut tape) = (Vec::new(), ModelTape::default());
        let (mut next, mut reward) = (vec![0.0; batch * 4], vec![0.0; batch]);
        let (ones_next, ones_reward) = (vec![1.0; batch * 4], vec![1.0; batch]);
        let (mut d_state, mut d_action) = (vec![0.0; batch * 4], vec![0.0; batch]);
        group.bench_function(BenchmarkId::new(format!("{name}_fused"), batch), |b| {
            b.iter(|| {
                PriorModel::draw_noise(&model, batch, &mut rng, &mut noise);
                model.step_host(&states, &actions, &noise, &mut next, &mut reward, &mut tape);
                model.step_vjp(&tape, &ones_next, &ones_reward, &mut d_state, &mut d_action);
                black_box((&d_state, &d_action));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, simulator, model);
criterion_main!(benches);
