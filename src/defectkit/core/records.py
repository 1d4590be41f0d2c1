"""Records between stages, as typed dataclasses with one writer and one reader each.

    FoldRecord    oof/<exp>/fold<k>.json     written last by train (its presence: the fold is complete);
                                             read by the grid, the blend, predict, export and refits
    BlendReport   submissions/blend.json     written by the blend; read by predict, export and run

Each carries a format version (`format`; a file without one is version 1, the layout before
versions); a reader refuses a file of an unknown version, or one whose values have the wrong type,
are out of range or not finite, in one line naming the file and the key. The checkpoint's record
is `defectkit.train.checkpoint.Checkpoint`, the bundle's `defectkit.runtime.spec.BundleSpec`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from defectkit.core.checks import InputError
from defectkit.core.config import Recipe, hashed_fields
from defectkit.core.fileio import write_json_atomic
from defectkit.core.layout import REFIT

# --- reading and checking JSON ---------------------------------------------------------------------

def read_json(path: Path, what: str) -> dict:
    """A JSON object from `path` (a byte-order mark allowed), or one line saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found" if not path.exists() else f"{path}: is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: {what} is not text (a binary file?)") from None
    except ValueError as e:
        raise InputError(f"{path}: {what} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: {what}: expected a JSON object, got {type(data).__name__}")
    return data


class Checker:
    """Typed access to one JSON record's keys: each getter raises one line naming the file and key."""

    def __init__(self, data: dict, where: str):
        self.data, self.where = data, where

    def fail(self, key: str, expected: str):
        raise InputError(f"{self.where}: {key} = {self.data.get(key)!r}; expected {expected}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def text(self, key: str, default: Any = dataclasses.MISSING) -> str:
        v = self.data.get(key, default)
        if v is dataclasses.MISSING or not isinstance(v, str):
            self.fail(key, "text")
        return v

    def integer(self, key: str, lo: int | None = None, default: Any = dataclasses.MISSING) -> int:
        v = self.data.get(key, default)
        if v is dataclasses.MISSING or isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
            self.fail(key, "a whole number" + (f" >= {lo}" if lo is not None else ""))
        return v

    def number(self, key: str, lo: float | None = None, hi: float | None = None, optional: bool = False,
               default: Any = dataclasses.MISSING) -> float | None:
        v = self.data.get(key, default)
        if optional and v is None:
            return None
        if (v is dataclasses.MISSING or isinstance(v, bool) or not isinstance(v, (int, float))
                or not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi)):
            rng = f" in [{lo}, {hi}]" if lo is not None and hi is not None else ""
            self.fail(key, f"a finite number{rng}" + (" or null" if optional else ""))
        return float(v)

    def flag(self, key: str, default: Any = dataclasses.MISSING) -> bool:
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            self.fail(key, "true or false")
        return v

    def choice(self, key: str, options: tuple[str, ...], default: Any = dataclasses.MISSING) -> str | None:
        """One of `options`, or the default (None allowed) when the key is absent or null."""
        v = self.data.get(key, default)
        if v is None and default is None:
            return None
        if v not in options:
            self.fail(key, " or ".join(options) + (" or null" if default is None else ""))
        return v

    def mapping(self, key: str, default: Any = dataclasses.MISSING) -> dict:
        v = self.data.get(key, default)
        if v is dataclasses.MISSING or not isinstance(v, dict):
            self.fail(key, "a mapping")
        return v

    def version(self, current: int, what: str) -> int:
        v = self.data.get("format", 1)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= current:
            raise InputError(f"{self.where}: {what} of format {v!r}; this code reads formats 1 to {current} "
                             "(made by a newer version: update the code, or make it again)")
        return v


def write_record(path: Path, record) -> None:
    write_json_atomic(path, {"format": record.FORMAT, **dataclasses.asdict(record)})


# --- the fold record --------------------------------------------------------------------------------

DATA_PATHS = ("loader", "device", "cache")  # how a fold's training batches reached its model (FoldRecord.data_path)


