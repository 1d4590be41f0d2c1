"""The frozen-stage cache: a model's frozen stem and first stages run once per image and
symmetry, their output stored as float16 (`input/<comp>/.cache/feats_*.npy`, shared by every
fold of an arch), so that only the remaining stages train. Keyed by a hash of the frozen
weights themselves: features of other weights are never reused."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from defectkit.core.fileio import build_npy_cache
from defectkit.train.engine import D4, DeviceSetup, to_input
from defectkit.train.models import frozen_features, split_stages


def prefix_fingerprint(model: nn.Module, freeze_stages: int, *extra: object) -> str:
    """A short hash of the frozen stages' weights and buffers (plus `extra`, e.g. the input
    normalisation): another --weights file at the same path, another hub revision, is a new key."""
    h = hashlib.sha256(repr(extra).encode())
    for i, m in enumerate(split_stages(model, freeze_stages)[0]):
        for name, t in m.state_dict().items():
            t = t.detach().cpu().contiguous()
            h.update(f"{i}.{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:10]


def frozen_views(model: nn.Module, freeze_stages: int, images: np.ndarray, setup: DeviceSetup,
                 n_variants: int) -> torch.Tensor:
    """(B, n_variants, C, H, W): the frozen stages' output for the first `n_variants` symmetries
    (D4 order) of a batch of uint8 (B, H, W, 3) images (model in eval mode)."""
    x = to_input(torch.from_numpy(np.array(images)).permute(0, 3, 1, 2), setup)
    return torch.stack([frozen_features(model, freeze_stages, t(x)) for t in D4[:n_variants]], 1)


def as_cached(feats: torch.Tensor) -> torch.Tensor:
    """Features as training read them back from the float16 cache: rounded to float16, as
    contiguous float32 on the CPU (what predict.py and the ONNX export reproduce)."""
    return feats.half().float().cpu().contiguous()


CACHE_BATCH = 64  # images per batch when the cache is built, up to CACHE_PX pixels per image
CACHE_PX = 90_000  # (300 x 300): larger images go in proportionally smaller batches, which bounds memory


def cache_batch(hw: tuple[int, int]) -> int:
    """Images per batch of the feature cache at input size `hw` (predict.py uses the same: same bits)."""
    h, w = hw
    return CACHE_BATCH if h * w <= CACHE_PX else max(1, CACHE_BATCH * CACHE_PX // (h * w))


@dataclass(frozen=True)
class FrozenViews:
    """The frozen first `stages` of `model`, through which the first `n_variants` symmetries (D4
    order) of every image are cached."""
    model: nn.Module
    stages: int
    n_variants: int = 8


def extract_frozen_features(views: FrozenViews, images: np.ndarray, setup: DeviceSetup, path,
                            batch_size: int | None = None, progress: bool = True) -> np.ndarray:
    """Output of the frozen stages for the first `n_variants` symmetries (D4 order) of every
    image, as float16 (N, n_variants, C, H, W) in a .npy file built once, memory-mapped after."""
    model, freeze_stages, n_variants = views.model, views.stages, views.n_variants
    model.eval()
    batch_size = batch_size or cache_batch(images.shape[1:3])

    def chunks():
        for start in range(0, len(images), batch_size):
            feats = frozen_views(model, freeze_stages, images[start:start + batch_size], setup, n_variants)
            yield start, feats.float().cpu().numpy().astype(np.float16)

    return build_npy_cache(Path(path), len(images), chunks(), f"frozen features {Path(path).stem[:40]}", progress)


def feature_cache_path(cache_dir: Path, arch: str, views: FrozenViews, norm: tuple, images: np.ndarray) -> Path:
    """Where the features of `images` (an image cache, named by its file) live for these frozen weights
    and the input normalisation `norm` = (mean, std)."""
    model, freeze_stages, n_variants = views.model, views.stages, views.n_variants
    key = prefix_fingerprint(model, freeze_stages, *norm)
    return Path(cache_dir) / f"feats_{arch}_s{freeze_stages}_x{n_variants}_{key}_{Path(images.filename).stem}.npy"
