"""Ray against the thread runtime: MPG on path tracking with 2 learners (on Ray one learner
group of 2 learner threads), updates/s measured side by side, and the Ray runtime's
per-round transfer overhead (issue target: Ray >= 0.85x the thread runtime's updates/s).

    .venv/bin/python python/benchmarks/ray_vs_threads.py [--config configs/path_tracking/mpg_v1.toml]
        [--iterations 2000] [--repeats 3] [--set KEY=VALUE ...]

Each repeat trains the same config once with ``runtime.mode = "async"`` (threads, through
``mixpg.train``) and once with ``runtime.mode = "ray"`` (``mixpg.ray.train`` on a local Ray
started once with ``--cpus`` CPUs and :data:`mixpg.ray.SYSTEM_CONFIG`), alternating, into
temporary run directories; evaluations and checkpoints are moved past the end. Updates/s is taken from ``progress.csv`` between the
first row at or after ``--skip`` iterations (warm-up excluded) and the last row (its wall time
is taken before the final evaluation). Transfer overhead: for every round, the time from the
group's return (its wall clock) to the driver holding the result, in ms (median); the round
is the group's time inside the call (waiting for its gradients). Medians over the repeats are
printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import mixpg
import mixpg.ray as mray

ROOT = Path(__file__).resolve().parents[2]


def updates_per_s(run: Path, skip: int) -> float:
    p = mixpg.read_progress(run)
    its, wall = p["iteration"], p["wall_s"]
    first = next(i for i, k in enumerate(its) if k >= skip)
    return float((its[-1] - its[first]) / (wall[-1] - wall[first]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs/path_tracking/mpg_v1.toml"))
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--skip", type=int, default=200, help="warm-up iterations left out")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--learners", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()

    import ray

    ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False,
             _system_config=mray.SYSTEM_CONFIG)
    n = a.iterations
    sets = [f"train.eval_interval={n}", f"train.checkpoint_interval={n}",
            "train.log_interval=10", "train.eval_episodes=1",
            "algo.buffer_capacity=100000", f"runtime.learners={a.learners}",
            f"runtime.learners_per_group={a.learners}", "runtime.learner_groups=1", *a.set]
    threads, rays, transfer, compute, stale_t, stale_r = [], [], [], [], [], []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mixpg-ray-bench-") as tmp:
        for r in range(a.repeats):
            out = Path(tmp) / f"threads{r}"
            mixpg.train(a.config, out, iterations=n, overrides=sets + ['runtime.mode="async"'])
            threads.append(updates_per_s(out, a.skip))
            p = mixpg.read_progress(out)["staleness"]
            stale_t.append(float(p[p == p].mean()))
            out = Path(tmp) / f"ray{r}"
            s = mray.train(a.config, out, iterations=n, overrides=sets, quiet=True)
            rays.append(updates_per_s(out, a.skip))
            transfer.append(s["transfer_ms_median"])
            compute.append(s["round_ms_median"])
            stale_r.append(s["staleness_mean"])
            print(f"repeat {r}: threads {threads[-1]:.1f} updates/s, ray {rays[-1]:.1f} "
                  f"updates/s, transfer {transfer[-1]:.2f} ms, round "
                  f"{compute[-1]:.1f} ms", flush=True)
    ray.shutdown()
    med = statistics.median
    ratio = med(rays) / med(threads)
    print(f"\nMPG on path tracking, {a.learners} learners, {n} iterations x {a.repeats} "
          f"repeats ({time.strftime('%Y-%m-%d %H:%M')}, load average at start {load[0]:.2f} "
          f"on {os.cpu_count()} CPUs), medians:")
    print("| runtime | updates/s | staleness (mean) | transfer / round | round |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| threads | {med(threads):.1f} | {med(stale_t):.2f} | – | – |")
    print(f"| ray | {med(rays):.1f} | {med(stale_r):.2f} | {med(transfer):.2f} ms | "
          f"{med(compute):.1f} ms |")
    print(f"ray / threads: {ratio:.2f}x (target >= 0.85)")


if __name__ == "__main__":
    main()
