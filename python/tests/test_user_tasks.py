"""Any Gymnasium environment with a Box action space, and a prior model written in Python:
training, the run's files (task.toml, env.json, progress, report, policy), resume, the model
check, and clear errors for what mixpg cannot run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import mixpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from pendulum_model import PendulumModel  # noqa: E402

FAST = {
    "algo.warmup_samples": 300,
    "train.eval_interval": 200,
    "train.eval_episodes": 2,
    "network.hidden": [32, 32],
    "train.log_interval": 10,
}


def test_td3_trains_on_a_gymnasium_id_and_the_run_reads_back(tmp_path):
    out = mixpg.train("td3", tmp_path / "td3", env="Pendulum-v1", iterations=400, overrides=FAST)
    p = mixpg.read_progress(out)
    assert p["iteration"][-1] == 400
    assert p["env_steps"][-1] == 300 + 400  # warm-up, then one env step per iteration
    evals = p["eval_return_mean"][~np.isnan(p["eval_return_mean"])]
    assert len(evals) == 3 and np.all(evals < 0)
    assert np.all(np.isnan(p["model_error"])), "no model, no model_error"
    assert 'name = "Pendulum_v1"' in (out / "task.toml").read_text()
    policy = mixpg.load_policy(out)
    actions = policy(np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32))
    assert actions.shape == (16, 1) and np.all(np.abs(actions) <= 2.0)
    files = mixpg.report(out, tmp_path / "report")
    assert any(f.name == "curves.png" for f in files)


def test_mpg_v2_learns_through_a_numpy_prior_model(tmp_path):
    out = mixpg.train("mpg-v2", tmp_path / "mpg", env="Pendulum-v1", model=PendulumModel(),
                      iterations=200, overrides={**FAST, "algo.horizon": 5})
    p = mixpg.read_progress(out)
    err = p["model_error"][~np.isnan(p["model_error"])]
    assert len(err) > 0 and np.all(err > 0), "the mismatched model's one-step error is logged"
    assert np.all(np.isfinite(p["policy_loss"][~np.isnan(p["policy_loss"])]))


def test_check_model_finds_a_correct_vjp_and_the_mismatch(capsys):
    r = mixpg.check_model(PendulumModel(), "Pendulum-v1", states=64)
    assert r["vjp_obs_relative_error"] < 1e-3 and r["vjp_act_relative_error"] < 1e-3
    assert r["model_error"] > 1e-3, "mass and length are off"
    exact = mixpg.check_model(PendulumModel(0.0, 0.0), "Pendulum-v1", states=64, verbose=False)
    assert exact["model_error"] < 1e-4 and exact["reward_error"] < 1e-4
    assert "finite differences" in capsys.readouterr().out


class BrokenModel(PendulumModel):
    """A model that breaks in one way."""

    def __init__(self, how):
        super().__init__()
        self.how = how

    def step(self, obs, act):
        nxt, r = super().step(obs, act)
        if self.how == "shape":
            return nxt[:, :2], r
        if self.how == "dtype":
            return nxt.astype(np.float64), r
        if self.how == "nan":
            nxt[0, 0] = np.nan
        return nxt, r


@pytest.mark.parametrize("how, message", [
    ("shape", "next_obs has shape (256, 2), expected (256, 3)"),
    ("dtype", "next_obs has dtype float64; it must be float32"),
    ("nan", "next_obs holds a non-finite value"),
])
def test_a_broken_model_stops_the_run_naming_what_is_wrong(tmp_path, how, message):
    with pytest.raises(RuntimeError, match="a checkpoint was written") as e:
        mixpg.train("mpg-v2", tmp_path / how, env="Pendulum-v1", model=BrokenModel(how),
                    iterations=50, overrides=FAST)
    assert message in str(e.value)


def test_what_mixpg_cannot_run_is_refused_clearly(tmp_path):
    with pytest.raises(TypeError, match="Discrete"):
        mixpg.train("td3", tmp_path / "a", env="CartPole-v1")

    class NoVjp:
        def step(self, obs, act):
            return obs, obs[:, 0]

    with pytest.raises(RuntimeError, match="no `vjp` method"):
        mixpg.train("mpg-v2", tmp_path / "b", env="Pendulum-v1", model=NoVjp())
    with pytest.raises(RuntimeError, match="has none"):
        mixpg.train("mpg-v2", tmp_path / "c", env="Pendulum-v1")
    with pytest.raises(RuntimeError, match="cannot be set to a state"):
        mixpg.train("ndpg", tmp_path / "d", env="Pendulum-v1",
                    overrides={"algo.value_target": "env"})
    for d in "bcd":
        assert not (tmp_path / d / "progress.csv").exists()


class FlakyPendulum(gym.Wrapper):
    """Pendulum-v1 whose 700th step (over all instances) raises."""

    steps = 0

    def step(self, action):
        FlakyPendulum.steps += 1
        if FlakyPendulum.steps == 700:
            raise ConnectionError("the test rig dropped the link")
        return super().step(action)


def flaky():
    return FlakyPendulum(gym.make("Pendulum-v1"))


def test_an_environment_that_raises_stops_the_run_with_a_checkpoint(tmp_path):
    FlakyPendulum.steps = 0
    out = tmp_path / "flaky"
    with pytest.raises(RuntimeError) as e:
        mixpg.train("td3", out, env=flaky, iterations=1000, overrides=FAST)
    text = str(e.value)
    assert "ConnectionError" in text and "the test rig dropped the link" in text
    assert "a checkpoint was written" in text
    assert list((out / "checkpoints").iterdir()), "a final checkpoint"
    # The factory pickles (a module-level function), so the run resumes from env.json alone.
    mixpg.resume(out)
    assert mixpg.read_progress(out)["iteration"][-1] == 1000


def test_a_vector_env_steps_its_environments_per_iteration(tmp_path):
    env = gym.make_vec("Pendulum-v1", num_envs=3, vectorization_mode="sync")
    out = mixpg.train("sac", tmp_path / "vec", env=env, iterations=100, overrides=FAST)
    p = mixpg.read_progress(out)
    assert p["env_steps"][-1] == 300 + 3 * 100


class Ramp(gym.Env):
    """An environment of one's own, not registered: move a point to 0."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-2, 2, 1).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.x = (self.x + 0.1 * action).astype(np.float32)
        return self.x.copy(), -float(self.x[0] ** 2), False, False, {}