@dataclass
class FoldRecord:
    """One complete fold (or the full-data refit, fold "all") of one experiment."""

    FORMAT: ClassVar[int] = 2
    competition: str
    exp: str
    arch: str
    fold: int | str
    n_folds: int
    folds_file: str
    folds_hash: str
    config_hash: str
    weights: str
    run_id: str
    best_epoch: int
    epochs_run: int
    val_auc: float | None  # None for a refit (no validation rows)
    tta: int
    oof_auc: float | None
    n_val: int
    n_test: int
    n_train: int
    n_pseudo: int
    device: str
    secs: float
    created: str
    config: dict = field(repr=False)
    peak_gpu_mem_gib: float | None = None
    on_trial: bool = False  # its member kind's: the blend keeps it only if the cross-check says it helps
    synthetic_auc: float | None = None  # a yardstick, not a result: held-out good images vs synthetic defects
    data_path: str | None = None  # how training batches reached the model: loader, device or cache (None: no
    # training loop, or a record written before it was kept)

    @property
    def recipe(self) -> dict:
        return self.config.get("recipe", {})

    def write(self, path: Path) -> None:
        write_record(path, self)

    @classmethod
    def read(cls, path: Path) -> FoldRecord:
        c = Checker(read_json(path, "fold record"), str(path))
        c.version(cls.FORMAT, "a fold record")
        fold = c.data.get("fold")
        if fold != REFIT and (isinstance(fold, bool) or not isinstance(fold, int) or fold < 0):
            c.fail("fold", f"a fold number >= 0 or {REFIT!r}")
        refit = fold == REFIT
        val = c.data.get("val_auc")
        return cls(
            competition=c.text("competition"), exp=c.text("exp"), arch=c.text("arch"), fold=fold,
            n_folds=c.integer("n_folds", 2), folds_file=c.text("folds_file", ""), folds_hash=c.text("folds_hash"),
            config_hash=c.text("config_hash"), weights=c.text("weights", ""), run_id=c.text("run_id", ""),
            best_epoch=c.integer("best_epoch", 1), epochs_run=c.integer("epochs_run", 1),
            val_auc=None if refit or val is None or (isinstance(val, float) and val < 0) else c.number("val_auc", 0, 1),
            tta=c.integer("tta", 1), oof_auc=c.number("oof_auc", 0, 1, optional=True, default=None),
            n_val=c.integer("n_val", 0), n_test=c.integer("n_test", 0), n_train=c.integer("n_train", 1),
            n_pseudo=c.integer("n_pseudo", 0, 0), device=c.text("device", ""), secs=c.number("secs", 0, default=0.0),
            created=c.text("created", ""), config=c.mapping("config", {}),
            peak_gpu_mem_gib=c.number("peak_gpu_mem_gib", 0, optional=True, default=None),
            on_trial=c.flag("on_trial", _on_trial_before(c)),
            synthetic_auc=c.number("synthetic_auc", 0, 1, optional=True, default=None),
            data_path=c.choice("data_path", DATA_PATHS, default=None))


def _on_trial_before(c: Checker) -> bool:
    """Records written before `on_trial` was: of the two kinds there were, the anomaly member was on trial."""
    return c.mapping("config", {}).get("recipe", {}).get("member") == "anomaly"


def fold_differences(rec: FoldRecord, *, competition: str, folds_hash: str, config_hash: str | None = None,
                     arch: str | None = None) -> list[str]:
    """The one consistency rule of a fold: what about `rec` differs from the competition, folds
    file, recipe and arch it should have been made with (empty: it belongs)."""
    checks = (("competition", rec.competition == competition), ("folds file", rec.folds_hash == folds_hash),
              ("recipe", config_hash is None or rec.config_hash == config_hash),
              ("arch", arch is None or rec.arch == arch))
    return [what for what, ok in checks if not ok]


REFIT_FREE = ("epochs", "patience")  # what a refit's recipe may differ in from its folds'


def refit_key(recipe: dict) -> dict:
    """What of a recipe a refit must share with its folds: every hashed field but the epoch count
    and early stopping."""
    known = set(Recipe.__dataclass_fields__)
    return hashed_fields(Recipe(**{k: v for k, v in recipe.items() if k in known and k not in REFIT_FREE}))


def refit_matches_folds(refit: FoldRecord, folds: list[FoldRecord]) -> bool:
    """A refit belongs to its folds when its recipe is theirs but for the epoch count (and no early
    stopping): the one-recipe-per-experiment rule for refits."""
    if not folds:
        return False
    want = refit_key(folds[0].recipe)
    return (all(refit_key(f.recipe) == want for f in folds) and refit_key(refit.recipe) == want
            and refit.arch == folds[0].arch)


# --- the blend report ---------------------------------------------------------------------------------

# How the first blend methods score (format 1 reports did not record it): their space and link.
KNOWN_METHODS = {"mean": ("prob", "identity"), "rank": ("rank", "identity"), "hill": ("rank", "identity"),
                 "stack": ("rank", "logistic")}
