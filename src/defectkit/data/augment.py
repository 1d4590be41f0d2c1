"""Augmentation presets on uint8 HWC images: the symmetries of the input's shape (light) and, for the
`strong` preset, albumentations on top (imported only by that preset)."""
from __future__ import annotations

import cv2
import numpy as np

from defectkit.core.checks import InputError
from defectkit.runtime.imaging import D4_NUMPY


class Symmetries:
    """One of the first `n` symmetries of the square (D4 order), drawn uniformly per sample:
    n = 8 is the whole group (a square input), n = 4 the flips and 180 degrees that keep a
    rectangle's shape. The same symmetries TTA averages over, drawn equally often, so no view
    is rarer in training than at prediction."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, chw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return D4_NUMPY[int(rng.integers(self.n))](chw)


class StrongAug:
    """Symmetries + shift-scale-rotate, brightness/contrast, blur or noise, coarse dropout
    (albumentations, imported only by this preset)."""

    def __init__(self, n_symmetries: int):
        import albumentations as A
        self.sym = Symmetries(n_symmetries)
        self.pipe = A.Compose([
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.0625, 0.0625), rotate=(-15, 15),
                     border_mode=cv2.BORDER_REFLECT_101, p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.08))], p=0.3),
            A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15),
                            hole_width_range=(0.05, 0.15), p=0.3),
        ])

    def __call__(self, chw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        self.pipe.set_random_seed(int(rng.integers(2**31 - 1)))
        hwc = np.ascontiguousarray(self.sym(chw, rng).transpose(1, 2, 0))
        return self.pipe(image=hwc)["image"].transpose(2, 0, 1)


def build_transform(aug: str, n_symmetries: int = 8):
    """Augmentation presets on uint8 CHW arrays already at the training size, called as
    `t(chw, rng)`: none (None), light (the symmetries of the input's shape, uniformly), strong
    (light + photometric and geometric noise)."""
    if aug == "none":
        return None
    if aug == "light":
        return Symmetries(n_symmetries)
    if aug == "strong":
        return StrongAug(n_symmetries)
    raise InputError(f"aug={aug!r}: expected none, light or strong")
