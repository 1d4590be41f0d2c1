"""One configuration for a run: a competition description plus a training recipe.

`configs/<name>.yaml` has two sections, `competition:` and `recipe:`; a variant names its
`base:` and overrides only what differs. The recipe starts from a named preset
(`presets.py`; `preset: auto` follows the hardware), then the YAML's fields, then
command-line flags, which are generated from the dataclass fields below. Every value is
converted and checked by its type and range when the config is built: a bad one is a
one-line error naming the file (or flag) and the key. The resolved config is saved beside
every run with `save_config`.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from defectkit.core.checks import InputError, check_name
from defectkit.core.presets import PRESETS, resolve_preset

_CHECKOUT = Path(__file__).resolve().parents[3]  # src/defectkit/core/config.py -> the repository
# The default working folder: the repository when the package runs from its checkout, else here.
ROOT = _CHECKOUT if (_CHECKOUT / "configs").is_dir() else Path.cwd()
CONFIG_DIR = ROOT / "configs"


@dataclass
class Competition:
    """Where a competition's files are and what its columns are called."""

    name: str = ""
    # How `prepare.py` builds input/<name>/: {"type": "elpv"} | {"type": "folder", "path": ...,
    # "good": ..., "defect": ..., "test": ...} | {"type": "yolo", "path": ...} | {"type": "kaggle", "slug": ...}.
    source: dict = field(default_factory=dict)
    kaggle_slug: str = ""  # where submit.py sends the submission (default: source.slug)
    data_dir: str = ""  # default: input/<name>
    train_csv: str = "train.csv"
    train_dir: str = "train"
    test_dir: str = "test"
    sample_submission: str = "sample_submission.csv"
    test_csv: str = "test.csv"  # optional: test ids with metadata columns (for blend_method stack)
    solution: str = "solution.csv"
    id_col: str = "id"
    target_col: str = "target"
    group_col: str = ""
    image_ext: str = ".png"
    # Submission columns [id column, prediction column], as the competition wants them.
    submission_columns: list[str] = field(default_factory=lambda: ["id", "target"])
    metric: str = "roc_auc"


@dataclass
class Recipe:
    """How to train, predict and blend. Every field is also a command-line flag."""

    preset: str = ""  # a name of presets.PRESETS or auto; saved resolved
    archs: list[str] = field(default_factory=lambda: ["tf_efficientnet_lite0"])
    name: str = "{arch}"  # experiment name; may use {arch} and {img_size}
    n_folds: int = 5
    folds: list[int] = field(default_factory=list)  # folds to train; empty = all
    seed: int = 42
    img_size: int | list[int] = 224  # one number (a square of that side) or [height, width]
    aspect_ratio: float = 1.0  # width / height of the input when img_size is one number (same area)
    resize: str = "squash"  # squash | pad (keep the aspect ratio, letterbox) | crop (centre crop)
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
    cache_frozen: bool = False  # run the frozen stages once per image and symmetry, train the rest
    accum_steps: int = 1
    ema: float = 0.0  # upper bound of the EMA decay of weights (it warms up with the step); 0 = off
    patience: int = 0  # early stopping on val AUC, 0 = off
    aug: str = "light"  # none | light | strong
    mixup: float = 0.0  # probability of mixup on a batch
    mixup_alpha: float = 0.4
    drop_rate: float = 0.2
    tta: int = 8  # 1 | 2 | 4 | 8 symmetries averaged (at most 4 for a non-square input)
    pretrained: str = "auto"  # auto | hub | none
    weights: str = ""  # local weights file
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast on CUDA (bf16 where supported)
    channels_last: bool = True
    compile: bool = False
    num_workers: int = -1  # -1 = automatic
    threads: int = 0  # CPU threads for torch, 0 = automatic
    blend_method: str = "hill"  # mean | rank | hill | stack
    stack_meta: list[str] = field(default_factory=list)  # train.csv/test.csv columns the stacker also uses
    refit: str = "none"  # none | only | both: full-data refits trained by run.py, and how the blend uses them
    pseudo: str = ""  # a pseudo-label table (src/pseudo.py): its test rows join every fold's training rows
    # A train.csv column of defect probabilities in [0, 1] (annotators' agreement, a severity grade) that
    # training fits instead of the 0/1 target; validation, OOF files and the blend still score the target.
    soft_target: str = ""

    @property
    def hw(self) -> tuple[int, int]:
        """The network input's (height, width): [h, w] as given, or a rectangle of about
        img_size**2 pixels at `aspect_ratio`, its sides multiples of 32 (the backbones' stride).

        >>> Recipe(img_size=160, aspect_ratio=3.0).hw
        (96, 288)
        """
        s = self.img_size
        if not isinstance(s, int):
            return int(s[0]), int(s[1])
        if self.aspect_ratio == 1:
            return s, s
        r = math.sqrt(self.aspect_ratio)
        return max(32, round(s / r / 32) * 32), max(32, round(s * r / 32) * 32)

    @property
    def square(self) -> bool:
        return self.hw[0] == self.hw[1]

    @property
    def size_tag(self) -> str:
        h, w = self.hw
        return str(h) if h == w else f"{h}x{w}"

    @property
    def n_symmetries(self) -> int:
        """Symmetries of the input's shape: the 8 of the square, or the 4 that keep a rectangle."""
        return 8 if self.square else 4

    @property
    def tta_views(self) -> int:
        """TTA views actually used: `tta`, at most the symmetries of the input's shape."""
        return min(self.tta, self.n_symmetries)


