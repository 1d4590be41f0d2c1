"""bundle.json, the bundle's description: one writer (export.py) and one reader (the runner).
Standard library only, so that the bundle ships this very file.

The description records its own sha256 (`spec_sha256`, over the JSON of everything else) beside
the sha256 of every file it lists: a bundle whose files or description were edited is refused.
A bundle.json without a `format` is format 1 (before versions; its files are still checked).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from .errors import OneLineError
from .imaging import Preprocess

FORMAT = 2
RESIZE_MODES = ("squash", "pad", "crop")
SPACES, LINKS, REFIT_USES = ("prob", "rank"), ("identity", "logistic"), ("only", "both")
KNOWN_METHODS = {"mean": ("prob", "identity"), "rank": ("rank", "identity"), "hill": ("rank", "identity"),
                 "stack": ("rank", "logistic")}  # format 1 bundles recorded only the method's name


class BundleError(OneLineError):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def spec_digest(data: dict) -> str:
    """sha256 of the description without its own digest (canonical JSON)."""
    body = {k: v for k, v in data.items() if k != "spec_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class ModelEntry:
    """One exported model: its file, its OOF reference in refs.npz, what it was trained as."""

    model: str  # path inside the bundle
    ref: str  # key in refs.npz
    fold: int | str
    tta: int = 1
    arch: str = ""
    cache_frozen: bool = False
    mb: float = 0.0
    use: str = ""  # a refit's: only | both
    precision: str = "fp32"
    bound: float = 0.0  # int8: how far its scores on the check images may drift from the fp32 model's


@dataclass
class ExperimentEntry:
    name: str
    weight: float
    preprocess: Preprocess
    folds: list[ModelEntry]
    refit: ModelEntry | None = None


@dataclass
class BundleSpec:
    FORMAT: ClassVar[int] = FORMAT
    competition: str
    method: str
    space: str
    link: str
    intercept: float
    experiments: list[ExperimentEntry]
    operating_points: dict[str, float]
    image_ext: str
    runtime: str = "onnxruntime"  # which runner session loads the models (the exporter's)
    stack_meta: dict | None = None
    files: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # created, versions, source, input, chosen_by: informative

    def to_json(self) -> dict:
        data = {"format": FORMAT, "competition": self.competition, "method": self.method, "space": self.space,
                "link": self.link, "intercept": self.intercept, "runtime": self.runtime, "stack_meta": self.stack_meta,
                "experiments": [_entry_json(e) for e in self.experiments], "operating_points": self.operating_points,
                "image_ext": self.image_ext, **self.extra, "files": self.files}
        data["spec_sha256"] = spec_digest(data)
        return data

    @classmethod
    def read(cls, folder: Path) -> BundleSpec:
        """bundle.json of `folder`, its own digest and every file it lists checked, every value typed."""
        path = Path(folder) / "bundle.json"
        if not path.is_file():
            raise BundleError(f"{path}: not found; is {folder} an exported bundle?")
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as e:
            raise BundleError(f"{path}: not valid JSON ({e}); export the bundle again") from None
        if not isinstance(data, dict):
            raise BundleError(f"{path}: expected a JSON object; export the bundle again")
        r = _Reader(data, str(path))
        version = r.version()
        if version >= 2 and data.get("spec_sha256") != spec_digest(data):
            raise BundleError(f"{path}: edited (its description no longer matches its own sha256); export the "
                              "bundle again")
        _check_files(Path(folder), r)
        return r.spec(cls, version)


def _entry_json(e: ExperimentEntry) -> dict:
    out = {"name": e.name, "weight": e.weight,
           "preprocess": e.preprocess.to_json(),
           "folds": [asdict(m) for m in e.folds], "refit": asdict(e.refit) if e.refit else None}
    return out


def _check_files(folder: Path, r: _Reader) -> None:
    files = r.get("files", dict)
    for rel, digest in files.items():
        f = folder / rel
        if not isinstance(rel, str) or ".." in Path(rel).parts or Path(rel).is_absolute():
            raise BundleError(f"{r.where}: files: {rel!r} is not a path inside the bundle")
        if not f.is_file():
            raise BundleError(f"{f}: missing from the bundle")
        if sha256_file(f) != digest:
            raise BundleError(f"{f}: edited or damaged (sha256 differs from bundle.json); export the bundle again")


class _Reader:
    """Typed getters over bundle.json: one line naming the key on a wrong value."""

    def __init__(self, data: dict, where: str):
        self.data, self.where = data, where

    def fail(self, key: str, value, expected: str):
        raise BundleError(f"{self.where}: {key} = {value!r}; expected {expected}")

    def version(self) -> int:
        v = self.data.get("format", 1)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= FORMAT:
            raise BundleError(f"{self.where}: format {v!r}; this runner reads formats 1 to {FORMAT} (made by a "
                              "newer export.py: export again with this version, or use that bundle's own runner)")
        return v

    def get(self, key: str, typ, default=None, where=None):
        v = (where if where is not None else self.data).get(key, default)
        if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
            self.fail(key, v, typ.__name__ if isinstance(typ, type) else "a value of another type")
        return v

    def number(self, key: str, v, lo: float | None = None, below: float | None = None) -> float:
        """A finite number, at least `lo` and less than `below` when given."""
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        if not ok or (lo is not None and v < lo) or (below is not None and v >= below):
            self.fail(key, v, "a finite number" + (f" in [{lo}, {below})" if below is not None else ""))
        return float(v)

    def model(self, key: str, m, refit: bool) -> ModelEntry:
        if not isinstance(m, dict):
            self.fail(key, m, "a model entry")
        path = m.get("model", m.get("onnx"))  # format 1: "onnx"
        if not isinstance(path, str) or not isinstance(m.get("ref"), str):
            self.fail(key, m, "a model entry with its file and its reference")
        use = m.get("use", "")
        if refit and use not in REFIT_USES:
            self.fail(f"{key}.use", use, " or ".join(REFIT_USES))
        tta = m.get("tta", 1)
        if isinstance(tta, bool) or tta not in (1, 2, 4, 8):
            self.fail(f"{key}.tta", tta, "1, 2, 4 or 8")
        precision = m.get("precision", "fp32")
        if precision not in ("fp32", "int8"):
            self.fail(f"{key}.precision", precision, "fp32 or int8")
        bound = self.number(f"{key}.bound", m.get("bound", 0.0), 0)
        return ModelEntry(path, m["ref"], m.get("fold", ""), tta, str(m.get("arch", "")),
                          bool(m.get("cache_frozen", False)), float(m.get("mb", 0.0)), use, precision, bound)

    def experiment(self, i: int, e) -> ExperimentEntry:
        key = f"experiments[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not isinstance(e.get("folds"), list):
            self.fail(key, e, "an experiment entry (name, weight, preprocess, folds)")
        pre = e.get("preprocess")
        if not isinstance(pre, dict):
            self.fail(f"{key}.preprocess", pre, "a mapping of hw, resize, border_crop")
        hw = pre.get("hw")
        if (not isinstance(hw, list) or len(hw) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and 8 <= x <= 4096 for x in hw)):
            self.fail(f"{key}.preprocess.hw", hw, "[height, width] in pixels (8 to 4096)")
        if pre.get("resize") not in RESIZE_MODES:
            self.fail(f"{key}.preprocess.resize", pre.get("resize"), " | ".join(RESIZE_MODES))
        crop = self.number(f"{key}.preprocess.border_crop", pre.get("border_crop", 0.0), 0, 0.5)
        folds = [self.model(f"{key}.folds[{j}]", m, False) for j, m in enumerate(e["folds"])]
        refit = self.model(f"{key}.refit", e["refit"], True) if e.get("refit") is not None else None
        if not folds and refit is None:
            self.fail(f"{key}.folds", e["folds"], "at least one model")
        return ExperimentEntry(e["name"], self.number(f"{key}.weight", e.get("weight")),
                               Preprocess((hw[0], hw[1]), pre["resize"], crop), folds, refit)

    def spec(self, cls, version: int) -> BundleSpec:
        d = self.data
        method = self.get("method", str)
        if version == 1:
            if method not in KNOWN_METHODS:
                self.fail("method", method, " | ".join(KNOWN_METHODS))
            space, link = KNOWN_METHODS[method]
        else:
            space, link = self.get("space", str), self.get("link", str)
        if space not in SPACES:
            self.fail("space", space, " | ".join(SPACES))
        if link not in LINKS:
            self.fail("link", link, " | ".join(LINKS))
        exps = self.get("experiments", list)
        if not exps:
            self.fail("experiments", exps, "at least one experiment")
        ops = self.get("operating_points", dict)
        for k, v in ops.items():
            self.number(f"operating_points.{k}", v)
        meta = d.get("stack_meta")
        if meta is not None and (not isinstance(meta, dict) or not isinstance(meta.get("encoding"), list)):
            self.fail("stack_meta", meta, "null or {encoding, coef}")
        known = {"format", "competition", "method", "space", "link", "intercept", "runtime", "stack_meta",
                 "experiments", "operating_points", "image_ext", "files", "spec_sha256"}
        return cls(competition=str(d.get("competition", "")), method=method, space=space, link=link,
                   intercept=self.number("intercept", d.get("intercept", 0.0)),
                   experiments=[self.experiment(i, e) for i, e in enumerate(exps)],
                   operating_points={k: float(v) for k, v in ops.items()}, image_ext=self.get("image_ext", str),
                   runtime=self.get("runtime", str, "onnxruntime"), stack_meta=meta, files=self.get("files", dict),
                   extra={k: v for k, v in d.items() if k not in known})
