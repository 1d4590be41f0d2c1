"""The main job: prepare -> folds -> train every arch x fold -> blend -> submission, in one command.

    python src/run.py --config configs/elpv_cpu.yaml          # the README's quick start (CPU)
    python src/run.py --config configs/elpv.yaml              # the full GPU recipe
    python src/run.py --competition elpv --archs tf_efficientnet_lite0 --epochs 3   # any flag overrides
    python src/run.py --config configs/elpv.yaml --executor ray [--ray-address auto] [--gpus-per-job 0.5]

A rerun skips every fold whose outputs are complete and were made by the same recipe and folds
file, and resumes an interrupted fold from its last checkpoint: kill it any time and run it again.
A complete fold made by another recipe is an error (give the experiment another `name`, or --force).
With `--executor ray` every job is a Ray task (ray_grid.py): spread over this machine's GPUs, or
a cluster's nodes; a failed job does not stop the others, and the blend waits until every job
is complete. Ends with a table: per experiment OOF AUC, fold AUC mean +- std, held-out test AUC, wall time;
then the blend's OOF and held-out test AUC.
"""
import sys

from defectkit.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