# Fields that say how or where a run executes, or what the grid holds, not what a fold's model
# learns: left out of the recipe hash. Every other field, present or added later, is hashed.
RUN_FIELDS = ("preset", "archs", "name", "folds", "device", "amp", "channels_last", "compile", "num_workers",
              "threads", "blend_method", "stack_meta", "refit")
# Fields added after recipes were first hashed, at the value that keeps the old behaviour: left out of
# the hash at that value, so that experiments made before they existed stay complete.
HASH_NEUTRAL = {"pseudo": "", "soft_target": ""}
# Fields that mean something for the whole grid only (not listed by train.py --help).
GRID_FIELDS = ("archs", "folds", "blend_method", "stack_meta", "refit")

CHOICES = {
    "aug": ("none", "light", "strong"),
    "tta": (1, 2, 4, 8),
    "pretrained": ("auto", "hub", "none"),
    "blend_method": ("mean", "rank", "hill", "stack"),
    "resize": ("squash", "pad", "crop"),
    "refit": ("none", "only", "both"),
    "metric": ("roc_auc",),
}
# (low, high, low inclusive, high inclusive); None = unbounded
RANGES = {
    "n_folds": (2, None, True, True), "epochs": (1, None, True, True), "batch_size": (1, None, True, True),
    "lr": (0, None, False, True), "backbone_lr_factor": (0, None, True, True),
    "weight_decay": (0, None, True, True), "warmup_epochs": (0, None, True, True),
    "min_lr_ratio": (0, 1, True, True), "freeze_epochs": (0, None, True, True),
    "freeze_stages": (0, None, True, True), "accum_steps": (1, None, True, True), "ema": (0, 1, True, False),
    "patience": (0, None, True, True), "mixup": (0, 1, True, True), "mixup_alpha": (0, None, False, True),
    "drop_rate": (0, 1, True, False), "border_crop": (0, 0.5, True, False), "num_workers": (-1, None, True, True),
    "threads": (0, None, True, True), "img_size": (8, 4096, True, True), "folds": (0, None, True, True),
    "seed": (0, None, True, True), "aspect_ratio": (0.25, 4, True, True),
}


@dataclass
class Config:
    competition: Competition
    recipe: Recipe
    source_file: str = ""

    def exp_name(self, arch: str) -> str:
        """The experiment's name from the recipe's template; `_pl` added when trained with pseudo-labels."""
        name = self.recipe.name.format(arch=arch, img_size=self.recipe.size_tag)
        if self.recipe.pseudo and not name.endswith("_pl"):
            name += "_pl"
        return check_name(name, f"experiment name (recipe name {self.recipe.name!r})")

    def to_dict(self) -> dict:
        return {"competition": dataclasses.asdict(self.competition),
                "recipe": dataclasses.asdict(self.recipe)}


# --- reading YAML ----------------------------------------------------------------------------

