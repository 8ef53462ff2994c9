#!/usr/bin/env bash
# The test suite, with the MuJoCo cross-check of the pendulum simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --release --features mujoco
