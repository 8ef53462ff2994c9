"""The Ray driver's capacity: its CPU per applied update and the updates/s it sustains when
learner groups that do no compute feed it gradients as fast as it takes them (issue target:
<= 0.5 ms of driver CPU per update, >= 2 000 updates/s, enough for 12 learners).

    .venv/bin/python python/benchmarks/ray_driver_capacity.py [--config configs/path_tracking/mpg_v1.toml]
        [--iterations 20000] [--groups 2] [--learners-per-group 6] [--repeats 3] [--set KEY=VALUE ...]

The run is the real driver (``mixpg.ray``'s), optimizer, actors and buffers on a
``ray.cluster_utils.Cluster`` on this machine (a head and one node per group, each with the
custom resource ``capacity_group``); only the learner groups are stand-ins with the group's
interface: each round returns ``runtime.round_gradients_per_learner x learners-per-group`` real
gradients of the config's networks (computed once, then re-tagged with the newest parameter
version the group received) at once and samples no batches (a real group's feeder takes them
from the buffers without the driver). Actors collect and insert as in a real run, paced by
the updates. Evaluation and checkpoints
happen only at iteration 0 and the last; the driver's CPU is read from ``/proc/self/stat``
from the first applied update to the last, and every update goes through the optimizer (Adam,
progress row) as in a real run. Prints each repeat, the medians, and last the line
``driver_cpu_ms_per_update=X updates_per_s=Y`` (medians).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import mixpg
import mixpg.ray as mray

ROOT = Path(__file__).resolve().parents[2]
#: The custom resource that puts one stand-in group on each worker node.
RESOURCE = "capacity_group"


def real_gradients(config_toml: str, snapshot: np.ndarray) -> list:
    """Two encoded gradients of the config (of two batches; with `policy_delay = 2` one has
    the policy gradient, one not) from a real actor, buffer and learner."""
    actor = mixpg._native.Actor(config_toml, 1, 2, snapshot)
    buffer = mixpg._native.Buffer(config_toml, 3)
    batches = []
    while len(batches) < 2:  # two batches: a batch gives one gradient per version
        buffer.insert(actor.collect(snapshot))
        batch = buffer.try_sample()
        if batch is not None:
            batches.append(batch)
    learner = mixpg._native.Learner(config_toml, 4, snapshot)
    return [learner.step(snapshot, b) for b in batches]


def stand_in_group(ray):
    """A Ray actor class with the learner group's interface that computes nothing."""

    @ray.remote
    class StandInGroup:
        def __init__(self, config_toml: str, seed: int, buffers: list, settings: dict):
            self.config_toml = config_toml
            self.node = ray.get_runtime_context().get_node_id()
            self.threads = settings["learners_per_group"]
            self.min_gradients = settings["round_gradients_per_learner"] * self.threads
            self.batch_reuse = settings["batch_reuse"]
            self.grads = None
            self.version = b"\0" * 8
            self.made = 0

        def start(self):
            return self.node, self.threads, self.min_gradients

        def round(self, snapshot, ready):
            t = time.perf_counter()
            if snapshot is not None:
                if self.grads is None:
                    self.grads = [np.array(g) for g in real_gradients(self.config_toml, snapshot)]
                self.version = bytes(snapshot[5:13])  # after the 5-byte header, as encoded
            out = []
            for _ in range(self.min_gradients):
                g = self.grads[self.made % 2].copy()
                g[5:13] = np.frombuffer(self.version, np.uint8)
                out.append(g)
                self.made += 1
            fed = self.made // self.batch_reuse - (self.made - len(out)) // self.batch_reuse
            return (self.node, out, fed, [], 0, time.perf_counter() - t, time.time(), False)

    return StandInGroup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs/path_tracking/mpg_v1.toml"))
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--learners-per-group", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    store = 200 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": store, "include_dashboard": False,
        "_system_config": mray.SYSTEM_CONFIG})
    for _ in range(a.groups):
        cluster.add_node(num_cpus=1, object_store_memory=store, resources={RESOURCE: 1})
    ray.init(address=cluster.address, log_to_driver=False)
    n = a.iterations
    sets = [f"train.eval_interval={n}", f"train.checkpoint_interval={n}",
            "train.eval_episodes=1", f"runtime.learner_groups={a.groups}",
            f"runtime.learners_per_group={a.learners_per_group}",
            f"runtime.group_resources.{RESOURCE}=1", 'runtime.mode="ray"', *a.set]
    cpu, rate, stale, size = [], [], [], []
    group_cls = stand_in_group(ray)
    load = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="mixpg-ray-capacity-") as tmp:
            for r in range(a.repeats):
                out = Path(tmp) / f"run{r}"
                opt = mixpg._native.Optimizer(a.config, str(out), None, n, sets)
                s = mray._run(opt, out, None, None, None, True, None, None, group_cls)
                cpu.append(s["driver_cpu_ms_per_update"])
                rate.append(s["updates_per_s"])
                stale.append(s["staleness_mean"])
                q = np.percentile(s["staleness"], [50, 90])
                size.append(s["gradients_per_round_mean"])
                print(f"repeat {r}: driver CPU {cpu[-1]:.3f} ms/update, {rate[-1]:.0f} "
                      f"updates/s, {size[-1]:.1f} gradients/round, staleness mean "
                      f"{stale[-1]:.1f} median {q[0]:.0f} p90 {q[1]:.0f} max {s['staleness_max']}",
                      flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    med = statistics.median
    print(f"\n{a.groups} stand-in groups x {a.learners_per_group} learners, {n} updates x "
          f"{a.repeats} repeats ({time.strftime('%Y-%m-%d %H:%M')}, load average at start "
          f"{load[0]:.2f}), medians: driver CPU {med(cpu):.3f} ms/update, {med(rate):.0f} "
          f"updates/s, {med(size):.1f} gradients/round, staleness mean {med(stale):.1f}")
    print(f"driver_cpu_ms_per_update={med(cpu):.3f} updates_per_s={med(rate):.0f}")


if __name__ == "__main__":
    main()
