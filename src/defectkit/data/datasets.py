"""Datasets and loaders: uint8 NCHW batches from the image cache or float16 frozen-stage features, a
seeded sampler that resumes mid-run, pinned memory and persistent workers on CUDA."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


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
