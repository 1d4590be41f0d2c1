"""Validation AUC of one trained fold under each of the 8 symmetries of the square, and of TTA
over the first 1, 2, 4 and 8 of them (the order `--tta N` uses: identity, flips, then the
transposed ones). A model that handles every symmetry equally gains from TTA x8; one that saw
some symmetries less in training loses AUC on them, and TTA x8 averages its worse views in.

    python bench/tta_symmetries.py --competition elpv --exp tf_efficientnet_lite0_300 --fold 0

Reads models/<exp>/fold<k>.pt and oof/<exp>/fold<k>.csv (its validation ids and targets);
writes bench/results/tta_symmetries_<exp>_fold<k>.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

from benchlib import save_result  # first: puts src/ on the path

from defectkit.cli.flags import config_from_args, config_parser
from defectkit.core import metrics
from defectkit.core.checks import cli_main, read_csv
from defectkit.core.layout import Layout
from defectkit.data.datasets import ImageDataset, make_loader
from defectkit.explain.gradcam import fold_images
from defectkit.train import engine, runtime
from defectkit.train.models import load_fold_model


def symmetry_aucs(comp, base: Path, exp: str, fold: int, device: str = "auto", batch_size: int = 32) -> dict:
    layout = Layout(base)
    paths = layout.fold(exp, fold)
    model, ck = load_fold_model(paths.best, fold)
    dev = runtime.pick_device(device)
    runtime.configure(dev)
    model.to(dev)
    oof = read_csv(paths.oof, "OOF file")
    imgs = fold_images(ck, layout.train_dir(comp), oof["id"], comp.image_ext)
    y = oof["target"].to_numpy()
    setup = engine.make_setup(dev, ck.mean, ck.std, amp=True, channels_last=True)
    loader = make_loader(ImageDataset(imgs), batch_size, False, dev.type, 0)
    n = 8 if imgs.shape[1] == imgs.shape[2] else 4
    views = engine.predict_views(model, loader, setup, tta=n)
    return {"exp": exp, "fold": fold, "arch": ck.arch, "img_size": list(ck.hw), "n_val": len(y),
            "symmetry_auc": [round(metrics.auc(y, p), 5) for p in views],
            "tta_auc": {k: round(metrics.auc(y, views[:k].mean(0)), 5) for k in (1, 2, 4, 8) if k <= n}}


@cli_main
def main(argv=None) -> int:
    p = config_parser(__doc__)
    p.add_argument("--exp", required=True, help="experiment name (a folder of models/ and oof/)")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="JSON path (default bench/results/tta_symmetries_<exp>_fold<k>.json)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    r = symmetry_aucs(cfg.competition, Path(args.workdir), args.exp, args.fold, args.device)
    summary = (f"{r['exp']} fold {r['fold']}: AUC per symmetry " + " ".join(f"{a:.4f}" for a in r["symmetry_auc"])
               + "; TTA " + ", ".join(f"x{n} {a:.4f}" for n, a in r["tta_auc"].items()))
    save_result(r, summary, args.out, f"tta_symmetries_{r['exp']}_fold{r['fold']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
