"""The asynchronous architecture on Ray: ``runtime.mode = "ray"``.

Run it with ``python -m mixpg.ray train --config FILE --out DIR [--address auto|HOST:PORT]``
(``python -m mixpg.ray resume --run DIR`` continues a run), or :func:`train` / :func:`resume`.

The driver (this process) holds the Optimizer: it applies gradients, evaluates, writes
``progress.csv`` / ``runtime.csv`` and checkpoints in the thread runtime's format, so
``mixpg resume`` continues a Ray run and a CLI checkpoint resumes on Ray. Actors, buffers and
learners (``runtime.actors / buffers / learners``) are Ray actors wrapping the Rust role
objects; every heavy step runs in Rust. The parameters go out by one ``ray.put`` per version
(when work is dispatched), replay batches go from buffers to learners as object references
(never through the driver), and gradients come back tagged with their parameter version and
the learner's node id. A role that dies is restarted by Ray (``max_restarts``) and the run goes
on; Ctrl-C or SIGTERM stops the run with a final checkpoint.

Ray runs are **not bit-reproducible**: which gradient is applied when, and from which parameter
version, depends on scheduling across processes. Seeds still fix the initial parameters, the
workers' seeds and the evaluation episodes.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from . import _native

PathLike = Union[str, "os.PathLike[str]"]

#: CPUs Ray reserves for each role (fractional, so that a 2-core machine hosts the default
#: 2 actors, 2 buffers and 2 learners: 2 x 0.25 + 2 x 0.25 + 2 x 0.5).
DEFAULT_CPUS = {"actor": 0.25, "buffer": 0.25, "learner": 0.5}
#: Restarts Ray allows each role's actor.
MAX_RESTARTS = 5
#: Calls dispatched to a learner ahead of the one it computes (hides the round trip).
LEARNER_DEPTH = 2
#: Longest wait for the learners to be placed on the cluster, seconds.
PLACEMENT_TIMEOUT_S = 300.0
#: Longest wait for a result before the driver re-checks the stop flag, seconds.
POLL_S = 0.02
#: Ray settings of a local Ray this module starts: task results up to 2 MiB (a gradient is
#: 0.55 MB on path tracking) go to the driver inline, over the task's reply, instead of through
#: the object store (a create, seal, get and release, each a round trip to the raylet).
SYSTEM_CONFIG = {"max_direct_call_object_size": 2 << 20}


def _require_ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "mixpg.ray needs Ray: pip install 'ray==2.60.0' (scripts/test.sh installs it)"
        ) from e
    return ray


def _roles(ray):
    """The Ray actor classes (defined once Ray is imported). Each builds its Rust object from
    the config, its seed and the first parameter snapshot it is sent, so that a restarted
    actor (same constructor arguments) needs nothing that may have left the object store; a
    restarted one takes other seeds."""

    def restarted() -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ray.get_runtime_context().was_current_actor_reconstructed

    class Role:
        """What every role tells the driver: whether it is a restarted incarnation that has not
        said so yet (a role killed between tasks fails none, so the driver learns of the
        restart from the role's first result)."""

        def __init__(self):
            self.reborn = restarted()

        def _news(self) -> bool:
            news, self.reborn = self.reborn, False
            return news

    class Actor(Role):
        def __init__(self, config_toml: str, env_seed: int, rng_seed: int):
            super().__init__()
            if self.reborn:
                env_seed, rng_seed = env_seed ^ 0x5EED, rng_seed ^ 0x5EED
            self.args = (config_toml, env_seed, rng_seed)
            self.core = None

        @ray.method(num_returns=2)
        def collect(self, snapshot: np.ndarray):
            """(encoded experience, whether this is a restarted actor's first result); the
            buffer passes the second on to the driver."""
            if self.core is None:
                self.core = _native.Actor(*self.args, snapshot)
            return self.core.collect(snapshot), self._news()

    class Buffer(Role):
        def __init__(self, config_toml: str, seed: int):
            super().__init__()
            if self.reborn:
                seed ^= 0x5EED
            self.core = _native.Buffer(config_toml, seed)
            self.config_toml, self.seed = config_toml, seed

        def restore(self, replay: bytes) -> None:
            self.core = _native.Buffer(self.config_toml, self.seed, replay)

        def insert(self, experience: np.ndarray, actor_news: bool):
            """(transitions inserted, the buffer's status, whether this is a restarted
            buffer's first insert, whether the experience is a restarted actor's first)."""
            n = self.core.insert(experience)
            return (n,) + self.core.status() + (self._news(), actor_news)

        def sample(self) -> Optional[np.ndarray]:
            return self.core.try_sample()

        def replay_bytes(self) -> bytes:
            return self.core.replay_bytes()

    class Learner(Role):
        def __init__(self, config_toml: str, seed: int):
            super().__init__()
            if self.reborn:
                seed ^= 0x5EED
            self.args = (config_toml, seed)
            self.core = None
            self.node = ray.get_runtime_context().get_node_id()

        def learn(self, snapshot: np.ndarray, batch: Optional[np.ndarray]):
            """The first gradient of a new batch (kept for ``algo.batch_reuse`` gradients):
            (node id, [encoded gradient] or [] without a batch, compute seconds, wall clock at
            return, whether this is a restarted learner's first result)."""
            if batch is None:
                return self.node, [], 0.0, time.time(), self._news()
            return self._step(snapshot, batch)

        def reuse(self, snapshot: np.ndarray):
            """The next gradient of the kept batch with ``snapshot``'s parameters ([] when it
            is used up)."""
            return self._step(snapshot, None)

        def _step(self, snapshot: np.ndarray, batch: Optional[np.ndarray]):
            t = time.perf_counter()
            if self.core is None:
                self.core = _native.Learner(*self.args, snapshot)
            g = self.core.step(snapshot, batch)
            return (self.node, [] if g is None else [g], time.perf_counter() - t, time.time(),
                    self._news())

        def node_id(self) -> str:
            return self.node

    return ray.remote(Actor), ray.remote(Buffer), ray.remote(Learner)


class _Log:
    """Lines to stderr and to ``DIR/ray.log``."""

    def __init__(self, path: Path, quiet: bool):
        self.file = open(path, "a", encoding="utf-8")
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        self.file.write(msg + "\n")
        self.file.flush()
        if not self.quiet:
            print(f"mixpg.ray: {msg}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.file.close()


class _Driver:
    """One session of a Ray run: the optimizer here, the other roles in Ray actors."""

    def __init__(self, ray, opt, out: Path, cpus: Mapping[str, float],
                 learner_resources: Mapping[str, float], quiet: bool):
        self.ray, self.opt, self.out = ray, opt, out
        self.log = _Log(out / "ray.log", quiet)
        s = opt.settings()
        self.s = s
        self.config_toml = opt.config_toml()
        self.start = opt.iteration
        self.version = None
        self.snap_ref = None
        self.env_steps = 0
        self.counters = collections.Counter()
        self.by_node: collections.Counter = collections.Counter()
        self.staleness: list[int] = []
        self.transfer_ms: list[float] = []
        self.compute_ms: list[float] = []
        self.grads: collections.deque = collections.deque()
        self.pending: dict = {}
        self.dead: set = set()
        self.restarts: collections.Counter = collections.Counter()
        self.rng = random.Random(opt.worker_seed("actor_route", self.start, 0, 0))
        self.paced = 0
        self.buffer_ready = [False] * s["buffers"]
        self.buffer_stored = [0] * s["buffers"]
        self.buffer_warm = [False] * s["buffers"]
        self.buffer_throttled = [False] * s["buffers"]
        self.throttle_started: list[Optional[float]] = [None] * s["buffers"]
        self.learner_load = [0] * s["learners"]
        self.reuse_left = [0] * s["learners"]
        self.actor_busy = [False] * s["actors"]
        self.first_update = self.last_update = None

        ActorCls, BufferCls, LearnerCls = _roles(ray)
        opts = dict(max_restarts=MAX_RESTARTS, max_task_retries=0)
        self.actors = [
            ActorCls.options(num_cpus=cpus["actor"], **opts).remote(
                self.config_toml,
                opt.worker_seed("actor_env", self.start, i, 0),
                opt.worker_seed("actor_collect", self.start, i, 0))
            for i in range(s["actors"])
        ]
        self.buffers = [
            BufferCls.options(num_cpus=cpus["buffer"], **opts).remote(
                self.config_toml, opt.worker_seed("buffer", self.start, i, 0))
            for i in range(s["buffers"])
        ]
        self.learners = [
            LearnerCls.options(num_cpus=cpus["learner"], resources=dict(learner_resources),
                               **opts).remote(
                self.config_toml, opt.worker_seed("learner", self.start, i, 0))
            for i in range(s["learners"])
        ]
        self.role_of = {}
        for role, hs in (("actor", self.actors), ("buffer", self.buffers),
                         ("learner", self.learners)):
            for i, h in enumerate(hs):
                self.role_of[h._actor_id.hex()] = (role, i)
        restored = opt.take_restored_replay()
        ray.get([b.restore.remote(r) for b, r in zip(self.buffers, restored) if r is not None])
        for i, r in enumerate(restored):
            self.buffer_warm[i] = self.buffer_ready[i] = r is not None
        try:
            nodes = ray.get([h.node_id.remote() for h in self.learners],
                            timeout=PLACEMENT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            for h in self.actors + self.buffers + self.learners:
                ray.kill(h)
            self.log.close()
            raise RuntimeError(
                f"the learners did not start within {PLACEMENT_TIMEOUT_S:.0f} s: does the "
                f"cluster have {cpus['learner']} CPU and {dict(learner_resources)} free per "
                "learner? (see `ray status`)") from None
        for i, n in enumerate(nodes):
            self.log(f"learner #{i} on node {n}")

    # -- parameters -------------------------------------------------------------------------
    def _snapshot_ref(self):
        """The current parameters in the object store (one ``ray.put`` per version)."""
        k = self.opt.iteration
        if self.version != k:
            self.snap_ref = self.ray.put(self.opt.snapshot())
            self.version = k
        return self.snap_ref

    # -- dispatch ---------------------------------------------------------------------------
    def _actor_may_collect(self) -> Optional[bool]:
        """None: wait; False: a free collection (warm-up / throttled); True: a paced one."""
        if not all(self.buffer_warm) or any(self.buffer_throttled):
            return False
        updates = self.opt.iteration - self.start
        allowed = updates // self.s["collect_interval"] + self.s["actors"]
        return True if self.paced < allowed else None

    def _dispatch(self) -> None:
        for i, busy in enumerate(self.actor_busy):
            if busy:
                continue
            pace = self._actor_may_collect()
            if pace is None:
                break
            self.paced += int(pace)
            j = self.rng.randrange(len(self.buffers))
            exp, news = self.actors[i].collect.remote(self._snapshot_ref())
            self.pending[self.buffers[j].insert.remote(exp, news)] = ("insert", i, j)
            self.actor_busy[i] = True
        ready = [j for j, r in enumerate(self.buffer_ready) if r]
        if not ready:
            return
        for i in range(len(self.learners)):
            while self.learner_load[i] < LEARNER_DEPTH:
                snap = self._snapshot_ref()
                if self.reuse_left[i] > 0:
                    ref = self.learners[i].reuse.remote(snap)
                    self.reuse_left[i] -= 1
                    j = None
                else:
                    j = self.rng.choice(ready)
                    batch = self.buffers[j].sample.remote()
                    ref = self.learners[i].learn.remote(snap, batch)
                    self.reuse_left[i] = self.s["batch_reuse"] - 1
                self.pending[ref] = ("learn", i, j)
                self.learner_load[i] += 1

    # -- results ----------------------------------------------------------------------------
    def _died(self, kind: str, i: int, err: Exception) -> None:
        """A task failed because a role's Ray actor died: Ray restarts it (once logged per
        death); past :data:`MAX_RESTARTS` the run stops with an error."""
        actor_id = getattr(err, "actor_id", None)
        role = self.role_of.get(actor_id) if isinstance(actor_id, str) else None
        if role is None:
            role = ("actor", i) if kind == "insert" else ("learner", i)
        if self._restarted(role, f"{type(err).__name__}: {err}", type(err).__name__):
            return
        if role[0] == "buffer":
            self.buffer_warm[role[1]] = self.buffer_ready[role[1]] = False
            self.buffer_stored[role[1]] = 0
        if role[0] == "learner":
            self.reuse_left[role[1]] = 0

    def _restarted(self, role: tuple, detail: str, why: str) -> bool:
        """Count and log a restart of ``role`` once per death (True when already counted);
        past :data:`MAX_RESTARTS` the run stops with an error."""
        if role in self.dead:
            return True
        self.dead.add(role)
        self.restarts[role] += 1
        if self.restarts[role] > MAX_RESTARTS:
            raise RuntimeError(f"{role[0]} #{role[1]} died more than {MAX_RESTARTS} times; "
                               f"giving up ({detail})")
        self.counters["restarts"] += 1
        self.log(f"restarted {role[0]} #{role[1]} ({why}); the run goes on")
        return False

    def _collect_results(self) -> None:
        if not self.pending:
            time.sleep(POLL_S)
            return
        done, rest = self.ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
        if done and rest:  # and whatever else is ready, without waiting
            done += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        for ref in done:
            kind, i, j = self.pending.pop(ref)
            if kind == "insert":
                self.actor_busy[i] = False
            else:
                self.learner_load[i] -= 1
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as e:
                self._died(kind, i, e)
                continue
            # Died between tasks, so no task failed: the new incarnation says so.
            if kind == "learn" and result[-1]:
                self._restarted(("learner", i), "restarted", "seen in its first result")
            if kind == "insert" and result[-2]:
                self._restarted(("buffer", j), "restarted", "seen in its first insert")
            if kind == "insert" and result[-1]:
                self._restarted(("actor", i), "restarted", "seen in its first collection")
            # A death is logged once; a role's own next result (for a buffer: its next insert,
            # which carries its news, not a learner's batch) clears the record.
            if kind == "insert":
                self.dead.discard(("buffer", j))
            self.dead.discard(("actor" if kind == "insert" else "learner", i))
            if kind == "insert":
                n, stored, inserted, sampled, warm, rate_ok, _, _ = result
                self.env_steps += n
                self.counters["inserted"] += n
                self.buffer_stored[j] = stored
                self.buffer_warm[j] = warm
                self._set_throttled(j, warm and not rate_ok)
                self.buffer_ready[j] = warm and rate_ok
            else:
                node, grads, compute_s, returned_at, _ = result
                if not grads:
                    self.reuse_left[i] = 0
                    if j is not None:  # the buffer had no batch to give
                        self.buffer_ready[j] = False
                        self._set_throttled(j, self.buffer_warm[j])
                    continue
                received = time.time()
                if j is not None:
                    self.counters["batches"] += 1
                    self.counters["sampled"] += self.s["batch_size"]
                self.counters["grads"] += len(grads)
                self.transfer_ms.append((received - returned_at) * 1e3)
                self.compute_ms.append(compute_s * 1e3)
                for g in grads:
                    self.grads.append((g, node))

    def _set_throttled(self, j: int, on: bool) -> None:
        if on and not self.buffer_throttled[j]:
            self.counters["throttle_events"] += 1
            self.throttle_started[j] = time.perf_counter()
        if not on and self.buffer_throttled[j]:
            self.counters["throttled_s"] += time.perf_counter() - self.throttle_started[j]
        self.buffer_throttled[j] = on

    def _runtime_counters(self) -> dict:
        c = self.counters
        return {
            "grad_queue": len(self.grads),
            "experience_queue": sum(self.learner_load),
            "stored": sum(self.buffer_stored),
            "env_steps": self.env_steps,
            "inserted": c["inserted"],
            "sampled": c["sampled"],
            "batches": c["batches"],
            "grads": c["grads"],
            "throttle_events": c["throttle_events"],
            "throttled_s": float(c["throttled_s"]),
            "restarts": c["restarts"],
        }

    def _replays(self) -> list:
        out = []
        for i, b in enumerate(self.buffers):
            try:
                out.append(self.ray.get(b.replay_bytes.remote(), timeout=120))
            except Exception as e:  # a dead buffer: a resume starts it empty
                self.log(f"buffer #{i} gave no replay contents ({type(e).__name__}); "
                         "the checkpoint holds none for it")
                out.append(None)
        return out

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        opt = self.opt
        k0 = opt.iteration
        stopped = False
        error: Optional[BaseException] = None
        try:
            while True:
                replays = self._replays() if opt.checkpoint_due() else None
                opt.at_iteration(self.env_steps, replays)
                if opt.finished():
                    break
                while not self.grads:
                    if opt.should_stop():
                        stopped = True
                        break
                    self._dispatch()
                    self._collect_results()
                    opt.log_runtime(self._runtime_counters(), False)
                if stopped:
                    break
                g, node = self.grads.popleft()
                stale = opt.apply(g)
                self.staleness.append(stale)
                self.by_node[node] += 1
                now = time.perf_counter()
                self.first_update = self.first_update or now
                self.last_update = now
        except BaseException as e:  # the final row and checkpoint are still written
            error = e
        try:
            replays = self._replays()
            opt.finish(self.env_steps, self._runtime_counters(), replays)
        except BaseException as e:
            if error is None:
                error = e
        for node, n in sorted(self.by_node.items()):
            self.log(f"gradients from node {node}: {n}")
        summary = self._summary(opt.iteration - k0, stopped)
        self.log("session: " + ", ".join(f"{k}={v}" for k, v in summary.items()
                                           if not isinstance(v, dict)))
        self.log.close()
        for h in self.actors + self.buffers + self.learners:
            self.ray.kill(h)
        if error is not None:
            raise error
        return summary

    def _summary(self, iterations: int, stopped: bool) -> dict:
        span = (self.last_update - self.first_update) if self.first_update else 0.0
        mean = (lambda xs: sum(xs) / len(xs) if xs else float("nan"))
        median = (lambda xs: statistics.median(xs) if xs else float("nan"))
        return {
            "iterations": iterations,
            "stopped_early": stopped,
            "updates_per_s": (iterations - 1) / span if span > 0 else float("nan"),
            "staleness_mean": mean(self.staleness),
            "staleness_max": max(self.staleness, default=0),
            "restarts": self.counters["restarts"],
            "transfer_ms_mean": mean(self.transfer_ms),
            "transfer_ms_median": median(self.transfer_ms),
            "compute_ms_mean": mean(self.compute_ms),
            "compute_ms_median": median(self.compute_ms),
            "gradients_by_node": dict(self.by_node),
        }


def _connect(ray, address: Optional[str]) -> None:
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs["_system_config"] = SYSTEM_CONFIG
    ray.init(**kwargs)


def _run(opt, out: Path, address: Optional[str], cpus: Optional[Mapping[str, float]],
         learner_resources: Optional[Mapping[str, float]], quiet: bool,
         time_limit: Optional[float], on_start: Optional[Callable[[dict], None]]) -> dict:
    ray = _require_ray()
    _connect(ray, address)
    if quiet:
        opt.set_quiet(True)
    if time_limit is not None:
        opt.set_time_limit(time_limit)
    opt.start_session()
    stop = lambda *_: opt.request_stop()  # noqa: E731
    handlers = {}
    if hasattr(signal, "SIGTERM"):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, stop)
        except ValueError:  # not the main thread: no signal handlers
            handlers = {}
    try:
        driver = _Driver(ray, opt, out, {**DEFAULT_CPUS, **(cpus or {})},
                         learner_resources or {}, quiet)
        if on_start is not None:
            on_start({"actors": driver.actors, "buffers": driver.buffers,
                      "learners": driver.learners, "optimizer": opt})
        return driver.run()
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)


def train(
    config: PathLike,
    out: PathLike,
    *,
    address: Optional[str] = None,
    overrides: Sequence[str] = (),
    seed: Optional[int] = None,
    iterations: Optional[int] = None,
    cpus: Optional[Mapping[str, float]] = None,
    learner_resources: Optional[Mapping[str, float]] = None,
    quiet: bool = False,
    time_limit: Optional[float] = None,
    on_start: Optional[Callable[[dict], None]] = None,
) -> dict:
    """Train a new run into ``out`` on Ray (connecting to ``address``, or starting a local
    Ray when none is running and no address is given). ``overrides`` are ``key=value``
    strings as ``--set`` takes them; ``runtime.mode`` is set to ``"ray"``. ``cpus`` overrides
    the CPUs reserved per role (:data:`DEFAULT_CPUS`), ``learner_resources`` adds custom Ray
    resources the learners need (to pin them to nodes). ``on_start`` receives the role
    handles (``actors``, ``buffers``, ``learners``) and the ``optimizer`` before the first
    update (``optimizer.request_stop()`` stops the run cleanly). Returns a summary of the session
    (iterations, updates/s, staleness, restarts, gradients per node, transfer overhead).
    Not bit-reproducible."""
    sets = [str(o) for o in overrides] + ['runtime.mode="ray"']
    opt = _native.Optimizer(os.fspath(config), os.fspath(out), seed, iterations, sets)
    return _run(opt, Path(out), address, cpus, learner_resources, quiet, time_limit, on_start)


def resume(
    run: PathLike,
    *,
    address: Optional[str] = None,
    cpus: Optional[Mapping[str, float]] = None,
    learner_resources: Optional[Mapping[str, float]] = None,
    quiet: bool = False,
    time_limit: Optional[float] = None,
    on_start: Optional[Callable[[dict], None]] = None,
) -> dict:
    """Continue the run in ``run`` on Ray from its newest checkpoint, whichever runtime wrote
    it (serial, threads or Ray); the buffers restart from the checkpoint's contents."""
    opt = _native.Optimizer.resume(os.fspath(run))
    s = opt.settings()
    if not quiet:
        print(f"mixpg.ray: resuming {run} ({s['mode']} run) at iteration {opt.iteration}",
              file=sys.stderr)
    if s["grad_max_reuse"] > 0:
        print(f"mixpg.ray: runtime.grad_max_reuse = {s['grad_max_reuse']} is ignored on Ray "
              "(fresh gradients only)", file=sys.stderr)
    return _run(opt, Path(run), address, cpus, learner_resources, quiet, time_limit, on_start)


def _resources(specs: Sequence[str]) -> dict:
    out = {}
    for s in specs:
        name, sep, value = s.partition("=")
        try:
            out[name] = float(value) if sep else 1.0
        except ValueError:
            raise SystemExit(f"error: --learner-resource {s!r}: expected NAME=AMOUNT")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mixpg.ray train|resume ...``."""
    p = argparse.ArgumentParser(
        prog="python -m mixpg.ray",
        description="Train mixpg on Ray (runtime.mode = \"ray\"; not bit-reproducible).")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", help="Ray cluster to join: 'auto' or HOST:PORT "
                        "(default: a local Ray)")
    common.add_argument("--learner-resource", action="append", default=[],
                        metavar="NAME=AMOUNT", help="custom Ray resource each learner needs")
    common.add_argument("--quiet", action="store_true", help="no progress display")
    common.add_argument("--time-limit", type=float, help="stop after this many seconds")
    t = sub.add_parser("train", parents=[common], help="train a new run")
    t.add_argument("--config", required=True, help="TOML config file")
    t.add_argument("--out", required=True, help="run directory (must not hold a run)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    t.add_argument("--seed", type=int)
    t.add_argument("--iterations", type=int)
    r = sub.add_parser("resume", parents=[common], help="continue a run from its checkpoint")
    r.add_argument("--run", required=True, help="run directory")
    a = p.parse_args(argv)
    kw = dict(address=a.address, learner_resources=_resources(a.learner_resource),
              quiet=a.quiet, time_limit=a.time_limit)
    try:
        if a.command == "train":
            s = train(a.config, a.out, overrides=a.set, seed=a.seed, iterations=a.iterations,
                      **kw)
            where = a.out
        else:
            s = resume(a.run, **kw)
            where = a.run
    except (RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if s["stopped_early"]:
        print("stopped early (checkpoint written; `python -m mixpg.ray resume` or "
              "`mixpg resume` continues)", file=sys.stderr)
    print(f"run written to {where} ({s['iterations']} iterations, "
          f"{s['updates_per_s']:.1f} updates/s, restarts {s['restarts']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
