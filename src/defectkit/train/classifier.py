"""The classifier member (recipe `member: classifier`, the default): a timm backbone and a one-logit head
trained on both classes, and its loop: the model and optimiser (`build_model`, `build_optim`), the
epochs with checkpoints and resume, the best epoch by validation AUC and early stopping, and the
predictions with TTA (`FoldTrainer`); the fold's inputs and the outputs every kind shares come from
train/fold_data.py and train/fold.py."""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.core.config import Config, config_hash, save_config
from defectkit.core.fileio import (
    write_csv_atomic,
)
from defectkit.core.layout import REFIT, Layout
from defectkit.core.members import FitOptions, MemberKind, register_member
from defectkit.core.plots import figure
from defectkit.data.augment import build_transform
from defectkit.data.datasets import FeatureDataset, ImageDataset, JoinedDataset, make_loader
from defectkit.data.device_batches import BatchAug, DeviceBatches
from defectkit.train import engine, runtime
from defectkit.train.checkpoint import Checkpoint, save_torch_atomic
from defectkit.train.engine import Optim
from defectkit.train.features import FrozenViews, extract_frozen_features, feature_cache_path
from defectkit.train.fold import FoldFacts, prepare_outputs, write_fold_outputs
from defectkit.train.fold_data import FoldData, load_fold_data
from defectkit.train.models import (
    CachedPrefixNet,
    ModelInfo,
    create_model,
    frozen_parameter_names,
    head_parameters,
    set_train_mode,
    unwrap,
)


@dataclass
class ModelParts:
    """The timm model, what trains (the model itself, or its unfrozen rest fed with cached
    features of the frozen stages), where it runs, and its three loaders."""

    model: torch.nn.Module
    info: ModelInfo
    net: torch.nn.Module
    setup: engine.DeviceSetup
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    test_loader: torch.utils.data.DataLoader
    data_path: str = "loader"  # how batches reach the model: loader, device or cache (the fold record keeps it)


def build_model(cfg: Config, arch: str, fd: FoldData, layout: Layout, device: torch.device,
                progress: bool = True) -> ModelParts:
    rec = cfg.recipe
    torch.manual_seed(rec.seed)
    model, info = create_model(arch, rec.pretrained, rec.weights or None, 1, rec.drop_rate, rec.pool)
    model.to(device)
    setup = engine.make_setup(device, info.mean, info.std, rec.amp, rec.channels_last)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    workers = rec.num_workers if rec.num_workers >= 0 else runtime.default_num_workers(device.type)
    if rec.cache_frozen:
        views = FrozenViews(model, rec.freeze_stages, max(rec.tta_views, 2))  # at least 2: training draws one

        def cache_path(imgs):
            return feature_cache_path(layout.cache_dir(cfg.competition), arch, views, (info.mean, info.std), imgs)
        net, datasets = CachedPrefixNet(model, rec.freeze_stages), _feature_datasets(rec, fd, views, setup,
                                                                                      cache_path, progress)
        workers = 0  # a memory map read per sample: worker processes only add overhead
    elif runtime.use_device_path(rec.data_path, device, _image_bytes(fd)):
        return ModelParts(model, info, model, setup, *_device_batches(rec, fd, device), data_path="device")
    else:
        net = model
        aug = build_transform(rec.aug, rec.n_symmetries)
        datasets = (JoinedDataset(ImageDataset(fd.train_images, fd.y_fit, aug, fd.tr_idx),
                                       ImageDataset(fd.test_images, fd.pseudo_targets(), aug, fd.pseudo_idx)),
                    ImageDataset(fd.train_images, fd.y, None, fd.val_idx),
                    ImageDataset(fd.test_images))
    dev = device.type
    loaders = (make_loader(datasets[0], rec.batch_size, True, dev, workers, rec.seed),
               make_loader(datasets[1], rec.batch_size * 2, False, dev, workers),
               make_loader(datasets[2], rec.batch_size * 2, False, dev, workers))
    return ModelParts(model, info, net, setup, *loaders, data_path="cache" if rec.cache_frozen else "loader")


