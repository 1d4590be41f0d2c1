"""Pseudo-labels: the test rows the current blend is sure of, as extra training rows of a second
round of experiments.

    python src/pseudo.py --competition elpv                      # -> input/elpv/pseudo.csv
    python src/run.py --config configs/elpv_cpu.yaml --pseudo input/elpv/pseudo.csv

A test row becomes a pseudo-defect when the blend's score is above the threshold at which 1 % of
the good OOF rows score higher (--defect-fpr), and pseudo-good when it is below the threshold
that keeps 99 % of the defect OOF rows above it (--good-recall): both thresholds are chosen on
OOF predictions, never on test labels. Training with `pseudo` adds these rows to the training
rows of every fold, never to a validation fold, so OOF rows stay the original training rows and
blending and cross-checking stay honest; the experiments are named <name>_pl.
"""
import sys

from defectkit.cli.pseudo import main

if __name__ == "__main__":
    sys.exit(main())
