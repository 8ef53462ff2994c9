#!/usr/bin/env python3
"""Keep the finished runs of an experiment grid in the repository, small enough to commit, so
that a later checkout reports them and a re-run of the grid skips them.

    scripts/keep-runs.py RUNS_DIR KEEP_DIR

For every run directory under RUNS_DIR (one with `config.toml` and `progress.csv`) whose last
row reaches the config's `train.iterations`, writes KEEP_DIR/<same relative path>/ with its
`config.toml` (and `task.toml`) and a `progress.csv` cut to the evaluation rows and the first
two rows of every 100 (what `mixpg report` reads: evaluations, and the timing columns as a
sample; two rows, because with `algo.policy_delay = 2` only every second row has a policy
gradient and its time). Unfinished
runs are left out (their checkpoints are not kept). Files are written to a temporary name and
renamed. To continue the grid in a new checkout, copy KEEP_DIR back to RUNS_DIR and run the
same `mixpg bench` command: the kept runs are skipped as finished.
"""

from __future__ import annotations

import csv
import os
import sys
import tomllib
from pathlib import Path

EVERY = 100


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def keep(run: Path, dest: Path) -> bool:
    cfg = tomllib.loads((run / "config.toml").read_text())
    total = cfg.get("train", {}).get("iterations")
    with (run / "progress.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or total is None:
        return False
    header, body = rows[0], [r for r in rows[1:] if r]
    it, ev = header.index("iteration"), header.index("eval_return_mean")
    if int(float(body[-1][it])) < total:
        return False
    kept = [r for r in body if r[ev] != "" or int(float(r[it])) % EVERY < 2]
    out = "\n".join(",".join(r) for r in [header, *kept]) + "\n"
    write(dest / "progress.csv", out)
    for name in ("config.toml", "task.toml"):
        if (run / name).is_file():
            write(dest / name, (run / name).read_text())
    return True


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    kept = skipped = 0
    for progress in sorted(src.rglob("progress.csv")):
        run = progress.parent
        if not (run / "config.toml").is_file() or "report" in run.relative_to(src).parts:
            continue
        if keep(run, dst / run.relative_to(src)):
            kept += 1
        else:
            skipped += 1
    print(f"kept {kept} finished runs in {dst} ({skipped} unfinished left out)")


if __name__ == "__main__":
    main()
