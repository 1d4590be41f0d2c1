"""Train one backbone on one fold, keep the best epoch by validation AUC, and write its
out-of-fold and test predictions with test-time augmentation.

    python src/train.py --competition elpv --fold 0 --arch tf_efficientnet_lite0
    python src/train.py --competition elpv --fold 0 --arch resnet50 --pretrained hub --epochs 15 --tta 8

Writes (exp = the recipe's name, default the arch):
    models/<exp>/fold<k>.pt            best checkpoint (weights used for predictions)
    models/<exp>/fold<k>_last.pt       last epoch, with optimizer/scheduler/scaler/EMA state (--resume;
                                       removed once the fold is complete)
    models/<exp>/fold<k>_log.csv, fold<k>_curves.png, fold<k>_config.yaml
    oof/<exp>/fold<k>.csv              id, target, fold, pred   (validation rows of fold k)
    oof/<exp>/test_fold<k>.csv         id, pred                 (test rows, this fold's model)
    oof/<exp>/fold<k>.json             folds hash, config, scores; written last = fold complete

A fold is trained under a lock (models/<exp>/fold<k>.lock): a second process asking for the
same fold stops with a message naming the holder. Every fold of an experiment comes from one
recipe and one folds file: replacing a complete fold made otherwise needs --force.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import add_recipe_flags, config_from_args, config_parser
from defectkit.core.config import GRID_FIELDS
from defectkit.core.layout import REFIT, Layout
from defectkit.core.members import FitOptions
from defectkit.train import engine
from defectkit.train.fold import refit_config, train_fold
from defectkit.train.planner import resolve_auto


def build_parser() -> argparse.ArgumentParser:
    p = config_parser(__doc__)
    p.add_argument("--fold", type=_fold, required=True,
                   help="fold to hold out (0..n_folds-1), or all: one model on every training row (a refit, with the "
                        "folds' median best epoch unless --epochs), which writes test predictions only")
    p.add_argument("--arch", help="timm model name (default: the config's first arch)")
    p.add_argument("--resume", action="store_true",
                   help="continue from models/<exp>/fold<k>_last.pt (a complete fold: kept as it is)")
    p.add_argument("--force", action="store_true", help="replace a complete fold made by another recipe")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_recipe_flags(p, exclude=GRID_FIELDS)
    return p


def _fold(text: str) -> int | str:
    if text == REFIT:
        return REFIT
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fold number or {REFIT}, got {text!r}") from None


@command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = resolve_auto(config_from_args(args), Path(args.workdir))
    arch = args.arch or cfg.recipe.archs[0]
    cfg = dataclasses.replace(cfg, recipe=dataclasses.replace(cfg.recipe, archs=[arch]))
    if args.fold == REFIT:
        cfg = refit_config(cfg, arch, Path(args.workdir), args.epochs)
    t0 = time.time()
    try:
        meta = train_fold(cfg, arch, args.fold, Path(args.workdir),
                          FitOptions(progress=not args.quiet, resume=args.resume, force=args.force))
    except engine.NonFiniteLossError as e:
        last = Layout(args.workdir).fold(cfg.exp_name(arch), args.fold).last
        print(f"error: training stopped, {e}. The last good epoch is kept in {last} (continue with --resume "
              "after lowering --lr, or turn on gradient accumulation)", file=sys.stderr)
        return 3
    what = f"OOF AUC {meta.oof_auc:.4f}" if meta.oof_auc is not None else "test predictions only"
    print(f"done in {time.time() - t0:.0f}s: {what} (fold {args.fold})")
    return 0
