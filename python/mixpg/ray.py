"""The asynchronous architecture on Ray: ``runtime.mode = "ray"``.

Run it with ``python -m mixpg.ray train --config FILE --out DIR [--address auto|HOST:PORT]``
(``python -m mixpg.ray resume --run DIR`` continues a run), or :func:`train` / :func:`resume`.

The driver (this process) holds the Optimizer: it applies gradients, evaluates, writes
``progress.csv`` / ``runtime.csv`` and checkpoints in the thread runtime's format, so
``mixpg resume`` continues a Ray run and a CLI checkpoint resumes on Ray. Actors and buffers
(``runtime.actors / buffers``) are Ray actors wrapping the Rust role objects. The learners run
in **learner groups** (``runtime.learner_groups``, one per node): a Ray actor whose learner
threads (``runtime.learners_per_group``, by default the node's CPU count) are the thread
runtime's, sharing one node-local parameter copy and one node-local batch feed. The driver and
a group exchange one message per round: the newest parameters (when they changed) and replay
batches as object references from the buffers (never through the driver) go in; every
gradient the group made since its last round, each tagged with its parameter version, comes
back, and the driver applies them one by one in order. Every heavy step runs in Rust. A role
that dies is restarted by Ray (``max_restarts``); a group whose node leaves the cluster is
dropped and the run goes on with the others; Ctrl-C or SIGTERM stops the run with a final
checkpoint.

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
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from . import _native

PathLike = Union[str, "os.PathLike[str]"]

#: CPUs Ray reserves for each role (fractional, so that a 2-core machine hosts the default
#: 2 actors, 2 buffers and a learner group: 2 x 0.25 + 2 x 0.25 + 1). A group's threads use
#: the node's cores whatever it reserves; the reservation only keeps two groups off one node.
DEFAULT_CPUS = {"actor": 0.25, "buffer": 0.25, "group": 1.0}
#: Restarts Ray allows each role's actor.
MAX_RESTARTS = 5
#: Gradients a group holds for the next round, in rounds' worth; beyond that its threads wait.
PENDING_ROUNDS = 2
#: Longest a round waits for its gradients, seconds (a group without batches answers then).
ROUND_WAIT_S = 0.1
#: How long a group's feeder sleeps when its feed is full or no buffer is ready, seconds.
FEED_POLL_S = 0.005
#: Most collections one actor call makes (paced ones; each one is inserted by the actor).
MAX_COLLECTIONS_PER_CALL = 4
#: Longest wait for the learner groups to be placed on the cluster, seconds.
PLACEMENT_TIMEOUT_S = 300.0
#: Longest wait for a Ray cluster at ``--address HOST:PORT`` to answer, seconds.
CONNECT_TIMEOUT_S = 10.0
#: A round pending this long makes the driver check that its group's node is alive, seconds.
STALL_S = 2.0
#: A round pending this long on a live node is given up and sent again, seconds (Ray can lose
#: a task sent to a group while it restarts; a round itself waits at most ROUND_WAIT_S).
ROUND_TIMEOUT_S = 15.0
#: Longest wait for a result before the driver re-checks the stop flag, seconds.
POLL_S = 0.02
#: Ray settings of a local Ray this module starts: task arguments and results up to 2 MiB
#: (a parameter snapshot is 1.09 MB, a gradient 0.55 MB on path tracking) travel inline, in
#: the task's request or reply, instead of through the object store (a create, seal, get and
#: release, each a round trip to the raylet).
SYSTEM_CONFIG = {"max_direct_call_object_size": 2 << 20}
#: Clock ticks per second of ``/proc/<pid>/stat``'s CPU times.
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _require_ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "mixpg.ray needs Ray: pip install 'ray==2.60.0' (scripts/test.sh installs it)"
        ) from e
    return ray


def _roles(ray):
    """The Ray actor classes (defined once Ray is imported): actor, buffer, learner group.
    Each builds its Rust object from the config, its seeds and the first parameter snapshot it
    is sent, so that a restarted actor (same constructor arguments) needs nothing that may have
    left the object store; a restarted one takes other seeds."""

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
        def __init__(self, config_toml: str, env_seed: int, rng_seed: int, route_seed: int,
                     buffers: list):
            super().__init__()
            if self.reborn:
                env_seed, rng_seed, route_seed = (x ^ 0x5EED for x in
                                                  (env_seed, rng_seed, route_seed))
            self.args = (config_toml, env_seed, rng_seed)
            self.route = random.Random(route_seed)
            self.buffers = buffers
            self.core = None

        def collect(self, snapshot: np.ndarray, collections: int):
            """Collect ``collections`` blocks with ``snapshot``'s policy, each inserted into a
            random buffer: (whether this is a restarted actor's first result, [(buffer index,
            the buffer's insert result, or the error's name when the buffer died)])."""
            if self.core is None:
                self.core = _native.Actor(*self.args, snapshot)
            inserts = []
            for _ in range(collections):
                experience = self.core.collect(snapshot)
                j = self.route.randrange(len(self.buffers))
                try:
                    inserts.append((j, ray.get(self.buffers[j].insert.remote(experience))))
                except ray.exceptions.RayActorError as e:
                    inserts.append((j, type(e).__name__))
            return self._news(), inserts

    class Buffer(Role):
        def __init__(self, config_toml: str, seed: int):
            super().__init__()
            if self.reborn:
                seed ^= 0x5EED
            self.core = _native.Buffer(config_toml, seed)
            self.config_toml, self.seed = config_toml, seed

        def restore(self, replay: bytes) -> None:
            self.core = _native.Buffer(self.config_toml, self.seed, replay)

        def insert(self, experience: np.ndarray):
            """(transitions inserted, the buffer's status, whether this is a restarted
            buffer's first insert)."""
            n = self.core.insert(experience)
            return (n,) + self.core.status() + (self._news(),)

        def sample(self) -> Optional[np.ndarray]:
            return self.core.try_sample()

        def replay_bytes(self) -> bytes:
            return self.core.replay_bytes()

    class LearnerGroup(Role):
        def __init__(self, config_toml: str, seed: int, buffers: list, settings: dict):
            super().__init__()
            if self.reborn:
                seed ^= 0x5EED
            self.node = ray.get_runtime_context().get_node_id()
            self.threads = settings["learners_per_group"] or _node_cpus(ray, self.node)
            self.min_gradients = settings["round_gradients_per_learner"] * self.threads
            self.feed_target = feed_target(settings, self.threads)
            self.args = (config_toml, self.threads, seed)
            self.route = random.Random(seed)
            self.buffers = buffers
            self.core = None
            self.lock = threading.Lock()
            self.ready: list = []
            self.fed = 0
            self.empty: set = set()

        def start(self) -> tuple:
            """(node id, learner threads, gradients per round); answers once placed."""
            return self.node, self.threads, self.min_gradients

        def round(self, snapshot: Optional[np.ndarray], ready: list):
            """One round (see the module doc); ``ready`` lists the buffers to sample from.
            Returns (node id, encoded gradients, batches fed since the last round, buffers
            that had no batch to give since then, batches in the feed, seconds in this call,
            wall clock at return, whether this is a restarted group's first result)."""
            t = time.perf_counter()
            with self.lock:
                self.ready = [j for j in ready if j not in self.empty]
            if self.core is None and snapshot is None:
                # A restarted group: the driver sends the parameters next round.
                return (self.node, [], 0, [], 0, 0.0, time.time(), self._news())
            if self.core is None:
                self.core = _native.LearnerGroup(*self.args, snapshot,
                                                 PENDING_ROUNDS * self.min_gradients)
                threading.Thread(target=self._feed, name="feeder", daemon=True).start()
            grads = self.core.round(snapshot, self.min_gradients, ROUND_WAIT_S)
            with self.lock:
                fed, empty = self.fed, sorted(self.empty)
                self.fed, self.empty = 0, set()
            return (self.node, grads, fed, empty, self.core.feed_len(),
                    time.perf_counter() - t, time.time(), self._news())

        def _feed(self) -> None:
            """Keep the feed at its target with batches from random ready buffers (each
            batch goes from its buffer to this node, never through the driver)."""
            while True:
                with self.lock:
                    ready = list(self.ready)
                if not ready or self.core.feed_len() >= self.feed_target:
                    time.sleep(FEED_POLL_S)
                    continue
                j = self.route.choice(ready)
                try:
                    batch = ray.get(self.buffers[j].sample.remote())
                except ray.exceptions.RayActorError:
                    batch = None
                with self.lock:
                    if batch is None:  # throttled, not warm yet, or restarting
                        self.empty.add(j)
                        self.ready = [b for b in self.ready if b != j]
                        continue
                    self.fed += 1
                self.core.feed(batch)

    return ray.remote(Actor), ray.remote(Buffer), ray.remote(LearnerGroup)


def feed_target(settings: dict, threads: int) -> int:
    """Batches a learner group of ``threads`` threads keeps sampled ahead: its share of
    ``runtime.experience_queue``, the batches the thread runtime's learners have sampled ahead
    (how old the replay they learn from is matters to MPG-v1: docs/design.md), and at least one
    in hand per thread plus what two rounds use up."""
    groups = max(1, settings["learner_groups"])
    per_round = settings["round_gradients_per_learner"] * threads
    return max(-(-settings["experience_queue"] // groups),
               threads + -(-2 * per_round // settings["batch_reuse"]))


def _node_cpus(ray, node_id: str) -> int:
    """The CPUs Ray gives node ``node_id`` (at least 1)."""
    for n in ray.nodes():
        if n["NodeID"] == node_id:
            return max(1, int(n["Resources"].get("CPU", 1)))
    return max(1, os.cpu_count() or 1)


def process_cpu_s(pid: Union[int, str] = "self") -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from
    ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


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


def _place_groups(ray, n: int, need: Mapping[str, float]) -> list:
    """``n`` live nodes, each offering the resources ``need`` (one group per node), nodes
    other than the driver's first; a clear error naming what is missing when the cluster has
    fewer."""
    nodes = [nd for nd in ray.nodes() if nd["Alive"]]
    fits = [nd for nd in nodes if all(nd["Resources"].get(k, 0) >= v for k, v in need.items())]
    if len(fits) < n:
        what = ", ".join(f"{k} >= {v:g}" for k, v in need.items())
        short = [f"{k} >= {v:g} on {c} node(s)" for k, v in need.items()
                 if (c := sum(nd["Resources"].get(k, 0) >= v for nd in nodes)) < n]
        missing = ("missing: " + "; ".join(short)) if short else \
            "no node offers all of them together"
        raise RuntimeError(
            f"runtime.learner_groups = {n} needs {n} nodes (one learner group per node) with "
            f"{what}; the cluster has {len(fits)} such node(s) of {len(nodes)} ({missing}). "
            "Add nodes, lower runtime.learner_groups or change runtime.group_resources / "
            "--learner-resource (see `ray status`)")
    here = ray.get_runtime_context().get_node_id()
    fits.sort(key=lambda nd: nd["NodeID"] == here)
    return [nd["NodeID"] for nd in fits[:n]]


class _Driver:
    """One session of a Ray run: the optimizer here, the other roles in Ray actors."""

    def __init__(self, ray, opt, out: Path, cpus: Mapping[str, float],
                 group_resources: Mapping[str, float], quiet: bool, group_class=None):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.opt, self.out = ray, opt, out
        self.log = _Log(out / "ray.log", quiet)
        s = opt.settings()
        self.s = s
        self.config_toml = opt.config_toml()
        self.start = opt.iteration
        self.snap_version = None
        self.snap_ref = None
        self.env_steps = 0
        self.counters = collections.Counter()
        self.by_node: collections.Counter = collections.Counter()
        self.staleness: list[int] = []
        self.transfer_ms: list[float] = []
        self.round_ms: list[float] = []
        self.round_sizes: list[int] = []
        self.grads: collections.deque = collections.deque()
        self.pending: dict = {}
        self.dead: set = set()
        self.restarts: collections.Counter = collections.Counter()
        self.paced = 0
        self.buffer_ready = [False] * s["buffers"]
        self.buffer_stored = [0] * s["buffers"]
        self.buffer_warm = [False] * s["buffers"]
        self.buffer_throttled = [False] * s["buffers"]
        self.throttle_started: list[Optional[float]] = [None] * s["buffers"]
        self.actor_busy = [False] * s["actors"]
        self.first_update = self.last_update = None
        self.cpu_at_first_update = None
        self.lost_nodes: list[str] = []

        ActorCls, BufferCls, GroupCls = _roles(ray)
        GroupCls = group_class or GroupCls
        opts = dict(max_restarts=MAX_RESTARTS, max_task_retries=0)
        self.buffers = [
            BufferCls.options(num_cpus=cpus["buffer"], **opts).remote(
                self.config_toml, opt.worker_seed("buffer", self.start, i, 0))
            for i in range(s["buffers"])
        ]
        self.actors = [
            ActorCls.options(num_cpus=cpus["actor"], **opts).remote(
                self.config_toml,
                opt.worker_seed("actor_env", self.start, i, 0),
                opt.worker_seed("actor_collect", self.start, i, 0),
                opt.worker_seed("actor_route", self.start, i, 0), self.buffers)
            for i in range(s["actors"])
        ]
        need = {"CPU": cpus["group"], **group_resources}
        try:
            nodes = _place_groups(ray, s["learner_groups"], need)
        except RuntimeError:
            self._kill(self.actors + self.buffers)
            self.log.close()
            raise
        self.groups = [
            GroupCls.options(num_cpus=cpus["group"], resources=dict(group_resources),
                             scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                             **opts).remote(
                self.config_toml, opt.worker_seed("learner", self.start, i, 0), self.buffers,
                s)
            for i, node in enumerate(nodes)
        ]
        self.role_of = {}
        for role, hs in (("actor", self.actors), ("buffer", self.buffers),
                         ("learner group", self.groups)):
            for i, h in enumerate(hs):
                self.role_of[h._actor_id.hex()] = (role, i)
        restored = opt.take_restored_replay()
        ray.get([b.restore.remote(r) for b, r in zip(self.buffers, restored) if r is not None])
        for i, r in enumerate(restored):
            self.buffer_warm[i] = self.buffer_ready[i] = r is not None
        try:
            placed = ray.get([g.start.remote() for g in self.groups],
                             timeout=PLACEMENT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self._kill(self.actors + self.buffers + self.groups)
            self.log.close()
            raise RuntimeError(
                f"the learner groups did not start within {PLACEMENT_TIMEOUT_S:.0f} s: their "
                f"nodes offer {dict(need)} but not free (other work holds it; see "
                "`ray status`)") from None
        n = len(self.groups)
        self.group_node = [p[0] for p in placed]
        self.group_threads = [p[1] for p in placed]
        self.group_busy = [False] * n
        self.group_version: list[Optional[int]] = [None] * n
        self.group_feed = [0] * n
        self.group_sent_at = [0.0] * n
        self.lost: set = set()
        self.node_checked = 0.0
        for i, (node, threads, m) in enumerate(placed):
            self.log(f"learner group #{i} on node {node}: {threads} learner threads, "
                     f"rounds of {m} gradients")

    def _kill(self, handles) -> None:
        for h in handles:
            self.ray.kill(h)

    # -- parameters -------------------------------------------------------------------------
    def _snapshot_ref(self):
        """The current parameters in the object store: one ``ray.put`` per version, made
        when a round or a collection is sent, shared by every role it goes to."""
        k = self.opt.iteration
        if self.snap_version != k:
            self.snap_ref = self.ray.put(self.opt.snapshot())
            self.snap_version = k
        return self.snap_ref

    # -- dispatch ---------------------------------------------------------------------------
    def _collections_allowed(self) -> tuple[int, bool]:
        """(collections the next actor call may make, whether they are paced): free ones
        one at a time while a buffer is below its warm-up share or throttled, otherwise one
        per ``algo.collect_interval`` updates of the session plus one in flight per actor."""
        if not all(self.buffer_warm) or any(self.buffer_throttled):
            return 1, False
        updates = self.opt.iteration - self.start
        allowed = updates // self.s["collect_interval"] + self.s["actors"]
        return min(allowed - self.paced, MAX_COLLECTIONS_PER_CALL), True

    def _dispatch(self) -> None:
        for i, busy in enumerate(self.actor_busy):
            if busy:
                continue
            n, paced = self._collections_allowed()
            if n <= 0:
                break
            self.paced += n if paced else 0
            self.pending[self.actors[i].collect.remote(self._snapshot_ref(), n)] = \
                ("collect", i, None)
            self.actor_busy[i] = True
        ready = [j for j, r in enumerate(self.buffer_ready) if r]
        for i, group in enumerate(self.groups):
            if self.group_busy[i] or i in self.lost:
                continue
            snapshot = None
            if self.group_version[i] != self.opt.iteration:
                snapshot = self._snapshot_ref()
                self.group_version[i] = self.opt.iteration
            self.pending[group.round.remote(snapshot, ready)] = ("round", i, None)
            self.group_busy[i] = True
            self.group_sent_at[i] = time.perf_counter()

    # -- faults -----------------------------------------------------------------------------
    def _died(self, kind: str, i: int, err: Exception) -> None:
        """A task failed because a role's Ray actor died: Ray restarts it (once logged per
        death); past :data:`MAX_RESTARTS` the run stops with an error."""
        actor_id = getattr(err, "actor_id", None)
        role = self.role_of.get(actor_id) if isinstance(actor_id, str) else None
        if role is None:
            role = ("actor", i) if kind == "collect" else ("learner group", i)
        if role[0] == "learner group" and self._node_lost(role[1], err):
            return
        self._restarted(role, f"{type(err).__name__}: {err}", type(err).__name__)
        # Every failed task, not only the first of a death: a round sent while the group was
        # still restarting carried the parameters and failed too, so the next must carry them.
        self._forget(role)

    def _forget(self, role: tuple) -> None:
        """What the driver knew of a role's state before its restart."""
        kind, i = role
        if kind == "buffer":
            self.buffer_warm[i] = self.buffer_ready[i] = False
            self.buffer_stored[i] = 0
        if kind == "learner group":
            self.group_version[i] = None
            self.group_feed[i] = 0

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

    def _node_lost(self, i: int, err: Optional[Exception], gone: bool = False) -> bool:
        """Whether learner group ``i``'s node has left the cluster (``gone``: Ray said so);
        if so the group is dropped (logged with the node) and the run goes on with the
        others."""
        if i in self.lost:
            return True
        node = self.group_node[i]
        info = next((nd for nd in self.ray.nodes() if nd["NodeID"] == node), None)
        if info is not None and info["Alive"] and not gone:
            return False
        self.lost.add(i)
        self.lost_nodes.append(node)
        self.group_busy[i] = False
        self.group_feed[i] = 0
        for ref in [r for r, (kind, g, _) in self.pending.items() if kind == "round" and g == i]:
            del self.pending[ref]
        self.ray.kill(self.groups[i])
        where = f" ({info['NodeManagerAddress']})" if info else ""
        left = len(self.groups) - len(self.lost)
        why = f": {type(err).__name__}" if err is not None else ""
        self.log(f"lost node {node}{where} with learner group #{i} "
                 f"({self.group_threads[i]} learner threads){why}; the run goes on with "
                 f"{left} learner group(s)")
        if left == 0:
            raise RuntimeError("every learner group is lost (their nodes left the cluster)")
        return True

    def _check_stalled_groups(self) -> None:
        """Rounds pending longer than :data:`STALL_S`: is their node still there? (A group
        whose node died may wait for a restart Ray cannot place.) A round pending longer than
        :data:`ROUND_TIMEOUT_S` on a live node is given up and sent again. At most once a
        second."""
        now = time.perf_counter()
        if now - self.node_checked < 1.0:
            return
        self.node_checked = now
        for i, busy in enumerate(self.group_busy):
            pending = now - self.group_sent_at[i]
            if not busy or pending <= STALL_S or self._node_lost(i, None):
                continue
            if pending > ROUND_TIMEOUT_S:
                for ref in [r for r, (kind, g, _) in self.pending.items()
                            if kind == "round" and g == i]:
                    del self.pending[ref]
                self.group_busy[i] = False
                self._forget(("learner group", i))
                self.log(f"learner group #{i} did not answer a round within "
                         f"{ROUND_TIMEOUT_S:g} s; sending it another")

    # -- results ----------------------------------------------------------------------------
    def _collect_results(self) -> None:
        if not self.pending:
            time.sleep(POLL_S)
            return
        done, rest = self.ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
        if done and rest:  # and whatever else is ready, without waiting
            done += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        self._check_stalled_groups()
        for ref in done:
            if ref not in self.pending:  # its group was dropped meanwhile
                continue
            kind, i, _ = self.pending.pop(ref)
            if kind == "collect":
                self.actor_busy[i] = False
            else:
                self.group_busy[i] = False
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.ActorUnschedulableError as e:
                # A group restarted after its node left: it is pinned there, so it cannot be
                # placed again.
                if kind != "round":
                    raise
                self._node_lost(i, e, gone=True)
                continue
            except self.ray.exceptions.ObjectLostError as e:
                # The result was stored on a node that has left: nothing to apply.
                if kind == "round" and self._node_lost(i, e):
                    continue
                role = ("learner group", i) if kind == "round" else ("actor", i)
                self._forget(role)
                self.log(f"the result of {role[0]} #{i} was lost ({type(e).__name__}); the "
                         "run goes on")
                continue
            except self.ray.exceptions.RayActorError as e:
                self._died(kind, i, e)
                continue
            if kind == "collect":
                self._collected(i, result)
            else:
                self._round(i, result)

    def _collected(self, i: int, result: tuple) -> None:
        actor_news, inserts = result
        # Died between tasks, so no task failed: the new incarnation says so.
        if actor_news:
            self._restarted(("actor", i), "restarted", "seen in its first collection")
        # A death is logged once; a role's own next result clears the record.
        self.dead.discard(("actor", i))
        for j, r in inserts:
            if isinstance(r, str):  # the buffer died under the actor's insert
                if not self._restarted(("buffer", j), r, r):
                    self._forget(("buffer", j))
                continue
            n, stored, inserted, sampled, warm, rate_ok, buffer_news = r
            if buffer_news and not self._restarted(("buffer", j), "restarted",
                                                   "seen in its first insert"):
                self._forget(("buffer", j))
            self.dead.discard(("buffer", j))
            self.env_steps += n
            self.counters["inserted"] += n
            self.buffer_stored[j] = stored
            self.buffer_warm[j] = warm
            self._set_throttled(j, warm and not rate_ok)
            self.buffer_ready[j] = warm and rate_ok

    def _round(self, i: int, result: tuple) -> None:
        node, grads, fed, empty, feed_len, round_s, returned_at, news = result
        if news:  # a restarted incarnation: it has no parameters unless this round sent them
            self._restarted(("learner group", i), "restarted", "seen in its first result")
            self._forget(("learner group", i))
        self.dead.discard(("learner group", i))
        for j in empty:  # the buffer had no batch to give
            self.buffer_ready[j] = False
            self._set_throttled(j, self.buffer_warm[j])
        self.group_feed[i] = feed_len
        self.counters["batches"] += fed
        self.counters["sampled"] += fed * self.s["batch_size"]
        if not grads:
            return
        self.counters["grads"] += len(grads)
        self.transfer_ms.append((time.time() - returned_at) * 1e3)
        self.round_ms.append(round_s * 1e3)
        self.round_sizes.append(len(grads))
        self.grads.extend((g, node) for g in grads)

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
            "experience_queue": sum(self.group_feed),
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
        cpu_end = None
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
                if self.first_update is None:
                    self.first_update, self.cpu_at_first_update = now, process_cpu_s()
                self.last_update = now
                if opt.finished():  # before the last evaluation and checkpoint
                    cpu_end = process_cpu_s()
        except BaseException as e:  # the final row and checkpoint are still written
            error = e
        if cpu_end is None and self.first_update is not None:
            cpu_end = process_cpu_s()
        try:
            replays = self._replays()
            opt.finish(self.env_steps, self._runtime_counters(), replays)
        except BaseException as e:
            if error is None:
                error = e
        for node, n in sorted(self.by_node.items()):
            self.log(f"gradients from node {node}: {n}")
        summary = self._summary(opt.iteration - k0, stopped, cpu_end)
        self.log("session: " + ", ".join(f"{k}={v}" for k, v in summary.items()
                                           if not isinstance(v, (dict, list))))
        self.log.close()
        self._kill(self.actors + self.buffers + self.groups)
        if error is not None:
            raise error
        return summary

    def _summary(self, iterations: int, stopped: bool, cpu_end: Optional[float]) -> dict:
        span = (self.last_update - self.first_update) if self.first_update else 0.0
        mean = (lambda xs: sum(xs) / len(xs) if xs else float("nan"))
        median = (lambda xs: statistics.median(xs) if xs else float("nan"))
        driver_cpu = (cpu_end - self.cpu_at_first_update) * 1e3 / (iterations - 1) \
            if cpu_end is not None and iterations > 1 else float("nan")
        return {
            "iterations": iterations,
            "stopped_early": stopped,
            "updates_per_s": (iterations - 1) / span if span > 0 else float("nan"),
            "driver_cpu_ms_per_update": driver_cpu,
            "staleness_mean": mean(self.staleness),
            "staleness_max": max(self.staleness, default=0),
            "restarts": self.counters["restarts"],
            "rounds": len(self.round_sizes),
            "gradients_per_round_mean": mean(self.round_sizes),
            "transfer_ms_mean": mean(self.transfer_ms),
            "transfer_ms_median": median(self.transfer_ms),
            "round_ms_median": median(self.round_ms),
            "gradients_by_node": dict(self.by_node),
            "staleness": list(self.staleness),
            "lost_nodes": list(self.lost_nodes),
        }


def _connect(ray, address: Optional[str]) -> None:
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if address:
        _check_answers(address)
        kwargs["address"] = address
    else:
        kwargs["_system_config"] = SYSTEM_CONFIG
    ray.init(**kwargs)


def _check_answers(address: str) -> None:
    """A clear error when nothing answers at ``address`` (``HOST:PORT``, or ``auto``: the
    cluster ``ray start`` recorded on this machine) within :data:`CONNECT_TIMEOUT_S`; Ray
    itself keeps trying for minutes. Answering means speaking gRPC, as Ray's GCS does: a
    probe call to a method no server has must come back (as "unimplemented"), so that a port
    that accepts connections and says nothing counts as not answering."""
    import grpc

    target = address
    if address == "auto":
        target = os.environ.get("RAY_ADDRESS", "auto")
        if target == "auto":
            try:
                target = Path("/tmp/ray/ray_current_cluster").read_text().strip()
            except OSError:
                return  # no cluster recorded: Ray says so at once
    host, sep, port = target.rpartition("://")[2].rpartition(":")
    if not sep or not port.isdigit():
        return  # not HOST:PORT: Ray judges it
    channel = grpc.insecure_channel(f"{host}:{port}")
    probe = channel.unary_unary("/mixpg.Probe/Ping", request_serializer=bytes,
                                response_deserializer=bytes)
    try:
        probe(b"", timeout=CONNECT_TIMEOUT_S)
    except grpc.RpcError as e:
        silent = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        if e.code() in silent:
            raise RuntimeError(
                f"no Ray cluster answers at {target} within {CONNECT_TIMEOUT_S:g} s "
                f"({e.code().name.lower()}: {e.details()}); start one there with "
                "`ray start --head`, or check --address") from None
    finally:
        channel.close()


def _run(opt, out: Path, address: Optional[str], cpus: Optional[Mapping[str, float]],
         learner_resources: Optional[Mapping[str, float]], quiet: bool,
         time_limit: Optional[float], on_start: Optional[Callable[[dict], None]],
         group_class=None) -> dict:
    """One session of ``opt``'s run on Ray (``group_class``: a stand-in for the learner group
    actor with its interface, for benchmarks)."""
    ray = _require_ray()
    _connect(ray, address)
    if quiet:
        opt.set_quiet(True)
    if time_limit is not None:
        opt.set_time_limit(time_limit)
    group_resources = {**opt.settings()["group_resources"], **(learner_resources or {})}
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
        driver = _Driver(ray, opt, out, {**DEFAULT_CPUS, **(cpus or {})}, group_resources,
                         quiet, group_class)
        if on_start is not None:
            on_start({"actors": driver.actors, "buffers": driver.buffers,
                      "groups": driver.groups, "optimizer": opt})
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
    resources each learner group's node must offer (to ``runtime.group_resources``, for this
    session). ``on_start`` receives the role handles (``actors``, ``buffers``, ``groups``) and
    the ``optimizer`` before the first update (``optimizer.request_stop()`` stops the run
    cleanly). Returns a summary of the session (iterations, updates/s, the driver's CPU per
    update, staleness, restarts, rounds, gradients per node, lost nodes, transfer overhead).
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
                        metavar="NAME=AMOUNT",
                        help="custom Ray resource a learner group's node must offer "
                        "(adds to runtime.group_resources)")
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
