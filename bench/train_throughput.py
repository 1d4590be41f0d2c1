"""Training images/s of train.py's loop against a bare timm forward/backward loop, same model,
batch and resolution, in one run; the ratio shows what the data pipeline costs.

    python bench/train_throughput.py [--arch tf_efficientnet_lite0] [--img-size 160] [--batch-size 32]
                                     [--steps 15] [--repeats 3] [--device auto] [--aug light]
                                     [--data-path loader|device]

"train.py loop" = engine.train_one_epoch over a DataLoader of an (N, S, S, 3) uint8 image array
(the on-disk cache's format) with the augmentation preset, uint8 -> device, normalised there,
channels_last, AMP on CUDA, plus the optimizer and LR schedule steps.
"bare loop" = the same model on a batch already on the device, normalised, forward + BCE +
backward + AdamW step, nothing else. Each is timed over --steps steps after warm-up, alternately
--repeats times; the medians are compared. Writes bench/results/train_throughput_<device>.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch.nn import functional as F

from benchlib import save_result  # first: puts src/ on the path

from defectkit.data.augment import build_transform
from defectkit.data.datasets import ImageDataset, make_loader
from defectkit.data.device_batches import BatchAug, DeviceBatches
from defectkit.train import engine, runtime
from defectkit.train.models import create_model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(model, opt, setup, x, y, steps: int) -> float:
    model.train()
    sync(setup.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        with setup.autocast():
            logits = model(x).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(setup.device)
    return steps * x.shape[0] / (time.perf_counter() - t0)


def pipeline_loop(model, opt, sched, setup, loader, steps: int) -> float:
    """engine.train_one_epoch over exactly `steps` batches (the loader holds that many)."""
    return engine.train_one_epoch(model, loader, engine.Optim(opt, sched), setup)["img_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="tf_efficientnet_lite0")
    p.add_argument("--img-size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--aug", default="light", choices=("none", "light", "strong"))
    p.add_argument("--workers", type=int, default=-1, help="-1 = train.py's automatic choice")
    p.add_argument("--data-path", default="loader", choices=("loader", "device"),
                   help="the recipe's data_path: a DataLoader with per-image augmentation, or the images on the "
                        "device augmented a batch at a time (data/device_batches.py)")
    p.add_argument("--pretrained", default="auto", choices=("auto", "hub", "none"),
                   help="weights do not change the speed: none runs any arch offline")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", default=None, help="default: bench/results/train_throughput_<device>.json")
    args = p.parse_args(argv)

    device = runtime.pick_device(args.device)
    runtime.configure(device)
    model, info = create_model(args.arch, pretrained=args.pretrained)
    model.to(device)
    setup = engine.make_setup(device, info.mean, info.std, amp=True, channels_last=args.channels_last)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, engine.warmup_cosine(10**6, 10, 0.01))

    n = args.batch_size * args.steps
    images = np.random.default_rng(0).integers(0, 255, (n, args.img_size, args.img_size, 3), dtype=np.uint8)
    workers = args.workers if args.workers >= 0 else runtime.default_num_workers(device.type)
    if args.data_path == "device":
        aug = BatchAug(args.aug) if args.aug != "none" else None
        loader, workers = DeviceBatches([(images, np.arange(n) % 2, np.arange(n))], args.batch_size, device, aug), 0
    else:
        loader = make_loader(ImageDataset(images, np.arange(n) % 2, build_transform(args.aug)),
                             args.batch_size, True, device.type, workers, seed=0)
    x = engine.to_input(torch.from_numpy(images[:args.batch_size]).permute(0, 3, 1, 2), setup)
    y = torch.tensor(np.arange(args.batch_size) % 2, dtype=torch.float32, device=device)

    bare_loop(model, opt, setup, x, y, 3)  # warm-up: allocator, cudnn autotune, worker start
    pipeline_loop(model, opt, sched, setup, loader, args.steps)
    bare, pipe = [], []
    for r in range(args.repeats):
        bare.append(bare_loop(model, opt, setup, x, y, args.steps))
        pipe.append(pipeline_loop(model, opt, sched, setup, loader, args.steps))
        print(f"repeat {r + 1}: bare {bare[-1]:.1f} img/s, train.py loop {pipe[-1]:.1f} img/s", flush=True)
    b, t = statistics.median(bare), statistics.median(pipe)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    peak = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None
    result = {"arch": args.arch, "img_size": args.img_size, "batch_size": args.batch_size, "steps": args.steps,
              "repeats": args.repeats, "aug": args.aug, "data_path": args.data_path, "workers": workers,
              "channels_last": setup.channels_last,
              "amp": str(setup.amp_dtype), "device": dev_name, "torch": torch.__version__,
              "bare_img_s": round(b, 1), "train_loop_img_s": round(t, 1),
              "ratio": round(t / b, 3), "target_ratio": 0.90, "peak_gpu_mem_gib": peak}
    suffix = "" if args.data_path == "loader" else "_device_path"
    save_result(result, f"{args.arch} {args.img_size}px batch {args.batch_size} on {dev_name}, {args.aug} aug, "
                f"{args.data_path} data path: bare {b:.1f} img/s, train.py loop {t:.1f} img/s, ratio {t / b:.3f} "
                "(target >= 0.90)", args.out, f"train_throughput_{device.type}{suffix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
