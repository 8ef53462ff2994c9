"""MPG-v2 through a learned dynamics model against mixpg's TD3 and SAC, at equal env steps, on
Gymnasium tasks that come with no model (issue 19).

    python python/benchmarks/learned_model_gym.py --out DIR [--tasks pendulum,cheetah]
        [--algos mpg_v2,td3,sac] [--seeds 0,1,2] [--scale 1.0] [--set KEY=VALUE ...]

Needs gymnasium[mujoco] next to mixpg (a benchmark venv). Per task, every algorithm gets the same
env steps, warm-up (uniform actions, as SB3's ``learning_starts``), discount, batch, learning
rates and [400, 300] networks (RL Zoo's TD3 settings); MPG-v2 learns through ``model="learned"``
(``task.model = "learned"``: an ensemble of 5 MLPs of 2×200 fitted to the replay every 250
iterations, horizon 10, the generic config's defaults). mixpg evaluates every ``eval`` env steps
(10 deterministic episodes).

* ``Pendulum-v1``: 20 000 env steps, 1000 of warm-up, γ = 0.98, evaluated every 1000; goal −200.
* ``HalfCheetah-v5``: 100 000 env steps, 10 000 of warm-up, γ = 0.99, evaluated every 5000; goal
  4800 (Gymnasium's reward threshold).

Runs are resumable: a finished run in ``DIR`` is reused, an unfinished one continues from its
newest checkpoint (``mixpg.resume``), so the grid can span sessions. At the end the script writes
``DIR/results-<tasks>.json``, prints per task the final return of every run, the medians, the env
steps at which each run first reached the task's goal and TD3's median final return, and how
many MPG-v2 seeds reached the latter within half the env steps (the issue's goal), and reports
each task's runs with ``mixpg.report`` into ``DIR/report-<task>`` (learning curves, Table-I
style table). It ends with the line
``learned_model_gym: done``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import gymnasium as gym
import numpy as np

import mixpg
from gym_vs_sb3 import first_reaching  # this script's directory is on sys.path

TASKS = {
    "pendulum": dict(env="Pendulum-v1", steps=20_000, warmup=1_000, gamma=0.98, eval=1_000,
                     buffer=200_000, goal=-200.0),
    "cheetah": dict(env="HalfCheetah-v5", steps=100_000, warmup=10_000, gamma=0.99, eval=5_000,
                    buffer=1_000_000, goal=4800.0),
}


def settings(task: dict, scale: float) -> tuple[int, dict]:
    """The run's iterations and the config keys every algorithm of ``task`` shares."""
    steps, warmup = int(task["steps"] * scale), int(task["warmup"] * scale)
    every = max(int(task["eval"] * scale), 1)
    iterations = steps - warmup
    return iterations, {
        "algo.gamma": task["gamma"],
        "algo.buffer_capacity": task["buffer"],
        "algo.warmup_samples": warmup,
        "algo.warmup_actions": "uniform",
        "algo.batch_size": 256,
        "algo.explore_noise": 0.1,
        "algo.q_lr": "{ initial = 1e-3, final_lr = 1e-3, steps = 1 }",
        "algo.policy_lr": "{ initial = 1e-3, final_lr = 1e-3, steps = 1 }",
        "network.hidden": [400, 300],
        "train.eval_interval": every,
        "train.eval_episodes": 10,
        "train.checkpoint_interval": 2 * every,
        "train.log_interval": 100,
    }


def finished(out: Path, iterations: int) -> bool:
    return (out / "progress.csv").is_file() and \
        int(mixpg.read_progress(out)["iteration"][-1]) == iterations


