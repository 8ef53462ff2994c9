//! Checkpoints: round-trip gives bit-identical outputs; corruption gives clear errors.

use std::fs;

use mixpg::checkpoint::Checkpoint;
use mixpg::nn::{
    Adam, AdamConfig, DetPolicy, LrSchedule, NetSpec, device, plain_device, tensor2, to_vec,
};
use mixpg::replay::ReplayBuffer;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn setup() -> (DetPolicy, Checkpoint, Vec<f32>, Pcg64Mcg) {
    let mut rng = Pcg64Mcg::seed_from_u64(5);
    let pi = DetPolicy::new(&[1.0, 2.0, 3.0], &[1.0, 3.0], &NetSpec::default(), &device());
    let mut params = pi.init(&mut rng);
    let mut adam = Adam::new(AdamConfig::default(), LrSchedule::linear(1e-3, 1e-4, 10), &params);
    let g: Vec<Vec<f32>> = params.values().iter().map(|v| vec![0.1; v.len()]).collect();
    adam.apply(&mut params, &g);
    let obs = tensor2(vec![0.1, -0.2, 0.3, 1.0, 0.0, -1.0], 2, 3, &plain_device());
    let out = to_vec(pi.forward(params.frozen(), obs));
    let mut ck = Checkpoint::new();
    ck.set_params("policy", &params);
    ck.set_adam("policy_adam", &adam);
    ck.set_counter("iteration", 1234);
    let _: u64 = rng.random();
    ck.set_json("rng", &rng).unwrap();
    (pi, ck, out, rng)
}

#[test]
fn round_trip_is_bit_identical() {
    let dir = tempdir("roundtrip");
    let (pi, ck, out, mut rng) = setup();
    ck.save(&dir.join("ckpt")).unwrap();
    let loaded = Checkpoint::load(&dir.join("ckpt")).unwrap();
    let like = pi.init(&mut Pcg64Mcg::seed_from_u64(99));
    let params = loaded.params("policy", &like).unwrap();
    let obs = tensor2(vec![0.1, -0.2, 0.3, 1.0, 0.0, -1.0], 2, 3, &plain_device());
    let out2 = to_vec(pi.forward(params.frozen(), obs));
    assert_eq!(
        out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        out2.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    let adam = loaded.adam("policy_adam", &params).unwrap();
    assert_eq!(adam.step, 1);
    assert_eq!(loaded.counter("iteration").unwrap(), 1234);
    let mut rng2: Pcg64Mcg = loaded.json("rng").unwrap();
    assert_eq!(rng.random::<u64>(), rng2.random::<u64>());
    assert!(!dir.join("ckpt.tmp").exists());
}

#[test]
fn replay_buffer_round_trip() {
    let dir = tempdir("replay");
    let mut rb = ReplayBuffer::new(5, 2, 1);
    for i in 0..7 {
        let x = i as f32;
        rb.push(&[x, x], &[x], x, &[x, x], false, i == 3);
    }
    let mut ck = Checkpoint::new();
    for (name, data) in rb.arrays() {
        ck.set_array(&format!("replay/{name}"), vec![data.len()], data.to_vec());
    }
    let (len, next, inserted) = rb.counters();
    ck.set_counter("replay/len", len as u64);
    ck.set_counter("replay/next", next as u64);
    ck.set_counter("replay/inserted", inserted);
    ck.save(&dir.join("c")).unwrap();
    let ck = Checkpoint::load(&dir.join("c")).unwrap();
    let counters = (
        ck.counter("replay/len").unwrap() as usize,
        ck.counter("replay/next").unwrap() as usize,
        ck.counter("replay/inserted").unwrap(),
    );
    let rb2 = ReplayBuffer::restore(5, 2, 1, counters, |name, n| {
        ck.array(&format!("replay/{name}"), &[n])
    })
    .unwrap();
    assert_eq!(rb, rb2);
}

#[test]
fn corrupt_data_is_reported_with_the_file() {
    let dir = tempdir("corrupt");
    let (_, ck, _, _) = setup();
    let path = dir.join("ckpt");
    ck.save(&path).unwrap();
    let bin = path.join("arrays.bin");
    let mut bytes = fs::read(&bin).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&bin, &bytes).unwrap();
    let err = format!("{:#}", Checkpoint::load(&path).unwrap_err());
    assert!(err.contains("arrays.bin") && err.contains("checksum"), "{err}");

    bytes.truncate(50);
    fs::write(&bin, &bytes).unwrap();
    let err = format!("{:#}", Checkpoint::load(&path).unwrap_err());
    assert!(err.contains("arrays.bin") && err.contains("corrupt"), "{err}");

    fs::write(path.join("meta.json"), b"{ not json").unwrap();
    let err = format!("{:#}", Checkpoint::load(&path).unwrap_err());
    assert!(err.contains("meta.json") && err.contains("corrupt"), "{err}");
}

#[test]
fn mismatched_network_is_reported_with_the_tensor() {
    let dir = tempdir("mismatch");
    let (_, ck, _, _) = setup();
    ck.save(&dir.join("ckpt")).unwrap();
    let loaded = Checkpoint::load(&dir.join("ckpt")).unwrap();
    let other = DetPolicy::new(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0], &NetSpec::default(), &device());
    let like = other.init(&mut Pcg64Mcg::seed_from_u64(0));
    let err = format!("{:#}", loaded.params("policy", &like).unwrap_err());
    assert!(err.contains("policy/0") && err.contains("shape"), "{err}");
    assert!(err.contains("ckpt"), "{err}");
    let err = format!("{:#}", loaded.params("critic", &like).unwrap_err());
    assert!(err.contains("missing array `critic/0`"), "{err}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mixpg-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}
