//! Replay buffer: ring wrap-around and uniform sampling.

use mixpg::replay::ReplayBuffer;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

fn push_n(rb: &mut ReplayBuffer, from: usize, to: usize) {
    for i in from..to {
        let x = i as f32;
        rb.push(
            &[x, -x],
            &[x],
            x,
            &[x + 1.0, 0.0],
            i.is_multiple_of(3),
            i.is_multiple_of(5),
        );
    }
}

#[test]
fn wraps_around_and_keeps_the_newest() {
    let mut rb = ReplayBuffer::new(4, 2, 1);
    push_n(&mut rb, 0, 6);
    assert_eq!(rb.len(), 4);
    assert_eq!(rb.inserted(), 6);
    let mut rng = Pcg64Mcg::seed_from_u64(0);
    let b = rb.sample(200, &mut rng);
    let mut seen: Vec<i32> = b.rew.iter().map(|&r| r as i32).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec![2, 3, 4, 5],
        "only the 4 newest transitions remain"
    );
    // Rows stay consistent across arrays.
    for k in 0..b.len {
        let x = b.rew[k];
        assert_eq!(b.obs[2 * k], x);
        assert_eq!(b.obs[2 * k + 1], -x);
        assert_eq!(b.act[k], x);
        assert_eq!(b.next_obs[2 * k], x + 1.0);
        assert_eq!(b.terminated[k], (x as usize).is_multiple_of(3) as u8 as f32);
        assert_eq!(b.truncated[k], (x as usize).is_multiple_of(5) as u8 as f32);
    }
}

#[test]
fn sampling_is_uniform() {
    let n = 10;
    let mut rb = ReplayBuffer::new(n, 2, 1);
    push_n(&mut rb, 0, 13);
    let mut rng = Pcg64Mcg::seed_from_u64(42);
    let draws = 100_000;
    let b = rb.sample(draws, &mut rng);
    let mut counts = [0usize; 13];
    for r in &b.rew {
        counts[*r as usize] += 1;
    }
    assert_eq!(&counts[..3], &[0, 0, 0]);
    // Pearson chi-square with 9 dof; the 99.9% quantile is 27.88.
    let expected = draws as f64 / n as f64;
    let chi2: f64 = counts[3..]
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 27.88, "chi2 = {chi2}, counts {counts:?}");
}

#[test]
fn same_seed_same_batch() {
    let mut rb = ReplayBuffer::new(100, 2, 1);
    push_n(&mut rb, 0, 50);
    let a = rb.sample(32, &mut Pcg64Mcg::seed_from_u64(7));
    let b = rb.sample(32, &mut Pcg64Mcg::seed_from_u64(7));
    assert_eq!(a, b);
}