def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple = ()) -> dict:
    if not path.exists():
        raise InputError(f"{path}: config file not found (configs available: "
                         f"{', '.join(sorted(p.name for p in CONFIG_DIR.glob('*.yaml')))})")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a config YAML file")
    if path.resolve() in seen:
        raise InputError(f"{path}: `base:` chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        tab = " (YAML does not allow tabs for indentation)" if "\t" in path.read_text() else ""
        raise InputError(f"{path}: {where}not valid YAML: {problem}{tab}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with `competition:` and `recipe:`")
    base = data.pop("base", None)
    if base:
        data = _merge(_read_yaml(path.parent / base, seen + (path.resolve(),)), data)
    return data


# --- converting and checking values ----------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _to_float(v, where: str) -> float:
    if _is_int(v) or isinstance(v, float):
        return float(v)
    if isinstance(v, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(v)
        except ValueError:
            pass
    raise InputError(f"{where}: expected a number, got {v!r}")


def _to_int(v, where: str) -> int:
    if _is_int(v):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    hint = " (remove the quotes)" if isinstance(v, str) and v.strip().lstrip("-").isdigit() else ""
    raise InputError(f"{where}: expected a whole number, got {v!r}{hint}")


def _to_list(v, where: str, item) -> list:
    if not isinstance(v, (list, tuple)):
        raise InputError(f"{where}: expected a list (e.g. [a, b]), got {v!r}")
    return [item(x, f"{where}[{i}]") for i, x in enumerate(v)]


def _to_str(v, where: str) -> str:
    if isinstance(v, str):
        return v
    raise InputError(f"{where}: expected text, got {v!r}")


def _to_bool(v, where: str) -> bool:
    if isinstance(v, bool):
        return v
    raise InputError(f"{where}: expected true or false, got {v!r}")


def _convert(name: str, typ, v, where: str):
    if name == "img_size":
        if isinstance(v, (list, tuple)):
            if len(v) not in (1, 2):
                raise InputError(f"{where}: expected one number or [height, width], got {v!r}")
            v = _to_list(v, where, _to_int)
            return v[0] if len(v) == 1 or v[0] == v[1] else v
        return _to_int(v, where)
    if typ is bool:
        return _to_bool(v, where)
    if typ is int:
        return _to_int(v, where)
    if typ is float:
        return _to_float(v, where)
    if typ is str:
        return "" if v is None and name in ("group_col", "weights", "kaggle_slug", "data_dir") else _to_str(v, where)
    if typ is dict:
        if not isinstance(v, dict):
            raise InputError(f"{where}: expected a mapping, got {v!r}")
        return v
    if typ == list[int]:
        return _to_list(v, where, _to_int)
    if typ == list[str]:
        return _to_list(v, where, _to_str)
    raise TypeError(f"no converter for {name}: {typ}")


def _check_range(name: str, v, where: str) -> None:
    if name in CHOICES and v not in CHOICES[name]:
        raise InputError(f"{where}: {v!r} is not one of {', '.join(map(str, CHOICES[name]))}")
    if name not in RANGES:
        return
    lo, hi, lo_in, hi_in = RANGES[name]
    for x in (v if isinstance(v, list) else [v]):
        bad = (lo is not None and (x < lo if lo_in else x <= lo)) or (hi is not None and (x > hi if hi_in else x >= hi))
        if bad:
            rng = " and ".join(s for s in (
                f"{'>=' if lo_in else '>'} {lo}" if lo is not None else "",
                f"{'<=' if hi_in else '<'} {hi}" if hi is not None else "") if s)
            raise InputError(f"{where}: {x!r} is out of range; expected a value {rng}")


def _build(cls, values: dict, where_of) -> Any:
    """`cls(**values)` with every value converted and checked; `where_of(key)` names its origin."""
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    out = {}
    for key, v in values.items():
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {near[0]}?" if near else f"; expected one of {', '.join(known)}"
            raise InputError(f"{where_of(key)}: unknown key{hint}")
        out[key] = _convert(key, hints[key], v, where_of(key))
        _check_range(key, out[key], where_of(key))
    return cls(**out)


def _check_competition(comp: Competition, where: str) -> None:
    check_name(comp.name, f"{where}.name")
    cols = comp.submission_columns
    if len(cols) != 2 or cols[0] == cols[1]:
        raise InputError(f"{where}.submission_columns: {cols!r}; expected two different names "
                         "[id column, prediction column]")
    if not comp.image_ext.startswith("."):
        raise InputError(f"{where}.image_ext: {comp.image_ext!r}; expected an extension such as .png")
    ts = (comp.source or {}).get("test_size")
    if ts is not None:
        _check_test_size(_to_float(ts, f"{where}.source.test_size"), f"{where}.source.test_size")


def _check_test_size(v: float, where: str) -> None:
    if not 0 < v < 1:
        raise InputError(f"{where}: {v!r}; expected a fraction between 0 and 1 (e.g. 0.25)")


def resolve_config_path(competition: str | None = None, config: str | None = None,
                        workdir: str | Path | None = None) -> Path:
    if config:
        return Path(config)
    if competition:
        check_name(competition, "--competition")
        local = Path(workdir or ROOT) / "configs" / f"{competition}.yaml"
        return local if local.exists() else CONFIG_DIR / f"{competition}.yaml"
    raise InputError("give --competition NAME (reads configs/NAME.yaml) or --config PATH")


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Load a YAML config (following `base:`), apply its preset, then `overrides` (flags)."""
    path = Path(path)
    data = _read_yaml(path)
    unknown = set(data) - {"competition", "recipe"}
    if unknown:
        raise InputError(f"{path}: unknown section(s) {sorted(unknown)}; expected competition:, recipe:")
    for section in ("competition", "recipe"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise InputError(f"{path}: {section}: expected a mapping of keys, got {data[section]!r}")
    comp = dict(data.get("competition") or {})
    recipe = dict(data.get("recipe") or {})
    flags = {}
    for k, v in (overrides or {}).items():
        (flags if k in Recipe.__dataclass_fields__ else comp).__setitem__(k, v)
    comp.setdefault("name", path.stem)

    def where(key: str) -> str:
        if key in flags:
            return "--" + key.replace("_", "-")
        return f"{path}: recipe.{key}"

    asked = flags.get("preset", recipe.get("preset")) or ""
    fixed = {}
    if asked:
        device = flags.get("device", recipe.get("device", "auto"))
        name = resolve_preset(_to_str(asked, where("preset")), _to_str(device, where("device")))
        if name not in PRESETS:
            near = difflib.get_close_matches(name, PRESETS, n=1)
            raise InputError(f"{where('preset')}: no preset {name!r}"
                             + (f"; did you mean {near[0]}?" if near else "")
                             + f" (presets: auto, {', '.join(PRESETS)})")
        fixed = {**PRESETS[name], "preset": name}
    merged = {**fixed, **{k: v for k, v in recipe.items() if k != "preset"},
              **{k: v for k, v in flags.items() if k != "preset"}}
    if "preset" in fixed:
        merged["preset"] = fixed["preset"]
    rec = _build(Recipe, merged, where)
    if not rec.archs:
        raise InputError(f"{where('archs')}: empty; name at least one timm model")
    competition = _build(Competition, comp, lambda k: f"{path}: competition.{k}")
    _check_competition(competition, f"{path}: competition")
    cfg = Config(competition, rec, str(path))
    for arch in rec.archs:
        cfg.exp_name(arch)
    return cfg


def config_hash(cfg: Config) -> str:
    """Short hash of every recipe field that changes a model's predictions (all but RUN_FIELDS)."""
    rec = {k: v for k, v in dataclasses.asdict(cfg.recipe).items()
           if k not in RUN_FIELDS and not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k])}
    if cfg.recipe.pseudo and Path(cfg.recipe.pseudo).exists():  # the table's content, not only its name
        rec["pseudo"] = [cfg.recipe.pseudo, hashlib.sha256(Path(cfg.recipe.pseudo).read_bytes()).hexdigest()]
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:12]


