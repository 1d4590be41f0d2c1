"""The probe: seconds per image of a candidate backbone at two input sizes, on the device the run uses:
the frozen stages' forward, the trainable rest's training step and forward (the CPU scheme), or the
whole network's (the GPU scheme); random weights (the speed does not depend on them)."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np

from defectkit.data.augment import build_transform
from defectkit.train import runtime
from defectkit.train.models import CachedPrefixNet, create_model, run_prefix
from defectkit.train.planner.cost import ArchCost, Curve
from defectkit.train.runtime import default_num_workers

PROBE_SIZES = ((128, 128), (224, 224))


def _timed(fn, reps: int = 2) -> float:
    fn()  # warm-up: allocator, kernels
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


@dataclass(frozen=True)
class Probe:
    """How a backbone is timed: the frozen stages its training caches (0: the whole network trains),
    the recipe's batch size, runs averaged after a warm-up, and the feature levels an anomaly member
    taps (the network pruned after the deepest, as the member runs it; empty: the whole network)."""
    freeze_stages: int = 6
    batch: int = 64
    reps: int = 2
    levels: tuple[int, ...] = ()


# the anomaly member's backbone: a forward at batch 8, pruned after its default levels 2 + 3 (the whole
# network, head included, took ~1.4 x: ELPV's member plan estimated 7.9 min for a 5.6 min run)
MEMBER_PROBE = Probe(freeze_stages=0, batch=8, reps=1, levels=(2, 3))


def probe_arch(arch: str, device: str, sizes=PROBE_SIZES, cost: ArchCost | None = None,
               how: Probe = Probe()) -> ArchCost:
    """Seconds per image of `arch` at input `sizes` on `device` and the recipe's batch size (added
    to `cost`'s points when given); random weights: the speed does not depend on them."""
    import torch
    freeze_stages, batch, reps = how.freeze_stages, how.batch, how.reps

    runtime.configure(torch.device(device))  # as training runs: threads, and glibc keeping freed blocks
    model = create_model(arch, pretrained="none")[0]
    if how.levels and hasattr(model, "prune_intermediate_layers"):
        model.prune_intermediate_layers(sorted(how.levels), prune_head=True)
    model = model.to(torch.device(device), memory_format=torch.channels_last)
    full = freeze_stages == 0  # the whole network trains (no cache); as training runs: channels_last, bf16 on CUDA
    cost = cost or ArchCost(Curve(), Curve(), Curve())
    for hw in sizes:
        row = _probe_at(model, hw, freeze_stages, (batch, reps), full)
        for k in ("prefix", "train", "infer"):
            getattr(cost, k).add(hw[0] * hw[1], row[k])
        cost.channels, cost.stride = (0, 1) if full else (int(row["shape"][1]), hw[0] // int(row["shape"][-2]))
    return cost


def _probe_at(model, hw: tuple[int, int], freeze_stages: int, batch_reps: tuple[int, int], full: bool) -> dict:
    """Per-image seconds at one input size: the frozen stages' forward, and the trained part's
    training step and forward (the whole network when `full`), each the mean of `reps` runs."""
    batch, reps = batch_reps
    import torch

    dev = next(model.parameters()).device
    x = torch.randn(min(batch, 8), 3, *hw, device=dev).contiguous(memory_format=torch.channels_last)
    net = model if full else CachedPrefixNet(model, freeze_stages)
    with torch.no_grad():
        feats = x if full else run_prefix(model.eval(), freeze_stages, x)
    feats = feats.repeat(-(-batch // len(x)), 1, 1, 1)[:batch].contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        net.train()
        with amp:
            loss = net(feats).float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(dev)

    def infer():
        with torch.no_grad(), amp:
            net.eval()(feats)
        _sync(dev)

    def prefix():
        with torch.no_grad():
            run_prefix(model.eval(), freeze_stages, x)
        _sync(dev)
    train = _timed(step, reps) / batch
    if full:  # the GPU scheme's images are augmented on the CPU by the loader's workers: the slower one sets the pace
        train = max(train, loader_seconds(hw))
    return {"train": train, "infer": _timed(infer, reps) / batch,
            "prefix": 0.0 if full else _timed(prefix, reps) / len(x), "shape": tuple(feats.shape)}


def loader_seconds(hw: tuple[int, int], n: int = 8) -> float:
    """Seconds per image the data loader needs for the `strong` augmentation at `hw`, its workers together."""
    aug = build_transform("strong", 8 if hw[0] == hw[1] else 4)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (n, 3, *hw), dtype=np.uint8)
    t0 = time.perf_counter()
    for img in imgs:
        aug(img, rng)
    return (time.perf_counter() - t0) / n / max(1, default_num_workers("cuda"))


def _sync(dev) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
