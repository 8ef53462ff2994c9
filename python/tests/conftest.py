"""Shared fixtures: the repository root, the `mixpg` CLI binary, a small config and the check
that a run's TensorBoard event files hold its progress.csv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
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


#: progress.csv column -> TensorBoard tag (src/runtime/tensorboard.rs, docs/usage.md).
TAGS = {
    "wall_s": "time/wall_s",
    "env_steps": "env/steps",
    "eval_return_mean": "eval/return_mean",
    "eval_return_std": "eval/return_std",
    "w_data": "weights/w_data",
    "w_model": "weights/w_model",
    "q_loss": "loss/q",
    "policy_loss": "loss/policy",
    "pg_time_ms": "time/pg_ms",
    "update_time_ms": "time/update_ms",
    "nonfinite_skipped": "diagnostics/nonfinite_skipped",
    "staleness": "diagnostics/staleness",
    "terminated_frac": "diagnostics/terminated_frac",
    "q_grad_norm": "diagnostics/q_grad_norm",
    "pi_grad_norm": "diagnostics/pi_grad_norm",
    "model_error": "diagnostics/model_error",
    "model_disagreement": "diagnostics/model_disagreement",
    "model_fit_ms": "time/model_fit_ms",
}


def check_tensorboard(run: Path) -> None:
    """Read ``run``'s event files with TensorBoard's own EventAccumulator: every non-empty cell
    of progress.csv is a scalar at its iteration (each step once), nothing else is, and the
    config is there as text."""
    import mixpg
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(run), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    progress = mixpg.read_progress(run)
    assert set(progress) == {"iteration", *TAGS}
    steps = progress["iteration"].astype(np.int64)
    assert list(steps) == sorted(set(steps)), steps
    assert set(acc.Tags()["scalars"]) <= set(TAGS.values())
    for column, tag in TAGS.items():
        cells = progress[column]
        want = {int(k): v for k, v in zip(steps, cells) if not np.isnan(v)}
        events = acc.Scalars(tag) if tag in acc.Tags()["scalars"] else []
        got_steps = [e.step for e in events]
        assert got_steps == sorted(want), (tag, got_steps, sorted(want))
        got = np.array([e.value for e in events], dtype=np.float64)
        expected = np.array([want[k] for k in got_steps], dtype=np.float64)
        # float32 values; wall_s is rounded to ms in the CSV.
        atol = 1e-3 if column == "wall_s" else 0.0
        np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6, atol=atol,
                                   err_msg=tag)
    # The config of each session at the step it started from; the last is the run's now.
    configs = acc.Tensors("config")
    config_steps = [c.step for c in configs]
    assert config_steps == sorted(set(config_steps)) and config_steps[0] == 0, config_steps
    text = configs[-1].tensor_proto.string_val[0].decode()
    assert "".join(line[4:] + "\n" for line in text.splitlines()) == (
        run / "config.toml").read_text()
