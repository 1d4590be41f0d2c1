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

import metrics
from checks import InputError, cli_main, read_csv
from config import Competition, add_config_flags, config_from_args
from imaging import load_image
from layout import Layout
from models import load_fold_model
from plots import figure

GROUPS = ("confident_defects", "missed_defects", "false_alarms")


def pick_rows(oof: pd.DataFrame, n: int) -> dict[str, pd.DataFrame]:
    t = metrics.best_threshold(oof["target"].to_numpy(int), oof["pred"].to_numpy(float), "accuracy")
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
    n = max(len(images), 1)
    with figure(path, 2, n, figsize=(2.2 * n, 4.6), squeeze=False) as (fig, axes):
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


def fold_images(ck: dict, folder: Path, ids, ext: str) -> np.ndarray:
    """The images of `ids` as the fold's model saw them (size, resize mode, border crop)."""
    hw = tuple(ck["img_size"]) if isinstance(ck["img_size"], (list, tuple)) else (ck["img_size"],) * 2
    if not len(ids):
        return np.zeros((0, *hw, 3), np.uint8)
    return np.stack([load_image(folder / f"{i}{ext}", hw, ck.get("resize", "squash"), ck["border_crop"])
                     for i in ids])


def explain(comp: Competition, base: Path, exp: str, fold: int, n: int = 8) -> list[Path]:
    layout = Layout(base)
    paths = layout.fold(exp, fold)
    model, ck = load_fold_model(paths.best, fold)
    oof = read_csv(paths.oof, "OOF file")
    out = []
    for group, rows in pick_rows(oof, n).items():
        imgs = fold_images(ck, layout.train_dir(comp), rows.id, comp.image_ext)
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
