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
from defectkit.core.fileio import write_text_atomic
from defectkit.core.presets import PRESETS, resolve_preset
from defectkit.core.registry import MEMBERS, METHODS
from defectkit.runtime.imaging import Preprocess

_CHECKOUT = Path(__file__).resolve().parents[3]  # src/defectkit/core/config.py -> the repository
# The default working folder: the repository when the package runs from its checkout, else here.
ROOT = _CHECKOUT if (_CHECKOUT / "configs").is_dir() else Path.cwd()
CONFIG_DIR = ROOT / "configs"


_UNSET = object()


SCOPES = ("recipe", "run", "grid")


def opt(default=_UNSET, *, factory=None, scope: str = "recipe", neutral=_UNSET, doc: str = "",
        **checks):  # checks: choices, ge, gt, le, lt; file=True: a table whose content enters the hash
    """A config field and its schema in one place: `checks`: `choices` (a tuple, or a function
    returning the names of a registry), bounds (`ge`, `gt`, `le`, `lt` = a number); `scope`: "recipe" (what a
    model learns: in the recipe hash), "run" (how or where a run executes: left out of the hash) or
    "grid" (a run field that means something for the whole grid only; train.py does not list it),
    `neutral` (added after recipes were first hashed: left out of the hash at this value, so that
    older experiments stay complete), `doc` (the help)."""
    unknown = set(checks) - {"choices", "ge", "gt", "le", "lt", "file"}
    if unknown:
        raise TypeError(f"opt(): unknown check(s) {sorted(unknown)}; expected choices, ge, gt, le, lt, file")
    if scope not in SCOPES:
        raise TypeError(f"opt(): scope={scope!r}; expected one of {', '.join(SCOPES)}")
    meta = {"choices": checks.get("choices"), "run": scope != "recipe", "grid": scope == "grid", "neutral": neutral,
            "doc": doc, "file": checks.get("file", False), **{k: checks.get(k) for k in ("ge", "gt", "le", "lt")}}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _member_kinds() -> tuple | None:
    return _registered(MEMBERS)


def _blend_methods() -> tuple | None:
    return _registered(METHODS)


def _registered(registry) -> tuple | None:
    """A registry's names as a field's choices; None (checked where the name is used, by the registry's
    lookup) while the layer that fills it is not imported: the core never imports a layer above it."""
    return tuple(registry) or None


@dataclass
class Competition:
    """Where a competition's files are and what its columns are called."""

    name: str = opt("")
    # How `prepare.py` builds input/<name>/: {"type": "elpv"} | {"type": "folder", "path": ...,
    # "good": ..., "defect": ..., "test": ...} | {"type": "yolo", "path": ...} | {"type": "kaggle", "slug": ...}.
    source: dict = opt(factory=dict)
    kaggle_slug: str = opt("", doc="where submit.py sends the submission (default: source.slug)")
    data_dir: str = opt("", doc="default: input/<name>")
    train_csv: str = opt("train.csv")
    train_dir: str = opt("train")
    test_dir: str = opt("test")
    sample_submission: str = opt("sample_submission.csv")
    test_csv: str = opt("test.csv", doc="optional: test ids with metadata columns (for blend_method stack)")
    solution: str = opt("solution.csv")
    id_col: str = opt("id")
    target_col: str = opt("target")
    group_col: str = opt("")
    image_ext: str = opt(".png")
    # Submission columns [id column, prediction column], as the competition wants them.
    submission_columns: list[str] = opt(factory=lambda: ["id", "target"])
    metric: str = opt("roc_auc", choices=("roc_auc",))