SPACES, LINKS, REFIT_USES = ("prob", "rank"), ("identity", "logistic"), ("none", "only", "both")
OPERATING_POINTS = ("chosen", "recall_95", "recall_99", "false_alarm_1pct", "false_alarm_0.1pct")  # known names
REQUIRED_POINTS = ("chosen",)  # the recall points need defects among the OOF rows; older blends lack the others


@dataclass
class BlendReport:
    """What blend.py chose and how it scored; enough to apply the blend to new images: each
    experiment's weight in the method's space (`prob`: probabilities; `rank`: percentiles within
    each fold model's OOF predictions), an intercept and a link (`logistic` for a stacker)."""

    FORMAT: ClassVar[int] = 2
    competition: str
    method: str
    weights: dict[str, float]
    operating_points: dict[str, dict]
    space: str = "rank"
    link: str = "identity"
    intercept: float = 0.0
    refit: str = "none"
    folds_hash: str = ""
    requested_method: str = ""
    stack: dict | None = None  # the stacker's details (its metadata encoding, coefficients, cross-check)
    experiments: list[str] = field(default_factory=list)
    left_out: dict = field(default_factory=dict)
    table: list[dict] = field(default_factory=list)
    blend_oof_auc: float | None = None
    cross_check: dict = field(default_factory=dict)
    local_leaderboard: dict | None = None
    submission: str = ""
    command: str = ""
    files: dict = field(default_factory=dict)

    def write(self, path: Path) -> None:
        write_record(path, self)

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, **dataclasses.asdict(self)}

    @property
    def stack_meta(self) -> dict | None:
        """A stacker's metadata terms {encoding, coef} (blend --stack-meta), else None."""
        st = self.stack or {}
        if self.link != "logistic" or not st.get("meta"):
            return None
        return {"encoding": st["encoding"], "coef": [float(st["coef"][n]) for n in st["meta"]]}

    @classmethod
    def read(cls, path: Path) -> BlendReport:
        c = Checker(read_json(path, "blend report"), str(path))
        version = c.version(cls.FORMAT, "a blend report")
        method = c.text("method")
        if version == 1 and method not in KNOWN_METHODS:
            c.fail("method", f"one of {', '.join(KNOWN_METHODS)} in a report without a format")
        space, link = KNOWN_METHODS[method] if version == 1 else (c.text("space"), c.text("link"))
        if space not in SPACES:
            c.fail("space", f"one of {', '.join(SPACES)}")
        if link not in LINKS:
            c.fail("link", f"one of {', '.join(LINKS)}")
        fields_ = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in c.data.items() if k in fields_}
        data.update(method=method, space=space, link=link, weights=_weights(c), refit=c.text("refit", "none"),
                    operating_points=_operating_points(c), intercept=_intercept(c, link),
                    competition=c.text("competition", ""), folds_hash=c.text("folds_hash", ""))
        if data["refit"] not in REFIT_USES:
            c.fail("refit", f"one of {', '.join(REFIT_USES)}")
        report = cls(**data)
        if report.link == "logistic" and (report.stack or {}).get("meta") and not report.stack.get("encoding"):
            raise InputError(f"{path}: a stack with metadata {report.stack['meta']} from an older blend.py (no "
                             "encoding saved); blend again")
        return report


def _weights(c: Checker) -> dict[str, float]:
    w = c.data.get("weights")
    if not isinstance(w, dict) or not w:
        c.fail("weights", "a non-empty mapping of experiment -> weight")
    for k, v in w.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{c.where}: weights.{k} = {v!r}; expected a finite number")
    return {str(k): float(v) for k, v in w.items()}


def _operating_points(c: Checker) -> dict:
    ops = c.data.get("operating_points")
    if not isinstance(ops, dict):
        c.fail("operating_points", f"a mapping with {', '.join(REQUIRED_POINTS)}")
    for point in [*REQUIRED_POINTS, *(p for p in OPERATING_POINTS if p in ops and p not in REQUIRED_POINTS)]:
        t = (ops.get(point) or {}).get("threshold") if isinstance(ops.get(point), dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise InputError(f"{c.where}: operating_points.{point}.threshold = {t!r}; expected a finite number")
    return ops


def _intercept(c: Checker, link: str) -> float:
    if c.has("intercept"):
        return c.number("intercept")
    st = c.data.get("stack")
    if link == "logistic" and isinstance(st, dict) and "intercept" in st:
        v = st["intercept"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{c.where}: stack.intercept = {v!r}; expected a finite number")
        return float(v)
    return 0.0
