"""mixpg against Stable-Baselines3 on Gymnasium tasks nobody here wrote, side by side in one run,
one thread each (SB3's torch and mixpg's learning core).

    python python/benchmarks/gym_vs_sb3.py [--seeds 3] [--only pendulum,mpg,cheetah] [--out DIR]
        [--mpg-steps N] [--td3-steps N] [--reuse]

Needs stable-baselines3, torch and gymnasium[mujoco] next to mixpg (a benchmark venv; none of
them is a dependency of mixpg). Four parts:

1. ``Pendulum-v1``, 20 000 env steps, TD3 and SAC at RL Zoo's settings: the final policy's return
   (10 deterministic episodes, the same seeds for both) and the training wall-clock.
2. ``Pendulum-v1`` with a deliberately mismatched prior model written in Python
   (``examples/pendulum_model.py``: mass +15 %, length −10 %): the env steps mixpg's MPG-v2 and
   TD3 need to reach −200 (evaluated every 1000 steps).
3. MuJoCo ``HalfCheetah-v5``, TD3 at RL Zoo's settings, 50 000 env steps: return and wall-clock.
4. mixpg's cost per iteration: the environment's own step (in Python), the crossing between
   Rust and Python, and the update (from ``progress.csv``).

Training time excludes evaluation: mixpg evaluates only at its first and last iteration (a few
hundred env steps, counted), SB3 not at all; both final policies are evaluated afterwards by the
same loop. The script prints one table per part with medians and the ratio, and the line
``gym_vs_sb3: done``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import mixpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from pendulum_model import PendulumModel  # noqa: E402

EVAL_EPISODES = 10
#: Multiplies env steps and warm-ups (--scale).
SCALE = 1.0
#: Reuse a mixpg run whose directory already holds a finished run of the same length (--reuse).
REUSE = False
#: mixpg's algo.warmup_actions (--warmup).
WARMUP = "uniform"


def evaluate(policy, env_id: str, seed: int) -> float:
    """Mean return of ``policy(obs_batch) -> actions`` over 10 deterministic episodes."""
    env = gym.make(env_id)
    returns = []
    for i in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=10_000 * seed + i)
        total, done = 0.0, False
        while not done:
            a = policy(np.asarray(obs, dtype=np.float32)[None])[0]
            obs, r, term, trunc, _ = env.step(a)
            total += r
            done = term or trunc
        returns.append(total)
    return float(np.mean(returns))


class TimedStep(gym.Wrapper):
    """Counts the time spent inside the wrapped environment's ``step``."""

    seconds = 0.0

    def step(self, action):
        t = time.perf_counter()
        out = super().step(action)
        TimedStep.seconds += time.perf_counter() - t
        return out


# RL Zoo (rl-baselines3-zoo, hyperparams/td3.yml and sac.yml) settings, and the same in mixpg's
# keys. SB3's learning_starts acts uniformly at random; mixpg's warm-up does the same with
# algo.warmup_actions = "uniform" (--warmup, the default here) or acts with the initial policy
# and its exploration noise (--warmup policy, the paper's warm-up).
ZOO = {
    ("td3", "Pendulum-v1"): dict(
        sb3=dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000, learning_rate=1e-3,
                 batch_size=256, train_freq=1, gradient_steps=1, noise_std=0.1,
                 policy_kwargs=dict(net_arch=[400, 300])),
        mixpg={"algo.gamma": 0.98, "algo.buffer_capacity": 200_000, "algo.warmup_samples": 10_000,
               "algo.explore_noise": 0.1, "network.hidden": [400, 300]},
    ),
    ("sac", "Pendulum-v1"): dict(
        sb3=dict(learning_rate=1e-3),
        mixpg={"algo.q_lr": "{ initial = 1e-3, final_lr = 1e-3, steps = 1 }",
               "algo.policy_lr": "{ initial = 1e-3, final_lr = 1e-3, steps = 1 }",
               "algo.warmup_samples": 100},
    ),
    ("td3", "HalfCheetah-v5"): dict(
        sb3=dict(learning_starts=10_000, learning_rate=1e-3, batch_size=256, train_freq=1,
                 gradient_steps=1, noise_std=0.1, policy_kwargs=dict(net_arch=[400, 300])),
        mixpg={"algo.warmup_samples": 10_000, "algo.explore_noise": 0.1,
               "network.hidden": [400, 300]},
    ),
}


