"""The hot loop and nothing else: train one epoch, predict with test-time augmentation.

Batches arrive as uint8 NCHW tensors; `to_input` moves them to the device, normalises there
and switches to channels_last. TTA applies the symmetries of the square as tensor ops on the
batch already on the device (no re-decoding) and averages probabilities.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from defectkit.data.device_batches import D4_TORCH

# The 8 symmetries of the square (dihedral group D4) on NCHW tensors, in imaging.D4_NUMPY's order (one
# definition, the data layer's, which the GPU-resident augmentation draws from too). TTA n uses the first
# n: 1 = identity, 2 = + horizontal flip, 4 = + vertical flip and 180 degrees (the 4 that keep a
# rectangle's shape), 8 = all.
D4 = D4_TORCH


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class DeviceSetup:
    """Everything the loop needs to know about where it runs."""

    device: torch.device
    mean: torch.Tensor  # (1, 3, 1, 1) on device, in 0..255 units
    std: torch.Tensor
    amp_dtype: torch.dtype | None = None  # None = full precision
    channels_last: bool = False

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def make_setup(device: torch.device, mean, std, amp: bool = True, channels_last: bool = True) -> DeviceSetup:
    """AMP (bf16 where supported, else fp16) on CUDA, fp32 on CPU; channels_last on both (it
    also speeds up EfficientNet training on CPU: bench/train_throughput.py --no-channels-last)."""
    amp_dtype = None  # fp32 on CPU: bf16 autocast is slower than fp32 on most CPUs
    if amp and device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255
    return DeviceSetup(device, m, s, amp_dtype, channels_last)


def image_batches(images: np.ndarray, size: int) -> list:
    """uint8 NHWC images as (NCHW uint8, None) batches of `size`: what `predict` and `to_input` take."""
    return [(torch.from_numpy(np.ascontiguousarray(images[s:s + size].transpose(0, 3, 1, 2))), None)
            for s in range(0, len(images), size)]


def to_input(x: torch.Tensor, setup: DeviceSetup) -> torch.Tensor:
    """uint8 images -> normalised float on the device; cached features (float) are only moved."""
    if x.dtype == torch.uint8:
        x = x.to(setup.device, non_blocking=True).float().sub_(setup.mean).div_(setup.std)
    else:
        x = x.to(setup.device, non_blocking=True).float()
    if setup.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def make_ema(model: nn.Module, decay: float):
    """EMA of `model`'s weights whose decay warms up with the optimizer step (timm's ModelEmaV3
    warmup: 1 - (1 + step) ** -2/3, capped at `decay`): 0.82 after 12 steps, 0.99 after 1,000,
    `decay` = 0.999 only after ~31,000. A constant 0.999 averages over ~1,000 steps, about all of a
    fold on a few thousand images, and the EMA copy would stay mostly the initial weights."""
    from timm.utils import ModelEmaV3
    return ModelEmaV3(model, decay=decay, use_warmup=True)


@dataclass
class Optim:
    """What steps the weights: the optimizer, its LR schedule (stepped per optimizer step), a
    GradScaler (fp16), an EMA of the weights, gradient accumulation, and the steps per epoch."""

    optimizer: torch.optim.Optimizer
    scheduler: object | None = None
    scaler: object | None = None
    ema: object | None = None
    steps_per_epoch: int = 0
    accum_steps: int = 1

    def step(self, model: nn.Module, step_number: int) -> None:
        """One optimizer step (through the scaler for fp16), then the LR schedule and the EMA."""
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(model, step=step_number)


@dataclass(frozen=True)
class Epoch:
    """What one pass does besides stepping: mixup's (probability per batch, alpha); `train_mode(model)`,
    which puts the model in training mode (default `model.train()`; `models.set_train_mode` also
    freezes stages); `first_step`, the optimizer steps taken before it: the EMA's decay (`make_ema`)
    warms up with them, so a resumed run continues the same schedule."""
    mix: tuple[float, float] = (0.0, 0.4)
    train_mode: Callable[[nn.Module], object] | None = None
    first_step: int = 0


def train_one_epoch(model: nn.Module, loader, optim: Optim | torch.optim.Optimizer, setup: DeviceSetup,
                    epoch: Epoch = Epoch(), progress=None) -> dict:
    """One pass over `loader`, as `epoch` says. Returns mean loss, images/s and seconds. `optim`: an
    Optim, or a bare optimizer (no schedule, scaler, EMA or accumulation). `progress` is an optional
    tqdm-like object updated per batch; raises NonFiniteLossError on a NaN/inf loss before the
    optimizer steps on it."""
    o = optim if isinstance(optim, Optim) else Optim(optim)
    scaler, accum_steps, (mixup_prob, mixup_alpha) = o.scaler, o.accum_steps, epoch.mix
    first_step = epoch.first_step
    (epoch.train_mode or nn.Module.train)(model)
    total, n_seen, t0 = torch.zeros((), device=setup.device), 0, time.perf_counter()
    o.optimizer.zero_grad(set_to_none=True)
    n_batches, opt_steps = len(loader), first_step
    for step, (x, y) in enumerate(loader):
        x = to_input(x, setup)
        y = y.to(setup.device, non_blocking=True).float()
        if mixup_prob > 0 and torch.rand(()) < mixup_prob:
            x, y = mixup(x, y, mixup_alpha)
        with setup.autocast():
            logits = model(x).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at batch {step}")
        (scaler.scale(loss / accum_steps) if scaler else loss / accum_steps).backward()
        if (step + 1) % accum_steps == 0 or step + 1 == n_batches:
            opt_steps += 1
            o.step(model, opt_steps)
        total += loss.detach() * x.shape[0]
        n_seen += x.shape[0]
        if progress is not None:
            progress.update(1)
            if step % 10 == 0:
                progress.set_postfix(loss=f"{total.item() / n_seen:.4f}")
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    secs = time.perf_counter() - t0
    return {"loss": total.item() / max(n_seen, 1), "img_s": n_seen / secs, "secs": secs}


def _view_probs(model: nn.Module, loader, setup: DeviceSetup, tta: int, progress=None):
    """Per batch, the list of positive-class probabilities under the first `tta` symmetries of D4.

    A batch of shape (B, V, C, H, W) holds V >= tta symmetries already applied (cached features
    of the frozen stages, in D4 order): variant v is then taken instead of computed."""
    model.eval()
    for x, _ in loader:
        if x.dim() == 5 and x.shape[1] < tta:
            raise ValueError(f"tta={tta} but only {x.shape[1]} cached symmetries")
        x = to_input(x, setup)
        views = []
        for v, t in enumerate(D4[:tta]):
            xv = x[:, v] if x.dim() == 5 else t(x)
            if setup.channels_last and x.dim() == 5:
                xv = xv.contiguous(memory_format=torch.channels_last)
            with setup.autocast():
                views.append(torch.sigmoid(model(xv).squeeze(1).float()))
        yield views
        if progress is not None:
            progress.update(1)


@torch.inference_mode()
def predict(model: nn.Module, loader, setup: DeviceSetup, tta: int = 1, progress=None) -> np.ndarray:
    """Probabilities of the positive class, averaged over the first `tta` symmetries of D4
    (batches of cached symmetries: see `_view_probs`)."""
    out = [(sum(views) / tta).cpu() for views in _view_probs(model, loader, setup, tta, progress)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


@torch.inference_mode()
def predict_views(model: nn.Module, loader, setup: DeviceSetup, tta: int = 8) -> np.ndarray:
    """(tta, N): the probabilities under each of the first `tta` symmetries, unaveraged."""
    out = [torch.stack(views).cpu() for views in _view_probs(model, loader, setup, tta)]
    return torch.cat(out, 1).numpy() if out else np.zeros((tta, 0), np.float32)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    """LambdaLR factor: linear warmup to 1, then cosine down to `min_ratio`."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f
