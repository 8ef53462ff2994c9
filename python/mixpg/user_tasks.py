"""Gymnasium environments and Python prior models as mixpg tasks.

``mixpg.train(algo_or_config, out, env=..., model=...)`` trains on any Gymnasium environment
with a ``Box`` action space: ``env`` is a Gymnasium id, a factory returning an environment, an
environment, or a vector environment. Collection steps the environments from Python (an
:class:`EnvPool` steps all of a vectorized step's environments in one call); replay, updates and
evaluation run in Rust with the GIL released between steps. Gymnasium's episode rules hold:
targets bootstrap on ``truncated``, not on ``terminated``, and evaluation episodes end at
either; the policy's actions are in the action space's bounds; observations are float32.

A prior model (MPG-v1, MPG-v2 and n-step ADP need one) is any object with batched float32
methods, ``act`` in the environment's own units (what ``env.step`` receives)::

    step(obs, act) -> (next_obs, reward)           # or (next_obs, reward, terminated)
    vjp(obs, act, g_next_obs, g_reward) -> (g_obs, g_act)

``vjp`` is the vector-Jacobian product of ``step``: numpy with hand-written Jacobians,
``jax.vjp`` or ``torch.func.vjp`` all give it. :func:`check_model` checks it against finite
differences and measures the model's one-step mismatch with the environment.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

#: Name of the file in a run directory that says how to re-create its environment.
ENV_FILE = "env.json"
#: The pickled environment factory and prior model of a run, when they pickle.
FACTORY_FILE = "env_factory.pkl"
MODEL_FILE = "model.pkl"


def _settable(env: gym.Env) -> bool:
    """Whether ``env`` offers ``set_state(obs)``: one argument, the observation to restore."""
    method = getattr(env.unwrapped, "set_state", None)
    if not callable(method):
        return False
    try:
        params = [
            p
            for p in inspect.signature(method).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


def task_name(text: str) -> str:
    """A Gymnasium id or class name as a task name (letters, digits, ``_`` and ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", text) or "env"


def _time_limit(env: gym.Env) -> int | None:
    """The episode length of a ``TimeLimit`` among ``env``'s wrappers, if there is one."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env._max_episode_steps
        env = env.env
    return None


def task_spec(env: gym.Env, name: str, title: str | None = None) -> dict[str, Any]:
    """The mixpg task description of a Gymnasium environment; a clear error for what mixpg
    cannot learn (a non-Box action space, unbounded actions, no episode length)."""
    act, obs = env.action_space, env.observation_space
    if not isinstance(act, gym.spaces.Box):
        raise TypeError(
            f"{title or name}: mixpg learns continuous actions, and its action space is "
            f"{act}; use a Box action space"
        )
    if not isinstance(obs, gym.spaces.Box):
        raise TypeError(
            f"{title or name}: the observation space must be a Box (flatten it with "
            f"gymnasium.wrappers.FlattenObservation), got {obs}"
        )
    low = np.asarray(act.low, dtype=np.float64).reshape(-1)
    high = np.asarray(act.high, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            f"{title or name}: the action space {act} is unbounded; mixpg's policies act in a "
            "bounded box (rescale the actions, e.g. with gymnasium.wrappers.RescaleAction)"
        )
    spec = env.spec
    episode_len = getattr(spec, "max_episode_steps", None) or _time_limit(env)
    if not episode_len:
        raise ValueError(
            f"{title or name}: the environment has no episode length; wrap it in "
            "gymnasium.wrappers.TimeLimit (or register it with max_episode_steps)"
        )
    threshold = getattr(spec, "reward_threshold", None)
    return {
        "name": name,
        "title": title or name,
        "obs_dim": int(np.prod(obs.shape)),
        "action_low": [float(x) for x in low],
        "action_high": [float(x) for x in high],
        "episode_len": int(episode_len),
        "goals": [] if threshold is None else [float(threshold)],
        "min_requirement": None if threshold is None else float(threshold),
        "termination": "absorbing",
        "settable": _settable(env),
    }


class EnvPool:
    """``n`` environments stepped in one call, the simulator the Rust trainer steps: it keeps
    each environment's current observation, resets only when told (``reset_done``), and can
    step a subset (``active``)."""

    def __init__(self, make: Callable[[], gym.Env], n: int, seed: int, envs: list | None = None):
        self._make = make
        self.envs = list(envs or [])
        while len(self.envs) < n:
            self.envs.append(make())
        self.envs = self.envs[:n]
        first = self.envs[0]
        self._obs_dim = int(np.prod(first.observation_space.shape))
        self._act_dtype = first.action_space.dtype
        self.obs = np.zeros((n, self._obs_dim), dtype=np.float32)
        self.done = np.zeros(n, dtype=bool)
        self.reset(seed)

    def _flat(self, o: Any) -> np.ndarray:
        return np.asarray(o, dtype=np.float32).reshape(self._obs_dim)

    def reset(self, seed: int) -> np.ndarray:
        """Reset every environment, environment ``i`` with seed ``seed + i``."""
        for i, e in enumerate(self.envs):
            o, _ = e.reset(seed=int(seed) + i)
            self.obs[i] = self._flat(o)
        self.done[:] = False
        return self.obs

    def observe(self) -> np.ndarray:
        return self.obs

    def reset_done(self) -> np.ndarray:
        """Reset the environments whose last step ended their episode."""
        for i in np.flatnonzero(self.done):
            o, _ = self.envs[i].reset()
            self.obs[i] = self._flat(o)
        self.done[:] = False
        return self.obs

    def step(self, actions: np.ndarray, active: np.ndarray | None = None):
        """Step every environment (or those with ``active``); the others keep their state and
        report their observation, reward 0 and no flags."""
        n = len(self.envs)
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for i, e in enumerate(self.envs):
            if active is not None and not active[i]:
                continue
            o, r, te, tr, _ = e.step(np.asarray(actions[i], dtype=self._act_dtype))
            self.obs[i] = self._flat(o)
            reward[i], terminated[i], truncated[i] = r, te, tr
            self.done[i] = te or tr
        return self.obs.copy(), reward, terminated, truncated

    def set_state(self, states: np.ndarray) -> None:
        """Set the environments to ``states`` (one per row), adding or dropping environments
        so that there is one per row."""
        m = len(states)
        while len(self.envs) < m:
            e = self._make()
            e.reset()
            self.envs.append(e)
        del self.envs[m:]
        for e, s in zip(self.envs, states):
            e.unwrapped.set_state(np.asarray(s, dtype=np.float32))
        self.obs = np.array(states, dtype=np.float32).reshape(m, self._obs_dim)
        self.done = np.zeros(m, dtype=bool)


class EnvSource:
    """What ``env=`` names, resolved: how to make more environments, the environments given
    live (used first), the number of environments stepped per iteration, the task's name and
    description, and how a later session re-creates them."""

    def __init__(self, env: Any):
        self.live: list[gym.Env] = []
        self.factory: Callable[[], gym.Env] | None = None
        if isinstance(env, str):
            self.make = lambda: gym.make(env)
            self.record: dict[str, Any] = {"source": "id", "id": env}
            title, self.num_envs = env, 1
        elif isinstance(env, gym.vector.VectorEnv):
            self.num_envs = env.num_envs
            subs = getattr(env, "envs", None)
            if subs is None:
                fns = getattr(env, "env_fns", None)
                if fns is None:
                    raise TypeError(
                        "a vector env must be a SyncVectorEnv or AsyncVectorEnv (mixpg steps its "
                        "environments itself); pass a Gymnasium id or a factory instead"
                    )
                subs = [fn() for fn in fns]
            self.live = list(subs)
            self.make, self.record, title = self._like(self.live[0], self.live[0].spec)
        elif isinstance(env, gym.Env):
            self.num_envs = 1
            self.live = [env]
            self.make, self.record, title = self._like(env, env.spec)
        elif callable(env):
            self.factory = env
            self.make = env
            self.record = {"source": "factory"}
            self.num_envs = 1
            title = None
        else:
            raise TypeError(
                f"env must be a Gymnasium id, a factory returning an environment, an "
                f"environment or a vector environment; got {type(env).__name__}"
            )
        probe = self.live[0] if self.live else self.make()
        if title is None:
            title = probe.spec.id if probe.spec is not None else type(probe.unwrapped).__name__
        self.spec = task_spec(probe, task_name(title), title)
        if not self.live:
            self.live = [probe]

    @staticmethod
    def _like(env: gym.Env, spec: Any):
        """How to make more environments like a live one: from its registered spec, else by
        copying it."""
        if spec is not None and getattr(spec, "id", None):
            return (lambda: gym.make(spec)), {"source": "id", "id": spec.id}, spec.id
        return (lambda: copy.deepcopy(env)), {"source": "live"}, None

    def pools(self) -> Callable[[int, int], EnvPool]:
        """The factory the Rust side calls: ``(n, seed) -> EnvPool``, the live environments in
        the first pool of their size (the collector's)."""
        live = list(self.live)

        def make_pool(n: int, seed: int) -> EnvPool:
            given = []
            if live and len(live) == n:
                given = [live.pop() for _ in range(n)][::-1]
            return EnvPool(self.make, n, seed, given)

        return make_pool

    def save(self, out: Path, model: Any) -> None:
        """Write how to re-create the environment (and pickle the factory and the model when
        they pickle) into the run directory ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        record = dict(self.record)
        if self.factory is not None:
            record["pickled"] = _dump(self.factory, out / FACTORY_FILE)
        if model is not None:
            record["model_pickled"] = _dump(model, out / MODEL_FILE)
        tmp = out / (ENV_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, out / ENV_FILE)


def _dump(obj: Any, path: Path) -> bool:
    """Pickle ``obj`` to ``path`` (via a temporary name); False if it does not pickle."""
    try:
        data = pickle.dumps(obj)
    except Exception:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def source_of_run(run: Path, env: Any, model: Any):
    """The environment source and model a run is resumed with: those given, else re-created
    from the run's ``env.json`` (a Gymnasium id, or a pickled factory and model); an error that
    says so for a live environment or an unpicklable factory or model."""
    path = run / ENV_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {run} is not a run of a Python environment "
            "(built-in tasks resume with `mixpg resume --run DIR`)"
        )
    record = json.loads(path.read_text())
    if env is None:
        kind = record.get("source")
        if kind == "id":
            env = record["id"]
        elif kind == "factory" and record.get("pickled"):
            env = pickle.loads((run / FACTORY_FILE).read_bytes())
        else:
            what = "a live environment object" if kind == "live" else "a factory that does not pickle"
            raise ValueError(
                f"{run} was trained on {what}, which cannot be re-created; pass env= (a "
                "Gymnasium id or a factory) to mixpg.resume"
            )
    if model is None and "model_pickled" in record:
        if not record["model_pickled"]:
            raise ValueError(
                f"{run} was trained with a prior model that does not pickle; pass model= to "
                "mixpg.resume"
            )
        model = pickle.loads((run / MODEL_FILE).read_bytes())
    return EnvSource(env), model


def check_model(
    model: Any,
    env: Any,
    states: int = 64,
    seed: int = 0,
    eps: float = 1e-3,
    verbose: bool = True,
) -> dict[str, float]:
    """Check a prior model against its environment: its ``vjp`` against central finite
    differences of ``step`` (float64 sums of the float32 outputs, along random directions), and
    its one-step prediction of the environment's own transitions (the RMS errors of the next
    observation, as the ``model_error`` column measures, and of the reward). Prints a small
    table unless ``verbose`` is false; returns the numbers."""
    source = EnvSource(env)
    spec = source.spec
    rng = np.random.default_rng(seed)
    pool = EnvPool(source.make, 1, seed, source.live[:1])
    low, high = np.array(spec["action_low"]), np.array(spec["action_high"])
    obs, act, nxt, rew = [], [], [], []
    while len(obs) < states:
        a = rng.uniform(low, high).astype(np.float32)[None]
        o = pool.observe()[0].copy()
        o2, r, te, tr = pool.step(a)
        obs.append(o)
        act.append(a[0])
        nxt.append(o2[0])
        rew.append(r[0])
        if te[0] or tr[0]:
            pool.reset_done()
    obs, act = np.array(obs, np.float32), np.array(act, np.float32)
    nxt, rew = np.array(nxt, np.float32), np.array(rew, np.float32)
    out = model.step(obs, act)
    pred, pred_r = np.asarray(out[0]), np.asarray(out[1])
    g_next = rng.standard_normal(nxt.shape).astype(np.float32)
    g_rew = rng.standard_normal(rew.shape).astype(np.float32)
    g_obs, g_act = (np.asarray(x, np.float64) for x in model.vjp(obs, act, g_next, g_rew))

    def objective(o: np.ndarray, a: np.ndarray) -> float:
        n, r = model.step(o.astype(np.float32), a.astype(np.float32))[:2]
        return float(np.sum(np.asarray(n, np.float64) * g_next) + np.sum(np.asarray(r, np.float64) * g_rew))

    def directional(d_obs: np.ndarray, d_act: np.ndarray) -> tuple[float, float]:
        fd = (objective(obs + eps * d_obs, act + eps * d_act) - objective(obs - eps * d_obs, act - eps * d_act)) / (2 * eps)
        return fd, float(np.sum(g_obs * d_obs) + np.sum(g_act * d_act))

    result = {}
    for what, d_obs, d_act in [
        ("obs", rng.standard_normal(obs.shape), np.zeros_like(act)),
        ("act", np.zeros_like(obs), rng.standard_normal(act.shape)),
    ]:
        fd, vjp = directional(d_obs, d_act)
        result[f"vjp_{what}_relative_error"] = abs(fd - vjp) / max(abs(fd), 1e-12)
        result[f"vjp_{what}_fd"] = fd
        result[f"vjp_{what}"] = vjp
    result["model_error"] = float(np.sqrt(np.mean((pred - nxt) ** 2)))
    result["reward_error"] = float(np.sqrt(np.mean((pred_r - rew) ** 2)))
    if verbose:
        print(f"prior model check on {spec['title']} ({states} transitions, random actions)")
        print(f"  {'check':<34}{'value':>14}")
        for what in ("obs", "act"):
            print(
                f"  {'vjp vs finite differences (' + what + ')':<34}"
                f"{result[f'vjp_{what}_relative_error']:>13.2e}  (vjp {result[f'vjp_{what}']:.6g}, "
                f"finite differences {result[f'vjp_{what}_fd']:.6g})"
            )
        print(f"  {'one-step RMS error, next obs':<34}{result['model_error']:>14.6g}")
        print(f"  {'one-step RMS error, reward':<34}{result['reward_error']:>14.6g}")
    return result
