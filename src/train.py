"""Train one backbone on one fold, keep the best epoch by validation AUC, and write its
out-of-fold and test predictions with test-time augmentation.

    python src/train.py --competition elpv --fold 0 --arch tf_efficientnet_lite0
    python src/train.py --competition elpv --fold 0 --arch resnet50 --pretrained hub --epochs 15 --tta 8

Writes (exp = --name, default the arch):
    models/<exp>/fold<k>.pt            best checkpoint (weights used for predictions)
    models/<exp>/fold<k>_last.pt       last epoch, with optimizer/scheduler/scaler/EMA state (--resume)
    models/<exp>/fold<k>_log.csv, fold<k>_curves.png, fold<k>_config.yaml
    oof/<exp>/fold<k>.csv              id, target, fold, pred   (validation rows of fold k)
    oof/<exp>/test_fold<k>.csv         id, pred                 (test rows, this fold's model)
    oof/<exp>/fold<k>.json             folds hash, config, scores; written last = fold complete
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

import data
import engine
from checks import InputError, cli_main
from config import (Config, add_config_flags, add_recipe_flags, config_from_args, config_hash,
                    default_num_workers, fold_paths, save_config)
from fileio import file_hash, save_figure_atomic, save_torch_atomic, write_csv_atomic, write_json_atomic
from models import (CachedPrefixNet, create_model, head_parameters, prefix_fingerprint, set_train_mode, stage_groups,
                    unwrap)

# Recipe fields that change what a fold's model predicts (a complete fold is reused only if
# these agree); the rest (device, workers, blend method...) do not.
MODEL_KEYS = ("n_folds", "seed", "img_size", "border_crop", "epochs", "batch_size", "lr", "backbone_lr_factor",
              "weight_decay", "warmup_epochs", "min_lr_ratio", "freeze_epochs", "freeze_stages", "cache_frozen", "accum_steps", "ema",
              "patience", "aug", "mixup", "mixup_alpha", "drop_rate", "tta", "pretrained", "weights")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA asked for but not available (no GPU visible, or a CPU-only "
                         "torch build); use --device cpu or --device auto")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise InputError(f"--device {name}: {e}") from e


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory in the heap. PyTorch frees and re-allocates the same large
    activation buffers every step; by default glibc maps each large block fresh from the OS and
    unmaps it on free, so every step page-faults it in again. Measured on 2 cores: a 160 px fold
    23 % faster (sys 6.1 s -> 0.8 s); frozen-feature extraction at 300 px, batch 64, 2.1x faster
    (sys 35.7 s -> 1.7 s: its activations exceed the 32 MB largest mmap threshold, so mmap is
    turned off, not just raised). No-op where the C library is not glibc."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-4, 0)  # M_MMAP_MAX: no block gets its own mapping; glibc still maps if the heap cannot grow
    libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never trim the heap's top


def set_threads(device: torch.device, threads: int) -> None:
    keep_freed_memory()
    if device.type == "cpu":
        torch.set_num_threads(threads or os.cpu_count() or 1)
    else:
        torch.backends.cudnn.benchmark = True


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def plot_curves(log: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(log.epoch, log.train_loss, "o-", label="train loss")
    a.plot(log.epoch, log.val_loss, "o-", label="val loss")
    a.set_xlabel("epoch"), a.legend(), a.set_title(title)
    b.plot(log.epoch, log.val_auc, "o-", color="C2", label="val AUC")
    b.set_xlabel("epoch"), b.set_ylabel("val AUC")
    b2 = b.twinx()
    b2.plot(log.epoch, log.lr, "--", color="C7", label="lr")
    b2.set_ylabel("head lr")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=90)
    plt.close(fig)


class FoldRun:
    """Everything one fold needs, built once: data, model, optimizer, schedule."""

    def __init__(self, cfg: Config, arch: str, fold: int, base: Path, progress: bool = True):
        self.cfg, self.arch, self.fold, self.base, self.progress = cfg, arch, fold, Path(base), progress
        self.t0 = time.time()
        rec, comp = cfg.recipe, cfg.competition
        self.exp = cfg.exp_name(arch)
        self.paths = fold_paths(self.base, self.exp, fold)
        self.device = pick_device(rec.device)
        set_threads(self.device, rec.threads)
        if rec.tta not in (1, 2, 4, 8):
            raise InputError(f"--tta {rec.tta}: expected 1, 2, 4 or 8")

        # data: tables checked, folds matched, images cached at this size
        root = comp.root(self.base)
        self.train_df = data.load_train_table(comp, self.base)
        self.folds_file = self.base / "folds" / f"{comp.name}.csv"
        folds, n_folds = data.load_folds(self.folds_file, self.train_df, comp.id_col, comp.target_col)
        if not 0 <= fold < n_folds:
            raise InputError(f"--fold {fold}: {self.folds_file} has folds 0..{n_folds - 1}")
        self.n_folds = n_folds
        self.test_ids = data.load_test_ids(comp, self.base)
        cache = root / ".cache"
        ext = comp.image_ext
        train_imgs = data.cached_images([root / comp.train_dir / f"{i}{ext}" for i in self.train_df[comp.id_col]],
                                        rec.img_size, rec.border_crop, cache, "train", progress=progress)
        test_imgs = data.cached_images([root / comp.test_dir / f"{i}{ext}" for i in self.test_ids],
                                       rec.img_size, rec.border_crop, cache, "test", progress=progress)
        self.val_idx = np.flatnonzero(folds == fold)
        tr_idx = np.flatnonzero(folds != fold)
        y = self.train_df[comp.target_col].to_numpy()
        self.y_val = y[self.val_idx]

        torch.manual_seed(rec.seed)
        self.model, self.info = create_model(arch, rec.pretrained, rec.weights or None, 1, rec.drop_rate)
        self.model.to(self.device)
        self.setup = engine.make_setup(self.device, self.info.mean, self.info.std, rec.amp, rec.channels_last)
        if self.setup.channels_last:
            self.model.to(memory_format=torch.channels_last)

        workers = rec.num_workers if rec.num_workers >= 0 else default_num_workers(self.device.type)
        dev = self.device.type
        if rec.cache_frozen:
            # the frozen stages run once per image and symmetry; the rest trains on their output
            if rec.aug not in ("light", "none"):
                raise InputError(f"cache_frozen trains on the 8 cached symmetries (aug light); aug={rec.aug} "
                                 "needs images: turn cache_frozen off")
            self.net = CachedPrefixNet(self.model, rec.freeze_stages)
            # the cache holds the symmetries TTA uses (8 with --tta 8); training draws among them
            n_var = max(rec.tta, 2)
            # keyed by the frozen weights themselves: another --weights file at the same path is a new cache
            key = prefix_fingerprint(self.model, rec.freeze_stages, self.info.mean, self.info.std)
            tag = f"feats_{arch}_s{rec.freeze_stages}_x{n_var}_{key}"
            train_x, test_x = (engine.extract_frozen_features(
                self.model, rec.freeze_stages, imgs, self.setup, cache / f"{tag}_{Path(imgs.filename).stem}.npy",
                progress=progress, n_variants=n_var) for imgs in (train_imgs, test_imgs))
            train_ds = data.FeatureDataset(train_x, y, tr_idx, train=rec.aug == "light")
            val_ds = data.FeatureDataset(train_x, y, self.val_idx, train=False)
            test_ds = data.FeatureDataset(test_x, np.zeros(len(test_x)), np.arange(len(test_x)), train=False)
            workers = 0  # a memory map read per sample: worker processes only add overhead
        else:
            self.net = self.model
            train_ds = data.ImageDataset(train_imgs, y, data.build_transform(rec.aug), tr_idx)
            val_ds = data.ImageDataset(train_imgs, y, None, self.val_idx)
            test_ds = data.ImageDataset(test_imgs)
        self.train_loader = data.make_loader(train_ds, rec.batch_size, True, dev, workers, rec.seed)
        self.val_loader = data.make_loader(val_ds, rec.batch_size * 2, False, dev, workers)
        self.test_loader = data.make_loader(test_ds, rec.batch_size * 2, False, dev, workers)

        # optimizer (head lr, backbone lr * factor) over the trainable parameters; warmup + cosine per step
        head = head_parameters(self.model)
        frozen = {n for g in stage_groups(self.model)[:rec.freeze_stages] for n in g}
        params = [(n, p) for n, p in self.model.named_parameters() if n not in frozen or id(p) in head]
        groups = [{"params": [p for _, p in params if id(p) not in head], "lr": rec.lr * rec.backbone_lr_factor},
                  {"params": [p for _, p in params if id(p) in head], "lr": rec.lr}]
        self.optimizer = torch.optim.AdamW(groups, lr=rec.lr, weight_decay=rec.weight_decay)
        steps = self.steps_per_epoch = -(-len(self.train_loader) // rec.accum_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, engine.warmup_cosine(steps * rec.epochs, int(steps * rec.warmup_epochs), rec.min_lr_ratio))
        self.scaler = torch.amp.GradScaler("cuda") if self.setup.amp_dtype == torch.float16 else None
        self.ema = None
        if rec.ema > 0:
            self.ema = engine.make_ema(self.net, rec.ema)
        self.train_net = torch.compile(self.net) if rec.compile else self.net

    @property
    def eval_net(self):
        """What predicts: the EMA copy when EMA is on (a CachedPrefixNet when features are cached)."""
        return self.ema.module if self.ema is not None else self.net

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, epoch: int, best_auc: float, best_epoch: int, bad: int, log: list) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "ema": self.ema.state_dict() if self.ema else None,
                "epoch": epoch, "best_auc": best_auc, "best_epoch": best_epoch, "bad_epochs": bad, "log": log,
                "arch": self.arch, "config_hash": config_hash(self.cfg, MODEL_KEYS)}

    def restore(self, ck: dict) -> None:
        if ck.get("arch") != self.arch or ck.get("config_hash") != config_hash(self.cfg, MODEL_KEYS):
            raise InputError(f"{self.paths.last}: was made by another arch or recipe; cannot --resume it "
                             "(use another --name, or drop --resume to start over)")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if self.scaler and ck["scaler"]:
            self.scaler.load_state_dict(ck["scaler"])
        if self.ema and ck["ema"]:
            self.ema.load_state_dict(ck["ema"])

    # --- the fold -----------------------------------------------------------------------------
    def fit(self, resume: bool = False, on_epoch_end=None) -> dict:
        rec = self.cfg.recipe
        save_config(self.cfg, self.paths.config)
        start, best_auc, best_epoch, bad, log = 0, -1.0, -1, 0, []
        if resume and self.paths.last.exists():
            ck = torch.load(self.paths.last, map_location=self.device, weights_only=False)
            self.restore(ck)
            start, best_auc, best_epoch, bad, log = (ck["epoch"] + 1, ck["best_auc"], ck["best_epoch"],
                                                     ck["bad_epochs"], ck["log"])
            tqdm.write(f"[{self.exp} fold {self.fold}] resuming after epoch {ck['epoch'] + 1}/{rec.epochs} "
                       f"(best val AUC {best_auc:.4f} at epoch {best_epoch + 1})")
        elif resume:
            tqdm.write(f"[{self.exp} fold {self.fold}] --resume: no {self.paths.last.name} yet, starting fresh")
        tqdm.write(f"[{self.exp} fold {self.fold}] {self.arch} ({self.info.source}) on {self.device}, "
                   f"{len(self.train_loader.dataset)} train / {len(self.val_idx)} val / {len(self.test_ids)} test, "
                   f"{rec.img_size}px, batch {rec.batch_size}")
        stopped = bool(log) and rec.patience > 0 and bad >= rec.patience
        for epoch in range(start, rec.epochs):
            if stopped:
                break
            self.train_loader.sampler.set_epoch(epoch)
            torch.manual_seed(rec.seed * 1000 + epoch)  # dropout, mixup: reproducible after resume
            bar = tqdm(total=len(self.train_loader), desc=f"{self.exp} f{self.fold} ep {epoch + 1}/{rec.epochs}",
                       unit="batch", leave=False, disable=not self.progress)
            try:
                tr = engine.train_one_epoch(
                    self.train_net, self.train_loader, self.optimizer, self.setup, self.scheduler, self.scaler,
                    self.ema, rec.accum_steps, rec.mixup, rec.mixup_alpha, progress=bar,
                    train_mode=lambda m: set_train_mode(m, rec.freeze_stages, head_only=epoch < rec.freeze_epochs),
                    first_step=epoch * self.steps_per_epoch)
            finally:
                bar.close()
            p_val = engine.predict(self.eval_net, self.val_loader, self.setup, tta=1)
            auc, vloss = _auc(self.y_val, p_val), engine.bce(p_val, self.y_val)
            log.append({"epoch": epoch + 1, "train_loss": round(tr["loss"], 5), "val_loss": round(vloss, 5),
                        "val_auc": round(auc, 5), "lr": self.optimizer.param_groups[1]["lr"],
                        "img_s": round(tr["img_s"], 1), "secs": round(tr["secs"], 1)})
            improved = auc > best_auc
            if improved:
                best_auc, best_epoch, bad = auc, epoch, 0
                save_torch_atomic({"model": unwrap(self.eval_net).state_dict(), "arch": self.arch, "epoch": epoch,
                                   "val_auc": auc, "mean": self.info.mean, "std": self.info.std,
                                   "img_size": rec.img_size, "border_crop": rec.border_crop,
                                   "config": self.cfg.to_dict()}, self.paths.best)
            else:
                bad += 1
            save_torch_atomic(self.state(epoch, best_auc, best_epoch, bad, log), self.paths.last)
            frame = pd.DataFrame(log)
            write_csv_atomic(frame, self.paths.log)
            plot_curves(frame, self.paths.curves, f"{self.exp} fold {self.fold}")
            tqdm.write(f"[{self.exp} fold {self.fold}] epoch {epoch + 1:>2}/{rec.epochs} loss {tr['loss']:.4f} "
                       f"val_loss {vloss:.4f} val_auc {auc:.4f}{' *' if improved else '  '} "
                       f"lr {log[-1]['lr']:.2e} {tr['img_s']:.0f} img/s {tr['secs']:.0f}s")
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if rec.patience > 0 and bad >= rec.patience:
                tqdm.write(f"[{self.exp} fold {self.fold}] early stop: no val AUC gain for {bad} epochs")
                stopped = True
        return self.write_predictions(best_epoch, best_auc, len(log))

    def write_predictions(self, best_epoch: int, best_auc: float, epochs_run: int) -> dict:
        rec, comp = self.cfg.recipe, self.cfg.competition
        ck = torch.load(self.paths.best, map_location=self.device, weights_only=False)
        model = self.eval_net
        unwrap(model).load_state_dict(ck["model"])
        n = len(self.val_loader) + len(self.test_loader)
        with tqdm(total=n, desc=f"{self.exp} f{self.fold} predict tta{rec.tta}", unit="batch", leave=False,
                  disable=not self.progress) as bar:
            p_val = engine.predict(model, self.val_loader, self.setup, rec.tta, bar)
            p_test = engine.predict(model, self.test_loader, self.setup, rec.tta, bar)
        ids = self.train_df[comp.id_col].to_numpy()[self.val_idx]
        oof = pd.DataFrame({"id": ids, "target": self.y_val, "fold": self.fold, "pred": p_val})
        test = pd.DataFrame({"id": self.test_ids, "pred": p_test})
        oof_auc = _auc(self.y_val, p_val)
        write_csv_atomic(oof, self.paths.oof)
        write_csv_atomic(test, self.paths.test)
        meta = {"competition": comp.name, "exp": self.exp, "arch": self.arch, "fold": self.fold,
                "n_folds": self.n_folds, "folds_file": str(self.folds_file), "folds_hash": file_hash(self.folds_file),
                "config_hash": config_hash(self.cfg, MODEL_KEYS), "weights": self.info.source,
                "best_epoch": best_epoch + 1, "epochs_run": epochs_run, "val_auc": best_auc, "tta": rec.tta,
                "oof_auc": oof_auc, "n_val": len(oof), "n_test": len(test), "device": str(self.device),
                "secs": round(time.time() - self.t0, 1),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": self.cfg.to_dict()}
        write_json_atomic(self.paths.meta, meta)
        tqdm.write(f"[{self.exp} fold {self.fold}] best epoch {best_epoch + 1}: val AUC {best_auc:.4f}, "
                   f"OOF AUC with TTA x{rec.tta} {oof_auc:.4f} -> {self.paths.oof}, {self.paths.test}")
        return meta


def train_fold(cfg: Config, arch: str, fold: int, base: Path, resume: bool = False, progress: bool = True,
               on_epoch_end=None) -> dict:
    """Train one fold of one arch end to end; returns the fold's meta record."""
    return FoldRun(cfg, arch, fold, base, progress).fit(resume, on_epoch_end)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    p.add_argument("--fold", type=int, required=True, help="fold to hold out (0..n_folds-1)")
    p.add_argument("--arch", help="timm model name (default: the config's first arch)")
    p.add_argument("--resume", action="store_true", help="continue from models/<exp>/fold<k>_last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_recipe_flags(p)
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    arch = args.arch or cfg.recipe.archs[0]
    cfg = dataclasses.replace(cfg, recipe=dataclasses.replace(cfg.recipe, archs=[arch]))
    t0 = time.time()
    try:
        meta = train_fold(cfg, arch, args.fold, Path(args.workdir), args.resume, progress=not args.quiet)
    except engine.NonFiniteLossError as e:
        last = fold_paths(Path(args.workdir), cfg.exp_name(arch), args.fold).last
        print(f"error: training stopped, {e}. The last good epoch is kept in {last} (continue with --resume "
              "after lowering --lr, or turn on gradient accumulation)", file=sys.stderr)
        return 3
    print(f"done in {time.time() - t0:.0f}s: OOF AUC {meta['oof_auc']:.4f} (fold {args.fold})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
