"""The CPU cost of the Ray messages one Ray-runtime update needs, measured alone on a local Ray:
a ``ray.put`` of a parameter snapshot, a task that receives it, and a task that returns a
gradient inline. CPU time is summed over every process of the machine from ``/proc`` (the
driver, the raylet, the worker), so it counts what the two cores pay, not only the caller.

    .venv/bin/python python/benchmarks/ray_message_cost.py [--snapshot-mb 1.1] [--grad-mb 0.56]
        [--calls 500]

The default sizes are MPG-v1's on path tracking (policy, Q and their targets; the policy and Q
gradients). The result bounds what the Ray runtime can reach against the thread runtime on a
machine whose cores the learners already fill (docs/design.md).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import mixpg.ray as mray

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """User + system CPU time of every process, in seconds."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshot-mb", type=float, default=1.1)
    ap.add_argument("--grad-mb", type=float, default=0.56)
    ap.add_argument("--calls", type=int, default=500)
    a = ap.parse_args()

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _system_config=mray.SYSTEM_CONFIG)
    snapshot = np.random.default_rng(0).integers(0, 255, int(a.snapshot_mb * 1e6), np.uint8)
    grad_bytes = int(a.grad_mb * 1e6)

    @ray.remote
    class Learner:
        def receive(self, snap: np.ndarray) -> int:
            return snap.nbytes

        def send(self) -> np.ndarray:
            return np.zeros(grad_bytes, np.uint8)

    learner = Learner.remote()
    ray.get(learner.receive.remote(ray.put(snapshot)))  # warm-up
    cases = {
        "ray.put of a snapshot": lambda: ray.put(snapshot),
        "ray.put + a task receiving it": lambda: ray.get(learner.receive.remote(ray.put(snapshot))),
        "a task returning a gradient inline": lambda: ray.get(learner.send.remote()),
    }
    print(f"{a.calls} calls each; snapshot {a.snapshot_mb} MB, gradient {a.grad_mb} MB; "
          f"{os.cpu_count()} CPUs")
    print("| message | wall ms / call | CPU ms / call (all processes) |")
    print("| --- | ---: | ---: |")
    for name, call in cases.items():
        c0, t0 = cpu_seconds(), time.perf_counter()
        for _ in range(a.calls):
            call()
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        print(f"| {name} | {wall / a.calls * 1e3:.2f} | {cpu / a.calls * 1e3:.2f} |")
    ray.shutdown()


if __name__ == "__main__":
    main()
