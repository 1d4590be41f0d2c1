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
from __future__ import annotations

from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import config_from_args, config_parser
from defectkit.ensemble.methods import METHODS
from defectkit.ensemble.pseudo import PseudoRule, make_pseudo


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    p.add_argument("--blend-method", default="hill", choices=list(METHODS),
                   help="a registered blend method (its scores pick the confident test rows)")
    p.add_argument("--defect-fpr", type=float, default=0.01, help="OOF false-positive rate of the defect threshold")
    p.add_argument("--good-recall", type=float, default=0.99, help="OOF defect recall of the good threshold")
    p.add_argument("--out", help="default: input/<competition>/pseudo.csv")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    make_pseudo(cfg.competition, Path(args.workdir), args.blend_method, PseudoRule(args.defect_fpr, args.good_recall),
                args.out and Path(args.out))
