"""The training set on the device: images decoded once to a uint8 NCHW tensor where the model runs,
shuffled in the order the DataLoader path uses (`SeededSampler`), and augmented a batch at a time
with tensor ops that draw from the same distributions as the per-image CPU presets (data/augment.py):
no worker processes, no copy from host memory per step, and no albumentations needed.

    light   one of the first n symmetries of the square (D4 order) per image, uniformly
    strong  light, then with the CPU preset's probabilities and ranges: an affine warp (scale 0.9-1.1,
            shift up to 6.25 %, rotation up to 15 degrees, reflected border), brightness and contrast
            (+-20 %), a Gaussian blur (3 or 5 px, sigma 0.5-3) or Gaussian noise (2-8 % of full scale), 1-4 holes
            of 5-15 % of each side filled with black

It runs on any torch device, the CPU included, which is how it is tested here.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from defectkit.core.checks import InputError
from defectkit.data.datasets import SeededSampler

# The 8 symmetries of the square on NCHW tensors, in runtime.imaging.D4_NUMPY's order.
D4_TORCH = (
    lambda x: x,
    lambda x: x.flip(3),
    lambda x: x.flip(2),
    lambda x: x.flip(2).flip(3),
    lambda x: x.transpose(2, 3),
    lambda x: x.rot90(1, (2, 3)),
    lambda x: x.rot90(3, (2, 3)),
    lambda x: x.flip(2).flip(3).transpose(2, 3),
)


def _uniform(g: torch.Generator, n: int, lo: float, hi: float, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def _chance(g: torch.Generator, n: int, p: float, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


class BatchAug:
    """An augmentation preset on a uint8 NCHW batch, `aug(x, generator) -> uint8 NCHW`; `n_symmetries`:
    8 for a square input, 4 (the flips and 180 degrees) for a rectangle."""

    def __init__(self, preset: str, n_symmetries: int = 8):
        if preset not in ("light", "strong"):
            raise InputError(f"aug={preset!r}: the device data path augments with light or strong")
        self.strong, self.n = preset == "strong", n_symmetries

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = self.symmetries(x, g)
        if not self.strong:
            return x
        dev, n = x.device, len(x)
        y = x.float()
        y = _where(_chance(g, n, 0.5, dev), self.affine(y, g), y)
        y = _where(_chance(g, n, 0.5, dev), self.brightness_contrast(y, g), y)
        noisy, one = _chance(g, n, 0.3, dev), _chance(g, n, 0.5, dev)  # OneOf(blur, noise), p = 0.3
        y = _where(noisy & one, self.blur(y, g), y)
        y = _where(noisy & ~one, self.noise(y, g), y)
        y = _where(_chance(g, n, 0.3, dev), self.dropout(y, g), y)
        return y.clamp_(0, 255).round_().to(torch.uint8)

    def symmetries(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        pick = torch.randint(self.n, (len(x),), generator=g, device=x.device)
        out = torch.empty_like(x) if self.n <= 4 or x.shape[2] == x.shape[3] else None
        if out is None:
            raise ValueError(f"{self.n} symmetries need a square input; got {tuple(x.shape[2:])}")
        for v in range(self.n):
            idx = (pick == v).nonzero().squeeze(1)
            if len(idx):
                out[idx] = D4_TORCH[v](x[idx])
        return out

    @staticmethod
    def affine(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Scale 0.9-1.1, shift up to 6.25 % of each side, rotation up to 15 degrees about the centre,
        the border reflected; bilinear. The matrix maps an output pixel to where it samples the input."""
        n, _, h, w = y.shape
        dev = y.device
        s = _uniform(g, n, 0.9, 1.1, dev)
        r = torch.deg2rad(_uniform(g, n, -15.0, 15.0, dev))
        tx, ty = _uniform(g, n, -0.0625, 0.0625, dev), _uniform(g, n, -0.0625, 0.0625, dev)
        cos, sin = torch.cos(r) / s, torch.sin(r) / s  # the inverse of a rotation by r and a scale s,
        lin = torch.stack([torch.stack([cos, sin * h / w], 1),  # in pixels (not [-1, 1] units: a
                           torch.stack([-sin * w / h, cos], 1)], 1)  # rectangle keeps its angles)
        shift = torch.stack([2 * tx, 2 * ty], 1).unsqueeze(2)  # a share of the side, in [-1, 1] units
        theta = torch.cat([lin, -(lin @ shift)], 2)
        grid = F.affine_grid(theta, list(y.shape), align_corners=False)
        return F.grid_sample(y, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    @staticmethod
    def brightness_contrast(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """x * alpha + beta * 255, alpha in 0.8-1.2, beta in -0.2-0.2 (albumentations' brightness_by_max)."""
        n, dev = len(y), y.device
        alpha = _uniform(g, n, 0.8, 1.2, dev).view(n, 1, 1, 1)
        beta = _uniform(g, n, -0.2, 0.2, dev).view(n, 1, 1, 1)
        return (y * alpha + beta * 255).clamp(0, 255)

    @staticmethod
    def blur(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A Gaussian blur of 3 or 5 px, sigma 0.5-3 (albumentations' GaussianBlur), the border reflected."""
        out = torch.empty_like(y)
        n, c, h, w = y.shape
        big = _chance(g, n, 0.5, y.device)
        sigma = _uniform(g, n, 0.5, 3.0, y.device)
        for k, idx in ((3, (~big).nonzero().squeeze(1)), (5, big.nonzero().squeeze(1))):
            if not len(idx):
                continue
            t = torch.arange(k, device=y.device, dtype=y.dtype) - (k - 1) / 2
            k1 = torch.exp(-t.view(1, k) ** 2 / (2 * sigma[idx].view(-1, 1) ** 2))
            k1 = (k1 / k1.sum(1, keepdim=True)).repeat_interleave(c, 0)  # one kernel per image and channel
            part = F.pad(y[idx], (k // 2,) * 4, mode="reflect").reshape(1, len(idx) * c, h + k - 1, w + k - 1)
            part = F.conv2d(part, k1.view(-1, 1, 1, k), groups=len(idx) * c)
            out[idx] = F.conv2d(part, k1.view(-1, 1, k, 1), groups=len(idx) * c).view(len(idx), c, h, w)
        return out

    @staticmethod
    def noise(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Gaussian noise per pixel and channel, its standard deviation 2-8 % of full scale."""
        n = len(y)
        std = _uniform(g, n, 0.02, 0.08, y.device).view(n, 1, 1, 1) * 255
        return y + std * torch.randn(y.shape, generator=g, device=y.device)

    @staticmethod
    def dropout(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """1 to 4 holes, each 5-15 % of the height and of the width, filled with 0."""
        n, _, h, w = y.shape
        dev = y.device
        holes = torch.randint(1, 5, (n,), generator=g, device=dev)
        hh = (_uniform(g, 4 * n, 0.05, 0.15, dev) * h).floor().clamp(min=1).view(n, 4)
        ww = (_uniform(g, 4 * n, 0.05, 0.15, dev) * w).floor().clamp(min=1).view(n, 4)
        y0 = (torch.rand((n, 4), generator=g, device=dev) * (h - hh + 1)).floor()
        x0 = (torch.rand((n, 4), generator=g, device=dev) * (w - ww + 1)).floor()
        used = torch.arange(4, device=dev).view(1, 4) < holes.view(n, 1)
        rows = torch.arange(h, device=dev).view(1, 1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, 1, w)
        inside = ((rows >= y0.view(n, 4, 1, 1)) & (rows < (y0 + hh).view(n, 4, 1, 1))
                  & (cols >= x0.view(n, 4, 1, 1)) & (cols < (x0 + ww).view(n, 4, 1, 1)) & used.view(n, 4, 1, 1))
        return y.masked_fill(inside.any(1, keepdim=True), 0.0)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)


class DeviceBatches:
    """Batches of the rows `parts` selects, kept on `device` as uint8 NCHW: a list of (images (N, H, W, 3)
    uint8, targets, row indices) (the training rows, then pseudo-labelled test rows). Training
    (`train`): shuffled in SeededSampler's (seed, epoch) order, the last partial batch dropped, each
    batch augmented by `aug` with a generator seeded from the order's seeds (the same every run and
    after a resume); evaluation: in order, every row. Iterates like the DataLoader it replaces:
    `len`, `sampler.set_epoch(epoch)`, batches of (uint8 NCHW, float targets) on the device."""

    def __init__(self, parts: list[tuple], batch_size: int, device: torch.device, aug: BatchAug | None = None,
                 train: bool = True, seed: int = 0):
        xs = [torch.from_numpy(np.ascontiguousarray(np.asarray(images)[np.asarray(idx)])) for images, _, idx in parts]
        ys = [torch.as_tensor(np.asarray(t, np.float32)[np.asarray(idx)]) for _, t, idx in parts]
        self.x = torch.cat(xs).to(device).permute(0, 3, 1, 2).contiguous() if xs else torch.zeros(0, 3, 1, 1)
        self.y = torch.cat(ys).to(device) if ys else torch.zeros(0)
        self.batch_size, self.aug, self.train, self.device = batch_size, aug, train, torch.device(device)
        self.sampler = SeededSampler(len(self.y), train, seed)
        self.drop_last = train and len(self.y) > batch_size

    @property
    def nbytes(self) -> int:
        return self.x.numel() * self.x.element_size()

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        pairs = list(self.sampler)
        order = torch.as_tensor([i for i, _ in pairs], dtype=torch.long).to(self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.x[idx]
            if self.aug is not None:
                g = torch.Generator(device=self.device)
                g.manual_seed(int(pairs[b * self.batch_size][1]))
                x = self.aug(x, g)
            yield x, self.y[idx]
