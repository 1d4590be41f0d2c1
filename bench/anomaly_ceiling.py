"""How far the anomaly member's held-out AUC on ELPV moves with the coreset's random draws, and where its
ceiling lies in ELPV's own labels.

    python bench/anomaly_ceiling.py [--arch tf_efficientnet_lite0] [--img-size 224] [--seeds 5] [--workdir DIR]

One bank (the member's `build_bank`: 16 x bank patches drawn at random, or `--pool` x, then greedy k-centre)
from the good images of ELPV's training split, drawn with several seeds; each scores the held-out test split
(656 cells).
Reported: the held-out AUC per seed (its spread is the noise floor under which two recipes cannot be told
apart by one run), the AUC of the mean of the seeds' log-scores, and, from the package's defect
probabilities, the mean rank of each annotation grade (0, 1/3, 2/3, 1: ELPV's defect = probability >= 0.5)
with the AUC of the certain cells alone (0 against 1). The images go through the competition's own
preprocessing (Preprocess.fit), the net is the member's PatchCoreNet. Writes
bench/results/anomaly_ceiling_<arch>_<size>[_b<bank>][_pool<pool>].json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchlib import save_result  # first: puts src/ on the path

from defectkit.core.metrics import auc
from defectkit.data.sources.elpv import load_elpv, prepare_elpv
from defectkit.runtime.imaging import Preprocess
from defectkit.train.anomaly import POOL_PER_BANK, PatchCoreNet, backbone, build_bank, score
from defectkit.train.engine import make_setup
from defectkit.train.planner.cost import ANOMALY_BANK

GRADES = (0.0, 1 / 3, 2 / 3, 1.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="tf_efficientnet_lite0")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--layers", default="2,3")
    p.add_argument("--bank", type=int, default=ANOMALY_BANK)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pool", type=int, default=POOL_PER_BANK,
                   help="patches drawn for the coreset, times the bank (the member's POOL_PER_BANK)")
    p.add_argument("--workdir", help="where ELPV is prepared (default: a temporary folder)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    layers = [int(v) for v in args.layers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.workdir or tmp) / "input" / "elpv"
        prepare_elpv(data)
        train = pd.read_csv(data / "train.csv", dtype={"id": str})
        sol = pd.read_csv(data / "solution.csv", dtype={"id": str})
        pre = Preprocess((args.img_size, args.img_size))
        good = np.stack([pre.load(data / "train" / f"{i}.png") for i in train.id[train.target == 0]])
        test = np.stack([pre.load(data / "test" / f"{i}.png") for i in sol.id])
    ids, _, probs, _ = load_elpv()
    grade = pd.Series(probs, index=ids).loc[sol.id].to_numpy()
    y = sol.target.to_numpy()
    model, info = backbone(args.arch, layers)
    setup = make_setup(torch.device("cpu"), info.mean, info.std, amp=False, channels_last=False)
    rows, logs, t0 = [], [], time.time()
    for seed in range(args.seeds):
        net = PatchCoreNet(model, layers, torch.zeros(1, 1))
        bank = build_bank(net, good, args.bank, setup, seeds=(seed,), pool_per_bank=args.pool)
        net = PatchCoreNet(model, layers, bank)
        p = score(net, test, setup, 1, 64)
        logs.append(np.log(p / (1 - p)))
        rows.append({"seed": seed, "held_out_auc": round(float(auc(y, p)), 4)})
        print(rows[-1], f"{time.time() - t0:.0f} s", flush=True)
    mean = np.mean(logs, 0)
    rank = pd.Series(mean).rank(pct=True).to_numpy()
    by_grade = {f"{g:.2f}": {"cells": int(np.isclose(grade, g).sum()),
                             "mean_rank_pct": round(float(rank[np.isclose(grade, g)].mean()), 3)} for g in GRADES}
    certain = np.isclose(grade, 0) | np.isclose(grade, 1)
    aucs = [r["held_out_auc"] for r in rows]
    result = {"arch": args.arch, "img_size": args.img_size, "layers": layers, "bank": args.bank,
              "pool_per_bank": args.pool,
              "good_images": len(good), "test_images": len(test), "per_seed": rows,
              "spread": {"min": min(aucs), "max": max(aucs), "sd": round(float(np.std(aucs, ddof=1)), 4)},
              "mean_of_seeds_auc": round(float(auc(y, mean)), 4), "by_grade": by_grade,
              "certain_cells_auc": round(float(auc(y[certain], mean[certain])), 4),
              "minutes": round((time.time() - t0) / 60, 1)}
    save_result(result, f"{args.arch} {args.img_size} px, bank {args.bank}: held-out AUC {min(aucs)}-{max(aucs)} over "
                f"{args.seeds} coreset seeds (sd {result['spread']['sd']}), their mean {result['mean_of_seeds_auc']}; "
                f"certain cells alone {result['certain_cells_auc']}; mean rank by grade "
                + ", ".join(f"{g} {v['mean_rank_pct']}" for g, v in by_grade.items()),
                args.out, f"anomaly_ceiling_{args.arch.split('_')[-1]}_{args.img_size}"
                + (f"_b{args.bank}" if args.bank != ANOMALY_BANK else "")
                + (f"_pool{args.pool}" if args.pool != POOL_PER_BANK else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
