"""The ensemble that blend.py chose, as files: its experiments and weights from
submissions/blend.json, every fold model's checkpoint, and each fold model's OOF predictions
(its reference in rank space). Read by predict.py (torch) and export.py (the ONNX bundle).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from checks import InputError, read_csv
from combine import METHODS
from fileio import file_hash
from layout import FoldPaths, Layout

OPERATING_POINTS = ("chosen", "recall_95", "recall_99")


@dataclass
class Member:
    """One fold model of one experiment."""

    exp: str
    fold: int
    paths: FoldPaths
    run_id: str
    ref: np.ndarray  # its OOF predictions

    @property
    def checkpoint(self) -> Path:
        return self.paths.best


@dataclass
class Ensemble:
    competition: str
    method: str
    weights: dict[str, float]  # experiment -> weight (> 0), as blend.py found them
    members: dict[str, list[Member]]  # experiment -> its fold models, fold order
    operating_points: dict
    source: Path  # the blend.json it was read from
    source_hash: str
    report: dict = field(repr=False, default_factory=dict)
    intercept: float = 0.0  # the stacker's (method stack)

    def threshold(self, point: str) -> float:
        if point not in OPERATING_POINTS:
            raise InputError(f"--operating-point {point!r}: expected one of {', '.join(OPERATING_POINTS)}")
        return float(self.operating_points[point]["threshold"])


def _member(layout: Layout, blend_path: Path, exp: str, k: int, folds_hash: str) -> Member:
    paths = layout.fold(exp, k)
    if not paths.meta.exists():
        raise InputError(f"{blend_path}: experiment {exp!r} fold {k} is not complete ({paths.meta} missing); "
                         "train it again, or blend again without it")
    meta = json.loads(paths.meta.read_text())
    if folds_hash and meta.get("folds_hash") != folds_hash:
        raise InputError(f"{paths.meta}: made with another folds file than the blend in {blend_path}; "
                         "blend again (python src/blend.py)")
    if not paths.best.exists():
        raise InputError(f"{paths.best}: fold model missing (experiment {exp!r} of {blend_path})")
    oof = read_csv(paths.oof, "OOF file")
    return Member(exp, k, paths, meta.get("run_id", ""), oof["pred"].to_numpy(float))


def load_ensemble(layout: Layout, blend_path: str | Path | None = None) -> Ensemble:
    """The ensemble of `blend_path` (default submissions/blend.json), every file it needs
    checked to be there and to belong to it."""
    path = Path(blend_path) if blend_path else layout.result("blend.json")
    if not path.exists():
        raise InputError(f"{path}: no blend yet; run python src/blend.py (or src/run.py) first")
    try:
        report = json.loads(path.read_text())
        method, weights = report["method"], {str(k): float(v) for k, v in report["weights"].items()}
        ops = report["operating_points"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: not a blend report of blend.py ({type(e).__name__}: {e})") from None
    if method not in METHODS or not weights:
        raise InputError(f"{path}: method {method!r} with weights {weights}: not a blend this code can apply")
    if report.get("refit", "none") != "none":
        raise InputError(f"{path}: this blend uses full-data refits (--refit {report['refit']}); predict.py and the "
                         "bundle apply the fold models: blend with --refit none first")
    intercept = 0.0
    if method == "stack":
        st = report.get("stack") or {}
        if st.get("meta"):
            raise InputError(f"{path}: the stacker also uses metadata columns {st['meta']}, which new images do not "
                             "carry; blend without --stack-meta (or with hill) to score images alone")
        intercept = float(st.get("intercept", 0.0))
    members = {}
    for exp in weights:
        d = layout.oof_root / exp
        if not d.is_dir():
            raise InputError(f"{path}: experiment {exp!r}: its folder {d} is missing (trained elsewhere, or "
                             "removed); bring oof/ and models/ along, or blend again")
        metas = layout.fold_metas(exp)
        if not metas:
            raise InputError(f"{path}: experiment {exp!r} has no complete fold in {d}")
        n_folds = int(json.loads(metas[0].read_text()).get("n_folds", len(metas)))
        members[exp] = [_member(layout, path, exp, k, report.get("folds_hash", "")) for k in range(n_folds)]
    return Ensemble(report.get("competition", ""), method, weights, members, ops, path, file_hash(path), report,
                    intercept)