def _image_bytes(fd: FoldData) -> int:
    """The decoded images a fold reads: its training, validation and pseudo-labelled rows, and the test set."""
    rows = len(fd.tr_idx) + len(fd.val_idx) + len(fd.pseudo_idx) + len(fd.test_images)
    return rows * int(np.prod(fd.train_images.shape[1:]))


def _device_batches(rec, fd: FoldData, device: torch.device) -> tuple:
    """The training, validation and test batches of the device data path (data/device_batches.py)."""
    aug = BatchAug(rec.aug, rec.n_symmetries) if rec.aug != "none" else None
    rows = [(fd.train_images, fd.y_fit, fd.tr_idx), (fd.test_images, fd.pseudo_targets(), fd.pseudo_idx)]
    train = DeviceBatches(rows, rec.batch_size, device, aug, True, rec.seed)
    val = DeviceBatches([(fd.train_images, fd.y, fd.val_idx)], rec.batch_size * 2, device, train=False)
    n_test = len(fd.test_images)
    test = DeviceBatches([(fd.test_images, np.zeros(n_test), np.arange(n_test))], rec.batch_size * 2, device,
                         train=False)
    return train, val, test


def _feature_datasets(rec, fd: FoldData, views: FrozenViews, setup, cache_path, progress: bool):
    """Datasets of cached frozen-stage features (in the file `cache_path(images)`): the symmetries
    TTA uses (`views`), among which training draws one per sample (the `light` augmentation over the
    cached views)."""
    if rec.aug not in ("light", "none"):
        raise InputError(f"cache_frozen trains on the cached symmetries (aug light); aug={rec.aug} needs "
                         "images: turn cache_frozen off")
    feats = [extract_frozen_features(views, imgs, setup, cache_path(imgs), progress=progress)
             for imgs in (fd.train_images, fd.test_images)]
    light = rec.aug == "light"
    return (JoinedDataset(FeatureDataset(feats[0], fd.y_fit, fd.tr_idx, train=light),
                               FeatureDataset(feats[1], fd.pseudo_targets(), fd.pseudo_idx, train=light)),
            FeatureDataset(feats[0], fd.y, fd.val_idx, train=False),
            FeatureDataset(feats[1], np.zeros(len(feats[1])), np.arange(len(feats[1])), train=False))


