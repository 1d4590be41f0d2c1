"""How far the pipeline's results travel between CPUs: the same command (`make demo` by default) run in
fresh work folders, once on this CPU's own kernels and once under defectkit.testing.OTHER_CPU (oneDNN
held to SSE4.1, ATen's portable kernels, MKL's compatible path: the float rounding of another machine),
each in its own process. Writes each run's OOF and held-out AUC, the spread between them, and the largest
difference of any OOF or test prediction to bench/results/cpu_profiles_<config>.json.

    python bench/cpu_profiles.py                                  # configs/elpv_cpu.yaml, about 2 x 13 min
    python bench/cpu_profiles.py --config configs/elpv_cpu.yaml --workdir /tmp/cpu_profiles

On one machine and one profile, two runs give identical files (tests/test_run.py checks it); across
profiles only the figures written here can be expected.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchlib import ROOT, save_result  # first: puts src/ on the path

from defectkit.testing import OTHER_CPU

PROFILES = {"native": {}, "other-cpu": OTHER_CPU}


def run_one(config: Path, work: Path, env: dict, reuse: bool = False) -> dict:
    """One run in `work`; with `reuse`, a complete run left there is read instead (its wall time from the files'
    times: from the first file written to the run summary)."""
    done = list((work / "submissions").rglob("run_summary.json")) if reuse and work.exists() else []
    if done:
        first = min(f.stat().st_mtime for f in work.rglob("*") if f.is_file())
        wall = done[0].stat().st_mtime - first
    else:
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        subprocess.run([sys.executable, str(ROOT / "src/run.py"), "--config", str(config), "--workdir", str(work),
                        "--quiet"], check=True, env={**os.environ, **env}, cwd=ROOT)
        wall = time.time() - t0
    summary = json.loads(next((work / "submissions").rglob("run_summary.json")).read_text())
    blend = summary["table"][-1]
    disk = sum(f.stat().st_size for f in work.rglob("*") if f.is_file() and not f.is_symlink())
    return {"wall_min": round(wall / 60, 2), "oof_auc": blend.get("oof_auc"), "held_out_auc": blend.get("test_auc"),
            "held_out_acc": blend.get("test_acc"), "table": summary["table"],
            # the largest process of this and the earlier runs (Linux reports kilobytes)
            "peak_rss_gib": None if done else round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
            "workdir_gib": round(disk / 2**30, 2)}


def largest_difference(a: Path, b: Path) -> float:
    """The largest |difference| of any OOF or test prediction between two work folders."""
    worst = 0.0
    for f in sorted((a / "oof").rglob("*.csv")):
        g = b / f.relative_to(a)
        x, y = pd.read_csv(f, dtype={"id": str}), pd.read_csv(g, dtype={"id": str})
        worst = max(worst, float(np.abs(x.pred.to_numpy() - y.pred.to_numpy()).max()))
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/elpv_cpu.yaml")
    p.add_argument("--workdir", default="/tmp/cpu_profiles")
    p.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES))
    p.add_argument("--reuse", action="store_true", help="read a complete run left in the work folder instead")
    p.add_argument("--out")
    args = p.parse_args(argv)
    config = (ROOT / args.config).resolve()
    runs = {name: run_one(config, Path(args.workdir) / name, PROFILES[name], args.reuse) for name in args.profiles}
    oof = [r["oof_auc"] for r in runs.values()]
    held = [r["held_out_auc"] for r in runs.values()]
    both = len(runs) == 2
    result = {"config": args.config, "profiles": {k: dict(PROFILES[k]) for k in args.profiles}, "runs": runs,
              "oof_auc_spread": round(max(oof) - min(oof), 5) if both else None,
              "held_out_auc_spread": round(max(held) - min(held), 5) if both else None,
              "largest_prediction_difference": largest_difference(*(Path(args.workdir) / n for n in PROFILES))
              if both else None}
    save_result(result, f"{args.config}: held-out AUC {held} (spread {result['held_out_auc_spread']}), OOF {oof} "
                f"(spread {result['oof_auc_spread']}); predictions differ by up to "
                f"{result['largest_prediction_difference']}", args.out, f"cpu_profiles_{config.stem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
