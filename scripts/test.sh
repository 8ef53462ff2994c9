#!/usr/bin/env bash
# The test suite: the Rust tests (with the MuJoCo cross-check of the pendulum simulator), then
# the Python package built into a local virtual environment (.venv) and its pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The whole workspace, so that features are resolved as for the wheel below, which then
# reuses the compiled dependencies (crates/mixpg-py has no Rust tests of its own).
cargo test --release --workspace --features mixpg/mujoco

# Python: a local venv with the build and test tools from PyPI (Ray for mixpg.ray; TensorBoard
# and onnxruntime only to read back what mixpg writes), the package built from this
# repository (a release wheel sharing target/ with the Rust build), then pytest.
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "maturin>=1.9,<2" "pytest>=7" "numpy>=1.22" "gymnasium>=1.0,<2" \
    "ray==2.60.0" "tensorboard>=2.14" "onnxruntime>=1.17"
.venv/bin/python -m pip install -q --no-build-isolation .
MIXPG_CLI="$PWD/target/release/mixpg" .venv/bin/python -m pytest python/tests
