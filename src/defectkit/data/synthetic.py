"""Synthetic defects on good images: a yardstick for a member that learns from good images alone, when
there is no real defect to score it on (anomalib's `val_split_mode: synthetic`). They weigh and choose
members; they never train one whose figures are reported, and a figure measured on them says so.

Each kind draws one defect of `size` (a share of the image's shorter side) at a random place, and returns
the image and the defect's mask:

    patch       a rectangle cut from another good image (another place in it) and pasted (CutPaste)
    scratch     a thin line, 1-3 px, brighter or darker than what it crosses
    blob        an ellipse of texture from outside the set (smoothed noise), its edge soft
    blur        the image blurred inside an ellipse (a smudge, a focus fault)
    brightness  the image brighter or darker inside an ellipse, its edge soft (a stain)

Everything is drawn from one numpy Generator: the same seed gives the same defects.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from defectkit.core.checks import InputError

KINDS = ("patch", "scratch", "blob", "blur", "brightness")
SIZES = (0.06, 0.12, 0.24)  # of the shorter side: small, medium, large


def _ellipse(hw: tuple[int, int], size: float, rng: np.random.Generator) -> np.ndarray:
    """A float mask in [0, 1] of an ellipse of about `size` x the shorter side, its edge soft."""
    h, w = hw
    r = max(2.0, size * min(h, w) / 2)
    axes = (max(1, int(r * rng.uniform(0.6, 1.4))), max(1, int(r * rng.uniform(0.6, 1.4))))
    centre = (int(rng.integers(axes[0], max(axes[0] + 1, w - axes[0]))),
              int(rng.integers(axes[1], max(axes[1] + 1, h - axes[1]))))
    m = np.zeros((h, w), np.float32)
    cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    edge = max(1, int(r / 4)) * 2 + 1
    return cv2.GaussianBlur(m, (edge, edge), 0)


def _blend(img: np.ndarray, other: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[:, :, None]
    return np.clip(img * (1 - a) + other * a, 0, 255).astype(np.uint8)


def _patch(img, size, rng, donor):
    h, w = img.shape[:2]
    ph, pw = (max(2, int(size * min(h, w) * rng.uniform(0.7, 1.3))) for _ in range(2))
    ph, pw = min(ph, h - 1), min(pw, w - 1)
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    dy, dx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out = img.copy()
    out[dy:dy + ph, dx:dx + pw] = donor[sy:sy + ph, sx:sx + pw]
    mask = np.zeros((h, w), bool)
    mask[dy:dy + ph, dx:dx + pw] = True
    return out, mask


def _scratch(img, size, rng, donor):
    h, w = img.shape[:2]
    length = max(4.0, 2 * size * min(h, w))
    x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
    angle = rng.uniform(0, np.pi)
    x1 = np.clip(x0 + length * np.cos(angle), 0, w - 1)
    y1 = np.clip(y0 + length * np.sin(angle), 0, h - 1)
    width = int(rng.integers(1, 4))
    alpha = np.zeros((h, w), np.float32)
    cv2.line(alpha, (int(x0), int(y0)), (int(x1), int(y1)), 1.0, width, cv2.LINE_AA)
    shade = float(img.mean()) + rng.choice([-1, 1]) * rng.uniform(60, 120)
    return _blend(img.astype(np.float32), np.full_like(img, np.clip(shade, 0, 255), np.float32), alpha), alpha > 0.2


def _blob(img, size, rng, donor):
    h, w = img.shape[:2]
    alpha = _ellipse((h, w), size, rng)
    noise = rng.normal(0, 1, (h, w)).astype(np.float32)
    k = int(rng.choice([3, 5, 9])) * 2 + 1
    texture = cv2.GaussianBlur(noise, (k, k), 0)
    texture = (texture - texture.mean()) / (texture.std() + 1e-6)
    level = float(img.mean()) + rng.choice([-1, 1]) * rng.uniform(20, 60)
    other = np.clip(level + rng.uniform(15, 40) * texture, 0, 255)[:, :, None].repeat(img.shape[2], 2)
    return _blend(img.astype(np.float32), other, alpha), alpha > 0.5


def _blur(img, size, rng, donor):
    alpha = _ellipse(img.shape[:2], size, rng)
    sigma = rng.uniform(2.0, 5.0)
    blurred = cv2.GaussianBlur(img, (0, 0), sigma).astype(np.float32)
    return _blend(img.astype(np.float32), blurred, alpha), alpha > 0.5


def _brightness(img, size, rng, donor):
    alpha = _ellipse(img.shape[:2], size, rng)
    shift = rng.choice([-1, 1]) * rng.uniform(25, 60)
    return _blend(img.astype(np.float32), img.astype(np.float32) + shift, alpha), alpha > 0.5


DRAW = {"patch": _patch, "scratch": _scratch, "blob": _blob, "blur": _blur, "brightness": _brightness}


def make_defect(img: np.ndarray, kind: str, size: float, rng: np.random.Generator,
                donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`img` (uint8 HxWx3) with one synthetic defect of `kind`, and its mask (bool HxW); `donor`: another
    good image of the same shape (the patch kind's source; `img` itself when None)."""
    if kind not in DRAW:
        raise InputError(f"synthetic defect {kind!r}: expected one of {', '.join(KINDS)}")
    if img.ndim != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 8:
        raise InputError(f"synthetic defect: expected a uint8 H x W x 3 image of at least 8 px, got {img.shape}")
    return DRAW[kind](img, size, rng, img if donor is None else donor)


def synthetic_set(good: np.ndarray, seed: int, kinds=KINDS, sizes=SIZES) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """One synthetic defect on each of `good` (N x H x W x 3 uint8, N >= 2), the kinds and sizes taken in
    turn (every kind and size about equally often): (images, masks, a table of source row, kind, size)."""
    good = np.asarray(good)
    if len(good) < 2:
        raise InputError(f"synthetic defects: {len(good)} good image(s); the patch kind needs at least 2")
    rng = np.random.default_rng(seed)
    rows, images, masks = [], [], []
    for i in range(len(good)):
        kind, size = kinds[i % len(kinds)], sizes[(i // len(kinds)) % len(sizes)]
        donor = good[(i + 1 + int(rng.integers(len(good) - 1))) % len(good)]
        img, mask = make_defect(good[i], kind, size, rng, donor)
        images.append(img)
        masks.append(mask)
        rows.append({"source": i, "kind": kind, "size": size, "area": round(float(mask.mean()), 5)})
    return np.stack(images), np.stack(masks), pd.DataFrame(rows)
