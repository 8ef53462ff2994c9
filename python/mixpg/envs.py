"""Gymnasium environments over mixpg's Rust simulators.

``MixpgEnv`` is one agent (``gymnasium.Env``); ``MixpgVectorEnv`` is ``num_envs`` agents
stepped in one native call (``gymnasium.vector.VectorEnv``) with next-step autoreset. The
episode length is enforced in Rust (``truncated``), observations are float32.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ._native import VecEnv, task_info

#: Gymnasium ids and the mixpg task each one runs.
ENV_IDS = {
    "mixpg/PathTracking-v0": "path_tracking",
    "mixpg/InvertedPendulum-v0": "pendulum",
}


def _spaces(task: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    info = task_info(task)
    obs = gym.spaces.Box(-np.inf, np.inf, shape=(info["obs_dim"],), dtype=np.float32)
    act = gym.spaces.Box(
        np.array(info["action_low"], dtype=np.float32),
        np.array(info["action_high"], dtype=np.float32),
        dtype=np.float32,
    )
    return obs, act


class MixpgEnv(gym.Env):
    """One agent of a mixpg task."""

    metadata = {"render_modes": []}

    def __init__(self, task: str, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError("mixpg environments do not render")
        self._native = VecEnv(task, 1, 0)
        self.task = self._native.task
        self.observation_space, self.action_space = _spaces(self.task)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self._native.reset(seed)[0], {}

    def step(self, action):
        a = np.asarray(action, dtype=np.float32).reshape(1, -1)
        obs, reward, terminated, truncated = self._native.step(a)
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}


class MixpgVectorEnv(VectorEnv):
    """``num_envs`` agents of a mixpg task, stepped in one native call, next-step autoreset:
    the step after an agent's episode ends returns its reset observation with reward 0 and
    ignores its action."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, task: str, num_envs: int = 1, seed: int = 0, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError("mixpg environments do not render")
        self._native = VecEnv(task, num_envs, seed)
        self.task = self._native.task
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.task)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError("a mixpg vector env is seeded with one int (its agents share a generator)")
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        return self._native.reset(seed), {}

    def step(self, actions):
        obs, reward, terminated, truncated = self._native.step(
            np.asarray(actions, dtype=np.float32)
        )
        return obs, reward, terminated, truncated, {}


def register_envs() -> None:
    """Register the mixpg ids with Gymnasium (idempotent)."""
    for env_id, task in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="mixpg.envs:MixpgEnv",
            vector_entry_point="mixpg.envs:MixpgVectorEnv",
            kwargs={"task": task},
            disable_env_checker=False,
        )
