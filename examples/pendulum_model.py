"""A deliberately mismatched prior model of Gymnasium's ``Pendulum-v1`` in numpy, with its
vector-Jacobian product written by hand, and MPG-v2 trained through it:
``python examples/pendulum_model.py [ITERATIONS] [OUT_DIR]``.

The environment: ``obs = [cos θ, sin θ, θ']``, torque ``u ∈ [−2, 2]``, ``dt = 0.05``,
``θ'' = 3g/(2l)·sin θ + 3/(ml²)·u`` (Euler, ``θ'`` clipped to ±8), reward
``−(θ² + 0.1θ'² + 0.001u²)``. The model gets the mass 15 % heavy and the length 10 % short.
"""

from __future__ import annotations

import sys

import numpy as np

G, DT, MAX_SPEED = 10.0, 0.05, 8.0


class PendulumModel:
    """``Pendulum-v1``'s dynamics with the mass and length off by ``mass_error`` and
    ``length_error``: batched float32 ``step`` and ``vjp``, as mixpg's prior models are."""

    def __init__(self, mass_error: float = 0.15, length_error: float = -0.10):
        self.m = 1.0 * (1.0 + mass_error)
        self.l = 1.0 * (1.0 + length_error)

    def _forward(self, obs, act):
        c, s, w = obs[:, 0], obs[:, 1], obs[:, 2]
        u = act[:, 0]
        th = np.arctan2(s, c)
        raw = w + (3 * G / (2 * self.l) * np.sin(th) + 3.0 / (self.m * self.l**2) * u) * DT
        w1 = np.clip(raw, -MAX_SPEED, MAX_SPEED)
        th1 = th + w1 * DT
        return th, raw, w1, th1

    def step(self, obs, act):
        """``(next_obs, reward)`` for a batch of observations and torques."""
        th, _, w1, th1 = self._forward(obs, act)
        w, u = obs[:, 2], act[:, 0]
        nxt = np.stack([np.cos(th1), np.sin(th1), w1], axis=1)
        reward = -(th**2 + 0.1 * w**2 + 0.001 * u**2)
        return nxt.astype(np.float32), reward.astype(np.float32)

    def vjp(self, obs, act, g_next, g_reward):
        """The vector-Jacobian product of :meth:`step`: ``(g_obs, g_act)``."""
        c, s, w = obs[:, 0], obs[:, 1], obs[:, 2]
        u = act[:, 0]
        th, raw, _, th1 = self._forward(obs, act)
        g_th1 = -np.sin(th1) * g_next[:, 0] + np.cos(th1) * g_next[:, 1]
        g_raw = (g_next[:, 2] + g_th1 * DT) * (np.abs(raw) <= MAX_SPEED)
        g_th = g_th1 + g_raw * DT * 3 * G / (2 * self.l) * np.cos(th) - 2 * th * g_reward
        g_w = g_raw - 0.2 * w * g_reward
        g_u = g_raw * DT * 3.0 / (self.m * self.l**2) - 0.002 * u * g_reward
        r2 = c**2 + s**2
        g_obs = np.stack([-s / r2 * g_th, c / r2 * g_th, g_w], axis=1)
        return g_obs.astype(np.float32), g_u[:, None].astype(np.float32)


if __name__ == "__main__":
    import mixpg

    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    out = sys.argv[2] if len(sys.argv) > 2 else "runs/pendulum-v1-mpg"
    mixpg.check_model(PendulumModel(), "Pendulum-v1")
    mixpg.train("mpg-v2", out, env="Pendulum-v1", model=PendulumModel(), iterations=iterations,
                overrides={"algo.warmup_samples": 1000, "train.eval_interval": 1000})
    print(mixpg.read_progress(out)["eval_return_mean"])
