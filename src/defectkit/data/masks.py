"""Where the defects are, when a source says: masks (one PNG per image, non-zero on the defect) and
boxes (a CSV of id, x_1, y_1, x_2, y_2 in pixels), read, checked against their images, and fitted to a
model's input the way its images are (explain/localise.py scores maps against them)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from defectkit.core.checks import InputError, check_columns, read_csv
from defectkit.runtime.imaging import IMAGE_EXTS, Preprocess, read_image

BOX_COLS = ["x_1", "y_1", "x_2", "y_2"]


def read_mask(path: Path) -> np.ndarray:
    """A mask image as bool (H, W): a pixel is defect where any channel is non-zero."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise InputError(f"{path}: cannot be decoded as a mask image")
    return (m if m.ndim == 2 else m.max(axis=2)) > 0


def mask_path(masks_dir: Path, i: str) -> Path | None:
    """The mask file of id `i` (any image format), or None."""
    return next((p for ext in IMAGE_EXTS if (p := Path(masks_dir) / f"{i}{ext}").exists()), None)


def mask_from_boxes(boxes: pd.DataFrame, i: str, hw: tuple[int, int]) -> np.ndarray | None:
    rows = boxes[boxes["id"] == i]
    if rows.empty:
        return None
    m = np.zeros(hw, bool)
    for row, (x1, y1, x2, y2) in zip(rows.index, rows[BOX_COLS].to_numpy(float)):
        if x2 > hw[1] + 0.5 or y2 > hw[0] + 0.5:
            raise InputError(f"{boxes.attrs.get('path', 'defect boxes')}: row {row + 2}: box ({x1:g}, {y1:g}, "
                             f"{x2:g}, {y2:g}) of {i!r} reaches outside its {hw[1]} x {hw[0]} image")
        m[max(0, int(np.floor(y1))):int(np.ceil(y2)), max(0, int(np.floor(x1))):int(np.ceil(x2))] = True
    return m


def read_boxes(path: Path) -> pd.DataFrame:
    """id, x_1, y_1, x_2, y_2 in pixels; a row without a box (empty coordinates, as prepare.py yolo
    writes a good image's) is skipped; text, negative or reversed coordinates are one line naming the row."""
    boxes = read_csv(path, "defect boxes")
    check_columns(boxes, ["id", *BOX_COLS], path)
    boxes["id"] = boxes["id"].astype(str)
    empty = boxes[BOX_COLS].isna().all(axis=1) | (boxes[BOX_COLS].astype(str) == "").all(axis=1)
    for row in np.flatnonzero(~empty.to_numpy()):
        vals = boxes.loc[row, BOX_COLS]
        nums = pd.to_numeric(vals, errors="coerce")
        if nums.isna().any():
            raise InputError(f"{path}: row {row + 2}: {dict(vals)}; expected four pixel coordinates")
        x1, y1, x2, y2 = nums.to_numpy(float)
        if min(x1, y1) < 0 or x2 <= x1 or y2 <= y1:
            raise InputError(f"{path}: row {row + 2}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}); expected 0 <= x_1 < x_2 "
                             "and 0 <= y_1 < y_2 (pixels)")
    boxes = boxes[~empty.to_numpy()].copy()
    boxes[BOX_COLS] = boxes[BOX_COLS].apply(pd.to_numeric)
    boxes.attrs["path"] = str(path)
    return boxes


def check_mask_shape(mask: np.ndarray, image_hw: tuple[int, int], where) -> None:
    """A mask is drawn on its image: the same height and width, or one line naming it."""
    if mask.shape != tuple(image_hw):
        raise InputError(f"{where}: mask of {mask.shape[1]} x {mask.shape[0]} px for an image of {image_hw[1]} x "
                         f"{image_hw[0]} px; a mask must have its image's size")


def fit_mask(mask: np.ndarray, image_hw: tuple[int, int], pre: Preprocess) -> np.ndarray:
    """A mask brought to the model's input exactly as its image was (crop, resize mode)."""
    m3 = np.repeat((mask.astype(np.uint8) * 255)[:, :, None], 3, axis=2)
    return pre.fit(m3)[:, :, 0] > 127


def defect_masks(ids, image_dir: Path, ext: str, pre: Preprocess, masks_dir: Path | None = None,
                 boxes: pd.DataFrame | None = None) -> tuple[list[str], list[np.ndarray]]:
    """(ids that have a defect area, their masks at the model's input), for `ids`."""
    keep, masks = [], []
    for i in ids:
        image_hw = read_image(Path(image_dir) / f"{i}{ext}").shape[:2]
        if masks_dir:
            p = mask_path(masks_dir, i)
            m = read_mask(p) if p else None
            if m is not None:
                check_mask_shape(m, image_hw, p)
        else:
            m = mask_from_boxes(boxes, i, image_hw)
        if m is not None and m.any():
            keep.append(i)
            masks.append(fit_mask(m, image_hw, pre))
    return keep, masks
