//! Adam, learning-rate schedules, clipping and target updates.

use mixpg::nn::{self, Adam, AdamConfig, LrSchedule, ParamSet};

#[test]
fn polynomial_schedule_hits_its_end_points() {
    let s = LrSchedule::linear(8e-5, 8e-6, 100_000);
    assert_eq!(s.at(0), 8e-5);
    assert!((s.at(50_000) - 4.4e-5).abs() < 1e-12);
    assert!((s.at(100_000) - 8e-6).abs() < 1e-15);
    assert!((s.at(1_000_000) - 8e-6).abs() < 1e-15);
    let q = LrSchedule {
        initial: 1.0,
        final_lr: 0.0,
        steps: 10,
        power: 2.0,
    };
    assert!((q.at(5) - 0.25).abs() < 1e-12);
}

#[test]
fn adam_minimises_a_quadratic() {
    // f(x) = Σ c_i (x_i − t_i)², gradient 2 c (x − t).
    let target = [1.0f32, -2.0, 0.5];
    let c = [1.0f32, 10.0, 0.1];
    let mut p = ParamSet::new(vec![[1, 3]], vec![vec![0.0; 3]]);
    let mut adam = Adam::new(
        AdamConfig::default(),
        LrSchedule::linear(0.1, 0.001, 2000),
        &p,
    );
    for _ in 0..3000 {
        let x = &p.values()[0];
        let g = vec![(0..3).map(|i| 2.0 * c[i] * (x[i] - target[i])).collect()];
        adam.apply(&mut p, &g);
    }
    for (x, t) in p.values()[0].iter().zip(target) {
        assert!((x - t).abs() < 1e-2, "{:?}", p.values());
    }
    assert_eq!(adam.step, 3000);
}

#[test]
fn adam_first_step_moves_by_the_learning_rate() {
    // With bias correction the first step is lr · g/|g| per coordinate.
    let mut p = ParamSet::new(vec![[1, 2]], vec![vec![0.0, 0.0]]);
    let mut adam = Adam::new(AdamConfig::default(), LrSchedule::linear(0.01, 0.01, 1), &p);
    adam.apply(&mut p, &[vec![5.0, -0.2]]);
    assert!((p.values()[0][0] + 0.01).abs() < 1e-6);
    assert!((p.values()[0][1] - 0.01).abs() < 1e-6);
}

#[test]
fn global_norm_clipping() {
    let mut g = vec![vec![3.0, 0.0], vec![4.0]];
    let norm = nn::clip_global_norm(&mut g, 1.0);
    assert_eq!(norm, 5.0);
    assert!((nn::global_norm(&g) - 1.0).abs() < 1e-6);
    assert!((g[0][0] - 0.6).abs() < 1e-6);
    let mut small = vec![vec![0.3]];
    nn::clip_global_norm(&mut small, 1.0);
    assert_eq!(small[0][0], 0.3);
    let mut bad = vec![vec![f32::NAN]];
    assert!(!nn::clip_global_norm(&mut bad, 1.0).is_finite());
}

#[test]
fn soft_update_is_polyak_averaging() {
    let online = ParamSet::new(vec![[1, 2]], vec![vec![1.0, 2.0]]);
    let mut target = ParamSet::new(vec![[1, 2]], vec![vec![0.0, 0.0]]);
    target.soft_update_from(&online, 0.25);
    assert_eq!(target.values()[0], vec![0.25, 0.5]);
    // The tensor cache follows the values.
    assert_eq!(nn::to_vec(target.frozen()[0].clone()), vec![0.25, 0.5]);
}

#[test]
fn global_norm_is_the_plain_sum_on_every_length() {
    for n in [0usize, 1, 7, 8, 9, 1000, 68353] {
        let a: Vec<f32> = (0..n).map(|i| (i * 37 % 101) as f32 * 0.01 - 0.5).collect();
        let g = vec![a, vec![0.5; 3]];
        let plain = g
            .iter()
            .flatten()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>();
        let plain = plain.sqrt() as f32;
        assert!((nn::global_norm(&g) - plain).abs() <= 1e-6 * plain, "{n}");
    }
}
