"""What limits a learned-model MPG run, read from its checkpoints: the model's accuracy on the
transitions collected next, against larger models, its derivatives against the simulator's, and
the policy's saturation (issue 19's HalfCheetah diagnosis).

    python python/benchmarks/model_capacity.py RUN/checkpoints/ckpt-N --fresh 10000
        [--ensemble RUN/checkpoints/ckpt-M] [--sizes 200x2,200x4,400x4] [--horizon 10]

Reads the replay stored in a mixpg checkpoint (``arrays.bin`` laid out by ``meta.json``). The
last ``--fresh`` transitions are the test set: what the policy collected after the earlier
transitions, i.e. where its model rollouts go next. Every size is an MLP of ELU layers trained
like mixpg's members (inputs and targets normalised, Adam 1e-3, batch 256, the change of
observation and the reward, 10 % of the training rows held out for early stopping), here with
torch (the benchmark venv). ``--ensemble`` evaluates a checkpoint's own ensemble (the mean of
mixpg's members, with its stored normaliser) and its first member alone on the same rows; take the checkpoint that holds
exactly the training rows (``ckpt-(N − fresh)`` when one env step is collected per iteration), so
that the test rows are fresh to it too. Per model it prints:

* ``rmse``: the one-step root-mean-square error of the next observation, raw units (mixpg's
  ``model_error`` column, there on held-out rows of the training data);
* ``nmse``: the one-step mean squared error of each coordinate's change divided by that change's
  variance, averaged over coordinates (1 = no better than predicting the mean change);
* ``reward``: the same for the reward;
* ``H-step``: the open-loop error after ``--horizon`` model steps along logged action sequences,
  the RMS error of the observation divided by the observation's RMS spread (the distance the
  BPTT's rollouts drift from the true trajectory);
* with ``--jacobians K`` (HalfCheetah-v5): ``J err``, the median over K fresh rows of the relative
  error of the model's Jacobian d next_obs / d (obs, act) against the simulator's (central finite
  differences), rows and columns normalised by the change's and the input's std; ``J_u err``,
  the same for the action columns alone; and per horizon h the relative error of
  d obs_h / d act_0 along the logged actions (open loop), the chain the model-driven policy
  gradient runs through;
* with ``--policy K``: at K test states, the saturation of the checkpoint's deterministic
  policy (the share of its tanh outputs within 1 % of a bound, the median |pre-tanh| and the
  mean slope of the tanh) and, with a learned model in the checkpoint, the median cosine
  between the gradients w.r.t. the action of MPG's data-driven term Q1(s, π(s)) and of its
  model-driven term (the H-step return through the ensemble mean with the policy in the loop,
  plus γ^H·Q1 at the end).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def load_replay(ckpt: Path) -> dict:
    """The replay's arrays (obs, act, rew, next_obs, truncated, terminated), its rows in order."""
    meta = json.loads((ckpt / "meta.json").read_text())
    n = meta["counters"]["replay/len"]
    if meta["counters"]["replay/inserted"] != n:
        raise SystemExit(f"{ckpt}: the replay has wrapped around; its rows are not in order")
    raw = np.memmap(ckpt / "arrays.bin", dtype="<f4", mode="r")
    out = {}
    for a in meta["arrays"]:
        name = a["name"]
        if name.startswith("replay/"):
            key = name.split("/", 1)[1]
            size = int(np.prod(a["shape"]))
            out[key] = np.array(raw[a["offset"] // 4:a["offset"] // 4 + size])
    o = out["obs"].size // out["rew"].size
    a = out["act"].size // out["rew"].size
    return {
        "obs": out["obs"].reshape(-1, o)[:n], "next_obs": out["next_obs"].reshape(-1, o)[:n],
        "act": out["act"].reshape(-1, a)[:n], "rew": out["rew"][:n],
        "end": (out["terminated"][:n] > 0) | (out["truncated"][:n] > 0),
    }, meta


class Model:
    """An MLP of ELU layers predicting the normalised change of observation and the reward."""

    def __init__(self, x_mean, x_std, y_mean, y_std, hidden: list[int], seed: int):
        torch.manual_seed(seed)
        sizes = [x_mean.size, *hidden, y_mean.size]
        layers = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ELU())
        self.net = torch.nn.Sequential(*layers)
        self.stats = [torch.tensor(v, dtype=torch.float32) for v in (x_mean, x_std, y_mean, y_std)]

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.stats[0]) / self.stats[1])

    def step(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The next observation (differentiable)."""
        y = self.normalised(torch.cat([obs, act], 1)) * self.stats[3] + self.stats[2]
        return obs + y[:, :-1]

    def predict(self, obs: np.ndarray, act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            x = torch.tensor(np.concatenate([obs, act], 1))
            y = (self.normalised(x) * self.stats[3] + self.stats[2]).numpy()
        return obs + y[:, :-1], y[:, -1]

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int, max_epochs: int = 300,
            patience: int = 10) -> int:
        rng = np.random.default_rng(seed)
        n = len(x)
        idx = rng.permutation(n)
        hold, train = idx[:n // 10], idx[n // 10:]
        xt, yt = torch.tensor(x), torch.tensor((y - self.stats[2].numpy()) / self.stats[3].numpy())
        opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        best, best_state, bad, epochs = float("inf"), None, 0, 0
        for epochs in range(1, max_epochs + 1):
            for b in np.array_split(rng.permutation(train), max(len(train) // 256, 1)):
                loss = ((self.normalised(xt[b]) - yt[b]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                h = float(((self.normalised(xt[hold]) - yt[hold]) ** 2).mean())
            if h < best:
                best, bad = h, 0
                best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
            else:
                bad += 1
                if bad >= patience:
                    break
        self.net.load_state_dict(best_state)
        return epochs


class MixpgEnsemble:
    """The checkpoint's own ensemble: the mean of its members, as mixpg's `model_error`."""

    def __init__(self, meta: dict, ckpt: Path):
        self.norm = {k: torch.tensor(v, dtype=torch.float32)
                     for k, v in meta["json"]["learned_model/normaliser"].items()}
        self.members = []
        while layers := load_params(meta, ckpt, f"learned_model/member{len(self.members)}"):
            self.members.append(layers)

    def member(self, m: int) -> "MixpgEnsemble":
        """Member `m` alone (what a policy gradient with `model.member = "random"` runs)."""
        one = MixpgEnsemble.__new__(MixpgEnsemble)
        one.norm, one.members = self.norm, [self.members[m]]
        return one

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The members' mean prediction of (next_obs − obs, reward), differentiable."""
        n = self.norm
        x = (torch.cat([obs, act], 1) - n["in_mean"]) / n["in_std"]
        y = torch.stack([mlp(m, x)[:, :obs.shape[1] + 1] for m in self.members]).mean(0)
        return y * n["out_std"] + n["out_mean"]

    def step(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The next observation (differentiable)."""
        return obs + self.forward(obs, act)[:, :-1]

    def predict(self, obs: np.ndarray, act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            y = self.forward(torch.tensor(obs), torch.tensor(act)).numpy()
        return obs + y[:, :-1], y[:, -1]


def scores(model, test: dict, horizon: int) -> dict:
    """One-step and open-loop H-step errors of `model` on `test`."""
    obs, act, nxt, rew = test["obs"], test["act"], test["next_obs"], test["rew"]
    pred, r = model.predict(obs, act)
    d_true = nxt - obs
    nmse = float(np.mean(((pred - nxt) ** 2).mean(0) / d_true.var(0).clip(1e-12)))
    out = {"rmse": float(np.sqrt(((pred - nxt) ** 2).mean())), "nmse": nmse,
           "reward": float(((r - rew) ** 2).mean() / rew.var())}
    # Starts whose next `horizon` transitions stay in one episode.
    ends = np.concatenate([[0], np.cumsum(test["end"])])
    starts = np.array([i for i in range(len(obs) - horizon)
                       if ends[i + horizon - 1] == ends[i]])
    s = obs[starts]
    for k in range(horizon):
        s, _ = model.predict(s, act[starts + k])
    truth = nxt[starts + horizon - 1]
    spread = np.sqrt(((truth - truth.mean(0)) ** 2).mean())
    out["H-step"] = float(np.sqrt(((s - truth) ** 2).mean()) / spread)
    return out


def cheetah_simulator():
    """`roll(obs, actions)`: the observations HalfCheetah-v5's simulator reaches from `obs`
    (qpos without x, then qvel; x does not matter) under `actions`, one per env step."""
    import gymnasium as gym

    env = gym.make("HalfCheetah-v5").unwrapped
    env.reset(seed=0)

    def roll(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        env.set_state(np.concatenate([[0.0], obs[:8]]), obs[8:])
        states = []
        for u in actions:
            env.do_simulation(u, env.frame_skip)
            states.append(env._get_obs())
        return np.stack(states)

    return roll, env.action_space.low, env.action_space.high


def cheetah_jacobians(obs: np.ndarray, act: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """d next_obs / d (obs, act) of HalfCheetah-v5's simulator at each row, by central finite
    differences (one-sided at an action bound, where the simulator clips the control)."""
    roll, act_low, act_high = cheetah_simulator()
    o, a = obs.shape[1], act.shape[1]
    low = np.concatenate([np.full(o, -np.inf), act_low])
    high = np.concatenate([np.full(o, np.inf), act_high])
    out = np.empty((len(obs), o, o + a))
    for i, x0 in enumerate(np.concatenate([obs, act], 1).astype(np.float64)):
        for j in range(o + a):
            up, down = x0.copy(), x0.copy()
            up[j], down[j] = min(x0[j] + eps, high[j]), max(x0[j] - eps, low[j])
            out[i, :, j] = (roll(up[:o], up[None, o:])[0] - roll(down[:o], down[None, o:])[0]) \
                / (up[j] - down[j])
    return out


def cheetah_chains(obs: np.ndarray, acts: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """d obs_h / d act_0 for h = 1 … H of HalfCheetah-v5's simulator, open loop along the
    logged actions `acts` (n, H, act_dim), by central finite differences in the first action."""
    roll, act_low, act_high = cheetah_simulator()
    n, horizon, a = acts.shape
    out = np.empty((n, horizon, obs.shape[1], a))
    for i in range(n):
        for j in range(a):
            up, down = acts[i].astype(np.float64), acts[i].astype(np.float64)
            up[0, j] = min(up[0, j] + eps, act_high[j])
            down[0, j] = max(down[0, j] - eps, act_low[j])
            out[i, :, :, j] = (roll(obs[i], up) - roll(obs[i], down)) / (up[0, j] - down[0, j])
    return out


def chain_error(model, obs: np.ndarray, acts: np.ndarray, truth: np.ndarray,
                obs_std: np.ndarray, act_std: np.ndarray) -> np.ndarray:
    """Per horizon h, medians over the starts of the relative error of the model's
    d obs_h / d act_0 against `truth` (rows normalised by the observation's std, columns by
    the action's), of the ratio of their norms (model / truth) and of the truth's norm."""
    n, horizon, a = acts.shape
    o = obs.shape[1]
    u0 = torch.tensor(acts[:, 0], dtype=torch.float32, requires_grad=True)
    s = torch.tensor(obs, dtype=torch.float32)
    jac = np.empty((n, horizon, o, a))
    for h in range(horizon):
        s = model.step(s, u0 if h == 0 else torch.tensor(acts[:, h], dtype=torch.float32))
        for k in range(o):
            g, = torch.autograd.grad(s[:, k].sum(), u0, retain_graph=True)
            jac[:, h, k] = g.numpy()
    scale = act_std[None, None, None, :] / obs_std[None, None, :, None]
    diff, true = (jac - truth) * scale, truth * scale
    norm = lambda m: np.linalg.norm(m, axis=(2, 3))  # noqa: E731
    return np.median(np.stack([norm(diff) / norm(true), norm(jac * scale) / norm(true),
                               norm(true)]), 1)


def jacobian_error(model, obs: np.ndarray, act: np.ndarray, truth: np.ndarray,
                   in_std: np.ndarray, out_std: np.ndarray) -> tuple[float, float]:
    """Median relative error of the model's Jacobian against `truth`, in normalised units (rows
    by the change's std, columns by the input's), over all inputs and over the actions alone."""
    o = obs.shape[1]
    x = torch.tensor(np.concatenate([obs, act], 1), dtype=torch.float32, requires_grad=True)
    rows = []
    for k in range(o):
        g, = torch.autograd.grad(model.step(x[:, :o], x[:, o:])[:, k].sum(), x)
        rows.append(g.numpy())
    jac = np.stack(rows, 1)  # (n, o, o + a)
    scale = in_std[None, None, :] / out_std[None, :, None]
    diff, true = (jac - truth) * scale, truth * scale
    rel = lambda d, t: np.linalg.norm(d, axis=(1, 2)) / np.linalg.norm(t, axis=(1, 2))  # noqa: E731
    return float(np.median(rel(diff, true))), float(np.median(rel(diff[:, :, o:],
                                                                     true[:, :, o:])))


def load_params(meta: dict, ckpt: Path, prefix: str) -> list[torch.Tensor]:
    """The checkpoint's arrays `prefix/0`, `prefix/1`, … (a network's layers, e.g.
    `params/pi`); empty when there are none."""
    raw = np.memmap(ckpt / "arrays.bin", dtype="<f4", mode="r")
    arrays = {a["name"]: a for a in meta["arrays"]}
    out, k = [], 0
    while f"{prefix}/{k}" in arrays:
        a = arrays[f"{prefix}/{k}"]
        size = int(np.prod(a["shape"]))
        out.append(torch.tensor(np.array(raw[a["offset"] // 4:a["offset"] // 4 + size])
                                .reshape(a["shape"])))
        k += 1
    return out


def mlp(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """mixpg's MLP (ELU hidden layers, linear output) on inputs already scaled."""
    for i in range(0, len(params), 2):
        x = x @ params[i] + params[i + 1]
        if i + 2 < len(params):
            x = torch.nn.functional.elu(x)
    return x


def policy_terms(ckpt: Path, meta: dict, obs: np.ndarray) -> dict:
    """At the states `obs`, the saturation of the checkpoint's deterministic policy (tanh onto a
    symmetric box, unit observation scale: mixpg's Gymnasium tasks) and, when the checkpoint
    has a learned model, the median cosine between the gradients w.r.t. the action u = π(s)
    of MPG's two terms: the data-driven Q1(s, u) and the model-driven H-step return through
    the ensemble mean with the policy in the loop plus γ^H·Q1(s_H, π(s_H))."""
    import tomllib

    pi, q1 = load_params(meta, ckpt, "params/pi"), load_params(meta, ckpt, "params/q1")
    s0 = torch.tensor(obs)
    pre = mlp(pi, s0)
    out = {"saturated": float((torch.tanh(pre).abs() >= 0.99).float().mean()),
           "pre_median": float(pre.abs().median()),
           "tanh_slope": float((1 - torch.tanh(pre) ** 2).mean())}
    if not any(a["name"].startswith("learned_model/member") for a in meta["arrays"]):
        return out
    cfg = tomllib.loads((ckpt.parent.parent / "config.toml").read_text())
    gamma, horizon = cfg["algo"]["gamma"], cfg["algo"]["horizon"]
    high = torch.tensor(tomllib.loads((ckpt.parent.parent / "task.toml").read_text())
                        ["action_high"])
    model = MixpgEnsemble(meta, ckpt)
    u0 = (torch.tanh(pre) * high).detach().requires_grad_(True)
    g_data, = torch.autograd.grad(mlp(q1, torch.cat([s0, u0], 1)).sum(), u0)
    s, u, ret = s0, u0, 0.0
    for h in range(horizon):
        y = model.forward(s, u)
        ret = ret + gamma ** h * y[:, -1]
        s = s + y[:, :-1]
        u = torch.tanh(mlp(pi, s)) * high
    ret = ret + gamma ** horizon * mlp(q1, torch.cat([s, u], 1))[:, 0]
    g_model, = torch.autograd.grad(ret.sum(), u0)
    out["cosine"] = float(torch.nn.functional.cosine_similarity(g_data, g_model, dim=1).median())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--fresh", type=int, default=10_000, help="test rows: the replay's last K")
    ap.add_argument("--ensemble", type=Path, help="a checkpoint whose learned model to evaluate")
    ap.add_argument("--sizes", default="200x2,200x4,400x4", help="WIDTHxDEPTH, comma-separated")
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="torch's and the split's seed")
    ap.add_argument("--policy", type=int, default=0, metavar="K",
                    help="the checkpoint's policy at K test rows: its saturation and, with a "
                         "learned model, the cosine of MPG's two terms")
    ap.add_argument("--jacobians", type=int, default=0,
                    help="HalfCheetah-v5 only: compare the models' Jacobians with the simulator's "
                         "(central finite differences) at this many fresh rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data, meta = load_replay(args.checkpoint)
    n = len(data["rew"])
    if not 0 < args.fresh < n:
        raise SystemExit(f"--fresh must be between 1 and {n - 1} (the replay holds {n} rows)")
    train = {k: v[:n - args.fresh] for k, v in data.items()}
    test = {k: v[n - args.fresh:] for k, v in data.items()}
    x = np.concatenate([train["obs"], train["act"]], 1)
    y = np.concatenate([train["next_obs"] - train["obs"], train["rew"][:, None]], 1)
    stats = [x.mean(0), x.std(0).clip(1e-6), y.mean(0), y.std(0).clip(1e-6)]
    print(f"{args.checkpoint}: {n - args.fresh} training rows, {args.fresh} fresh test rows, "
          f"{args.horizon}-step open-loop error")
    jac_cols = f" {'J err':>7} {'J_u err':>7}" if args.jacobians else ""
    print(f"{'model':<24} {'rmse':>7} {'nmse':>7} {'reward':>7} {'H-step':>7}{jac_cols}")
    chains = {}
    if args.jacobians:
        rng = np.random.default_rng(args.seed)
        pick = rng.choice(args.fresh, args.jacobians, replace=False)
        j_obs, j_act = test["obs"][pick], test["act"][pick]
        truth = cheetah_jacobians(j_obs, j_act)
        d_std = (train["next_obs"] - train["obs"]).std(0).clip(1e-6)
        ends = np.concatenate([[0], np.cumsum(test["end"])])
        whole = [i for i in range(args.fresh - args.horizon)
                 if ends[i + args.horizon - 1] == ends[i]]
        starts = rng.choice(whole, args.jacobians, replace=False)
        c_obs = test["obs"][starts]
        c_acts = np.stack([test["act"][starts + h] for h in range(args.horizon)], 1)
        c_truth = cheetah_chains(c_obs, c_acts)

    def jac(name: str, model) -> str:
        if not args.jacobians:
            return ""
        o = train["obs"].shape[1]
        chains[name] = chain_error(model, c_obs, c_acts, c_truth, stats[1][:o], stats[1][o:])
        full, action = jacobian_error(model, j_obs, j_act, truth, stats[1], d_std)
        return f" {full:7.3f} {action:7.3f}"
    if args.ensemble:
        ens_meta = json.loads((args.ensemble / "meta.json").read_text())
        fitted = ens_meta["json"]["learned_model/stats"]["transitions"]
        if fitted > n - args.fresh:
            raise SystemExit(f"{args.ensemble}'s model was fitted on {fitted} transitions, more "
                             f"than the {n - args.fresh} training rows: the test rows are not "
                             "fresh to it")
        ens = MixpgEnsemble(ens_meta, args.ensemble)
        s = scores(ens, test, args.horizon)
        print(f"{'mixpg ensemble':<24} {s['rmse']:7.3f} {s['nmse']:7.3f} "
              f"{s['reward']:7.3f} {s['H-step']:7.3f}{jac('mixpg ensemble', ens)}", flush=True)
        s = scores(ens.member(0), test, args.horizon)
        print(f"{'mixpg member 0':<24} {s['rmse']:7.3f} {s['nmse']:7.3f} "
              f"{s['reward']:7.3f} {s['H-step']:7.3f}{jac('mixpg member 0', ens.member(0))}",
              flush=True)
    for size in filter(None, args.sizes.split(",")):
        width, depth = (int(v) for v in size.split("x"))
        model = Model(*stats, [width] * depth, args.seed)
        t0 = time.perf_counter()
        epochs = model.fit(x, y, args.seed)
        s = scores(model, test, args.horizon)
        print(f"{'MLP ' + size + f' ({epochs} ep)':<24} {s['rmse']:7.3f} {s['nmse']:7.3f} "
              f"{s['reward']:7.3f} {s['H-step']:7.3f}{jac('MLP ' + size, model)}   "
              f"{time.perf_counter() - t0:.0f} s",
              flush=True)
    if args.policy:
        rows = np.random.default_rng(args.seed).choice(args.fresh, args.policy, replace=False)
        g = policy_terms(args.checkpoint, meta, test["obs"][rows])
        print(f"\nthe policy at {args.policy} test states: pre-tanh outputs within 1 % of a "
              f"bound {g['saturated']:.3f}, median |pre-tanh| {g['pre_median']:.2f}, mean tanh "
              f"slope {g['tanh_slope']:.4f}" + (f"; median cosine of MPG's data- and model-driven "
                                                f"d/du {g['cosine']:.3f}" if "cosine" in g else ""))
    if chains:
        print(f"\nrelative error of d obs_h / d act_0 along {args.horizon} logged actions "
              f"(median of {args.jacobians} fresh starts)")
        print(f"{'model':<24}" + "".join(f" {'h=' + str(h + 1):>6}" for h in range(args.horizon)))
        for name, (err, ratio, size) in chains.items():
            print(f"{name:<24}" + "".join(f" {e:6.3f}" for e in err))
            print(f"{'  norm / truth norm':<24}" + "".join(f" {e:6.3f}" for e in ratio))
        print(f"{'truth norm':<24}" + "".join(f" {e:6.2f}" for e in size))


if __name__ == "__main__":
    main()
