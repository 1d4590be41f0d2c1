"""Blend speed at Nexperia's size: 20 experiments x 40,000 OOF rows (5 folds, 3,000 test rows).

    python bench/blend_speed.py [--experiments 20] [--rows 40000] [--method hill]

Writes the experiments' OOF/test files in a temporary workdir (not timed), then times the whole
`run_blend`: reading and checking 200 files, the score table, hill climbing, the fold-wise
cross-check (5 more hill climbs), operating points, the submission and the ROC plot.
Target: under 10 s on a 2-core machine. Writes bench/results/blend_speed.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchlib import save_result  # first: puts src/ on the path

from defectkit.core.config import load_config
from defectkit.ensemble.methods import METHODS
from defectkit.ensemble.report import run_blend
from defectkit.testing import make_blend_workdir, sigmoid, write_experiment


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiments", type=int, default=20)
    p.add_argument("--rows", type=int, default=40000)
    p.add_argument("--test-rows", type=int, default=3000)
    p.add_argument("--method", default="hill", choices=sorted(METHODS))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        w = make_blend_workdir(base, n=args.rows, n_test=args.test_rows, n_folds=5)
        rng, y = w["rng"], w["y"]
        shared = rng.normal(0, 1, len(y))
        for j in range(args.experiments):  # correlated models of varied strength, as in a real library
            pred = sigmoid(y * rng.uniform(1.0, 2.5) + 0.7 * shared + rng.normal(0, 1, len(y)))
            write_experiment(base, f"exp{j:02d}", w, pred)
        setup_s = time.perf_counter() - t0
        comp = load_config(base / "configs" / "syn.yaml").competition
        t0 = time.perf_counter()
        rep = run_blend(comp, base, args.method, verbose=False)
        secs = time.perf_counter() - t0
    best = max(r["oof_auc"] for r in rep.table)
    result = {"experiments": args.experiments, "rows": args.rows, "test_rows": args.test_rows, "folds": 5,
              "method": args.method, "blend_secs": round(secs, 2), "target_secs": 10.0,
              "files_written_secs": round(setup_s, 1), "best_single_oof_auc": best,
              "blend_oof_auc": rep.blend_oof_auc, "selected": len(rep.weights)}
    save_result(result, f"blend ({args.method}) of {args.experiments} experiments x {args.rows} OOF rows: "
                f"{secs:.2f} s (target < 10 s); best single {best:.4f} -> blend {rep.blend_oof_auc:.4f} "
                f"with {len(rep.weights)} experiments", None, "blend_speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
