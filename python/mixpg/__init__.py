"""mixpg: Mixed Policy Gradient (MPG) from Python.

A thin layer over the Rust library (the ``mixpg._native`` extension): train a run as
``mixpg train`` does, run an experiment grid as ``mixpg bench`` does, write a report as
``mixpg report`` does, measure Theorem 2 as ``mixpg analyze-bias`` does, read a run's progress,
load its policy as a numpy callable, export it as ``mixpg export`` does, and use the tasks as Gymnasium environments
(``import mixpg`` registers ``mixpg/PathTracking-v0`` and ``mixpg/InvertedPendulum-v0``).
:mod:`mixpg.ray` runs the asynchronous architecture on Ray (``python -m mixpg.ray``).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from . import _native
from ._native import Policy, VecEnv, task_info, tasks
from .envs import register_envs

__all__ = [
    "Policy",
    "VecEnv",
    "analyze_bias",
    "bench",
    "export",
    "load_policy",
    "read_progress",
    "report",
    "task_info",
    "tasks",
    "train",
]

PathLike = Union[str, "os.PathLike[str]"]
Overrides = Union[Mapping[str, Any], Sequence[str]]


def _toml_value(value: Any) -> str:
    """A Python value as the TOML text of a ``--set key=value`` override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def _override_list(overrides: Overrides) -> list[str]:
    """``{"algo.gamma": 0.99}`` or ``["algo.gamma=0.99"]`` as ``key=value`` strings."""
    if isinstance(overrides, Mapping):
        return [f"{k}={_toml_value(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise TypeError("overrides must be a mapping or a list of 'key=value' strings")
    return [str(o) for o in overrides]


def train(
    config: PathLike,
    out: PathLike,
    seed: int | None = None,
    iterations: int | None = None,
    overrides: Overrides = {},
) -> Path:
    """Train one run into ``out``, exactly as ``mixpg train --config CONFIG --out OUT
    [--seed SEED] [--iterations N] [--set KEY=VALUE ...]`` does; returns ``out``.

    ``overrides`` maps dotted config keys to values (``{"algo.gamma": 0.99}``). The GIL is
    released while the run trains.
    """
    return Path(
        _native.train(os.fspath(config), os.fspath(out), seed, iterations, _override_list(overrides))
    )


def bench(
    out: PathLike,
    task: str | None = None,
    algos: Sequence[str] = (),
    seeds: int | None = None,
    iterations: int | None = None,
    jobs: int = 1,
    preset: str | None = None,
    overrides: Overrides = {},
    configs: PathLike = "configs",
    report: bool = True,
) -> list[dict[str, Any]]:
    """Run a resumable (task, algorithm, seed) grid as ``mixpg bench`` does; one dict per run
    (``task``, ``algo``, ``seed``, ``dir``, ``status`` and its details).

    Raises ``RuntimeError`` if any run failed (after the others ran) or the report failed.
    """
    runs = _native.bench(
        os.fspath(out),
        task,
        list(algos),
        seeds,
        iterations,
        jobs,
        preset,
        _override_list(overrides),
        os.fspath(configs),
        report,
    )
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        names = ", ".join(f"{r['task']}/{r['algo']}/seed{r['seed']}: {r['error']}" for r in failed)
        raise RuntimeError(f"{len(failed)} of {len(runs)} runs failed: {names}")
    return runs


def report(runs: PathLike, out: PathLike) -> list[Path]:
    """Write the report of every run under ``runs`` into ``out`` as ``mixpg report`` does
    (``table1.md``/``.csv``, learning curves, convergence and timing plots); returns the files
    written. Runs of one algorithm that differ in a config key get rows of their own."""
    return [Path(p) for p in _native.report(os.fspath(runs), os.fspath(out))]


def analyze_bias(
    run: PathLike,
    out: PathLike | None = None,
    horizons: Sequence[int] = (0, 1, 2, 5, 10, 25, 50),
    states: int = 256,
    reference_horizon: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Theorem 2 measured, as ``mixpg analyze-bias`` does: at every checkpoint of a serial run,
    the relative bias and cosine of the data-driven and model-driven policy gradients against a
    reference gradient through the exact model. Writes ``bias.csv`` and ``bias.png`` into
    ``out`` (default: the run directory) and returns one dict per row."""
    if states < 1 or reference_horizon < 1:
        raise ValueError("states and reference_horizon must be at least 1")
    if not horizons or any(int(h) < 0 for h in horizons):
        raise ValueError("horizons must be a non-empty list of non-negative integers")
    target = run if out is None else out
    return _native.analyze_bias(
        os.fspath(run),
        os.fspath(target),
        [int(h) for h in horizons],
        int(states),
        int(reference_horizon),
        int(seed),
    )


def read_progress(run_dir: PathLike) -> dict[str, np.ndarray]:
    """A run's ``progress.csv`` as ``{column: float64 array}`` (empty cells are NaN)."""
    path = Path(run_dir) / "progress.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (not a mixpg run directory?)")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path} is empty") from None
        rows = [r for r in reader if r]
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise ValueError(f"{path}: row {i + 2} has {len(r)} cells, the header {len(header)}")
    return {
        name: np.array([float(r[j]) if r[j] != "" else math.nan for r in rows], dtype=np.float64)
        for j, name in enumerate(header)
    }


def export(run: PathLike, out: PathLike, format: str = "onnx") -> Path:
    """Write the deterministic policy of ``run``'s newest checkpoint to ``out`` as ``mixpg
    export`` does: ``format`` is ``"onnx"`` (input ``obs`` ``(N, obs_dim)``, output ``action``
    ``(N, act_dim)``), ``"c"`` (one C99 file) or ``"rust"`` (one Rust file); returns ``out``."""
    return Path(_native.export(os.fspath(run), os.fspath(out), format))


def load_policy(run_dir: PathLike) -> Policy:
    """The policy of a run's latest checkpoint: ``policy(obs)`` maps a float32
    ``(n, obs_dim)`` array to ``(n, act_dim)`` deterministic actions."""
    return Policy.load(os.fspath(run_dir))


register_envs()
