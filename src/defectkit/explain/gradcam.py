"""Grad-CAM heat maps of what a fold's model looks at (best and worst OOF images per class), and their
localisation scores against masks or boxes."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from defectkit.core import metrics
from defectkit.core.checks import InputError, read_csv
from defectkit.core.config import Competition
from defectkit.core.fileio import write_csv_atomic, write_json_atomic
from defectkit.core.layout import Layout
from defectkit.core.members import get_member
from defectkit.core.plots import figure
from defectkit.data.masks import defect_masks, read_boxes
from defectkit.explain import localise
from defectkit.runtime.imaging import Preprocess
from defectkit.train.checkpoint import Checkpoint
from defectkit.train.models import load_fold_model

GROUPS = ("confident_defects", "missed_defects", "false_alarms")


def pick_rows(oof: pd.DataFrame, n: int) -> dict[str, pd.DataFrame]:
    t = metrics.best_threshold(oof["target"].to_numpy(int), oof["pred"].to_numpy(float), "accuracy")
    pos, neg = oof[oof.target == 1], oof[oof.target == 0]
    return {"confident_defects": pos.nlargest(n, "pred"),
            "missed_defects": pos[pos.pred < t].nsmallest(n, "pred"),
            "false_alarms": neg[neg.pred >= t].nlargest(n, "pred")}


CAMS = ("gradcam", "hirescam", "layercam", "gradcam++")


def target_layer(model: torch.nn.Module, index: int = -1) -> torch.nn.Module:
    """A feature layer named by timm's feature_info: -1 the last (bn2 for EfficientNet, layer4 for
    ResNet, stride 32), -2 the one before (stride 16: a map of twice the resolution), ..."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise InputError(f"{type(model).__name__} has no feature_info: no layer to take Grad-CAM from")
    if not -len(info) <= index < 0:
        raise InputError(f"--layer {index}: {type(model).__name__} has feature layers -1 .. -{len(info)}")
    mod = model.get_submodule(info[index]["module"])
    return mod[-1] if isinstance(mod, torch.nn.Sequential) else mod


N_WORST = 8  # the defects whose maps localisation shows: those with the least of the map inside


def gradcam_maps(model, images: np.ndarray, pre: Preprocess, cam: str = "gradcam", layer: int = -1,
                 batch_size: int = 32) -> np.ndarray:
    """(N, H, W) CAM maps in [0, 1] for the defect logit of uint8 images (N, H, W, 3), normalised as
    `pre` says."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import RawScoresOutputTarget
    method = {"gradcam": pgc.GradCAM, "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM,
              "gradcam++": pgc.GradCAMPlusPlus}[cam]
    x = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    model.eval()
    with method(model=model, target_layers=[target_layer(model, layer)]) as c:
        return np.concatenate([c(input_tensor=x[s:s + batch_size], targets=[RawScoresOutputTarget()] * len(
            x[s:s + batch_size])) for s in range(0, len(x), batch_size)]) if len(x) else np.zeros((0, *x.shape[2:]))


def saliency_maps(model, images: np.ndarray, ck: Checkpoint, cam: str = "gradcam", layer: int = -1) -> np.ndarray:
    """(N, H, W) maps in [0, 1] of where a fold model sees the defect: the anomaly member's patch
    distances to its bank (train/anomaly.py, resized to the input, each image's range scaled to
    [0, 1], as the CAMs are), or a classifier's CAM."""
    maps = get_member(ck.recipe.get("member", "classifier")).patch_scores(model, images, ck.mean, ck.std)
    if maps is None:
        return gradcam_maps(model, images, ck.preprocess, cam, layer)
    out = [cv2.resize(m.astype(np.float32), images.shape[2:0:-1], interpolation=cv2.INTER_LINEAR) for m in maps]
    return np.array([(m - m.min()) / max(float(m.max() - m.min()), 1e-12) for m in out]).reshape(
        len(images), *images.shape[1:3])


def plot_grid(images, maps, titles, path: Path, title: str, masks=None) -> None:
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
            if masks is not None:
                axes[1, j].contour(masks[j], levels=[0.5], colors="white", linewidths=1)
        if not len(images):
            axes[0, 0].text(0.5, 0.5, "none in this group", ha="center")
        fig.suptitle(title, fontsize=9)


def fold_images(ck: Checkpoint, folder: Path, ids, ext: str) -> np.ndarray:
    """The images of `ids` as the fold's model saw them (size, resize mode, border crop)."""
    if not len(ids):
        return np.zeros((0, *ck.hw, 3), np.uint8)
    return np.stack([ck.preprocess.load(folder / f"{i}{ext}") for i in ids])


