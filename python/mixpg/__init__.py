"""mixpg: Mixed Policy Gradient (MPG) from Python.

A thin layer over the Rust library (the ``mixpg._native`` extension): train a run as
``mixpg train`` does, run an experiment grid as ``mixpg bench`` does, write a report as
``mixpg report`` does, measure Theorem 2 as ``mixpg analyze-bias`` does, read a run's progress,
load its policy as a numpy callable, export it as ``mixpg export`` does, and use the tasks as
Gymnasium environments (``import mixpg`` registers ``mixpg/PathTracking-v0`` and
``mixpg/InvertedPendulum-v0``); and train on any Gymnasium environment, with a prior model of
your own (:mod:`mixpg.user_tasks`).
:mod:`mixpg.ray` runs the asynchronous architecture on Ray (``python -m mixpg.ray``).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from . import _native, user_tasks
from ._native import Policy, VecEnv, task_info, tasks
from .envs import register_envs
from .user_tasks import check_model

__all__ = [
    "Policy",
    "VecEnv",
    "analyze_bias",
    "bench",
    "check_model",
    "export",
    "load_policy",
    "read_progress",
    "report",
    "resume",
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


ALGORITHMS = ("mpg_v1", "mpg_v2", "ndpg", "nadp", "ddpg", "td3", "sac")


def _algorithm(name: str) -> str | None:
    """The algorithm ``name`` (snake or kebab case) stands for, or None for a config path."""
    key = str(name).strip().replace("-", "_")
    return key if key in ALGORITHMS else None


def train(
    config: PathLike,
    out: PathLike,
    env: Any = None,
    model: Any = None,
    seed: int | None = None,
    iterations: int | None = None,
    overrides: Overrides = {},
) -> Path:
    """Train one run into ``out``; returns ``out``.

    Without ``env``, exactly as ``mixpg train --config CONFIG --out OUT [--seed SEED]
    [--iterations N] [--set KEY=VALUE ...]`` does on a built-in task.

    With ``env`` (a Gymnasium id such as ``"Pendulum-v1"``, a factory returning an environment,
    an environment, or a vector environment with a Box action space), on that environment:
    ``config`` is a config file or an algorithm name (``"td3"``, ``"mpg-v2"``, ...) that picks
    the algorithm's generic config (``configs/generic/``: one environment step and one update
    per iteration, as SB3's ``train_freq=1, gradient_steps=1``). ``model`` is the prior model
    that MPG-v1, MPG-v2 and n-step ADP learn through (see :mod:`mixpg.user_tasks`).

    ``model="learned"`` (with or without ``env``) sets ``task.model = "learned"``: those
    algorithms learn through an ensemble fitted to the replay (its ``[model]`` keys in
    ``overrides``, e.g. ``{"model.ensemble": 3}``; serial mode).

    ``overrides`` maps dotted config keys to values (``{"algo.gamma": 0.99}``). The GIL is
    released while the run trains; an environment or model that raises stops the run with a
    final checkpoint and the exception.
    """
    sets = _override_list(overrides)
    if isinstance(model, str):
        if model not in ("learned", "prior"):
            raise ValueError(f'model={model!r}: use "learned", "prior" or a prior-model object')
        sets.append(f"task.model={model}")
        model = None
    if env is None:
        if model is not None:
            raise ValueError("model= is the prior model of an env= task; built-in tasks have theirs")
        return Path(_native.train(os.fspath(config), os.fspath(out), seed, iterations, sets))
    algo = _algorithm(config) if isinstance(config, str) else None
    text = _native.generic_config(algo) if algo else Path(config).read_text()
    source = user_tasks.EnvSource(env)
    spec = source.spec
    head = [f"task.name={spec['name']}", f"task.num_agents={source.num_envs}"]
    if seed is not None:
        sets.append(f"train.seed={seed}")
    if iterations is not None:
        sets.append(f"train.iterations={iterations}")
    resolved = _native.resolve_config(text, head + sets)
    out = Path(out)
    source.save(out, model)
    return Path(_native.train_python_task(resolved, spec, os.fspath(out), source.pools(), model))


def resume(run: PathLike, env: Any = None, model: Any = None) -> Path:
    """Continue a run of a Python environment from its newest checkpoint. The environment
    (and prior model) are re-created from the run's ``env.json`` (a Gymnasium id, or a pickled
    factory and model); give ``env=`` / ``model=`` for one that cannot be re-created (a live
    environment object, an unpicklable factory or model)."""
    run = Path(run)
    source, model = user_tasks.source_of_run(run, env, model)
    return Path(_native.resume_python_task(os.fspath(run), source.spec, source.pools(), model))


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


def report(runs: PathLike | Sequence[PathLike], out: PathLike) -> list[Path]:
    """Write the report of every run under ``runs`` (a directory, or several reported together)
    into ``out`` as ``mixpg report`` does (``table1.md``/``.csv``, learning curves, convergence
    and timing plots); returns the files written. Runs of one algorithm that differ in a config
    key get rows of their own."""
    roots = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    return [Path(p) for p in _native.report([os.fspath(r) for r in roots], os.fspath(out))]


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
