"""mixpg.train / read_progress / load_policy / bench: same results as the CLI, pickling,
read-only inputs, the GIL released during long calls, clear errors."""

from __future__ import annotations

import pickle
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mixpg

TIMING = {"wall_s", "pg_time_ms", "update_time_ms"}


def rows_without_timing(run: Path) -> list[list[str]]:
    lines = (run / "progress.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, h in enumerate(header) if h not in TIMING]
    return [[cells[i] for i in keep] for cells in (l.split(",") for l in lines)]


def test_python_train_writes_the_same_progress_as_the_cli(tmp_path, cli, small_config):
    by_cli, by_py = tmp_path / "cli", tmp_path / "py"
    subprocess.run(
        [cli, "train", "--config", small_config, "--out", by_cli, "--seed", "3",
         "--iterations", "80", "--set", "algo.gamma=0.95", "--set", "algo.name=mpg-v1"],
        check=True,
        capture_output=True,
    )
    out = mixpg.train(small_config, by_py, seed=3, iterations=80,
                      overrides={"algo.gamma": 0.95, "algo.name": "mpg-v1"})
    assert out == by_py
    a, b = rows_without_timing(by_cli), rows_without_timing(by_py)
    assert len(a) == 1 + 1 + 80 // 5  # header, iteration 0, every 5th iteration
    assert a == b
    assert (by_cli / "config.toml").read_text() == (by_py / "config.toml").read_text()
    # A different seed gives a different run (the comparison can fail).
    mixpg.train(small_config, tmp_path / "other", seed=4, iterations=80,
                overrides={"algo.gamma": 0.95, "algo.name": "mpg-v1"})
    assert rows_without_timing(tmp_path / "other") != a


def test_read_progress_gives_numpy_columns(tmp_path, small_config):
    run = mixpg.train(small_config, tmp_path / "run", seed=0)
    p = mixpg.read_progress(run)
    assert list(p)[:3] == ["iteration", "wall_s", "env_steps"]
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in p.values())
    np.testing.assert_array_equal(p["iteration"], np.arange(0, 61, 5))
    evals = ~np.isnan(p["eval_return_mean"])
    np.testing.assert_array_equal(p["iteration"][evals], [0, 20, 40, 60])
    with pytest.raises(FileNotFoundError, match="progress.csv"):
        mixpg.read_progress(tmp_path / "nothing")


def test_policy_is_a_numpy_callable_and_pickles(tmp_path, small_config):
    run = mixpg.train(small_config, tmp_path / "run", seed=1)
    policy = mixpg.load_policy(run)
    assert (policy.task, policy.algo, policy.iteration) == ("lqr", "mpg_v2", 60)
    assert (policy.obs_dim, policy.act_dim) == (2, 1)
    obs = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    actions = policy(obs)
    assert actions.shape == (7, 1) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 2.0)
    # Read-only input (as arrays from ray.get are) and a non-contiguous view.
    frozen = obs.copy()
    frozen.setflags(write=False)
    np.testing.assert_array_equal(policy(frozen), actions)
    wide = np.zeros((7, 4), dtype=np.float32)
    wide[:, ::2] = obs
    np.testing.assert_array_equal(policy(wide[:, ::2]), actions)
    # Pickle round trip: same parameters, same actions.
    clone = pickle.loads(pickle.dumps(policy))
    assert clone.to_bytes() == policy.to_bytes()
    np.testing.assert_array_equal(clone(obs), actions)
    with pytest.raises(TypeError, match="float32"):
        policy(obs.astype(np.float64))
    with pytest.raises(ValueError, match="2 columns"):
        policy(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="truncated|header"):
        mixpg.Policy.from_bytes(policy.to_bytes()[:-3])
    with pytest.raises(RuntimeError, match="no checkpoint|config.toml"):
        mixpg.load_policy(tmp_path)


def test_vec_env_pickles_and_accepts_read_only_actions():
    env = mixpg.VecEnv("path-tracking", 4, 7)
    clone = pickle.loads(pickle.dumps(env))
    assert (clone.task, clone.num_agents, clone.obs_dim, clone.act_dim) == ("path_tracking", 4, 6, 2)
    np.testing.assert_array_equal(clone.reset(5), env.reset(5))
    actions = np.full((4, 2), 0.1, dtype=np.float32)
    actions.setflags(write=False)
    a, b = env.step(actions), clone.step(actions)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="unknown task"):
        mixpg.VecEnv("cartpole", 1)


