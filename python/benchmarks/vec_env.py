"""Agent-steps per second through the Gymnasium vector environment (issue target: path
tracking at 512 agents >= 5 M agent-steps/s).

    .venv/bin/python python/benchmarks/vec_env.py [--task path_tracking] [--agents 512] [--seconds 5]

Measures ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` stepping with
uniform random actions (pre-drawn, so the policy's cost is not measured), and the bare native
``mixpg.VecEnv.step`` for comparison; each over ``--seconds`` after a warm-up, best of
``--repeats``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import mixpg
from mixpg.envs import ENV_IDS


def rate(step, actions: list[np.ndarray], agents: int, seconds: float) -> float:
    """Agent-steps per second of ``step`` over about ``seconds``."""
    for a in actions:
        step(a)
    steps, start, k = 0, time.perf_counter(), len(actions)
    while True:
        for _ in range(256):
            step(actions[steps % k])
            steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * agents / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="path_tracking", choices=sorted(set(ENV_IDS.values())))
    p.add_argument("--agents", type=int, default=512)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    env_id = next(i for i, t in ENV_IDS.items() if t == args.task)
    venv = gym.make_vec(env_id, num_envs=args.agents, vectorization_mode="vector_entry_point")
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    space = venv.single_action_space
    actions = [
        rng.uniform(space.low, space.high, size=(args.agents, *space.shape)).astype(np.float32)
        for _ in range(16)
    ]
    native = mixpg.VecEnv(args.task, args.agents, 0)
    native.reset(0)
    gym_rate = max(rate(venv.step, actions, args.agents, args.seconds) for _ in range(args.repeats))
    native_rate = max(rate(native.step, actions, args.agents, args.seconds) for _ in range(args.repeats))
    print(f"{env_id}, {args.agents} agents, random actions, best of {args.repeats} x {args.seconds:g} s:")
    print(f"  gymnasium vector env : {gym_rate / 1e6:8.2f} M agent-steps/s")
    print(f"  native VecEnv.step   : {native_rate / 1e6:8.2f} M agent-steps/s")


if __name__ == "__main__":
    main()
