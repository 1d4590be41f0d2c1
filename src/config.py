"""One configuration for a run: a competition description plus a training recipe.

`configs/<name>.yaml` has two sections, `competition:` and `recipe:`; a variant names
its `base:` and overrides only what differs. Command-line flags are generated from the
dataclass fields below (one source of truth) and override both sections. The resolved
config is saved beside every run with `save_config`.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from checks import InputError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"


@dataclass
class Competition:
    """Where a competition's files are and what its columns are called."""

    name: str = ""
    # How `prepare.py` builds input/<name>/: {"type": "elpv"} | {"type": "folder", "path": ...,
    # "good": ..., "defect": ..., "test": ...} | {"type": "kaggle", "slug": ...}.
    source: dict = field(default_factory=dict)
    kaggle_slug: str = ""  # where submit.py sends the submission (default: source.slug)
    data_dir: str = ""  # default: input/<name>
    train_csv: str = "train.csv"
    train_dir: str = "train"
    test_dir: str = "test"
    sample_submission: str = "sample_submission.csv"
    solution: str = "solution.csv"
    id_col: str = "id"
    target_col: str = "target"
    group_col: str | None = None
    image_ext: str = ".png"
    # Submission columns [id column, prediction column], as the competition wants them.
    submission_columns: list = field(default_factory=lambda: ["id", "target"])
    metric: str = "roc_auc"

    def root(self, base: Path = ROOT) -> Path:
        return base / (self.data_dir or f"input/{self.name}")


@dataclass
class Recipe:
    """How to train, predict and blend. Every field is also a command-line flag."""

    archs: list = field(default_factory=lambda: ["tf_efficientnet_lite0"])
    name: str = "{arch}"  # experiment name; may use {arch} and {img_size}
    n_folds: int = 5
    folds: list = field(default_factory=list)  # folds to train; empty = all
    seed: int = 42
    img_size: int = 224
    border_crop: float = 0.0  # fraction cut from each border before resizing
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3  # head learning rate
    backbone_lr_factor: float = 0.1  # backbone lr = lr * factor
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    freeze_epochs: int = 0  # train the head alone for the first N epochs
    freeze_stages: int = 0  # keep the stem + first N-1 stages frozen for the whole run
    cache_frozen: bool = False  # run the frozen stages once per image and TTA symmetry, train the rest
    accum_steps: int = 1
    ema: float = 0.0  # EMA decay of weights, 0 = off (e.g. 0.999); its upper bound: the decay warms up with the step
    patience: int = 0  # early stopping on val AUC, 0 = off
    aug: str = "light"  # none | light | strong
    mixup: float = 0.0  # probability of mixup on a batch
    mixup_alpha: float = 0.4
    drop_rate: float = 0.2
    tta: int = 8  # 1 | 2 | 4 | 8
    pretrained: str = "auto"  # auto | hub | none
    weights: str = ""  # local weights file
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast on CUDA (bf16 where supported)
    channels_last: bool = True
    compile: bool = False
    num_workers: int = -1  # -1 = automatic
    threads: int = 0  # CPU threads for torch, 0 = automatic
    blend_method: str = "hill"  # mean | rank | hill


CHOICES = {
    "aug": ("none", "light", "strong"),
    "tta": (1, 2, 4, 8),
    "pretrained": ("auto", "hub", "none"),
    "blend_method": ("mean", "rank", "hill"),
}


@dataclass
class Config:
    competition: Competition
    recipe: Recipe
    source_file: str = ""

    def exp_name(self, arch: str) -> str:
        return self.recipe.name.format(arch=arch, img_size=self.recipe.img_size)

    def to_dict(self) -> dict:
        return {"competition": dataclasses.asdict(self.competition),
                "recipe": dataclasses.asdict(self.recipe)}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple = ()) -> dict:
    if not path.exists():
        raise InputError(f"{path}: config file not found (configs available: "
                         f"{', '.join(sorted(p.name for p in CONFIG_DIR.glob('*.yaml')))})")
    if path.resolve() in seen:
        raise InputError(f"{path}: `base:` chain loops back to itself")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with `competition:` and `recipe:`")
    base = data.pop("base", None)
    if base:
        data = _merge(_read_yaml(path.parent / base, seen + (path.resolve(),)), data)
    return data


def _build(cls, values: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(known)}")
    obj = cls(**values)
    _validate(obj, where)
    return obj