def test_a_live_env_without_a_spec_trains_and_is_refused_at_resume(tmp_path):
    env = gym.wrappers.TimeLimit(Ramp(), max_episode_steps=50)
    assert env.spec is None
    out = mixpg.train("td3", tmp_path / "live", env=env, iterations=50, overrides=FAST)
    with pytest.raises(ValueError, match="cannot be re-created; pass env="):
        mixpg.resume(out)
    assert math.isfinite(mixpg.read_progress(out)["eval_return_mean"][-1])
    assert 'name = "Ramp"' in (out / "task.toml").read_text()


def test_mpg_v2_learns_through_a_learned_model(tmp_path):
    learned = {**FAST, "algo.horizon": 5, "model.ensemble": 2, "model.hidden": [32, 32],
               "model.fit_every": 100, "model.warmup_steps": 300, "model.max_steps": 50}
    out = mixpg.train("mpg-v2", tmp_path / "learned", env="Pendulum-v1", model="learned",
                      iterations=200, overrides=learned)
    assert 'model = "learned"' in (out / "config.toml").read_text()
    p = mixpg.read_progress(out)
    for column in ("model_error", "model_disagreement"):
        cells = p[column][~np.isnan(p[column])]
        assert len(cells) > 0 and np.all(cells > 0), column
    assert np.all(np.isfinite(p["policy_loss"][~np.isnan(p["policy_loss"])]))
    mixpg.resume(out)  # the run is complete: a resume only reloads it
    with pytest.raises(ValueError, match="learned"):
        mixpg.train("mpg-v2", tmp_path / "bad", env="Pendulum-v1", model="lerned")
