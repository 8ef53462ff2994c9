//! The step-wise role objects shared by the thread runtime and Ray, and the byte encodings of
//! everything that crosses between them.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use mixpg::algo::{Agent, Learner, Nets};
use mixpg::config::Config;
use mixpg::env::{Task, lookup, make_model, task_spec};
use mixpg::replay::ReplayBuffer;
use mixpg::runtime::AsyncTrainer;
use mixpg::runtime::asynchronous::LearnerGroup;
use mixpg::runtime::roles::{
    ActorCore, BufferCore, Experience, LearnerCore, Optimizer, RuntimeCounters, Snapshot,
    TaggedGrads, WorkerStream, batch_from_bytes, batch_to_bytes, replay_from_bytes,
    replay_to_bytes, worker_seed,
};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

fn cfg(sets: &[&str]) -> Config {
    common::async_lqr_config(sets)
}

fn task(cfg: &Config) -> Task {
    lookup(&cfg.task.name).unwrap()
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mixpg-roles-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn snapshot(cfg: &Config, seed: u64, version: u64) -> Snapshot {
    let nets = Nets::new(cfg, &task_spec(&cfg.task.name).unwrap());
    let agent = Agent::new(&nets, cfg, &mut Pcg64Mcg::seed_from_u64(seed));
    Snapshot::of(version, &agent.params)
}

/// A warm buffer filled by an actor, and a batch from it.
fn filled_buffer(cfg: &Config, snap: &Snapshot) -> BufferCore {
    let mut actor = ActorCore::new(cfg, &task(cfg), 1, 2, snap).unwrap();
    let mut buf = BufferCore::new(cfg, task(cfg).spec(), None, 3).unwrap();
    while !buf.is_warm() {
        buf.insert(&actor.collect().unwrap());
    }
    buf
}

fn assert_decode_fails(bytes: &[u8], decode: impl Fn(&[u8]) -> bool) {
    assert!(
        !decode(&bytes[..bytes.len() - 1]),
        "a truncated encoding decoded"
    );
    assert!(!decode(&bytes[..3]), "a header-less encoding decoded");
    let mut wrong = bytes.to_vec();
    wrong[3] = b'?';
    assert!(!decode(&wrong), "an encoding of another kind decoded");
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(!decode(&longer), "an encoding with trailing bytes decoded");
}

#[test]
fn snapshot_bytes_round_trip() {
    let c = cfg(&[]);
    let s = snapshot(&c, 7, 42);
    let b = s.to_bytes();
    let back = Snapshot::from_bytes(&b).unwrap();
    assert_eq!(back, s);
    assert_eq!(Snapshot::version_in(&b).unwrap(), 42);
    assert_ne!(
        back,
        snapshot(&c, 8, 42),
        "different parameters compare equal"
    );
    assert_decode_fails(&b, |x| Snapshot::from_bytes(x).is_ok());
    // Twin-Q and learned-temperature algorithms carry their optional sets too.
    let sac = cfg(&["algo.name=\"sac\""]);
    let s = snapshot(&sac, 1, 3);
    assert_eq!(Snapshot::from_bytes(&s.to_bytes()).unwrap(), s);
}

#[test]
fn parameters_encode_as_their_snapshot_does() {
    for c in [
        cfg(&[]),
        cfg(&["algo.name=\"sac\"", "algo.learn_alpha=true"]),
    ] {
        let nets = Nets::new(&c, &task_spec(&c.task.name).unwrap());
        let agent = Agent::new(&nets, &c, &mut Pcg64Mcg::seed_from_u64(5));
        assert_eq!(
            Snapshot::encode(9, &agent.params),
            Snapshot::of(9, &agent.params).to_bytes()
        );
    }
}

#[test]
fn experience_batch_and_replay_bytes_round_trip() {
    let c = cfg(&[]);
    let snap = snapshot(&c, 1, 0);
    let mut actor = ActorCore::new(&c, &task(&c), 1, 2, &snap).unwrap();
    let e = actor.collect().unwrap();
    assert_eq!(e.len(), c.algo.collect_steps * c.task.num_agents);
    let b = e.to_bytes();
    assert_eq!(Experience::from_bytes(&b).unwrap(), e);
    assert_decode_fails(&b, |x| Experience::from_bytes(x).is_ok());

    let mut buf = filled_buffer(&c, &snap);
    let batch = buf.try_sample().unwrap();
    let bb = batch_to_bytes(&batch);
    assert_eq!(batch_from_bytes(&bb).unwrap(), batch);
    assert_decode_fails(&bb, |x| batch_from_bytes(x).is_ok());

    let spec = task_spec(&c.task.name).unwrap();
    let rb = replay_to_bytes(buf.replay());
    let back = replay_from_bytes(&rb, spec.obs_dim, spec.act_dim).unwrap();
    assert_eq!(&back, buf.replay());
    assert_decode_fails(&rb, |x| {
        replay_from_bytes(x, spec.obs_dim, spec.act_dim).is_ok()
    });
    assert!(
        replay_from_bytes(&rb, spec.obs_dim + 1, spec.act_dim).is_err(),
        "replay bytes decoded with the wrong dimensions"
    );
}

#[test]
fn tagged_gradient_bytes_round_trip() {
    for algo in ["mpg_v2", "sac"] {
        let c = cfg(&[&format!("algo.name=\"{algo}\"")]);
        let snap = snapshot(&c, 1, 5);
        let mut buf = filled_buffer(&c, &snap);
        let mut l = LearnerCore::new(&c, &task(&c), 9, &snap).unwrap();
        let mut grads = vec![l.step(None, buf.try_sample()).unwrap().unwrap()];
        grads.extend(l.step(None, None).unwrap());
        for g in grads {
            assert!(
                g.grads.pi.is_some(),
                "policy_delay = 1: every gradient has a policy part"
            );
            let b = g.to_bytes();
            let back = TaggedGrads::from_bytes(&b).unwrap();
            assert_eq!(back.version, 5);
            assert_eq!(back.grads.q1, g.grads.q1);
            assert_eq!(back.grads.q2, g.grads.q2);
            assert_eq!(back.grads.pi, g.grads.pi);
            assert_eq!(back.grads.log_alpha, g.grads.log_alpha);
            assert_eq!(back.grads.stats.q_loss, g.grads.stats.q_loss);
            assert_eq!(back.grads.stats.policy_loss, g.grads.stats.policy_loss);
            assert_eq!(back.grads.stats.pi_grad_norm, g.grads.stats.pi_grad_norm);
            assert_eq!(back.grads.stats.model_error, g.grads.stats.model_error);
            assert_decode_fails(&b, |x| TaggedGrads::from_bytes(x).is_ok());
        }
    }
}

/// The learner role computes exactly what the algorithm's learner computes from the same
/// snapshot, batch and seed, tagged with the snapshot's version.
#[test]
fn learner_core_matches_the_plain_learner() {
    let c = cfg(&["algo.batch_reuse=2", "algo.policy_delay=2"]);
    let snap = snapshot(&c, 1, 11);
    let mut buf = filled_buffer(&c, &snap);
    let batch = buf.try_sample().unwrap();
    let mut core = LearnerCore::new(&c, &task(&c), 9, &snap).unwrap();
    let got = [
        core.step(None, Some(batch.clone())).unwrap().unwrap(),
        core.step(Some(&snap), None).unwrap().unwrap(),
    ];
    assert!(
        core.step(None, None).unwrap().is_none(),
        "more than algo.batch_reuse gradients"
    );
    assert_eq!(core.made(), 2);

    let nets = Nets::new(&c, &task_spec(&c.task.name).unwrap());
    let model = make_model(&c.task.name, c.task.model_mismatch).unwrap();
    let mut plain = Learner::new(nets, &c, Some(model), None, 9);
    let p = snap.params();
    let tb = plain.targets(&p, batch).unwrap();
    for (i, g) in got.iter().enumerate() {
        let want = plain.compute(&p, &tb, 11, i == 0);
        assert_eq!(g.version, 11);
        assert_eq!(g.grads.q1, want.q1);
        assert_eq!(
            g.grads.pi, want.pi,
            "gradient {i}: policy part (policy_delay 2)"
        );
    }
    // A newer snapshot is taken up, also between the reuses of one batch.
    let newer = snapshot(&c, 2, 12);
    let g = core.step(Some(&newer), buf.try_sample()).unwrap().unwrap();
    assert_eq!(g.version, 12);
    let newest = snapshot(&c, 3, 13);
    let g2 = core.step(Some(&newest), None).unwrap().unwrap();
    assert_eq!(g2.version, 13);
    assert_ne!(
        g.grads.q1, g2.grads.q1,
        "the reuse did not use the newer parameters"
    );
}

#[test]
fn buffer_core_keeps_the_samples_per_insert_bound() {
    let c = cfg(&["runtime.samples_per_insert=2.0"]);
    let snap = snapshot(&c, 1, 0);
    let mut actor = ActorCore::new(&c, &task(&c), 1, 2, &snap).unwrap();
    let mut buf = BufferCore::new(&c, task(&c).spec(), None, 3).unwrap();
    assert!(buf.try_sample().is_none(), "an empty buffer sampled");
    while !buf.is_warm() {
        buf.insert(&actor.collect().unwrap());
    }
    let mut n = 0;
    while buf.try_sample().is_some() {
        n += 1;
        assert!(n < 1000, "the bound never stopped sampling");
    }
    let (ins, smp) = (buf.inserted(), buf.sampled());
    assert!(
        smp as f64 <= 2.0 * ins as f64,
        "{smp} sampled > 2 x {ins} inserted"
    );
    assert!(
        (smp + c.algo.batch_size as u64) as f64 > 2.0 * ins as f64,
        "stopped before the bound"
    );
    buf.insert(&actor.collect().unwrap());
    assert!(
        buf.try_sample().is_some(),
        "new experience did not lift the bound"
    );
}

#[test]
fn actor_core_acts_with_the_snapshot_it_is_given() {
    let c = cfg(&[]);
    let (a, b) = (snapshot(&c, 1, 0), snapshot(&c, 2, 1));
    let mut x = ActorCore::new(&c, &task(&c), 1, 2, &a).unwrap();
    let mut y = ActorCore::new(&c, &task(&c), 1, 2, &a).unwrap();
    assert_eq!(
        x.collect().unwrap(),
        y.collect().unwrap(),
        "same seeds and policy differ"
    );
    y.set_policy(&b);
    assert_eq!(y.version(), 1);
    assert_ne!(
        x.collect().unwrap().act,
        y.collect().unwrap().act,
        "a new policy did not change the actions"
    );
}

#[test]
fn worker_seeds_differ_by_stream_worker_incarnation_and_session() {
    let s = |st, id, inc, start| worker_seed(0, start, st, id, inc);
    let base = s(WorkerStream::Learner, 0, 0, 0);
    assert_ne!(base, s(WorkerStream::Learner, 1, 0, 0));
    assert_ne!(base, s(WorkerStream::Learner, 0, 1, 0));
    assert_ne!(base, s(WorkerStream::Learner, 0, 0, 100));
    assert_ne!(base, s(WorkerStream::Buffer, 0, 0, 0));
}

/// Driving the optimizer and the role objects step by step (as the Ray driver does) writes a
/// run that the thread runtime resumes, buffers included.
#[test]
fn step_wise_run_resumes_with_the_thread_runtime() {
    let dir = tempdir("stepwise");
    let c = cfg(&[
        "train.iterations=40",
        "train.checkpoint_interval=20",
        "train.eval_interval=20",
        "train.eval_episodes=2",
    ]);
    let mut opt = Optimizer::create(c.clone(), task(&c), &dir).unwrap();
    opt.set_quiet(true);
    assert!(opt.take_restored_replay().iter().all(Option::is_none));
    opt.start_session().unwrap();
    let snap = opt.snapshot();
    let mut actor = ActorCore::new(&c, &task(&c), 1, 2, &snap).unwrap();
    let mut bufs: Vec<BufferCore> = (0..2)
        .map(|i| BufferCore::new(&c, task(&c).spec(), None, i).unwrap())
        .collect();
    let mut learner = LearnerCore::new(&c, &task(&c), 3, &snap).unwrap();
    let mut env_steps = 0;
    let replays = |b: &[BufferCore]| -> anyhow::Result<Vec<Option<ReplayBuffer>>> {
        Ok(b.iter().map(|b| Some(b.replay().clone())).collect())
    };
    let mut stale_seen = false;
    while !opt.finished() {
        opt.at_iteration(env_steps, || replays(&bufs)).unwrap();
        for b in &mut bufs {
            while !b.is_warm() || !b.rate_ok() {
                let e = actor.collect().unwrap();
                env_steps += e.len() as u64;
                b.insert(&e);
            }
        }
        // One gradient one version behind: its staleness is 1.
        let old = opt.snapshot();
        let g = learner
            .step(Some(&old), bufs[0].try_sample())
            .unwrap()
            .unwrap();
        assert_eq!(opt.apply(g.clone(), false).unwrap(), 0);
        if !opt.finished() {
            let mut again = g;
            again.version = old.version;
            stale_seen |= opt.apply(again, false).unwrap() == 1;
        }
        actor.set_policy(&opt.snapshot());
        opt.log_runtime(false, RuntimeCounters::default).unwrap();
    }
    assert!(stale_seen);
    opt.finish(env_steps, || replays(&bufs), RuntimeCounters::default)
        .unwrap();
    let progress = fs::read_to_string(dir.join("progress.csv")).unwrap();
    assert!(progress.lines().last().unwrap().starts_with("40,"));
    let runtime = fs::read_to_string(dir.join("runtime.csv")).unwrap();
    assert!(runtime.starts_with("iteration,wall_s,"));

    let resumed = Optimizer::resume(&dir, task(&c)).unwrap();
    assert_eq!(resumed.iteration(), 40);
    let mut resumed = resumed;
    let restored = resumed.take_restored_replay();
    for (r, b) in restored.iter().zip(&bufs) {
        assert_eq!(
            r.as_ref().unwrap(),
            b.replay(),
            "buffer contents not restored"
        );
    }
    drop(resumed);
    let mut t = AsyncTrainer::resume(&dir).unwrap().quiet();
    assert_eq!(t.iteration(), 40);
    let s = t.run().unwrap();
    assert_eq!(s.iterations, 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_learner_group_answers_rounds_with_gradients_of_the_version_it_holds() {
    let c = cfg(&["algo.batch_reuse=1"]);
    let snap = snapshot(&c, 5, 3);
    let err = LearnerGroup::start(&c, &task(&c), 0, 1, snap.clone(), 4).err();
    assert!(
        format!("{err:?}").contains("at least one learner thread"),
        "{err:?}"
    );
    let group = LearnerGroup::start(&c, &task(&c), 2, 1, snap.clone(), 8).unwrap();
    assert_eq!(group.version(), 3);
    let mut actor = ActorCore::new(&c, &task(&c), 1, 2, &snap).unwrap();
    let mut buf = BufferCore::new(&c, task(&c).spec(), None, 3).unwrap();
    let mut feed = |n: usize| {
        for _ in 0..n {
            let batch = loop {
                match buf.try_sample() {
                    Some(b) => break b,
                    None => buf.insert(&actor.collect().unwrap()),
                }
            };
            group.feed(batch).unwrap();
        }
    };
    // One gradient per batch: four batches, four gradients, all of version 3.
    feed(4);
    let grads = group.round(None, 4, Duration::from_secs(120)).unwrap();
    assert_eq!(grads.len(), 4);
    assert!(grads.iter().all(|g| g.version == 3));
    // A newer version is taken up by the round that carries it; later gradients use it.
    let idle = group
        .round(Some(snapshot(&c, 6, 9)), 0, Duration::ZERO)
        .unwrap();
    assert!(idle.is_empty());
    assert_eq!(group.version(), 9);
    feed(2);
    let grads = group.round(None, 2, Duration::from_secs(120)).unwrap();
    assert_eq!(grads.len(), 2);
    assert!(grads.iter().all(|g| g.version == 9));
    assert_eq!(group.feed_len(), 0);
}

#[test]
fn a_learner_group_never_uses_a_batch_twice_with_one_version() {
    // The same batch and parameters give the same gradient: with batch reuse, a thread makes
    // a batch's next gradient only once newer parameters arrive.
    let c = cfg(&[
        "algo.batch_reuse=3",
        "runtime.round_gradients_per_learner=1",
    ]);
    let snap = snapshot(&c, 5, 3);
    let group = LearnerGroup::start(&c, &task(&c), 1, 1, snap.clone(), 8).unwrap();
    let mut buf = filled_buffer(&c, &snap);
    group.feed(buf.try_sample().unwrap()).unwrap();
    let first = group.round(None, 1, Duration::from_secs(120)).unwrap();
    assert_eq!(first.len(), 1);
    // No newer version: no second gradient of the kept batch (it would repeat the first).
    let repeat = group.round(None, 1, Duration::from_millis(500)).unwrap();
    assert!(
        repeat.is_empty(),
        "the batch was used again with version 3: {} more gradients",
        repeat.len()
    );
    // A newer version: the kept batch's next gradient, with it.
    let next = group
        .round(Some(snapshot(&c, 6, 4)), 1, Duration::from_secs(120))
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].version, 4);
    assert_ne!(next[0].grads.stats.q_loss, first[0].grads.stats.q_loss);
}
