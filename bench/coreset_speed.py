"""The anomaly member's coreset loop (greedy k-centre on a random projection, `train.anomaly.coreset`): seconds
per pool patch x bank patch, the planner's CORESET_S.

    python bench/coreset_speed.py [--dim 152] [--reps 2]

Random patches (the loop's time does not depend on their values) of lite0's levels 2+3 width; the pools are
16 x the bank, as build_bank draws them (POOL_PER_BANK), and the member's process setup (train.runtime.configure:
2 threads, glibc keeping freed memory). Writes bench/results/coreset_speed_cpu.json.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchlib import save_result  # first: puts src/ on the path

from defectkit.train import runtime
from defectkit.train.anomaly import POOL_PER_BANK, coreset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=152)
    p.add_argument("--banks", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args()
    runtime.configure(torch.device("cpu"), 2)
    rows = []
    for k in args.banks:
        pool = POOL_PER_BANK * k
        feats = torch.randn(pool, args.dim, generator=torch.Generator().manual_seed(0))
        secs = []
        for rep in range(args.reps):
            t0 = time.perf_counter()
            coreset(feats, k, rep)
            secs.append(time.perf_counter() - t0)
        s = statistics.median(secs)
        rows.append({"pool": pool, "bank": k, "dim": args.dim, "seconds": [round(x, 2) for x in secs],
                     "s_per_pair": float(f"{s / pool / k:.3g}")})
        print(rows[-1], flush=True)
    big = [r["s_per_pair"] for r in rows if r["pool"] >= 65536] or [rows[-1]["s_per_pair"]]
    save_result({"rows": rows, "s_per_pair_from_4096": max(big)},
                "coreset loop: " + ", ".join(f"{r['pool']} -> {r['bank']}: {r['s_per_pair']:.2e} s a pair"
                                             for r in rows),
                args.out, "coreset_speed_cpu")


if __name__ == "__main__":
    main()
