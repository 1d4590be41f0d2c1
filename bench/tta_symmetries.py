"""Validation AUC of one trained fold under each of the 8 symmetries of the square, and of TTA
over the first 1, 2, 4 and 8 of them (the order `--tta N` uses: identity, flips, then the
transposed ones). A model that handles every symmetry equally gains from TTA x8; one that saw
some symmetries less in training loses AUC on them, and TTA x8 averages its worse views in.

    python bench/tta_symmetries.py --competition elpv --exp tf_efficientnet_lite0_300 --fold 0

Reads models/<exp>/fold<k>.pt and oof/<exp>/fold<k>.csv (its validation ids and targets);
writes bench/results/tta_symmetries_<exp>_fold<k>.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import data  # noqa: E402
import engine  # noqa: E402
from checks import cli_main, read_csv  # noqa: E402
from config import add_config_flags, config_from_args, fold_paths  # noqa: E402
from models import load_fold_model  # noqa: E402
from train import pick_device, set_threads  # noqa: E402
from benchlib import save_result  # noqa: E402


def symmetry_aucs(comp, base: Path, exp: str, fold: int, device: str = "auto", batch_size: int = 32) -> dict:
    paths = fold_paths(base, exp, fold)
    model, ck = load_fold_model(paths.best, fold)
    dev = pick_device(device)
    set_threads(dev, None)
    model.to(dev)
    oof = read_csv(paths.oof, "OOF file")
    root = comp.root(base) / comp.train_dir
    imgs = np.stack([data.crop_resize(data.read_image(root / f"{i}{comp.image_ext}"), ck["img_size"],
                                      ck["border_crop"]) for i in oof["id"].astype(str)])
    y = oof["target"].to_numpy()
    setup = engine.make_setup(dev, ck["mean"], ck["std"], amp=True, channels_last=True)
    loader = data.make_loader(data.ImageDataset(imgs), batch_size, False, dev.type, 0)
    views = engine.predict_views(model, loader, setup, tta=8)
    return {"exp": exp, "fold": fold, "arch": ck["arch"], "img_size": ck["img_size"], "n_val": len(y),
            "symmetry_auc": [round(float(roc_auc_score(y, p)), 5) for p in views],
            "tta_auc": {n: round(float(roc_auc_score(y, views[:n].mean(0))), 5) for n in (1, 2, 4, 8)}}


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
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