def run(algo: str, task: dict, seed: int, out: Path, scale: float, extra: dict) -> dict:
    """Train (or reuse, or resume) one run, with the overrides `extra` after the shared ones;
    its evaluations as (env steps, return)."""
    iterations, sets = settings(task, scale)
    sets.update(extra)
    env = lambda: gym.make(task["env"])  # noqa: E731
    if finished(out, iterations):
        print(f"reusing the finished run {out}", flush=True)
    elif (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        print(f"resuming {out}", flush=True)
        mixpg.resume(out, env=env)
    else:
        mixpg.train(algo, out, env=env, model="learned" if algo == "mpg_v2" else None,
                    seed=seed, iterations=iterations, overrides=sets)
    p = mixpg.read_progress(out)
    evals = [(int(k), float(v)) for k, v in zip(p["env_steps"], p["eval_return_mean"])
             if not np.isnan(v)]
    return {"algo": algo, "seed": seed, "dir": str(out), "evals": evals,
            "final": evals[-1][1], "wall_s": float(p["wall_s"][-1])}


def summarize(name: str, task: dict, runs: list[dict], scale: float) -> dict:
    """Print the task's finals and the goal's reading; returns them."""
    steps = int(task["steps"] * scale)
    print(f"\n{task['env']}, {steps} env steps: final return (10 deterministic episodes)")
    finals = {}
    for algo in dict.fromkeys(r["algo"] for r in runs):
        f = [r["final"] for r in runs if r["algo"] == algo]
        finals[algo] = statistics.median(f)
        per = ", ".join(f"{x:.1f}" for x in f)
        print(f"  {algo:<8} median {finals[algo]:>9.1f}   per seed {per}")
    summary = {"steps": steps, "median_final": finals}

    def reaching(goal: float, what: str) -> dict:
        print(f"  env steps to {what} {goal:.1f} (None: not reached)")
        reach = {}
        for algo in finals:
            reach[algo] = [first_reaching(r["evals"], goal) for r in runs if r["algo"] == algo]
            print(f"  {algo:<8} per seed {reach[algo]}")
        return reach

    summary["goal_reach"] = reaching(task["goal"], "the task's goal")
    if "td3" in finals:
        reach = reaching(finals["td3"], "TD3's median final")
        summary.update(td3_final=finals["td3"], reach=reach)
        if "mpg_v2" in reach:
            half = [k is not None and k <= steps // 2 for k in reach["mpg_v2"]]
            print(f"  MPG-v2 within half the env steps ({steps // 2}): {sum(half)} of "
                  f"{len(half)} seeds (the issue's goal)")
            summary["goal_met"] = sum(half)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tasks", default="pendulum,cheetah")
    ap.add_argument("--algos", default="mpg_v2,td3,sac")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply env steps, warm-up and evaluation interval (a quick check)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every run of this call, after the shared "
                         "settings (repeatable; e.g. --algos mpg_v2 --set algo.horizon=3)")
    ap.add_argument("--no-report", action="store_true", help="skip mixpg.report")
    args = ap.parse_args()
    extra = {}
    for kv in args.set:
        key, eq, value = kv.partition("=")
        if not eq or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {kv!r}")
        extra[key.strip()] = value.strip()
    seeds = [int(s) for s in args.seeds.split(",")]
    algos = args.algos.split(",")
    results = {}
    for name in args.tasks.split(","):
        if name not in TASKS:
            raise SystemExit(f"unknown task {name!r}: use {', '.join(TASKS)}")
        task = TASKS[name]
        runs = []
        for seed in seeds:  # seed-major: every algorithm's seed 0 first
            for algo in algos:
                r = run(algo, task, seed, args.out / name / f"{algo}-{seed}", args.scale, extra)
                print(f"{task['env']} {algo} seed {seed}: final {r['final']:.1f} "
                      f"({r['wall_s']:.0f} s)", flush=True)
                runs.append(r)
        results[name] = {"runs": runs, "summary": summarize(name, task, runs, args.scale)}
        if not args.no_report:
            mixpg.report(args.out / name, args.out / f"report-{name}")
    path = args.out / ("results-" + "-".join(args.tasks.split(",")) + ".json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)
    print("learned_model_gym: done")


if __name__ == "__main__":
    main()
