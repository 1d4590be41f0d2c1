"""The configuration's schema: a competition description (`Competition`) and a training recipe
(`Recipe`), each field with its type, choices, bounds, help and hash rule beside it (`opt`), and
the `Config` a run carries. Reading and checking a YAML is core/config.py's job; the command-line
flags generated from these fields are cli/flags.py's."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from defectkit.core.checks import InputError, check_name
from defectkit.core.registry import MEMBERS, METHODS
from defectkit.runtime.imaging import Preprocess

_CHECKOUT = Path(__file__).resolve().parents[3]  # src/defectkit/core/schema.py -> the repository

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
    checkpoint_s: float = opt(0.0, ge=0, scope="run",
                              doc="seconds between resumable checkpoints (fold<k>_last.pt: weights, optimizer, EMA); "
                                  "0 = after every epoch. The best epoch's model is always kept")
    data_path: str = opt("auto", choices=("auto", "loader", "device"), scope="run",
                         doc="training images: loader (worker processes, per-image augmentation), device (decoded "
                             "once onto the device, augmented a batch at a time there), auto (device on a GPU when "
                             "they fit a quarter of its free memory)")
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
    anomaly_draws: int = opt(1, ge=1, le=16, neutral=1, doc="member anomaly: banks drawn with different seeds, each "
                                                            "of anomaly_bank patches; an image scores the mean of "
                                                            "their log-distances (one draw moves the AUC)")
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


def config_hash(cfg: Config) -> str:
    """Short hash of every recipe field that changes a model's predictions (`hashed_fields`)."""
    rec = json.loads(json.dumps(hashed_fields(cfg.recipe)))
    for f in fields(Recipe):  # a table's content, not only its name
        value = getattr(cfg.recipe, f.name)
        if f.metadata["file"] and value and Path(value).exists():
            rec[f.name] = [value, hashlib.sha256(Path(value).read_bytes()).hexdigest()]
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:12]
