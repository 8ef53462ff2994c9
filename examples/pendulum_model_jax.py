"""The mismatched ``Pendulum-v1`` model of ``pendulum_model.py`` written in JAX, its
vector-Jacobian product by ``jax.vjp`` (JAX is an optional extra, never a mixpg dependency):
``python examples/pendulum_model_jax.py [ITERATIONS] [OUT_DIR]``.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

G, DT, MAX_SPEED = 10.0, 0.05, 8.0


class JaxPendulumModel:
    """``Pendulum-v1`` with the mass 15 % heavy and the length 10 % short, in JAX."""

    def __init__(self, mass_error: float = 0.15, length_error: float = -0.10):
        m, l = 1.0 + mass_error, 1.0 + length_error

        def step(obs, act):
            c, s, w = obs[:, 0], obs[:, 1], obs[:, 2]
            u = act[:, 0]
            th = jnp.arctan2(s, c)
            w1 = jnp.clip(w + (3 * G / (2 * l) * jnp.sin(th) + 3.0 / (m * l**2) * u) * DT,
                          -MAX_SPEED, MAX_SPEED)
            th1 = th + w1 * DT
            nxt = jnp.stack([jnp.cos(th1), jnp.sin(th1), w1], axis=1)
            return nxt, -(th**2 + 0.1 * w**2 + 0.001 * u**2)

        self._step = jax.jit(step)
        self._vjp = jax.jit(lambda o, a, gn, gr: jax.vjp(step, o, a)[1]((gn, gr)))

    def step(self, obs, act):
        nxt, reward = self._step(obs, act)
        return np.asarray(nxt, np.float32), np.asarray(reward, np.float32)

    def vjp(self, obs, act, g_next, g_reward):
        g_obs, g_act = self._vjp(obs, act, g_next, g_reward)
        return np.asarray(g_obs, np.float32), np.asarray(g_act, np.float32)


if __name__ == "__main__":
    import mixpg

    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    out = sys.argv[2] if len(sys.argv) > 2 else "runs/pendulum-v1-mpg-jax"
    mixpg.check_model(JaxPendulumModel(), "Pendulum-v1")
    mixpg.train("mpg-v2", out, env="Pendulum-v1", model=JaxPendulumModel(), iterations=iterations,
                overrides={"algo.warmup_samples": 1000, "train.eval_interval": 1000})
