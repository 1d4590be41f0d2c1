"""Stratified (optionally grouped) k-fold assignment: writes folds/<competition>.csv.

    python src/make_folds.py --competition elpv [--n-folds 5] [--seed 42] [--group-col lot]
"""
from __future__ import annotations

from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import add_recipe_flags, config_from_args, config_parser
from defectkit.core.layout import Layout
from defectkit.data.folds import fold_summary, make_folds


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    add_recipe_flags(p, only=("n_folds", "seed"))
    p.add_argument("--group-col", default=None, help="column of train.csv whose groups are never split")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    n = cfg.recipe.n_folds
    folds = make_folds(cfg.competition, n, cfg.recipe.seed, args.group_col, base=Path(args.workdir))
    print(f"wrote {Layout(args.workdir).folds_file(cfg.competition)}: {len(folds)} rows, {n} folds")
    print(fold_summary(folds).to_string())
    return 0