def test_long_calls_release_the_gil(tmp_path, small_config):
    ticks = 0
    stop = threading.Event()

    def count():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    try:
        time.sleep(0.05)
        before = ticks
        start = time.perf_counter()
        mixpg.train(small_config, tmp_path / "run", seed=0, iterations=20000)
        elapsed = time.perf_counter() - start
        during = ticks - before
    finally:
        stop.set()
        t.join()
    assert elapsed > 0.2, "the call is too short to tell"
    # With the GIL held the counter thread could not run at all during the call; released,
    # it ticks up to once a millisecond (at least 5% of that on a loaded machine).
    assert during > max(10, 0.05 * elapsed * 1000), (during, elapsed)


def test_errors_are_clear(tmp_path, small_config):
    with pytest.raises(RuntimeError, match="cannot read config file"):
        mixpg.train(tmp_path / "missing.toml", tmp_path / "run")
    with pytest.raises(RuntimeError, match="algo.gamma"):
        mixpg.train(small_config, tmp_path / "run", overrides={"algo.gamma": 2.0})
    with pytest.raises(TypeError):
        mixpg.train(small_config, tmp_path / "run", overrides="algo.gamma=0.9")


def test_bench_runs_a_resumable_grid(tmp_path, small_config):
    configs = tmp_path / "configs" / "lqr"
    configs.mkdir(parents=True)
    (configs / "mpg_v2.toml").write_text(small_config.read_text())
    kwargs = dict(task="lqr", algos=["mpg-v2"], seeds=2, configs=tmp_path / "configs", report=False)
    runs = mixpg.bench(tmp_path / "grid", **kwargs)
    assert [(r["algo"], r["seed"], r["status"]) for r in runs] == [
        ("mpg_v2", 0, "finished"), ("mpg_v2", 1, "finished")]
    assert Path(runs[1]["dir"]) == tmp_path / "grid" / "lqr" / "mpg_v2" / "seed1"
    assert mixpg.read_progress(runs[0]["dir"])["iteration"][-1] == 60
    again = mixpg.bench(tmp_path / "grid", **kwargs)
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    with pytest.raises(RuntimeError, match="unknown algorithm"):
        mixpg.bench(tmp_path / "grid", task="lqr", algos=["nope"], configs=tmp_path / "configs")
    with pytest.raises(ValueError, match="preset"):
        mixpg.bench(tmp_path / "grid", preset="huge")


def test_report_and_analyze_bias_match_the_cli(tmp_path, cli, small_config):
    run = mixpg.train(small_config, tmp_path / "runs" / "run", seed=1,
                      overrides={"train.keep_checkpoints": 5})
    files = mixpg.report(tmp_path / "runs", tmp_path / "report")
    names = {f.name for f in files}
    assert {"table1.md", "table1.csv", "curves.png"} <= names
    assert "MPG-v2" in (tmp_path / "report" / "table1.md").read_text()
    # Several runs directories make one report; here both hold the same run, counted twice.
    mixpg.report([tmp_path / "runs", tmp_path / "runs"], tmp_path / "report2")
    assert "| 2 |" in (tmp_path / "report2" / "table1.md").read_text()

    rows = mixpg.analyze_bias(run, tmp_path / "bias", horizons=[0, 2], states=8,
                              reference_horizon=10, seed=3)
    # Checkpoints at 20, 40 and 60: a data row and model rows at n = 0 and 2 each.
    assert sorted({r["iteration"] for r in rows}) == [20, 40, 60]
    assert all(np.isfinite(r["relative_bias"]) and abs(r["cosine"]) <= 1 + 1e-9 for r in rows)
    subprocess.run([cli, "analyze-bias", "--run", run, "--horizons", "0,2", "--states", "8",
                    "--reference-horizon", "10", "--seed", "3", "--out", tmp_path / "bias-cli"],
                   check=True, capture_output=True)
    assert (tmp_path / "bias" / "bias.csv").read_text() == \
        (tmp_path / "bias-cli" / "bias.csv").read_text()
    with pytest.raises(ValueError):
        mixpg.analyze_bias(run, states=0)
    with pytest.raises(RuntimeError, match="no checkpoint|does not exist|cannot"):
        mixpg.analyze_bias(tmp_path / "nope")


def test_a_config_that_cannot_fit_in_memory_is_refused_before_it_starts(tmp_path, small_config):
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="algo.buffer_capacity = 1000000000000"):
        mixpg.train(small_config, tmp_path / "run",
                    overrides={"algo.buffer_capacity": 1_000_000_000_000})
    with pytest.raises(RuntimeError, match="algo.horizon = 51 exceeds the task's episode length 50"):
        mixpg.train(small_config, tmp_path / "run", overrides={"algo.horizon": 51})
    assert time.monotonic() - start < 5
    assert not (tmp_path / "run").exists()
