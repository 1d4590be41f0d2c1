"""Grad-CAM heat maps of what a fold's model looks at, for the quality check that it looks at
the defect and not at the border or the printed text.

    python src/explain.py --competition elpv --exp tf_efficientnet_lite0_cpu160 --fold 0 [--n 8]

Reads the fold's best checkpoint and its OOF predictions, and writes one PNG grid per group to
models/<exp>/gradcam/fold<k>_{confident_defects,missed_defects,false_alarms}.png:
  confident_defects  defects the model is most sure of (what it has learnt to see)
  missed_defects     defects with the lowest scores (false negatives)
  false_alarms       good cells with the highest scores (false positives)
The threshold between "missed" and "found" is the one that maximises OOF accuracy.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from checks import InputError, cli_main, read_csv
from config import Competition, add_config_flags, config_from_args, fold_paths
from data import crop_resize, read_image
from fileio import save_figure_atomic
from models import load_fold_model

GROUPS = ("confident_defects", "missed_defects", "false_alarms")


def pick_rows(oof: pd.DataFrame, n: int) -> dict[str, pd.DataFrame]:
    from blend import best_threshold
    t = best_threshold(oof["target"].to_numpy(int), oof["pred"].to_numpy(float), "accuracy")
    pos, neg = oof[oof.target == 1], oof[oof.target == 0]
    return {"confident_defects": pos.nlargest(n, "pred"),
            "missed_defects": pos[pos.pred < t].nsmallest(n, "pred"),
            "false_alarms": neg[neg.pred >= t].nlargest(n, "pred")}


def target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The last feature layer, as named by timm's feature_info (bn2 for EfficientNet, layer4 for ResNet)."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise InputError(f"{type(model).__name__} has no feature_info: no layer to take Grad-CAM from")
    mod = model.get_submodule(info[-1]["module"])
    return mod[-1] if isinstance(mod, torch.nn.Sequential) else mod


def gradcam_maps(model, images: np.ndarray, mean, std) -> np.ndarray:
    """(N, H, W) Grad-CAM maps in [0, 1] for the defect logit of uint8 images (N, H, W, 3)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import RawScoresOutputTarget
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    model.eval()
    with GradCAM(model=model, target_layers=[target_layer(model)]) as cam:
        return cam(input_tensor=x, targets=[RawScoresOutputTarget()] * len(x))


def plot_grid(images, maps, titles, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = max(len(images), 1)
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
    for j in range(n):
        for ax in axes[:, j]:
            ax.axis("off")
        if j >= len(images):
            continue
        axes[0, j].imshow(images[j])
        axes[0, j].set_title(titles[j], fontsize=7)
        axes[1, j].imshow(images[j])
        axes[1, j].imshow(maps[j], cmap="jet", alpha=0.45, vmin=0, vmax=1)
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "none in this group", ha="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=90)
    plt.close(fig)


def explain(comp: Competition, base: Path, exp: str, fold: int, n: int = 8) -> list[Path]:
    base = Path(base)
    paths = fold_paths(base, exp, fold)
    model, ck = load_fold_model(paths.best, fold)
    oof = read_csv(paths.oof, "OOF file")
    oof["id"] = oof["id"].astype(str)
    root = comp.root(base) / comp.train_dir
    out = []
    for group, rows in pick_rows(oof, n).items():
        imgs = np.stack([crop_resize(read_image(root / f"{i}{comp.image_ext}"), ck["img_size"], ck["border_crop"])
                         for i in rows.id]) if len(rows) else np.zeros((0, 1, 1, 3), np.uint8)
        maps = gradcam_maps(model, imgs, ck["mean"], ck["std"]) if len(rows) else []
        titles = [f"{i}\np={p:.2f} y={t}" for i, p, t in zip(rows.id, rows.pred, rows.target)]
        path = paths.model_dir / "gradcam" / f"fold{fold}_{group}.png"
        plot_grid(imgs, maps, titles, path, f"{exp} fold {fold}: {group.replace('_', ' ')} ({len(rows)})")
        out.append(path)
    return out


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    p.add_argument("--exp", required=True, help="experiment name (a folder of models/ and oof/)")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--n", type=int, default=8, help="images per group")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    for path in explain(cfg.competition, Path(args.workdir), args.exp, args.fold, args.n):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
