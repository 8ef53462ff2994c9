//! `SavedPolicy`: loading a run's latest checkpoint, acting like the evaluator, and the byte
//! form used for pickling (exact round trip, malformed input rejected).

mod common;

use mixpg::algo::act;
use mixpg::runtime::{SavedPolicy, Trainer};

#[test]
fn saved_policy_acts_like_the_trainer_and_round_trips_through_bytes() {
    for algo in ["mpg_v2", "sac"] {
        let dir = common::tempdir(&format!("saved-policy-{algo}"));
        let cfg = common::lqr_config(algo, &["train.iterations=100"]);
        let mut trainer = Trainer::new(cfg, &dir).unwrap().quiet();
        trainer.run().unwrap();
        let p = SavedPolicy::load(&dir).unwrap();
        assert_eq!(p.iteration(), 100);
        assert_eq!(p.params(), &trainer.agent().params.pi);
        let obs: Vec<f32> = (0..10).map(|i| (i as f32 - 5.0) * 0.3).collect();
        let expected = act(
            trainer.nets(),
            &trainer.agent().params.pi,
            &obs,
            None,
            &mut rand_pcg::Pcg64Mcg::new(0),
        );
        assert_eq!(p.act(&obs).unwrap(), expected);
        assert!(p.act(&obs[..3]).is_err());
        assert!(p.act(&[]).unwrap().is_empty());

        let bytes = p.to_bytes();
        let q = SavedPolicy::from_bytes(&bytes).unwrap();
        assert_eq!(q.params(), p.params());
        assert_eq!(q.config(), p.config());
        assert_eq!(q.iteration(), 100);
        assert_eq!(q.act(&obs).unwrap(), expected);
        for bad in [
            &bytes[..bytes.len() - 1],
            &bytes[..20],
            b"not a policy".as_slice(),
        ] {
            assert!(SavedPolicy::from_bytes(bad).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SavedPolicy::from_bytes(&longer).is_err());
    }
    let empty = common::tempdir("saved-policy-none");
    assert!(SavedPolicy::load(&empty).is_err());
}
