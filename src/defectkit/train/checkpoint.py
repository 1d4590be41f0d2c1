"""A fold's best checkpoint (models/<exp>/fold<k>.pt) as a typed record that carries its own
preprocessing, as timm's `pretrained_cfg` does: the input size, resize rule, border crop,
normalisation, TTA views, frozen stages and the recipe's batch size and precision. One writer
(train's best epoch), one reader (`Checkpoint.load`) for predict, export, explain and the fold
itself; a file of an unknown format, or with values of the wrong type, is one line naming it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from defectkit.core.checks import InputError
from defectkit.core.fileio import atomic_path
from defectkit.core.members import get_member
from defectkit.runtime.imaging import Preprocess

RESIZE_MODES = ("squash", "pad", "crop")


def save_torch_atomic(obj, path: str | Path) -> None:
    """torch.save, atomically. torch reports a full disk as a RuntimeError from its zip
    writer ('unexpected pos'); it becomes an OSError naming the file."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:
            raise OSError(28, f"could not be written ({str(e).splitlines()[0][:80]})", str(path)) from e


@dataclass
class Checkpoint:
    FORMAT: ClassVar[int] = 2
    arch: str
    model: dict = field(repr=False)  # the state dict
    hw: tuple[int, int]
    resize: str
    border_crop: float
    mean: tuple
    std: tuple
    tta: int
    freeze_stages: int = 0
    cache_frozen: bool = False
    epoch: int = 0
    val_auc: float | None = None
    run_id: str = ""
    config_hash: str = ""
    config: dict = field(default_factory=dict, repr=False)

    @property
    def recipe(self) -> dict:
        return self.config.get("recipe", {})

    @property
    def batch_size(self) -> int:
        return int(self.recipe.get("batch_size", 32))

    @property
    def amp(self) -> bool:
        return bool(self.recipe.get("amp", True))

    @property
    def channels_last(self) -> bool:
        return bool(self.recipe.get("channels_last", True))

    @property
    def preprocess(self) -> Preprocess:
        """How the model saw its images: size, resize mode, border crop, normalisation."""
        return Preprocess(self.hw, self.resize, self.border_crop, tuple(self.mean), tuple(self.std))

    def save(self, path: Path) -> None:
        save_torch_atomic({"format": self.FORMAT, "arch": self.arch, "model": self.model, "img_size": list(self.hw),
                           "resize": self.resize, "border_crop": self.border_crop, "mean": list(self.mean),
                           "std": list(self.std), "tta": self.tta, "freeze_stages": self.freeze_stages,
                           "cache_frozen": self.cache_frozen, "epoch": self.epoch, "val_auc": self.val_auc,
                           "run_id": self.run_id, "config_hash": self.config_hash, "config": self.config}, path)

    @classmethod
    def load(cls, path: Path, fold: int | str = "", map_location="cpu") -> Checkpoint:
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: no checkpoint; train it first (python src/train.py --fold {fold} ...)")
        try:
            ck = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as e:  # noqa: BLE001 - torch raises several types for a damaged file
            raise InputError(f"{path}: cannot be read as a checkpoint ({type(e).__name__})") from e
        return cls.from_dict(ck, str(path))

    @classmethod
    def from_dict(cls, ck, where: str) -> Checkpoint:
        if not isinstance(ck, dict) or not isinstance(ck.get("model"), dict) or not isinstance(ck.get("arch"), str):
            raise InputError(f"{where}: not a fold checkpoint of train.py (no arch and model)")
        version = ck.get("format", 1)
        if not isinstance(version, int) or not 1 <= version <= cls.FORMAT:
            raise InputError(f"{where}: checkpoint format {version!r}; this code reads 1 to {cls.FORMAT} (made by a "
                             "newer version: update the code, or train the fold again)")
        hw = ck.get("img_size")
        hw = [hw, hw] if isinstance(hw, int) and not isinstance(hw, bool) else hw
        if not isinstance(hw, (list, tuple)) or len(hw) != 2 or not all(isinstance(x, int) and x >= 8 for x in hw):
            raise InputError(f"{where}: img_size = {ck.get('img_size')!r}; expected a size or [height, width]")
        resize, crop = ck.get("resize", "squash"), ck.get("border_crop", 0.0)
        if resize not in RESIZE_MODES:
            raise InputError(f"{where}: resize = {resize!r}; expected one of {', '.join(RESIZE_MODES)}")
        if not isinstance(crop, (int, float)) or not math.isfinite(crop) or not 0 <= crop < 0.5:
            raise InputError(f"{where}: border_crop = {crop!r}; expected a fraction in [0, 0.5)")
        if ck.get("tta") not in (1, 2, 4, 8):
            raise InputError(f"{where}: tta = {ck.get('tta')!r}; expected 1, 2, 4 or 8")
        for key in ("mean", "std"):
            v = ck.get(key)
            if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(math.isfinite(float(x)) for x in v):
                raise InputError(f"{where}: {key} = {v!r}; expected three finite numbers")
        if any(float(x) <= 0 for x in ck["std"]):
            raise InputError(f"{where}: std = {ck['std']!r}; expected positive numbers")
        return cls(arch=ck["arch"], model=ck["model"], hw=(int(hw[0]), int(hw[1])), resize=resize,
                   border_crop=float(crop), mean=tuple(ck["mean"]), std=tuple(ck["std"]), tta=int(ck["tta"]),
                   freeze_stages=int(ck.get("freeze_stages", 0)), cache_frozen=bool(ck.get("cache_frozen", False)),
                   epoch=int(ck.get("epoch", 0)), val_auc=ck.get("val_auc"), run_id=str(ck.get("run_id", "")),
                   config_hash=str(ck.get("config_hash", "")), config=ck.get("config") or {})

    def build_model(self) -> nn.Module:
        """The model with these weights, in eval mode on the CPU."""
        return get_member(self.recipe.get("member", "classifier")).build(self)