def run_mixpg(algo: str, env_id: str, steps: int, seed: int, out: Path, model=None,
              overrides: dict | None = None, eval_interval: int | None = None) -> dict:
    """Train mixpg for ``steps`` env steps (warm-up included); wall-clock, return, cost split."""
    sets = dict(ZOO.get((algo, env_id), {}).get("mixpg", {}))
    sets["algo.warmup_actions"] = WARMUP
    sets.update(overrides or {})
    steps = int(steps * SCALE)
    warmup = int(int(sets.get("algo.warmup_samples", 10_000)) * SCALE)
    sets["algo.warmup_samples"] = warmup
    iterations = steps - warmup
    eval_interval = eval_interval and max(int(eval_interval * SCALE), 1)
    sets.setdefault("train.eval_interval", eval_interval or iterations)
    sets.setdefault("train.checkpoint_interval", iterations)
    sets.setdefault("train.log_interval", 100)
    TimedStep.seconds = 0.0
    reused = REUSE and (out / "progress.csv").is_file() and \
        int(mixpg.read_progress(out)["iteration"][-1]) == iterations
    t, c = time.perf_counter(), time.process_time()
    if not reused:
        mixpg.train(algo, out, env=lambda: TimedStep(gym.make(env_id)), model=model,
                    seed=seed, iterations=iterations, overrides=sets)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    p = mixpg.read_progress(out)
    if reused:  # timings of another process: the run's own wall clock, no CPU time
        wall, cpu = float(p["wall_s"][-1]), None
        print(f"reusing the finished run {out}", flush=True)
    upd = p["update_time_ms"][~np.isnan(p["update_time_ms"])]
    evals = [(int(k), float(v)) for k, v in zip(p["env_steps"], p["eval_return_mean"]) if not np.isnan(v)]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "return": evaluate(mixpg.load_policy(out), env_id, seed),
        "evals": evals,
        "env_ms": None if reused else 1e3 * TimedStep.seconds / steps,
        "update_ms": float(np.mean(upd)),
        "iter_ms": 1e3 * p["wall_s"][-1] / iterations,
        "iterations": iterations,
    }


def run_sb3(algo: str, env_id: str, steps: int, seed: int, out: Path) -> dict:
    """Train SB3 for ``steps`` env steps; with --reuse, the result kept in ``out`` by an
    earlier run of the script, if there is one."""
    if REUSE and out.is_file():
        print(f"reusing the SB3 result {out}", flush=True)
        return json.loads(out.read_text())
    r = _run_sb3(algo, env_id, steps, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(r))
    tmp.replace(out)
    return r


def _run_sb3(algo: str, env_id: str, steps: int, seed: int) -> dict:
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    torch.set_num_threads(1)
    kw = dict(ZOO[(algo, env_id)]["sb3"])
    steps = int(steps * SCALE)
    if "learning_starts" in kw:
        kw["learning_starts"] = int(kw["learning_starts"] * SCALE)
    env = gym.make(env_id)
    if algo == "td3":
        n = env.action_space.shape[0]
        kw["action_noise"] = NormalActionNoise(np.zeros(n), kw.pop("noise_std") * np.ones(n))
    cls = TD3 if algo == "td3" else SAC
    model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kw)
    t, c = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    policy = lambda obs: model.predict(obs, deterministic=True)[0]  # noqa: E731
    return {"wall_s": wall, "cpu_s": cpu, "return": evaluate(policy, env_id, seed)}


def table(title: str, rows: list[tuple[str, list[dict]]], keys: list[str]) -> None:
    print(f"\n{title}")
    print(f"{'':<18}" + "".join(f"{k:>16}" for k in keys))
    for name, runs in rows:
        cells = []
        for k in keys:
            v = [r[k] for r in runs if r.get(k) is not None]
            cells.append(f"{statistics.median(v):>16.2f}" if v else f"{'-':>16}")
        print(f"{name:<18}" + "".join(cells))


def ratios(m: list[dict], s: list[dict]) -> None:
    """SB3 / mixpg, of the medians of wall-clock and of process CPU time (the CPU time is the
    fairer measure on a loaded machine: both sides run one thread)."""
    for k, what in (("wall_s", "wall-clock"), ("cpu_s", "CPU time")):
        a, b = [x[k] for x in s if x[k] is not None], [x[k] for x in m if x[k] is not None]
        if a and b:
            print(f"{what} ratio SB3 / mixpg: {statistics.median(a) / statistics.median(b):.2f}x")


