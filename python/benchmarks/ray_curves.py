"""Learning curves on Ray against the thread runtime: MPG-v1 on path tracking, the same seeds
trained with ``runtime.mode = "async"`` (2 learner threads) and on Ray (one learner group of 2
threads), alternating; prints every run's evaluation returns and, per evaluation, the median,
minimum and maximum over the seeds of each runtime (Ray is not bit-reproducible, so its curve
is judged against the thread runtime's spread).

    .venv/bin/python python/benchmarks/ray_curves.py [--config configs/path_tracking/mpg_v1.toml]
        [--seeds 5] [--iterations 3000] [--eval-interval 500] [--out DIR]
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


def evals(run: Path) -> list[tuple[int, float]]:
    p = mixpg.read_progress(run)
    return [(int(k), float(m)) for k, m in zip(p["iteration"], p["eval_return_mean"]) if m == m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs/path_tracking/mpg_v1.toml"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--eval-interval", type=int, default=500)
    ap.add_argument("--out", help="keep the runs here (default: a temporary directory)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for both runtimes (repeatable)")
    a = ap.parse_args()

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             _system_config=mray.SYSTEM_CONFIG)
    n = a.iterations
    sets = [f"train.eval_interval={a.eval_interval}", f"train.checkpoint_interval={n}",
            "runtime.learners=2", "runtime.learners_per_group=2", "runtime.learner_groups=1",
            *a.set]
    load = os.getloadavg()
    res: dict[str, dict[int, list]] = {"threads": {}, "ray": {}}
    with tempfile.TemporaryDirectory(prefix="mixpg-ray-curves-") as tmp:
        out = Path(a.out or tmp)
        for seed in range(a.seeds):
            for rt in ("threads", "ray"):
                d = out / f"{rt}{seed}"
                if rt == "threads":
                    mixpg.train(a.config, d, seed=seed, iterations=n,
                                overrides=sets + ['runtime.mode="async"'])
                else:
                    mray.train(a.config, d, seed=seed, iterations=n, overrides=sets, quiet=True)
                res[rt][seed] = evals(d)
                print(rt, seed, " ".join(f"{k}:{m:.0f}" for k, m in res[rt][seed]), flush=True)
    ray.shutdown()
    print(f"\n{a.seeds} seeds x {n} iterations ({time.strftime('%Y-%m-%d %H:%M')}, load "
          f"average at start {load[0]:.2f}); evaluation return median [min, max] over seeds:")
    print("| iteration | threads | ray |")
    print("| ---: | --- | --- |")
    its = [k for k, _ in res["threads"][0]]
    for j, k in enumerate(its):
        cells = []
        for rt in ("threads", "ray"):
            v = [r[j][1] for r in res[rt].values() if len(r) > j]
            cells.append(f"{statistics.median(v):.0f} [{min(v):.0f}, {max(v):.0f}]")
        print(f"| {k} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