def save_config(cfg: Config, path: Path) -> None:
    from defectkit.core.fileio import write_text_atomic
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# --- command line --------------------------------------------------------------------------

def add_recipe_flags(parser: argparse.ArgumentParser, only: tuple | None = None, exclude: tuple = ()) -> None:
    """Add one `--flag` per Recipe field (default None = keep the config's value); booleans are
    `--flag` / `--no-flag`."""
    hints = get_type_hints(Recipe)
    group = parser.add_argument_group("recipe overrides (default: the config's value)")
    for f in fields(Recipe):
        if (only is not None and f.name not in only) or f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        kw: dict[str, Any] = {"default": None, "dest": f.name}
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name == "img_size":
            kw.update(nargs="+", type=int, metavar=("SIZE", "WIDTH"))
        elif typ == list[int]:
            kw.update(nargs="+", type=int)
        elif typ == list[str]:
            kw.update(nargs="+", type=str)
        elif typ in (int, float):
            kw.update(type=typ)
        else:
            kw.update(type=str)
        if f.name in CHOICES:
            kw["choices"] = CHOICES[f.name]
        if f.name == "preset":
            kw["choices"] = ("auto", *PRESETS)
        group.add_argument(flag, **kw)


def recipe_overrides(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(Recipe)
            if getattr(args, f.name, None) is not None}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--competition", help="competition name: reads configs/NAME.yaml")
    parser.add_argument("--config", help="config YAML (instead of --competition)")
    add_workdir_flag(parser)


def add_workdir_flag(parser: argparse.ArgumentParser, default=str(ROOT)) -> None:
    parser.add_argument("--workdir", default=default,
                        help="folder holding input/, folds/, models/, oof/, submissions/ (default: the repository)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(resolve_config_path(args.competition, args.config, getattr(args, "workdir", None)),
                       recipe_overrides(args))
