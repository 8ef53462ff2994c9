//! `Env::step_active` (held agents keep their exact state) and `AutoResetEnv` (Gymnasium's
//! next-step autoreset), on every task.

use mixpg::env::vector::AutoResetEnv;
use mixpg::env::{StepOut, TASKS, lookup, make_env, task_spec};

/// Deterministic, varied actions within the bounds for step `t`.
fn actions(task: &str, n: usize, t: usize) -> Vec<f32> {
    let s = task_spec(task).unwrap();
    (0..n * s.act_dim)
        .map(|i| {
            let d = i % s.act_dim;
            let u = ((i * 7 + t * 13) % 17) as f32 / 16.0;
            s.action_low[d] + u * (s.action_high[d] - s.action_low[d])
        })
        .collect()
}

/// Agent `i`'s row as bits (NaN-safe exact comparison).
fn row(v: &[f32], i: usize, d: usize) -> Vec<u32> {
    v[i * d..(i + 1) * d].iter().map(|x| x.to_bits()).collect()
}

#[test]
fn held_agents_continue_exactly_as_if_never_stepped() {
    for task in TASKS {
        let spec = task_spec(task).unwrap();
        let (d, n, steps) = (spec.obs_dim, 3usize, spec.episode_len + 5);
        // `a` holds agent 0 in its first call; `b` makes no first call; `c` steps everyone.
        let mut a = make_env(task, n, 5).unwrap();
        let mut b = make_env(task, n, 5).unwrap();
        let mut c = make_env(task, n, 5).unwrap();
        let (mut oa, mut ob, mut oc) = (StepOut::default(), StepOut::default(), StepOut::default());
        let mut before = Vec::new();
        a.observe(&mut before);
        let first = actions(task, n, 0);
        a.step_active(&first, &[false, true, true], &mut oa);
        c.step(&first, &mut oc);
        assert_eq!(
            row(&oa.next_obs, 0, d),
            row(&before, 0, d),
            "{task}: held row"
        );
        assert_eq!(
            (oa.reward[0], oa.terminated[0], oa.truncated[0]),
            (0.0, false, false)
        );
        for i in 1..n {
            assert_eq!(row(&oa.next_obs, i, d), row(&oc.next_obs, i, d), "{task}");
            assert_eq!(oa.reward[i].to_bits(), oc.reward[i].to_bits(), "{task}");
        }
        // Agent 0 of `a` now follows `b`'s agent 0 bit for bit (truncation included);
        // the others follow `c`. (No resets: they would draw from the shared rng in a
        // different order.)
        for t in 1..steps {
            let act = actions(task, n, t);
            a.step(&act, &mut oa);
            b.step(&act, &mut ob);
            c.step(&act, &mut oc);
            assert_eq!(
                row(&oa.next_obs, 0, d),
                row(&ob.next_obs, 0, d),
                "{task} t={t}"
            );
            assert_eq!(
                oa.reward[0].to_bits(),
                ob.reward[0].to_bits(),
                "{task} t={t}"
            );
            assert_eq!(oa.terminated[0], ob.terminated[0], "{task} t={t}");
            assert_eq!(oa.truncated[0], ob.truncated[0], "{task} t={t}");
            for i in 1..n {
                assert_eq!(
                    row(&oa.next_obs, i, d),
                    row(&oc.next_obs, i, d),
                    "{task} t={t}"
                );
            }
        }
    }
}

#[test]
fn autoreset_is_next_step_and_truncates_at_the_episode_length() {
    for task in TASKS {
        let s = task_spec(task).unwrap();
        let n = 4;
        let mut env = AutoResetEnv::new(&lookup(task).unwrap(), n, 11).unwrap();
        env.reset(Some(11));
        let mut out = StepOut::default();
        let mut len = vec![0usize; n];
        let mut ended = vec![false; n];
        let mut episodes = 0;
        for t in 0..2 * s.episode_len + 5 {
            env.step(&actions(task, n, t), &mut out).unwrap();
            for i in 0..n {
                if ended[i] {
                    // The reset step: a fresh start, no reward, no flags.
                    assert_eq!(out.reward[i], 0.0, "{task}");
                    assert!(!out.terminated[i] && !out.truncated[i], "{task}");
                    len[i] = 0;
                    continue;
                }
                len[i] += 1;
                assert!(
                    len[i] <= s.episode_len,
                    "{task}: episode longer than its length"
                );
                assert_eq!(
                    out.truncated[i],
                    len[i] == s.episode_len,
                    "{task}: truncation"
                );
            }
            for ((e, t), u) in ended.iter_mut().zip(&out.terminated).zip(&out.truncated) {
                *e = *t || *u;
                episodes += *e as usize;
            }
        }
        assert!(episodes >= n, "{task}: every agent finishes an episode");
    }
}

#[test]
fn seeded_reset_is_reproducible_and_bad_actions_are_errors() {
    let mut a = AutoResetEnv::new(&lookup("path-tracking").unwrap(), 8, 0).unwrap();
    let mut b = AutoResetEnv::new(&lookup("path_tracking").unwrap(), 8, 99).unwrap();
    assert_eq!(a.reset(Some(3)), b.reset(Some(3)));
    assert_eq!(a.reset(None), b.reset(None));
    assert_ne!(a.reset(Some(3)), a.reset(Some(4)));
    let mut out = StepOut::default();
    let e = a.step(&[0.0; 3], &mut out).unwrap_err().to_string();
    assert!(e.contains("expected 16 actions"), "{e}");
    let e = a.step(&[f32::NAN; 16], &mut out).unwrap_err().to_string();
    assert!(e.contains("finite"), "{e}");
    assert!(AutoResetEnv::new(&lookup("pendulum").unwrap(), 0, 0).is_err());
    assert!(lookup("cartpole").is_err());
}