def explain(comp: Competition, base: Path, exp: str, fold: int, n: int = 8) -> list[Path]:
    layout = Layout(base)
    paths = layout.fold(exp, fold)
    model, ck = load_fold_model(paths.best, fold)
    oof = read_csv(paths.oof, "OOF file")
    out = []
    for group, rows in pick_rows(oof, n).items():
        imgs = fold_images(ck, layout.train_dir(comp), rows.id, comp.image_ext)
        maps = saliency_maps(model, imgs, ck) if len(rows) else []
        titles = [f"{i}\np={p:.2f} y={t}" for i, p, t in zip(rows.id, rows.pred, rows.target)]
        path = paths.model_dir / "gradcam" / f"fold{fold}_{group}.png"
        plot_grid(imgs, maps, titles, path, f"{exp} fold {fold}: {group.replace('_', ' ')} ({len(rows)})")
        out.append(path)
    return out


def localisation(comp: Competition, base: Path, exp: str, truth: Path | None, cam: str = "gradcam",
                 layer: int = -1) -> dict:
    """The CAM localisation score of every fold model of `exp` on its OOF defect images, against
    `truth`: a folder of defect masks, or a CSV of defect boxes; its files (the summary, the table,
    the histogram and the worst N_WORST images) beside the experiment's Grad-CAMs. Returns the summary
    (`localise.summary_line` says it in a line)."""
    layout = Layout(base)
    if not layout.fold_metas(exp):
        raise InputError(f"{layout.oof_root / exp}: experiment {exp!r} has no complete fold (experiments: "
                         f"{', '.join(d.name for d in layout.experiment_dirs()) or 'none'})")
    if truth is None:
        raise InputError("give one of --masks DIR or --boxes CSV")
    truth = Path(truth)
    masks_dir, boxes_csv = (None, truth) if truth.suffix.lower() == ".csv" else (truth, None)
    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise InputError(f"--masks {masks_dir}: folder not found")
    boxes = read_boxes(Path(boxes_csv)) if boxes_csv else None
    rows, worst = [], []
    for meta in layout.fold_metas(exp):
        k = int(meta.stem.removeprefix("fold"))
        paths = layout.fold(exp, k)
        model, ck = load_fold_model(paths.best, k)
        oof = read_csv(paths.oof, "OOF file")
        ids, masks = defect_masks(oof.id[oof.target == 1], layout.train_dir(comp), comp.image_ext,
                                           ck.preprocess, masks_dir, boxes)
        imgs = fold_images(ck, layout.train_dir(comp), ids, comp.image_ext)
        cams = saliency_maps(model, imgs, ck, cam, layer)
        sc = localise.scores(cams, np.array(masks).reshape(len(masks), *cams.shape[1:]))
        rows.append(pd.DataFrame({"id": ids, "fold": k, **sc}))
        worst += [(e, i, img, c, m) for e, i, img, c, m in zip(sc["energy_in"], ids, imgs, cams, masks)]
    if not rows or not sum(len(r) for r in rows):
        raise InputError(f"{exp}: no OOF defect image has a defect area in {masks_dir or boxes_csv}")
    per_image = pd.concat(rows, ignore_index=True)
    summary = {"exp": exp, "cam": cam, "layer": layer, **localise.summarise(per_image)}
    out = layout.fold(exp, 0).model_dir / "gradcam"
    plot_localisation(per_image, sorted(worst, key=lambda t: t[0])[:N_WORST], out, exp, cam, layer)
    write_json_atomic(out / f"localisation_{cam}_l{-layer}.json", summary)
    write_csv_atomic(per_image, out / f"localisation_{cam}_l{-layer}.csv")
    return summary


def plot_localisation(per_image: pd.DataFrame, worst: list, out: Path, exp: str, cam: str, layer: int) -> None:
    with figure(out / f"localisation_{cam}_l{-layer}_hist.png", figsize=(6, 3.5)) as (fig, ax):
        ax.hist(per_image.energy_in, bins=20, range=(0, 1), color="C0", alpha=0.8, label="CAM energy inside")
        ax.axvline(per_image.area.mean(), color="C3", ls="--", label=f"mean area share {per_image.area.mean():.3f}")
        ax.set_xlabel("share of the CAM's energy inside the defect area"), ax.set_ylabel("defect images")
        ax.set_title(f"{exp}: {cam} layer {layer}, pointing game {per_image.hit.mean():.2f}", fontsize=9)
        ax.legend(fontsize=7)
    plot_grid([w[2] for w in worst], [w[3] for w in worst], [f"{w[1]}\nin={w[0]:.2f}" for w in worst],
              out / f"localisation_{cam}_l{-layer}_worst.png", f"{exp}: least energy inside the defect area",
              masks=[w[4] for w in worst])
