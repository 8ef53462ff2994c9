"""Gymnasium: registration, check_env, float32 observations, truncation at the episode
length (enforced in Rust), next-step autoreset, pickling, and an SB3 TD3 smoke test."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import mixpg
from mixpg.envs import MixpgEnv, MixpgVectorEnv

IDS = {"mixpg/PathTracking-v0": ("path_tracking", 6, 2, 200),
       "mixpg/InvertedPendulum-v0": ("pendulum", 4, 1, 100)}


@pytest.mark.parametrize("env_id", list(IDS))
def test_registered_with_both_entry_points(env_id):
    task, obs_dim, act_dim, _ = IDS[env_id]
    spec = gym.spec(env_id)
    assert spec.entry_point == "mixpg.envs:MixpgEnv"
    assert spec.vector_entry_point == "mixpg.envs:MixpgVectorEnv"
    env = gym.make(env_id)
    assert env.unwrapped.task == task
    assert env.observation_space.shape == (obs_dim,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == (act_dim,)
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    assert isinstance(venv.unwrapped, MixpgVectorEnv) and venv.num_envs == 3
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, obs_dim) and obs.dtype == np.float32
    assert venv.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", list(IDS))
def test_check_env_passes(env_id):
    check_env(MixpgEnv(IDS[env_id][0]))
    check_env(gym.make(env_id).unwrapped)


def steer(obs: np.ndarray) -> np.ndarray:
    """A simple path-tracking controller (lateral and heading error feedback) that keeps
    some agents on the road for a whole episode."""
    obs = np.atleast_2d(obs)
    a = np.zeros((len(obs), 2), dtype=np.float32)
    a[:, 0] = np.clip(-0.05 * obs[:, 3] - 0.3 * obs[:, 4], -1, 1)
    a[:, 1] = np.clip(-0.5 * obs[:, 0], -1, 1)
    return a


def test_single_env_truncates_at_the_episode_length():
    env = MixpgEnv("path-tracking")
    full = 0
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        for t in range(1, 201):
            obs, reward, terminated, truncated, _ = env.step(steer(obs)[0])
            assert obs.dtype == np.float32 and isinstance(reward, float)
            assert truncated == (t == 200 and not terminated)
            if terminated or truncated:
                break
        full += truncated
    assert full > 0, "the controller finishes some episodes"
    again, _ = env.reset(seed=1)
    first, _ = MixpgEnv("path_tracking").reset(seed=1)
    np.testing.assert_array_equal(again, first)


def test_vector_env_truncates_then_resets_on_the_next_step():
    n = 64
    env = MixpgVectorEnv("path_tracking", num_envs=n)
    obs, _ = env.reset(seed=1)
    lengths = np.zeros(n, dtype=int)
    for t in range(1, 202):
        obs, reward, terminated, truncated, _ = env.step(steer(obs))
        lengths = np.where(lengths < 0, 0, lengths + 1)
        np.testing.assert_array_equal(truncated, lengths == 200)
        if t == 200:
            assert truncated.sum() > 0, "some agents reach the episode length"
            ended = terminated | truncated
        if t == 201:
            # Step 201: every agent that ended at step 200 is reset (reward 0, no flags).
            assert np.all(reward[ended] == 0.0) and not np.any(truncated | terminated)
        lengths[terminated | truncated] = -1


def test_vector_env_autoresets_on_the_next_step():
    n = 16
    env = MixpgVectorEnv("pendulum", num_envs=n, seed=0)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    ended = np.zeros(n, dtype=bool)
    lengths = np.zeros(n, dtype=int)
    resets = 0
    for _ in range(300):
        actions = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
        nxt, reward, terminated, truncated, _ = env.step(actions)
        assert nxt.dtype == np.float32 and nxt.shape == (n, 4)
        # Agents that ended last step: the reset observation, reward 0, no flags.
        assert np.all(reward[ended] == 0.0)
        assert not np.any(terminated[ended] | truncated[ended])
        assert np.all(np.abs(nxt[ended]) <= 0.011), "a reset state of the pendulum"
        resets += int(ended.sum())
        lengths = np.where(ended, 0, lengths + 1)
        assert np.all(lengths <= 100)
        np.testing.assert_array_equal(truncated, lengths == 100)
        ended = terminated | truncated
    assert resets > n, "random actions end many pendulum episodes"


def test_vector_env_seeding_and_pickling():
    a = MixpgVectorEnv("path_tracking", num_envs=8, seed=0)
    b = pickle.loads(pickle.dumps(a))
    oa, _ = a.reset(seed=11)
    ob, _ = b.reset(seed=11)
    np.testing.assert_array_equal(oa, ob)
    actions = np.random.default_rng(1).uniform(-1, 1, (8, 2)).astype(np.float32)
    for x, y in zip(a.step(actions)[:4], b.step(actions)[:4]):
        np.testing.assert_array_equal(x, y)
    oc, _ = a.reset(seed=12)
    assert not np.array_equal(oa, oc)
    with pytest.raises(ValueError, match="one int"):
        a.reset(seed=[1, 2])


def test_sb3_td3_trains_a_few_hundred_steps(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    env = gym.make("mixpg/InvertedPendulum-v0")
    model = sb3.TD3("MlpPolicy", env, learning_starts=100, seed=0, verbose=0,
                    policy_kwargs={"net_arch": [32, 32]})
    model.learn(total_timesteps=300)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action.astype(np.float32))
