"""Shared fixtures: the repository root, the `mixpg` CLI binary and a small config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: A small lqr run (well under a second per 100 iterations).
SMALL_CONFIG = """
[task]
name = "lqr"
num_agents = 4
reward_scale = 1.0
[algo]
name = "mpg_v2"
batch_size = 32
buffer_capacity = 5000
warmup_samples = 200
collect_steps = 4
collect_interval = 1
horizon = 5
n_step = 5
schedule_iterations = 40
[network]
hidden = [16, 16]
[train]
iterations = 60
eval_interval = 20
checkpoint_interval = 20
eval_episodes = 2
log_interval = 5
"""


@pytest.fixture(scope="session")
def cli() -> Path:
    """The release `mixpg` binary (`MIXPG_CLI`, else built with cargo if missing)."""
    path = Path(os.environ.get("MIXPG_CLI", ROOT / "target" / "release" / "mixpg"))
    if not path.is_file():
        subprocess.run(
            ["cargo", "build", "--release", "--features", "mujoco", "--bin", "mixpg"],
            cwd=ROOT,
            check=True,
        )
    assert path.is_file(), f"{path} was not built"
    return path


@pytest.fixture()
def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL_CONFIG)
    return path
