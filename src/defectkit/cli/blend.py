"""Blend the out-of-fold predictions of every experiment by OOF AUC and write the submission.

    python src/blend.py --competition elpv [--blend-method hill|rank|mean] [--exps A B ...] [--strict]

Reads oof/<exp>/fold<k>.{csv,json} and test_fold<k>.csv of every experiment made for this
competition with the current folds file; checks them; prints per-experiment OOF AUC, per-fold
mean +- std and correlations; finds blend weights (hill = Caruana ensemble selection with
replacement on rank-transformed OOF predictions, from the best single model, until no step
improves OOF AUC); cross-checks the weights fold-wise; reports operating points chosen on OOF;
scores against input/<comp>/solution.csv when it exists (local leaderboard); and writes
submissions/submission.csv (columns and row order of sample_submission.csv), blend.json and
roc.png as one result set: all three are replaced together, or none is.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import add_recipe_flags, config_from_args, config_parser
from defectkit.core import metrics
from defectkit.ensemble.report import BlendOptions, run_blend


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    add_recipe_flags(p, only=("blend_method", "stack_meta", "refit"))
    p.add_argument("--exps", nargs="+", help="experiments to blend (default: every complete one)")
    p.add_argument("--strict", action="store_true", help="an incomplete or mismatched experiment is an error")
    p.add_argument("--threshold-by", choices=metrics.THRESHOLD_RULES, default="accuracy",
                   help="how the operating threshold is chosen on OOF predictions")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    opts = BlendOptions(cfg.recipe.blend_method, args.exps, args.strict, args.threshold_by, cfg.recipe.stack_meta,
                        cfg.recipe.refit, shlex.join(["python", "src/blend.py", *sys.argv[1:]]))
    run_blend(cfg.competition, Path(args.workdir), opts)