@dataclass
class Recipe:
    """How to train, predict and blend. Every field is also a command-line flag; its schema (choices,
    bounds, whether it enters the recipe hash) sits beside it (`opt`)."""

    preset: str = opt("", scope="run", doc="a name of presets.PRESETS or auto; saved resolved")
    archs: list[str] = opt(factory=lambda: ["tf_efficientnet_lite0"], scope="grid")
    name: str = opt("{arch}", scope="run", doc="experiment name; may use {arch} and {img_size}")
    n_folds: int = opt(5, ge=2)
    folds: list[int] = opt(factory=list, ge=0, scope="grid", doc="folds to train; empty = all")
    seed: int = opt(42, ge=0)
    img_size: int | list[int] = opt(224, ge=8, le=4096, doc="one number (a square of that side) or [height, width]")
    aspect_ratio: float = opt(1.0, ge=0.25, le=4, doc="width / height of the input when img_size is one number")
    resize: str = opt("squash", choices=("squash", "pad", "crop"),
                      doc="squash | pad (keep the aspect ratio, letterbox) | crop (centre crop)")
    border_crop: float = opt(0.0, ge=0, lt=0.5, doc="fraction cut from each border before resizing")
    epochs: int = opt(10, ge=1)
    batch_size: int = opt(32, ge=2, doc="images per batch (BatchNorm needs at least 2)")
    lr: float = opt(1e-3, gt=0, doc="head learning rate")
    backbone_lr_factor: float = opt(0.1, ge=0, doc="backbone lr = lr * factor")
    weight_decay: float = opt(1e-2, ge=0)
    warmup_epochs: float = opt(1.0, ge=0)
    min_lr_ratio: float = opt(0.01, ge=0, le=1)
    freeze_epochs: int = opt(0, ge=0, doc="train the head alone for the first N epochs")
    freeze_stages: int = opt(0, ge=0, doc="keep the stem + first N-1 stages frozen for the whole run")
    cache_frozen: bool = opt(False, doc="run the frozen stages once per image and symmetry, train the rest")
    accum_steps: int = opt(1, ge=1)
    ema: float = opt(0.0, ge=0, lt=1, doc="upper bound of the EMA decay of weights (it warms up); 0 = off")
    patience: int = opt(0, ge=0, doc="early stopping on val AUC, 0 = off")
    aug: str = opt("light", choices=("none", "light", "strong"))
    mixup: float = opt(0.0, ge=0, le=1, doc="probability of mixup on a batch")
    mixup_alpha: float = opt(0.4, gt=0)
    drop_rate: float = opt(0.2, ge=0, lt=1)
    tta: int = opt(8, choices=(1, 2, 4, 8), doc="symmetries averaged (at most 4 for a non-square input)")
    pretrained: str = opt("auto", choices=("auto", "hub", "none"))
    weights: str = opt("", doc="local weights file")
    device: str = opt("auto", scope="run", doc="auto | cpu | cuda | cuda:N")
    amp: bool = opt(True, scope="run", doc="autocast on CUDA (bf16 where supported)")
    channels_last: bool = opt(True, scope="run")
    compile: bool = opt(False, scope="run")
    num_workers: int = opt(-1, ge=-1, scope="run", doc="-1 = automatic")
    threads: int = opt(0, ge=0, scope="run", doc="CPU threads for torch, 0 = automatic")
    blend_method: str = opt("hill", choices=_blend_methods, scope="grid")
    stack_meta: list[str] = opt(factory=list, scope="grid",
                                doc="train.csv/test.csv columns the stacker also uses")
    refit: str = opt("none", choices=("none", "only", "both"), scope="grid",
                     doc="none | only | both: full-data refits trained by run.py, and how the blend uses them")
    pseudo: str = opt("", neutral="", file=True, doc="a pseudo-label table (src/pseudo.py): its test rows join every "
                                                     "fold's training rows")
    # A train.csv column of defect probabilities in [0, 1] (annotators' agreement, a severity grade) that
    # training fits instead of the 0/1 target; validation, OOF files and the blend still score the target.
    soft_target: str = opt("", neutral="")
    teacher: str = opt("", neutral="", file=True, doc="a table of soft targets (id, target) that training fits instead "
                                                      "of the labels: a distilled student's (src/distill.py)")
    member: str = opt("classifier", choices=_member_kinds, neutral="classifier",
                      doc="classifier (trained on both classes) | anomaly (a memory bank of the good training "
                          "images' patch features: train/anomaly.py)")
    anomaly_layers: list[int] = opt(factory=lambda: [2, 3], ge=0, neutral=[2, 3],
                                    doc="member anomaly: the backbone's feature levels whose patches fill the bank")
    anomaly_bank: int = opt(4096, ge=16, le=65536, neutral=4096, doc="member anomaly: patches kept in the bank "
                                                                      "(coreset)")
    with_anomaly: bool = opt(False, scope="grid",
                             doc="run.py also trains the anomaly member (member: anomaly) on the first backbone, at "
                                 "most 512 px a side, and blends it with the classifiers (hill keeps it only if "
                                 "it helps); preset auto sets it when the budget allows")
    pool: str = opt("avg", choices=("avg", "max", "avgmax", "catavgmax"), neutral="avg",
                    doc="global pooling of the last feature map (max keeps a thin defect's response)")
    time_budget: float = opt(0.0, ge=0, scope="run", doc="minutes for the whole run, which preset auto plans for "
                                                      "(0: 10 on a CPU, 30 on a GPU)")

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
    def preprocess(self) -> Preprocess:
        """Its images' geometry: size, resize mode, border crop (the normalisation is the backbone's)."""
        return Preprocess(self.hw, self.resize, self.border_crop)

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


def schema(cls, name: str) -> dict:
    """The schema of field `name` of Recipe or Competition (see `opt`), choices resolved."""
    meta = dict(cls.__dataclass_fields__[name].metadata)
    if callable(meta.get("choices")):
        meta["choices"] = meta["choices"]()  # None while nothing is registered
    return meta


