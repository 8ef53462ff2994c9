//! Seeds: every random stream of a run is derived from `train.seed` and a stream id.

/// Derive a sub-seed (SplitMix64 of `seed` and a stream id).
pub(super) fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Initial parameters.
pub(super) const STREAM_INIT: u64 = 1;
/// Exploration noise of the collecting policy.
pub(super) const STREAM_COLLECT: u64 = 2;
/// Replay sampling.
pub(super) const STREAM_REPLAY: u64 = 3;
/// The learner (target noise, n-step environments).
pub(super) const STREAM_LEARNER: u64 = 4;
/// The actor environment.
pub(super) const STREAM_ENV: u64 = 5;
/// Evaluation episodes.
pub(super) const STREAM_EVAL: u64 = 6;
/// An async actor's choice of buffer.
pub(super) const STREAM_ACTOR: u64 = 7;
/// An async buffer's sampling.
pub(super) const STREAM_BUFFER: u64 = 8;
