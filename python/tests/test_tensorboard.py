"""TensorBoard event files, read back with TensorBoard's own EventAccumulator: every
progress.csv column of serial (CLI and Python) and async runs at its iteration, the config as
text, a resume that rewrites rows after its checkpoint without duplicating a step, and
``train.tensorboard = false``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import check_tensorboard

import mixpg

pytest.importorskip("tensorboard")


def event_files(run: Path) -> list[Path]:
    return sorted(run.glob("events.out.tfevents.*"))


def test_a_python_run_writes_every_column_and_the_config(tmp_path, small_config):
    run = mixpg.train(small_config, tmp_path / "run", seed=0,
                      overrides={"algo.name": "mpg_v1"})
    assert len(event_files(run)) == 1
    check_tensorboard(run)


def test_a_resume_replaces_the_rows_after_its_checkpoint(tmp_path, cli, small_config):
    run = tmp_path / "run"
    subprocess.run([cli, "train", "--config", small_config, "--out", run, "--seed", "1"],
                   check=True, capture_output=True)
    # As if the run had died after logging rows 45..60 but before checkpoint 60: the resume
    # starts from checkpoint 40 and writes rows 45.. again, with other values.
    shutil.rmtree(run / "checkpoints" / "ckpt-000000060")
    text = (run / "config.toml").read_text().replace("iterations = 60", "iterations = 100", 1)
    (run / "config.toml").write_text(text)
    first = event_files(run)[0].read_bytes()
    p = subprocess.run([cli, "resume", "--run", run], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    files = event_files(run)
    assert len(files) == 2
    assert len(files[0].read_bytes()) < len(first)  # cut to the steps <= 40
    assert mixpg.read_progress(run)["iteration"][-1] == 100
    check_tensorboard(run)
    # A second resume, from the last row, continues in a third file.
    text = (run / "config.toml").read_text().replace("iterations = 100", "iterations = 120", 1)
    (run / "config.toml").write_text(text)
    again = subprocess.run([cli, "resume", "--run", run], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert len(event_files(run)) == 3
    check_tensorboard(run)


def test_an_async_run_writes_its_rows(tmp_path, cli, small_config):
    run = tmp_path / "run"
    p = subprocess.run([cli, "train", "--config", small_config, "--out", run,
                        "--set", 'runtime.mode="async"', "--set", "runtime.learners=2"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    check_tensorboard(run)


def test_tensorboard_false_writes_no_event_file(tmp_path, small_config):
    run = mixpg.train(small_config, tmp_path / "run", overrides={"train.tensorboard": False})
    assert event_files(run) == []
    assert (run / "progress.csv").is_file()