def hashed_fields(recipe: "Recipe") -> dict:
    """The recipe's fields that change a model's predictions: all but the run fields, and a field
    added later only when it differs from its neutral value."""
    out = {}
    for f in fields(Recipe):
        v, meta = getattr(recipe, f.name), f.metadata
        if meta["run"] or (meta["neutral"] is not _UNSET and v == meta["neutral"]):
            continue
        out[f.name] = v
    return out


GRID_FIELDS = tuple(f.name for f in fields(Recipe) if f.metadata["grid"])


@dataclass
class Config:
    competition: Competition
    recipe: Recipe
    source_file: str = ""
    auto: bool = False  # preset: auto was asked for: the planner fills what is not explicit
    explicit: frozenset = frozenset()  # recipe fields set in the YAML (its base: chain) or by a flag
    plan: dict | None = None  # the plan applied (train/planner.py), with its estimate

    def exp_name(self, arch: str) -> str:
        """The experiment's name from the recipe's template; `_pl` added when trained with pseudo-labels."""
        try:
            name = self.recipe.name.format(arch=arch, img_size=self.recipe.size_tag)
        except (KeyError, IndexError, ValueError, AttributeError) as e:
            raise InputError(f"recipe name {self.recipe.name!r}: not a valid template ({type(e).__name__}: {e}); it "
                             "may use {arch} and {img_size}, and braces must come in pairs") from None
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
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (a binary file?); expected a config YAML") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        tab = " (YAML does not allow tabs for indentation)" if "\t" in path.read_text() else ""
        raise InputError(f"{path}: {where}not valid YAML: {problem}{tab}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with `competition:` and `recipe:`")
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise InputError(f"{path}: base: {base!r}; expected the file name of one config to start from")
    if base:
        data = _merge(_read_yaml(path.parent / base, seen + (path.resolve(),)), data)
    return data


# --- converting and checking values ----------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _to_float(v, where: str) -> float:
    x = None
    if _is_int(v) or isinstance(v, float):
        x = float(v)
    elif isinstance(v, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            x = float(v)
        except ValueError:
            pass
    if x is None:
        raise InputError(f"{where}: expected a number, got {v!r}")
    if not math.isfinite(x):  # NaN passes every range check: refused here, for every float field
        raise InputError(f"{where}: {v!r}; expected a finite number")
    return x


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


_BOUNDS = {"ge": (">=", lambda x, b: x >= b), "gt": (">", lambda x, b: x > b),
           "le": ("<=", lambda x, b: x <= b), "lt": ("<", lambda x, b: x < b)}


def _check_range(cls, name: str, v, where: str) -> None:
    """`v` against the field's choices and bounds (its schema, `opt`)."""
    meta = schema(cls, name)
    if meta["choices"] is not None and v not in meta["choices"]:
        raise InputError(f"{where}: {v!r} is not one of {', '.join(map(str, meta['choices']))}")
    bounds = [(k, meta[k]) for k in _BOUNDS if meta[k] is not None]
    for x in (v if isinstance(v, list) else [v]):
        if bounds and not all(_BOUNDS[k][1](x, b) for k, b in bounds):
            rng = " and ".join(f"{_BOUNDS[k][0]} {b}" for k, b in bounds)
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
        _check_range(cls, key, out[key], where_of(key))
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
    explicit = frozenset(k for k in {*recipe, *flags} if k != "preset")
    cfg = Config(competition, rec, str(path), asked == "auto", explicit)
    for arch in rec.archs:
        cfg.exp_name(arch)
    return cfg


def config_hash(cfg: Config) -> str:
    """Short hash of every recipe field that changes a model's predictions (`hashed_fields`)."""
    rec = json.loads(json.dumps(hashed_fields(cfg.recipe)))
    for f in fields(Recipe):  # a table's content, not only its name
        value = getattr(cfg.recipe, f.name)
        if f.metadata["file"] and value and Path(value).exists():
            rec[f.name] = [value, hashlib.sha256(Path(value).read_bytes()).hexdigest()]
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:12]


def save_config(cfg: Config, path: Path) -> None:
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
        if schema(Recipe, f.name)["choices"] is not None:
            kw["choices"] = schema(Recipe, f.name)["choices"]
        if f.name == "preset":
            kw["choices"] = ("auto", *PRESETS)
        if f.metadata["doc"]:
            kw["help"] = f.metadata["doc"]
        group.add_argument(flag, **kw)


def recipe_overrides(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(Recipe)
            if getattr(args, f.name, None) is not None}


def config_parser(description: str | None) -> argparse.ArgumentParser:
    """A script's parser with the config flags (--competition, --config, --workdir)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    return p


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
