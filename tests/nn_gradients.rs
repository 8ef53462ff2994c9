//! Gradients of the networks against central finite differences.

use burn::tensor::Tensor;
use mixpg::nn::{
    self, DetPolicy, GaussianPolicy, Mlp, NetSpec, ParamSet, QNet, device, plain_device, tensor2,
    to_vec,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn random_vec(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Compare `grad · d` with the central difference of `loss` along a random direction `d`,
/// and a few single coordinates.
fn check_param_gradient(
    params: &ParamSet,
    loss: impl Fn(&[Tensor<2>]) -> Tensor<1>,
    rng: &mut impl Rng,
) {
    let tracked = params.track();
    let grads = tracked.grads(&loss(&tracked.leaves).backward());
    let value = |p: &ParamSet| nn::scalar(loss(p.frozen()));
    let eps = 1e-3f32;
    let perturbed = |d: &[Vec<f32>], sign: f32| {
        let mut p = params.clone();
        p.update(|vals| {
            for (v, dv) in vals.iter_mut().zip(d) {
                for (x, y) in v.iter_mut().zip(dv) {
                    *x += sign * eps * y;
                }
            }
        });
        p
    };
    for _ in 0..3 {
        let d: Vec<Vec<f32>> = params
            .values()
            .iter()
            .map(|v| random_vec(v.len(), rng))
            .collect();
        let analytic: f64 = grads
            .iter()
            .flatten()
            .zip(d.iter().flatten())
            .map(|(g, d)| (*g as f64) * (*d as f64))
            .sum();
        let numeric =
            (value(&perturbed(&d, 1.0)) - value(&perturbed(&d, -1.0))) as f64 / (2.0 * eps as f64);
        let tol = 2e-2 * analytic.abs().max(numeric.abs()).max(1e-2);
        assert!(
            (analytic - numeric).abs() < tol,
            "directional derivative: analytic {analytic}, numeric {numeric}"
        );
    }
    // The gradient is not trivially zero.
    assert!(nn::global_norm(&grads) > 1e-4);
}

#[test]
fn mlp_gradient_matches_finite_differences() {
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let mlp = Mlp::new(&[1.0, 0.5, 2.0], &[16, 16], 2, &device());
    let params = mlp.init(1.0, &mut rng);
    let x = tensor2(random_vec(5 * 3, &mut rng), 5, 3, &plain_device());
    let loss = |p: &[Tensor<2>]| mlp.forward(p, x.clone()).powi_scalar(2).mean();
    check_param_gradient(&params, loss, &mut rng);
}

#[test]
fn elu_matches_definition_and_its_derivative() {
    let xs = vec![-3.0f32, -0.5, -1e-3, 0.0, 1e-3, 0.7, 4.0];
    let n = xs.len();
    let x = tensor2(xs.clone(), 1, n, &device()).require_grad();
    let y = nn::elu(x.clone());
    let grads = y.clone().sum().backward();
    let g = to_vec(x.grad(&grads).unwrap());
    let y = to_vec(y);
    for i in 0..n {
        let (want, dwant) = if xs[i] > 0.0 {
            (xs[i], 1.0)
        } else {
            (xs[i].exp() - 1.0, xs[i].exp())
        };
        assert!((y[i] - want).abs() < 1e-6, "elu({}) = {}", xs[i], y[i]);
        assert!((g[i] - dwant).abs() < 1e-6, "elu'({}) = {}", xs[i], g[i]);
    }
}

#[test]
fn q_gradient_wrt_action_flows_to_a_frozen_policy_input() {
    // Data-driven PG: d Q(s, π(s)) / dθ with Q frozen.
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let spec = NetSpec {
        hidden: vec![8, 8],
        ..NetSpec::default()
    };
    let pi = DetPolicy::new(&[1.0, 1.0], &[2.0], &spec, &device());
    let q = QNet::new(&[1.0, 1.0], 1, &spec, &device());
    let pi_params = pi.init(&mut rng);
    let q_params = q.init(&mut rng);
    let s = tensor2(random_vec(4 * 2, &mut rng), 4, 2, &plain_device());
    let loss = |p: &[Tensor<2>]| {
        q.forward(q_params.frozen(), s.clone(), pi.forward(p, s.clone()))
            .mean()
            .neg()
    };
    check_param_gradient(&pi_params, loss, &mut rng);
    // Q's own parameters are constants: tracking only the policy leaves Q untouched.
    let tracked = pi_params.track();
    let grads = loss(&tracked.leaves).backward();
    assert!(q_params.frozen()[0].grad(&grads).is_none());
}

#[test]
fn gaussian_log_prob_gradient_matches_finite_differences() {
    for squash in [false, true] {
        let mut rng = Pcg64Mcg::seed_from_u64(2);
        let pol = GaussianPolicy::new(
            &[1.0, 1.0, 1.0],
            &[3.0, 1.0],
            squash,
            &NetSpec {
                hidden: vec![8],
                ..NetSpec::default()
            },
            &device(),
        );
        let params = pol.init(&mut rng);
        let s = tensor2(random_vec(6 * 3, &mut rng), 6, 3, &plain_device());
        let eps = tensor2(random_vec(6 * 2, &mut rng), 6, 2, &plain_device());
        let loss = |p: &[Tensor<2>]| {
            let smp = pol.sample(p, s.clone(), eps.clone());
            smp.log_prob.mean().add(smp.action.mean())
        };
        check_param_gradient(&params, loss, &mut rng);
    }
}

#[test]
fn gaussian_log_prob_matches_the_density() {
    // Unsquashed: log N(a; μ, σ) in closed form; squashed: change of variables.
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    for squash in [false, true] {
        let pol = GaussianPolicy::new(
            &[1.0],
            &[2.0],
            squash,
            &NetSpec {
                hidden: vec![4],
                ..NetSpec::default()
            },
            &device(),
        );
        let params = pol.init(&mut rng);
        let s = tensor2(vec![0.3], 1, 1, &plain_device());
        let (mean, log_std) = pol.mean_log_std(params.frozen(), s.clone());
        let (mu, ls) = (to_vec(mean)[0] as f64, to_vec(log_std)[0] as f64);
        let e = 0.4f64;
        let smp = pol.sample(
            params.frozen(),
            s,
            tensor2(vec![e as f32], 1, 1, &plain_device()),
        );
        let u = mu + ls.exp() * e;
        let mut want = -0.5 * e * e - ls - 0.5 * (2.0 * std::f64::consts::PI).ln();
        let mut a_want = u;
        if squash {
            want -= (2.0 * (1.0 - u.tanh().powi(2))).ln();
            a_want = 2.0 * u.tanh();
        }
        let got = nn::scalar(smp.log_prob) as f64;
        assert!(
            (got - want).abs() < 1e-4,
            "squash={squash}: {got} vs {want}"
        );
        assert!((to_vec(smp.action)[0] as f64 - a_want).abs() < 1e-5);
    }
}
