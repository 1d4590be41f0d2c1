"""Does the model look at the defect? A number for it: for every defect image of the OOF rows
with a mask (one mask image per id, non-zero = defect) or boxes (`id, x_1, y_1, x_2, y_2` in
pixels, as prepare.py yolo writes them), the share of the CAM's energy inside the defect area,
and the pointing game (is the CAM's maximum inside it?), per fold and over all folds.

    python src/explain.py --competition C --exp EXP --masks DIR      (or --boxes input/C/defect_boxes.csv)

A model that looks at the defect puts far more of its CAM energy inside the area than the area's
share of the image; one that looks anywhere puts about that share.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def scores(cams: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: the CAM energy's share inside the mask, the mask's share of the image, and
    whether the CAM's maximum falls inside the mask (the pointing game)."""
    total = cams.reshape(len(cams), -1).sum(1)
    inside = (cams * masks).reshape(len(cams), -1).sum(1)
    peak = cams.reshape(len(cams), -1).argmax(1)
    return {"energy_in": np.where(total > 0, inside / np.maximum(total, 1e-12), 0.0),
            "area": masks.reshape(len(masks), -1).mean(1),
            "hit": masks.reshape(len(masks), -1)[np.arange(len(masks)), peak].astype(float)}


def summarise(per_image: pd.DataFrame) -> dict:
    def agg(d):
        return {"n": len(d), "energy_in": round(float(d.energy_in.mean()), 4), "area": round(float(d.area.mean()), 4),
                "pointing_game": round(float(d.hit.mean()), 4)}
    return {"all": agg(per_image), "per_fold": {int(k): agg(g) for k, g in per_image.groupby("fold")}}


def summary_line(s: dict, cam: str, layer: int) -> str:
    a = s["all"]
    return (f"{cam} (layer {layer}): mean CAM energy inside the defect areas {a['energy_in']:.3f}, the areas cover "
            f"{a['area']:.3f} of the image; pointing game {a['pointing_game']:.3f} ({a['n']} defects, "
            f"{len(s['per_fold'])} folds)")