def build_optim(cfg: Config, parts: ModelParts) -> Optim:
    """AdamW over the trainable parameters (head at lr, backbone at lr x factor), linear warmup
    then cosine stepped per optimizer step, a GradScaler for fp16, EMA when asked."""
    rec, model = cfg.recipe, parts.model
    head = head_parameters(model)
    frozen = frozen_parameter_names(model, rec.freeze_stages)
    params = [p for n, p in model.named_parameters() if n not in frozen]
    groups = [{"params": [p for p in params if id(p) not in head], "lr": rec.lr * rec.backbone_lr_factor},
              {"params": [p for p in params if id(p) in head], "lr": rec.lr}]
    optimizer = torch.optim.AdamW(groups, lr=rec.lr, weight_decay=rec.weight_decay)
    steps = -(-len(parts.train_loader) // rec.accum_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, engine.warmup_cosine(steps * rec.epochs, int(steps * rec.warmup_epochs), rec.min_lr_ratio))
    scaler = torch.amp.GradScaler("cuda") if parts.setup.amp_dtype == torch.float16 else None
    ema = engine.make_ema(parts.net, rec.ema) if rec.ema > 0 else None
    return Optim(optimizer, scheduler, scaler, ema, steps, rec.accum_steps)


@dataclass
class TrainState:
    """Where the loop stands: epochs done, the best validation AUC and its epoch, epochs since
    it last improved, the log. `run_id` names this run (kept across --resume): only a best
    checkpoint carrying it may predict."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    epochs_done: int = 0
    best_auc: float = -1.0
    best_epoch: int = -1  # 0-based; -1 = no checkpoint yet
    bad_epochs: int = 0
    log: list = field(default_factory=list)

    def record(self, row: dict) -> bool:
        """Log one finished epoch; True when its validation AUC is the best so far."""
        self.log.append(row)
        epoch, auc = self.epochs_done, row["val_auc"]
        self.epochs_done += 1
        if np.isfinite(auc) and auc > self.best_auc:
            self.best_auc, self.best_epoch, self.bad_epochs = auc, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def should_stop(self, patience: int) -> bool:
        return patience > 0 and self.bad_epochs >= patience

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state_dict(cls, d: dict) -> TrainState:
        return cls(**d)


def plot_curves(log: pd.DataFrame, path: Path, title: str) -> None:
    with figure(path, 1, 2, figsize=(10, 3.5)) as (fig, (a, b)):
        a.plot(log.epoch, log.train_loss, "o-", label="train loss")
        a.plot(log.epoch, log.val_loss, "o-", label="val loss")
        a.set_xlabel("epoch"), a.legend(), a.set_title(title)
        b.plot(log.epoch, log.val_auc, "o-", color="C2", label="val AUC")
        b.set_xlabel("epoch"), b.set_ylabel("val AUC")
        b2 = b.twinx()
        b2.plot(log.epoch, log.lr, "--", color="C7", label="lr")
        b2.set_ylabel("head lr")


class FoldTrainer:
    """One fold of one arch, built from its parts: `FoldTrainer(...).fit()`."""

    def __init__(self, cfg: Config, arch: str, fold: int, layout: Layout, progress: bool = True):
        self.cfg, self.arch, self.fold, self.layout, self.progress = cfg, arch, fold, layout, progress
        self.t0 = time.time()
        self.saved_at = time.monotonic()  # of the last resumable checkpoint (recipe checkpoint_s)
        self.exp = cfg.exp_name(arch)
        self.paths = layout.fold(self.exp, fold)
        self.device = runtime.pick_device(cfg.recipe.device)
        runtime.configure(self.device, cfg.recipe.threads)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.data = load_fold_data(cfg, layout, fold, progress)
        self.parts = build_model(cfg, arch, self.data, layout, self.device, progress)
        self.optim = build_optim(cfg, self.parts)
        self.train_net = torch.compile(self.parts.net) if cfg.recipe.compile else self.parts.net
        self.state = TrainState()

    def say(self, msg: str) -> None:
        tqdm.write(f"[{self.exp} fold {self.fold}] {msg}")

    @property
    def eval_net(self):
        """What predicts: the EMA copy when EMA is on (a CachedPrefixNet when features are cached)."""
        return self.optim.ema.module if self.optim.ema is not None else self.parts.net

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        o = self.optim
        return {"model": self.parts.model.state_dict(), "optimizer": o.optimizer.state_dict(),
                "scheduler": o.scheduler.state_dict(), "scaler": o.scaler.state_dict() if o.scaler else None,
                "ema": o.ema.state_dict() if o.ema else None, "state": self.state.state_dict(),
                "arch": self.arch, "config_hash": config_hash(self.cfg)}

    def resume(self) -> None:
        if not self.paths.last.exists():
            self.say(f"--resume: no {self.paths.last.name} yet, starting fresh")
            return
        try:
            ck = torch.load(self.paths.last, map_location=self.device, weights_only=False)
        except Exception as e:  # noqa: BLE001 - torch raises several types for a damaged file
            raise InputError(f"{self.paths.last}: cannot be read as a checkpoint ({type(e).__name__}); delete it "
                             "to train this fold from the start") from e
        ck = ck if isinstance(ck, dict) else {}
        if ck.get("arch") != self.arch or ck.get("config_hash") != config_hash(self.cfg) or "state" not in ck:
            raise InputError(f"{self.paths.last}: was made by another arch or recipe; cannot --resume it "
                             "(use another --name, or drop --resume to start over)")
        o = self.optim
        self.parts.model.load_state_dict(ck["model"])
        o.optimizer.load_state_dict(ck["optimizer"])
        o.scheduler.load_state_dict(ck["scheduler"])
        if o.scaler and ck["scaler"]:
            o.scaler.load_state_dict(ck["scaler"])
        if o.ema and ck["ema"]:
            o.ema.load_state_dict(ck["ema"])
        self.state = TrainState.from_state_dict(ck["state"])
        self.say(f"resuming after epoch {self.state.epochs_done}/{self.cfg.recipe.epochs} "
                 f"(best val AUC {self.state.best_auc:.4f} at epoch {self.state.best_epoch + 1})")

    def save_best(self, epoch: int, auc: float) -> None:
        rec = self.cfg.recipe
        Checkpoint(arch=self.arch, model=unwrap(self.eval_net).state_dict(), hw=rec.hw, resize=rec.resize,
                   border_crop=rec.border_crop, mean=self.parts.info.mean, std=self.parts.info.std, tta=rec.tta_views,
                   freeze_stages=rec.freeze_stages, cache_frozen=rec.cache_frozen, epoch=epoch, val_auc=auc,
                   run_id=self.state.run_id, config_hash=config_hash(self.cfg), config=self.cfg.to_dict()
                   ).save(self.paths.best)

    # --- the loop ------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        rec, o = self.cfg.recipe, self.optim
        self.parts.train_loader.sampler.set_epoch(epoch)
        torch.manual_seed(rec.seed * 1000 + epoch)  # dropout, mixup: reproducible after resume
        with tqdm(total=len(self.parts.train_loader), desc=f"{self.exp} f{self.fold} ep {epoch + 1}/{rec.epochs}",
                  unit="batch", leave=False, disable=not self.progress) as bar:
            how = engine.Epoch((rec.mixup, rec.mixup_alpha),
                               lambda m: set_train_mode(m, rec.freeze_stages, head_only=epoch < rec.freeze_epochs),
                               epoch * o.steps_per_epoch)
            return engine.train_one_epoch(self.train_net, self.parts.train_loader, o, self.parts.setup, how, bar)

    def fit(self, resume: bool = False, on_epoch_end=None) -> dict:
        rec = self.cfg.recipe
        save_config(self.cfg, self.paths.config)
        if resume:
            self.resume()
        st = self.state
        n_tr, n_val, n_test = len(self.data.tr_idx), len(self.data.val_idx), len(self.data.test_ids)
        self.say(f"{self.arch} ({self.parts.info.source}) on {self.device}, {n_tr} train / {n_val} val / "
                 f"{n_test} test, {rec.size_tag}px ({rec.resize}), batch {rec.batch_size}, TTA x{rec.tta_views}")
        while st.epochs_done < rec.epochs and not st.should_stop(rec.patience):
            epoch = st.epochs_done
            tr = self.train_epoch(epoch)
            auc, vloss = self.validate()
            improved = st.record({"epoch": epoch + 1, "train_loss": round(tr["loss"], 5), "val_loss": round(vloss, 5),
                                  "val_auc": round(auc, 5), "lr": self.optim.optimizer.param_groups[1]["lr"],
                                  "img_s": round(tr["img_s"], 1), "secs": round(tr["secs"], 1)})
            if (self.fold == REFIT or rec.teacher) and st.epochs_done == rec.epochs:  # the last epoch: nothing to
                # choose by (a refit), or what a student's k-fold siblings estimate is its final epoch
                st.best_epoch, improved = epoch, True
            if improved:
                self.save_best(epoch, auc)
            if time.monotonic() - self.saved_at >= rec.checkpoint_s:  # resumable; 0 s: every epoch
                save_torch_atomic(self.checkpoint(), self.paths.last)
                self.saved_at = time.monotonic()
            write_csv_atomic(pd.DataFrame(st.log), self.paths.log)
            self.say(f"epoch {epoch + 1:>2}/{rec.epochs} loss {tr['loss']:.4f} val_loss {vloss:.4f} "
                     f"val_auc {auc:.4f}{' *' if improved else '  '} lr {st.log[-1]['lr']:.2e} "
                     f"{tr['img_s']:.0f} img/s {tr['secs']:.0f}s")
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if st.should_stop(rec.patience):
                self.say(f"early stop: no val AUC gain for {st.bad_epochs} epochs")
        plot_curves(pd.DataFrame(st.log), self.paths.curves, f"{self.exp} fold {self.fold}")  # once, at the end
        return self.write_predictions()

    def validate(self) -> tuple[float, float]:
        """Validation AUC and loss without TTA (NaN for a refit, which has no validation rows)."""
        if not len(self.data.val_idx):
            return float("nan"), float("nan")
        p_val = engine.predict(self.eval_net, self.parts.val_loader, self.parts.setup, tta=1)
        return metrics.auc(self.data.y_val, p_val), metrics.bce(p_val, self.data.y_val)

    def load_best(self) -> None:
        """This run's best weights into the predicting net; never a checkpoint another run left."""
        st = self.state
        ck = Checkpoint.load(self.paths.best, self.fold, self.device) \
            if self.paths.best.exists() and st.best_epoch >= 0 else None
        if ck is None or ck.run_id != st.run_id:
            raise InputError(f"{self.exp} fold {self.fold}: no epoch of this run produced a best checkpoint "
                             f"(validation AUCs {[r['val_auc'] for r in st.log]}); nothing is predicted")
        unwrap(self.eval_net).load_state_dict(ck.model)

    def write_predictions(self) -> dict:
        rec, st, d = self.cfg.recipe, self.state, self.data
        self.load_best()
        model, setup = self.eval_net, self.parts.setup
        n = len(self.parts.val_loader) + len(self.parts.test_loader)
        with tqdm(total=n, desc=f"{self.exp} f{self.fold} predict tta{rec.tta_views}", unit="batch", leave=False,
                  disable=not self.progress) as bar:
            p_val = engine.predict(model, self.parts.val_loader, setup, rec.tta_views, bar)
            p_test = engine.predict(model, self.parts.test_loader, setup, rec.tta_views, bar)
        meta = write_fold_outputs(self.cfg, self.arch, d, self.paths, (p_val, p_test), FoldFacts(
            weights=self.parts.info.source, run_id=st.run_id, best_epoch=st.best_epoch + 1, epochs_run=st.epochs_done,
            val_auc=st.best_auc, n_train=len(d.tr_idx), device=str(self.device), secs=round(time.time() - self.t0, 1),
            peak_gpu_mem_gib=round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
            if self.device.type == "cuda" else None, data_path=self.parts.data_path))
        oof_auc = meta.oof_auc
        if oof_auc is None:
            self.say(f"refit on all {len(d.tr_idx)} training rows, {st.epochs_done} epochs -> {self.paths.test}")
        else:
            self.say(f"best epoch {st.best_epoch + 1}: val AUC {st.best_auc:.4f}, OOF AUC with TTA x{rec.tta_views} "
                     f"{oof_auc:.4f} -> {self.paths.oof}, {self.paths.test}")
        return meta


@register_member("classifier")
class Classifier(MemberKind):
    """Every fold validates on both classes; its model is the backbone and a one-logit head."""

    def fit(self, cfg, arch, fold, layout, opts: FitOptions):
        trainer = FoldTrainer(cfg, arch, fold, layout, opts.progress)
        prepare_outputs(layout.fold(cfg.exp_name(arch), fold))
        return trainer.fit(opts.resume, opts.on_epoch_end)

    def build(self, ck):
        model, _ = create_model(ck.arch, pretrained="none", num_classes=1, pool=ck.recipe.get("pool", "avg"))
        model.load_state_dict(ck.model)
        return model.eval()