def _validate(obj, where: str) -> None:
    for name, allowed in CHOICES.items():
        if hasattr(obj, name) and getattr(obj, name) not in allowed:
            raise InputError(f"{where}: {name}={getattr(obj, name)!r}, expected one of {allowed}")
    if isinstance(obj, Competition) and len(obj.submission_columns) != 2:
        raise InputError(f"{where}: submission_columns must be [id column, prediction column]")


def resolve_config_path(competition: str | None = None, config: str | None = None,
                        workdir: str | Path | None = None) -> Path:
    if config:
        return Path(config)
    if competition:
        local = Path(workdir or ROOT) / "configs" / f"{competition}.yaml"
        return local if local.exists() else CONFIG_DIR / f"{competition}.yaml"
    raise InputError("give --competition NAME (reads configs/NAME.yaml) or --config PATH")


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Load a YAML config (following `base:`), then apply `overrides` to the recipe/competition."""
    path = Path(path)
    data = _read_yaml(path)
    unknown = set(data) - {"competition", "recipe"}
    if unknown:
        raise InputError(f"{path}: unknown section(s) {sorted(unknown)}; expected competition:, recipe:")
    comp = dict(data.get("competition") or {})
    recipe = dict(data.get("recipe") or {})
    for k, v in (overrides or {}).items():
        (recipe if k in Recipe.__dataclass_fields__ else comp)[k] = v
    comp.setdefault("name", path.stem)
    return Config(_build(Competition, comp, f"{path} competition"),
                  _build(Recipe, recipe, f"{path} recipe"), str(path))


def config_hash(cfg: Config, keys: tuple = ()) -> str:
    """Short hash of the recipe fields that change a model's predictions."""
    rec = dataclasses.asdict(cfg.recipe)
    if keys:
        rec = {k: rec[k] for k in keys}
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:12]


# --- command line --------------------------------------------------------------------------

def _str2bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


def add_recipe_flags(parser: argparse.ArgumentParser, only: tuple | None = None) -> None:
    """Add one `--flag` per Recipe field (default None = keep the YAML's value)."""
    hints = get_type_hints(Recipe)
    group = parser.add_argument_group("recipe overrides (default: the config's value)")
    for f in fields(Recipe):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        kw: dict[str, Any] = {"default": None, "dest": f.name}
        if typ is bool:
            kw.update(type=_str2bool, metavar="true|false")
        elif get_origin(typ) is list or typ is list:
            kw.update(nargs="+", type=int if f.name == "folds" else str)
        elif typ is int or typ is float:
            kw.update(type=typ)
        else:
            kw.update(type=str)
        if f.name in CHOICES:
            kw["choices"] = CHOICES[f.name]
        group.add_argument(flag, **kw)


def recipe_overrides(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(Recipe)
            if getattr(args, f.name, None) is not None}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--competition", help="competition name: reads configs/NAME.yaml")
    parser.add_argument("--config", help="config YAML (instead of --competition)")
    parser.add_argument("--workdir", default=str(ROOT),
                        help="folder holding input/, folds/, models/, oof/, submissions/ (default: the repository)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(resolve_config_path(args.competition, args.config, getattr(args, "workdir", None)),
                       recipe_overrides(args))


@dataclass(frozen=True)
class FoldPaths:
    """Every file one fold of one experiment reads or writes (see DESIGN.md's data flow)."""

    model_dir: Path
    oof_dir: Path
    fold: int

    @property
    def best(self) -> Path:
        return self.model_dir / f"fold{self.fold}.pt"

    @property
    def last(self) -> Path:
        return self.model_dir / f"fold{self.fold}_last.pt"

    @property
    def log(self) -> Path:
        return self.model_dir / f"fold{self.fold}_log.csv"

    @property
    def curves(self) -> Path:
        return self.model_dir / f"fold{self.fold}_curves.png"

    @property
    def config(self) -> Path:
        return self.model_dir / f"fold{self.fold}_config.yaml"

    @property
    def oof(self) -> Path:
        return self.oof_dir / f"fold{self.fold}.csv"

    @property
    def test(self) -> Path:
        return self.oof_dir / f"test_fold{self.fold}.csv"

    @property
    def meta(self) -> Path:
        """Written last: its presence marks the fold complete."""
        return self.oof_dir / f"fold{self.fold}.json"


def fold_paths(base: Path, exp: str, fold: int) -> FoldPaths:
    return FoldPaths(Path(base) / "models" / exp, Path(base) / "oof" / exp, fold)


def save_config(cfg: Config, path: Path) -> None:
    from fileio import write_text_atomic
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def default_num_workers(device_type: str) -> int:
    cpus = os.cpu_count() or 1
    if device_type == "cuda":
        return min(8, cpus)
    return 0 if cpus <= 2 else min(4, cpus // 2)
