"""Images in, uint8 tensors out: reading, a pre-resized cache on disk, augmentation, loaders.

Images are decoded once per (size, border crop) into a `.npy` cache beside the competition
(`input/<comp>/.cache/`), memory-mapped afterwards. The Dataset returns uint8 CHW tensors;
normalisation happens on the device (`engine.to_input`), so a GPU receives 4x fewer bytes.
Every sample's augmentation is seeded from (seed, epoch, position), so a run reproduces
exactly with any number of workers and after `--resume`.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from checks import InputError
from fileio import atomic_path

cv2.setNumThreads(1)  # threads are spent across images, not inside one


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3): grayscale repeated to 3 channels, 16-bit scaled."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        if not Path(path).exists():
            raise InputError(f"{path}: image file missing")
        raise InputError(f"{path}: cannot be decoded as an image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def crop_resize(img: np.ndarray, size: int, border_crop: float = 0.0) -> np.ndarray:
    """Cut `border_crop` of each side (Nexperia images carry scratches on their borders), then
    resize to a size x size square."""
    if border_crop > 0:
        h, w = img.shape[:2]
        dy, dx = int(round(h * border_crop)), int(round(w * border_crop))
        img = img[dy:h - dy, dx:w - dx]
    if img.shape[:2] == (size, size):
        return img
    interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)


def _cache_key(paths: list[Path], size: int, border_crop: float) -> str:
    h = hashlib.sha256(f"{size}|{border_crop}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def cached_images(paths: list[Path], size: int, border_crop: float, cache_dir: Path,
                  tag: str = "images", threads: int | None = None, progress: bool = True) -> np.ndarray:
    """All images resized to (N, size, size, 3) uint8, decoded once and memory-mapped after.

    The cache file is keyed by size, crop and the files' names/sizes/mtimes: a changed image
    or size builds a new cache. It is written atomically, so an interrupted build is redone."""
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: image file missing ({len(missing)} missing in all)")
    cache = Path(cache_dir) / f"{tag}_{size}px_crop{border_crop:g}_{_cache_key(paths, size, border_crop)}.npy"
    if cache.exists():
        return np.load(cache, mmap_mode="r")
    threads = threads or min(8, os.cpu_count() or 1)

    def load(p: Path) -> np.ndarray:
        return crop_resize(read_image(p), size, border_crop)

    from tqdm import tqdm
    with atomic_path(cache) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        with ThreadPoolExecutor(threads) as pool:
            for i, img in enumerate(tqdm(pool.map(load, paths), total=len(paths), disable=not progress,
                                         desc=f"cache {tag} {size}px", unit="img", leave=False)):
                arr[i] = img
        arr.flush()
        del arr
    return np.load(cache, mmap_mode="r")


# --- augmentation ---------------------------------------------------------------------------

def build_transform(aug: str) -> A.Compose | None:
    """Albumentations presets on uint8 images already at the training size.

    light:  the 8 symmetries of the square (flips, 90-degree rotations, transposes), each with
            probability 1/8: the same group that TTA averages over, drawn uniformly, so no
            symmetry is rarer in training than at prediction (flips + RandomRotate90(p=0.5)
            showed the 4 transposed ones 1/16 of the time each, the others 3/16)
    strong: light + shift-scale-rotate, brightness/contrast, blur or noise, coarse dropout
    """
    if aug == "none":
        return None
    dihedral = [A.D4(p=1.0)]
    if aug == "light":
        return A.Compose(dihedral)
    if aug == "strong":
        return A.Compose(dihedral + [
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.0625, 0.0625), rotate=(-15, 15),
                     border_mode=cv2.BORDER_REFLECT_101, p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.08))], p=0.3),
            A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15),
                            hole_width_range=(0.05, 0.15), p=0.3),
        ])
    raise InputError(f"aug={aug!r}: expected none, light or strong")


class ImageDataset(Dataset):
    """(uint8 CHW tensor, float target) pairs from an (N, H, W, 3) array.

    Indexed by `(i, seed)` pairs from `SeededSampler` when augmenting, or by plain `i`."""

    def __init__(self, images: np.ndarray, targets=None, transform: A.Compose | None = None, indices=None):
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
        img = np.asarray(self.images[i])
        if self.transform is not None:
            if seed is not None:
                self.transform.set_random_seed(seed)
            img = self.transform(image=img)["image"]
        x = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1)  # the cache is read-only
        return x, self.targets[i]


class FeatureDataset(Dataset):
    """Cached output of a model's frozen stages, (N, V, C, H, W) for the first V symmetries of
    the square (V = 8: the `light` augmentation, exactly). Training draws one symmetry per sample
    from its seed; evaluation returns all V (TTA without recomputing the frozen stages)."""

    def __init__(self, feats: np.ndarray, targets, indices, train: bool):
        self.feats, self.targets, self.indices, self.train = feats, np.asarray(targets, np.float32), indices, train

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        k, seed = key if isinstance(key, tuple) else (key, 0)
        i = self.indices[k]
        x = self.feats[i, seed % self.feats.shape[1]] if self.train else self.feats[i]
        return torch.from_numpy(np.array(x, dtype=np.float32)), self.targets[i]


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


def make_loader(ds: ImageDataset, batch_size: int, train: bool, device_type: str, num_workers: int,
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

def load_train_table(comp, base: Path, check_images: bool = True):
    """train.csv checked: columns, unique ids, binary targets, and (optionally) every image present."""
    from checks import check_images_exist, check_train_table, read_csv
    path = comp.root(base) / comp.train_csv
    df = check_train_table(read_csv(path, "train table"), comp.id_col, comp.target_col, path)
    if check_images:
        check_images_exist(df[comp.id_col], comp.root(base) / comp.train_dir, comp.image_ext, path)
    return df


def load_test_ids(comp, base: Path) -> list[str]:
    """Test ids in sample_submission.csv order; their images must exist."""
    from checks import check_columns, check_images_exist, check_unique_ids, read_csv
    path = comp.root(base) / comp.sample_submission
    sub = read_csv(path, "sample submission")
    check_columns(sub, comp.submission_columns, path)
    check_unique_ids(sub, comp.submission_columns[0], path)
    ids = sub[comp.submission_columns[0]].astype(str).tolist()
    check_images_exist(ids, comp.root(base) / comp.test_dir, comp.image_ext, path)
    return ids


def load_folds(path: Path, train, id_col: str, target_col: str):
    """The folds file, checked against train.csv (as loaded by `load_train_table`) and aligned
    to its row order. Returns (fold per train row as an int array, number of folds)."""
    from checks import check_columns, read_csv
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
