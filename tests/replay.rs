//! Replay buffer: ring wrap-around and uniform sampling.

use mixpg::replay::{NStepWindow, ReplayBuffer};
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

/// A buffer of `agents` agents' trajectories of 1-dim states `s_{t+1} = s_t + 1` with reward
/// `s_t`, stored step-major as a vectorized env does; agent `k` starts at `100·k`.
fn trajectories(
    agents: usize,
    steps: usize,
    cap: usize,
    end: impl Fn(usize, usize) -> (bool, bool),
) -> ReplayBuffer {
    let mut rb = ReplayBuffer::new(cap, 1, 1);
    let mut s: Vec<f32> = (0..agents).map(|k| 100.0 * k as f32).collect();
    for t in 0..steps {
        for (k, x) in s.iter_mut().enumerate() {
            let (terminated, truncated) = end(k, t);
            rb.push(&[*x], &[0.0], *x, &[*x + 1.0], terminated, truncated);
            // An ended episode restarts elsewhere (a reset breaks the stored trajectory).
            *x += if terminated || truncated { 1000.0 } else { 1.0 };
        }
    }
    rb
}

fn window(n: usize, stride: usize, absorbing: bool) -> NStepWindow {
    NStepWindow {
        n,
        stride,
        gamma: 0.5,
        absorbing,
    }
}

/// The expected n-step return from state `s` along `s, s+1, …` for `m` steps.
fn ret(s: f32, m: usize) -> f32 {
    (0..m).map(|t| 0.5f32.powi(t as i32) * (s + t as f32)).sum()
}

#[test]
fn n_step_returns_follow_each_agents_stored_trajectory() {
    let rb = trajectories(3, 20, 1000, |_, _| (false, false));
    let mut rng = Pcg64Mcg::seed_from_u64(1);
    let plain = rb.sample(64, &mut rng.clone());
    let b = rb.sample_n_step(64, &mut rng, &window(4, 3, true));
    assert_eq!(b.obs, plain.obs, "the same draws as a plain sample");
    let ns = b.n_step.as_ref().unwrap();
    for i in 0..b.len {
        let s = b.obs[i];
        // Steps stored after this one: up to 19 − t for a state 100·k + t.
        let m = 4.min(20 - (s % 100.0) as usize);
        assert_eq!(ns.ret[i], ret(s, m), "return from {s}");
        assert_eq!(ns.boot_obs[i], s + m as f32, "bootstrap state from {s}");
        assert_eq!(ns.discount[i], 0.5f32.powi(m as i32), "discount from {s}");
    }
}

#[test]
fn n_step_returns_stop_at_episode_ends_and_overwritten_steps() {
    // Agent 0 terminates at t = 5, agent 1 is truncated at t = 5.
    let ends = |k: usize, t: usize| (k == 0 && t == 5, k == 1 && t == 5);
    for absorbing in [true, false] {
        let rb = trajectories(2, 10, 1000, ends);
        let b = rb.sample_n_step(
            400,
            &mut Pcg64Mcg::seed_from_u64(2),
            &window(4, 2, absorbing),
        );
        let ns = b.n_step.as_ref().unwrap();
        for i in 0..b.len {
            let (s, k) = (b.obs[i], (b.obs[i] / 100.0) as usize);
            if s >= 1000.0 || !(2.0..=5.0).contains(&(s % 100.0)) {
                continue;
            }
            let m = 6 - (s % 100.0) as usize; // steps up to and including t = 5
            assert_eq!(ns.ret[i], ret(s, m), "agent {k} from {s}");
            let absorbed = k == 0 && absorbing;
            let want = if absorbed { 0.0 } else { 0.5f32.powi(m as i32) };
            assert_eq!(
                ns.discount[i], want,
                "agent {k} from {s}, absorbing {absorbing}"
            );
            assert_eq!(ns.boot_obs[i], s + m as f32, "agent {k} from {s}");
        }
    }
    // A full ring: the oldest stored steps continue into newer ones, never back into the
    // overwritten past, and the newest have nothing stored after them.
    let rb = trajectories(1, 30, 8, |_, _| (false, false));
    let b = rb.sample_n_step(200, &mut Pcg64Mcg::seed_from_u64(3), &window(4, 1, true));
    let ns = b.n_step.as_ref().unwrap();
    for i in 0..b.len {
        let s = b.obs[i];
        let m = 4.min(30 - s as usize);
        assert_eq!(ns.ret[i], ret(s, m), "from {s}");
    }
}
