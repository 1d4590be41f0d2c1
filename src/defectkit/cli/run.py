"""The main job: prepare -> folds -> train every arch x fold -> blend -> submission, in one command.

    python src/run.py --config configs/elpv_cpu.yaml          # the README's quick start (CPU)
    python src/run.py --config configs/elpv.yaml              # the full GPU recipe
    python src/run.py --competition elpv --archs tf_efficientnet_lite0 --epochs 3   # any flag overrides
    python src/run.py --config configs/elpv.yaml --executor ray [--ray-address auto] [--gpus-per-job 0.5]

A rerun skips every fold whose outputs are complete and were made by the same recipe and folds
file, and resumes an interrupted fold from its last checkpoint: kill it any time and run it again.
A complete fold made by another recipe is an error (give the experiment another `name`, or --force).
With `--executor ray` every job is a Ray task (defectkit/train/ray_executor.py): spread over this machine's GPUs, or
a cluster's nodes; a failed job does not stop the others, and the blend waits until every job
is complete. Ends with a table: per experiment OOF AUC, fold AUC mean +- std, held-out test AUC, wall time;
then the blend's OOF and held-out test AUC.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import add_recipe_flags, config_from_args, config_parser
from defectkit.core.checks import InputError
from defectkit.pipeline.grid import EXECUTORS, run_grid
from defectkit.train.ray_executor import RayOptions


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    p.add_argument("--force", action="store_true", help="retrain folds made by another recipe")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("executor (how the jobs run; never part of the recipe)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: every job in turn in this process; ray: every job a Ray task")
    g.add_argument("--ray-address", help="a running Ray cluster (auto, HOST:PORT, ray://...); "
                                         "default: start Ray on this machine")
    g.add_argument("--gpus-per-job", type=_non_negative, help="GPUs per job (0.5 packs 2 jobs on a GPU); "
                                                               "default 1 when the cluster has GPUs, else 0")
    g.add_argument("--cpus-per-job", type=_non_negative, help="CPUs per job (default: the cluster's CPUs per GPU, "
                                                               "or 1 without GPUs); also the job's torch threads")
    add_recipe_flags(p)
    args = p.parse_args(argv)
    if args.executor == "local" and (args.ray_address or args.gpus_per_job is not None
                                     or args.cpus_per_job is not None):
        raise InputError("--ray-address, --gpus-per-job and --cpus-per-job need --executor ray")
    ray = RayOptions(args.ray_address, args.gpus_per_job, args.cpus_per_job) if args.executor == "ray" else None
    run_grid(config_from_args(args), Path(args.workdir), args.force, progress=not args.quiet, ray=ray)


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v
