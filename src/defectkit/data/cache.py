"""Decoded, resized training and test images as one memory-mapped uint8 array per competition, shape
and resize rule (`input/<comp>/.cache/`), built once under a lock."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from defectkit.core.checks import InputError
from defectkit.core.fileio import build_npy_cache
from defectkit.runtime.cpus import usable_cpus
from defectkit.runtime.imaging import ImageError, Preprocess


def _cache_key(paths: list[Path], hw, resize: str, border_crop: float) -> str:
    h = hashlib.sha256(f"{hw}|{resize}|{border_crop}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def cached_images(paths: list[Path], pre: Preprocess, cache_dir: Path, tag: str = "images",
                  threads: int | None = None, progress: bool = True) -> np.ndarray:
    """All images brought to (N, h, w, 3) uint8 (`imaging.fit_image`), decoded once and
    memory-mapped after. The cache file is keyed by size, resize mode, crop and the files'
    names/sizes/mtimes: a changed image or size builds a new cache."""
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: image file missing ({len(missing)} missing in all)")
    hw, resize, border_crop = pre.hw, pre.resize, pre.border_crop
    h, w = hw
    size = f"{h}px" if h == w else f"{h}x{w}px"
    mode = "" if resize == "squash" else f"_{resize}"
    cache = Path(cache_dir) / f"{tag}_{size}{mode}_crop{border_crop:g}_{_cache_key(paths, hw, resize, border_crop)}.npy"
    threads = threads or min(8, usable_cpus())

    def load(p: Path) -> np.ndarray:
        try:
            return pre.load(p)
        except ImageError as e:
            raise InputError(str(e)) from None

    def chunks():
        with ThreadPoolExecutor(threads) as pool:
            for i, img in enumerate(pool.map(load, paths)):
                yield i, img[None]

    return build_npy_cache(cache, len(paths), chunks(), f"cache {tag} {size}", progress)