def first_reaching(evals: list[tuple[int, float]], goal: float) -> int | None:
    return next((k for k, r in evals if r >= goal), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="pendulum,mpg,cheetah")
    ap.add_argument("--cheetah-seeds", type=int, default=None)
    ap.add_argument("--mpg-steps", type=int, default=20_000,
                    help="env steps of each MPG-v2 run in part 2 (TD3 always runs 20 000); a "
                         "seed that has not reached -200 by then counts as not reaching it")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--td3-steps", type=int, default=20_000,
                    help="env steps of each TD3 run in part 2")
    ap.add_argument("--reuse", action="store_true",
                    help="with --out: take mixpg runs already finished there instead of training "
                         "them again (their wall clock from progress.csv, no CPU time), and SB3 "
                         "results kept there")
    ap.add_argument("--warmup", choices=("uniform", "policy"), default="uniform",
                    help="mixpg's algo.warmup_actions: uniform in the action box as SB3's "
                         "learning_starts (default), or the initial policy with its noise")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every run's env steps and warm-up (a quick check of the script)")
    args = ap.parse_args()
    global SCALE, REUSE, WARMUP
    SCALE, REUSE, WARMUP = args.scale, args.reuse, args.warmup
    parts = set(args.only.split(","))
    root = args.out or Path(tempfile.mkdtemp(prefix="gym_vs_sb3-"))
    results: dict = {}
    print(f"runs under {root}")

    if "pendulum" in parts:
        for algo in ("td3", "sac"):
            m, s = [], []
            for seed in range(args.seeds):
                m.append(run_mixpg(algo, "Pendulum-v1", 20_000, seed, root / f"pendulum-{algo}-{seed}"))
                s.append(run_sb3(algo, "Pendulum-v1", 20_000, seed,
                                 root / f"sb3-pendulum-{algo}-{seed}.json"))
                print(f"Pendulum-v1 {algo} seed {seed}: mixpg {m[-1]['return']:.1f} in "
                      f"{m[-1]['wall_s']:.1f} s, SB3 {s[-1]['return']:.1f} in {s[-1]['wall_s']:.1f} s",
                      flush=True)
            results[f"pendulum_{algo}"] = {"mixpg": m, "sb3": s}
            table(f"Pendulum-v1, {algo.upper()}, 20 000 env steps, {args.seeds} seeds (medians)",
                  [("mixpg", m), ("Stable-Baselines3", s)], ["return", "wall_s", "cpu_s"])
            ratios(m, s)

    if "mpg" in parts:
        reach = {"mpg_v2": [], "td3": []}
        for seed in range(args.seeds):
            for algo in reach:
                steps = args.mpg_steps if algo == "mpg_v2" else args.td3_steps
                r = run_mixpg(algo, "Pendulum-v1", steps, seed, root / f"mpg-{algo}-{seed}",
                              model=PendulumModel() if algo == "mpg_v2" else None,
                              overrides={"algo.warmup_samples": 1000, "algo.gamma": 0.98},
                              eval_interval=1000)
                r["reach"] = first_reaching(r["evals"], -200.0)
                reach[algo].append(r)
                print(f"Pendulum-v1 {algo} seed {seed}: reaches -200 at env step {r['reach']}, "
                      f"final {r['return']:.1f}", flush=True)
        results["mismatched_model"] = reach
        print("\nPendulum-v1 with a mismatched Python prior model (mass +15 %, length -10 %):"
              " env steps to reach -200 (median of seeds; None: not within the run's steps, "
              f"MPG-v2 {args.mpg_steps}, TD3 {args.td3_steps})")
        for algo, runs in reach.items():
            ks = [r["reach"] for r in runs]
            hit = [k for k in ks if k is not None]
            med = statistics.median(hit) if len(hit) == len(ks) else None
            print(f"  {algo:<8} per seed {ks}  median {med}")

    if "cheetah" in parts:
        m, s = [], []
        for seed in range(args.cheetah_seeds or args.seeds):
            m.append(run_mixpg("td3", "HalfCheetah-v5", 50_000, seed, root / f"cheetah-{seed}"))
            s.append(run_sb3("td3", "HalfCheetah-v5", 50_000, seed, root / f"sb3-cheetah-{seed}.json"))
            print(f"HalfCheetah-v5 td3 seed {seed}: mixpg {m[-1]['return']:.1f} in "
                  f"{m[-1]['wall_s']:.1f} s, SB3 {s[-1]['return']:.1f} in {s[-1]['wall_s']:.1f} s",
                  flush=True)
        results["cheetah_td3"] = {"mixpg": m, "sb3": s}
        table("HalfCheetah-v5, TD3, 50 000 env steps (medians)",
              [("mixpg", m), ("Stable-Baselines3", s)], ["return", "wall_s", "cpu_s"])
        ratios(m, s)

    runs = [r for v in results.values() if isinstance(v, dict) for rs in v.values() for r in rs
            if "update_ms" in r]
    if runs:
        print("\nmixpg cost per iteration (ms, medians): env step inside Gymnasium, Rust <-> Python "
              "crossing (collection minus the env's step), update")
        by_task: dict = {}
        for name, v in results.items():
            for side, rs in v.items():
                for r in rs:
                    if "update_ms" in r and r["env_ms"] is not None:
                        by_task.setdefault(name.split("_")[0] + " " + side, []).append(r)
        print(f"  {'':<20}{'iteration':>12}{'env step':>12}{'crossing':>12}{'update':>12}")
        for name, rs in by_task.items():
            it = statistics.median(r["iter_ms"] for r in rs)
            env_ms = statistics.median(r["env_ms"] for r in rs)
            upd = statistics.median(r["update_ms"] for r in rs)
            print(f"  {name:<20}{it:>12.3f}{env_ms:>12.3f}{max(it - env_ms - upd, 0):>12.3f}{upd:>12.3f}")
    (root / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("gym_vs_sb3: done")


if __name__ == "__main__":
    main()
