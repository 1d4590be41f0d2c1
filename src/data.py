"""Images in, uint8 tensors out: a pre-resized cache on disk, augmentation, datasets, loaders,
and the competition's tables checked.

Images are decoded once per (size, resize mode, border crop) into a `.npy` cache beside the
competition (`input/<comp>/.cache/`), memory-mapped afterwards. The Dataset returns uint8 CHW
tensors; normalisation happens on the device (`engine.to_input`), so a GPU receives 4x fewer
bytes. Every sample's augmentation is seeded from (seed, epoch, position), so a run reproduces
exactly with any number of workers and after `--resume`.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from checks import (InputError, check_columns, check_images_exist, check_train_table, check_unique_ids,
                    read_csv)
from fileio import build_npy_cache
from imaging import D4_NUMPY, ImageError, load_image
from layout import Layout

cv2.setNumThreads(1)  # threads are spent across images, not inside one


def _cache_key(paths: list[Path], hw, resize: str, border_crop: float) -> str:
    h = hashlib.sha256(f"{hw}|{resize}|{border_crop}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def cached_images(paths: list[Path], hw: tuple[int, int], resize: str, border_crop: float, cache_dir: Path,
                  tag: str = "images", threads: int | None = None, progress: bool = True) -> np.ndarray:
    """All images brought to (N, h, w, 3) uint8 (`imaging.fit_image`), decoded once and
    memory-mapped after. The cache file is keyed by size, resize mode, crop and the files'
    names/sizes/mtimes: a changed image or size builds a new cache."""
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: image file missing ({len(missing)} missing in all)")
    h, w = hw
    size = f"{h}px" if h == w else f"{h}x{w}px"
    mode = "" if resize == "squash" else f"_{resize}"
    cache = Path(cache_dir) / f"{tag}_{size}{mode}_crop{border_crop:g}_{_cache_key(paths, hw, resize, border_crop)}.npy"
    threads = threads or min(8, os.cpu_count() or 1)

    def load(p: Path) -> np.ndarray:
        try:
            return load_image(p, hw, resize, border_crop)
        except ImageError as e:
            raise InputError(str(e)) from None

    def chunks():
        with ThreadPoolExecutor(threads) as pool:
            for i, img in enumerate(pool.map(load, paths)):
                yield i, img[None]

    return build_npy_cache(cache, len(paths), chunks(), f"cache {tag} {size}", progress)


# --- augmentation ---------------------------------------------------------------------------

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


class ImageDataset(Dataset):
    """(uint8 CHW tensor, float target) pairs from an (N, H, W, 3) array.

    Indexed by `(i, seed)` pairs from `SeededSampler` when augmenting, or by plain `i`."""

    def __init__(self, images: np.ndarray, targets=None, transform=None, indices=None):
        self.images = images  # may be a memory map: rows are read per item, never copied whole
        self.targets = np.zeros(len(images), np.float32) if targets is None else np.asarray(targets, np.float32)
        if len(self.targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.targets)} targets")
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        k, seed = key if isinstance(key, tuple) else (key, None)
        i = self.indices[k]
        chw = np.asarray(self.images[i]).transpose(2, 0, 1)
        if self.transform is not None:
            chw = self.transform(chw, np.random.default_rng(seed))
        # a CHW view of the read-only cache is never C-contiguous, so this copies it (writable)
        return torch.from_numpy(np.ascontiguousarray(chw)), self.targets[i]


class FeatureDataset(Dataset):
    """Cached output of a model's frozen stages, (N, V, C, H, W) for the first V symmetries of
    the input's shape. Training draws one symmetry per sample from its seed (the `light`
    augmentation over the cached symmetries); evaluation returns all V (TTA without
    recomputing the frozen stages)."""

    def __init__(self, feats: np.ndarray, targets, indices, train: bool):
        self.feats, self.targets, self.indices, self.train = feats, np.asarray(targets, np.float32), indices, train

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        k, seed = key if isinstance(key, tuple) else (key, 0)
        i = self.indices[k]
        x = self.feats[i, seed % self.feats.shape[1]] if self.train else self.feats[i]
        return torch.from_numpy(np.array(x, dtype=np.float32)), self.targets[i]


class JoinedDataset(Dataset):
    """Datasets one after another (the training rows, then pseudo-labelled test rows), indexed
    by plain positions or by `(position, seed)` pairs as SeededSampler gives them."""

    def __init__(self, *parts: Dataset):
        self.parts = [p for p in parts if len(p)]
        self.ends = np.cumsum([len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, key):
        k, seed = key if isinstance(key, tuple) else (key, None)
        j = int(np.searchsorted(self.ends, k, side="right"))
        off = int(k - (self.ends[j - 1] if j else 0))
        return self.parts[j][(off, seed) if seed is not None else off]


class SeededSampler(Sampler):
    """Shuffled (or ordered) indices, each paired with its own augmentation seed.

    Order and seeds depend only on (seed, epoch): `set_epoch` before each epoch."""

    def __init__(self, n: int, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**31 - 1, size=self.n)
        return iter(zip(order.tolist(), seeds.tolist()))


def make_loader(ds: Dataset, batch_size: int, train: bool, device_type: str, num_workers: int,
                seed: int = 0) -> DataLoader:
    """Train: shuffled, seeded, last partial batch dropped. Eval: in order. On CUDA: pinned
    memory and persistent workers."""
    kw = {}
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=4)
    return DataLoader(ds, batch_size=batch_size, sampler=SeededSampler(len(ds), train, seed),
                      drop_last=train and len(ds) > batch_size, num_workers=num_workers,
                      pin_memory=device_type == "cuda", **kw)


# --- competition tables ---------------------------------------------------------------------

def load_train_table(comp, layout: Layout, check_images: bool = True):
    """train.csv checked: columns, unique ids, binary targets, and (optionally) every image present."""
    path = layout.train_csv(comp)
    df = check_train_table(read_csv(path, "train table", (comp.id_col,)), comp.id_col, comp.target_col, path)
    if check_images:
        check_images_exist(df[comp.id_col], layout.train_dir(comp), comp.image_ext, path)
    return df


def load_sample_submission(comp, layout: Layout, check_images: bool = True):
    """sample_submission.csv checked: its submission columns, unique ids and (optionally) every
    test image present."""
    path = layout.sample_submission(comp)
    sub = read_csv(path, "sample submission", (comp.submission_columns[0],))
    check_columns(sub, comp.submission_columns, path)
    check_unique_ids(sub, comp.submission_columns[0], path)
    if check_images:
        check_images_exist(sub[comp.submission_columns[0]], layout.test_dir(comp), comp.image_ext, path)
    return sub


def load_test_ids(comp, layout: Layout, check_images: bool = True) -> list[str]:
    """Test ids in sample_submission.csv order; their images must exist."""
    return load_sample_submission(comp, layout, check_images)[comp.submission_columns[0]].astype(str).tolist()


def load_folds(path: Path, train, id_col: str, target_col: str):
    """The folds file, checked against train.csv (as loaded by `load_train_table`) and aligned
    to its row order. Returns (fold per train row as an int array, number of folds)."""
    if not Path(path).exists():
        raise InputError(f"{path}: folds file not found; run python src/make_folds.py first")
    folds = read_csv(path, "folds file")
    check_columns(folds, ["id", "target", "fold"], path)
    folds = folds.set_index(folds["id"].astype(str))
    ids = train[id_col].astype(str)
    extra, missing = folds.index.difference(ids), ids[~ids.isin(folds.index)]
    if len(extra) or len(missing) or len(folds) != len(ids):
        raise InputError(f"{path}: does not match {target_col!r} rows of train.csv ({len(missing)} train ids "
                         f"missing, e.g. {list(missing[:2])}; {len(extra)} unknown ids, e.g. {list(extra[:2])}); "
                         "re-run python src/make_folds.py")
    folds = folds.loc[ids]
    if not (folds["target"].to_numpy() == train[target_col].to_numpy()).all():
        bad = ids[folds["target"].to_numpy() != train[target_col].to_numpy()].iloc[0]
        raise InputError(f"{path}: target of id {bad!r} differs from train.csv; re-run python src/make_folds.py")
    fold = folds["fold"].to_numpy()
    if not np.issubdtype(fold.dtype, np.integer) or fold.min() < 0:
        raise InputError(f"{path}: column 'fold' must hold integers 0..k-1")
    return fold.astype(int), int(fold.max()) + 1
