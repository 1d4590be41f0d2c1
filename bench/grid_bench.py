"""The grid's wall time through an executor, and Ray's overhead against the local executor.

    python bench/grid_bench.py --toy                      # 2 archs x 2 folds toy grid: local vs ray (CPU)
    python bench/grid_bench.py --config configs/elpv.yaml --workdir gpu_work --executor ray [--gpus-per-job 0.5]
                               [--name {arch}_{img_size}_p05] [--out bench/results/elpv_grid_cuda.json]

--toy: the same toy grid (tiny made-up images, two small timm models, 2 folds) once with
--executor local and once with --executor ray (a local Ray started first, its start-up timed
apart), 1 thread per job in both; writes bench/results/ray_overhead_cpu.json with
ray_wall / (local_wall) and the target ray_wall <= 1.3 x local_wall (+ start-up, reported).

With a config: runs the grid (skipping complete folds, so a grid longer than one sitting can
be continued by the same command) and writes the jobs run, their wall time, jobs per hour,
the blend's OOF and held-out AUC and accuracy, and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchlib import save_result  # first: puts src/ on the path

from defectkit.core.config import load_config
from defectkit.pipeline.grid import EXECUTORS, run_grid
from defectkit.runtime.cpus import usable_cpus
from defectkit.testing import make_toy_competition, write_toy_config
from defectkit.train.ray_executor import RayOptions, init_ray


def device_name() -> str:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


def timed_grid(cfg, base: Path, executor: str, opts: RayOptions | None) -> tuple[float, int, dict | None]:
    """(wall seconds, jobs run, the run summary) of one run of the grid."""
    lines = []
    t0 = time.perf_counter()
    ray = (opts or RayOptions()) if executor == "ray" else None
    summary = run_grid(cfg, base, progress=False, say=lambda *a: lines.append(" ".join(map(str, a))), ray=ray)
    wall = time.perf_counter() - t0
    todo = next((int(s.split(",")[1].split()[0]) for s in lines if " to run" in s), 0)
    return wall, todo, summary


def toy_overhead(out: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        for executor in ("local", "ray"):
            base = Path(tmp) / executor
            make_toy_competition(base)
            cfg = load_config(write_toy_config(base, archs=["resnet10t", "test_efficientnet"], epochs=3, threads=1))
            startup = 0.0
            if executor == "ray":
                t0 = time.perf_counter()
                init_ray(None, num_cpus=usable_cpus(), object_store_memory=100 * 2**20)
                startup = time.perf_counter() - t0
            wall, jobs, _ = timed_grid(cfg, base, executor, RayOptions(cpus_per_job=1))
            walls[executor] = (wall, startup, jobs)
    (lw, _, jobs), (rw, start, _) = walls["local"], walls["ray"]
    result = {"grid": "toy, 2 archs x 2 folds, 3 epochs, 1 thread per job", "jobs": jobs,
              "local_wall_s": round(lw, 1), "ray_wall_s": round(rw, 1), "ray_startup_s": round(start, 1),
              "ratio": round(rw / lw, 3), "target": "ray_wall_s <= 1.3 x local_wall_s (start-up apart)",
              "met": rw <= 1.3 * lw, "device": device_name()}
    save_result(result, f"toy grid ({jobs} jobs): local {lw:.1f} s, ray {rw:.1f} s (ratio {rw / lw:.2f}, target "
                f"<= 1.3) + Ray start-up {start:.1f} s", out, "ray_overhead_cpu")


def config_grid(args) -> None:
    over = {k: v for k, v in (("name", args.name), ("archs", args.archs)) if v}
    cfg = load_config(args.config, over)
    opts = RayOptions(args.ray_address, args.gpus_per_job, args.cpus_per_job)
    wall, jobs, summary = timed_grid(cfg, Path(args.workdir), args.executor, opts)
    blend = (summary or {}).get("table", [{}])[-1]
    result = {"config": args.config, "executor": args.executor, "gpus_per_job": args.gpus_per_job,
              "name": cfg.recipe.name, "jobs_run": jobs, "wall_s": round(wall, 1),
              "jobs_per_hour": round(jobs / wall * 3600, 1) if jobs else None,
              "blend_oof_auc": blend.get("oof_auc"), "test_auc": blend.get("test_auc"),
              "test_acc": blend.get("test_acc"), "table": (summary or {}).get("table"), "device": device_name()}
    stem = Path(args.config).stem
    save_result(result, f"{stem} via {args.executor}: {jobs} jobs in {wall / 60:.1f} min"
                + (f" ({result['jobs_per_hour']} jobs/h)" if jobs else "")
                + (f"; blend held-out AUC {blend.get('test_auc')}" if summary else ""), args.out,
                f"grid_{stem}_{args.executor}")
    print(json.dumps(result.get("table"), indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toy", action="store_true", help="Ray's overhead on a toy grid (local vs ray)")
    p.add_argument("--config")
    p.add_argument("--workdir", default="gpu_work")
    p.add_argument("--executor", choices=EXECUTORS, default="ray")
    p.add_argument("--ray-address")
    p.add_argument("--gpus-per-job", type=float)
    p.add_argument("--cpus-per-job", type=float)
    p.add_argument("--name", help="experiment name template (another one keeps these runs apart)")
    p.add_argument("--archs", nargs="+", help="the archs of the grid (default: the config's)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.toy:
        toy_overhead(args.out)
    elif args.config:
        config_grid(args)
    else:
        p.error("give --toy or --config")
    return 0


if __name__ == "__main__":
    sys.exit(main())
