"""The ensemble that blend.py chose, as files: its experiments and weights from
submissions/blend.json, every fold model's checkpoint, and each fold model's OOF predictions
(its reference in rank space); with blend --refit only|both, each experiment's full-data refit too
(its reference: all the experiment's OOF predictions). Read by predict.py (torch) and export.py
(the ONNX bundle).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from defectkit.core.checks import InputError, check_columns, check_predictions, read_csv
from defectkit.core.fileio import file_hash
from defectkit.core.layout import REFIT, FoldPaths, Layout
from defectkit.core.records import BlendReport, FoldRecord, refit_matches_folds
from defectkit.runtime.combine import blend_scores, meta_columns, stack_intercept


@dataclass
class Member:
    """One fold model of one experiment."""

    exp: str
    fold: int | str  # a fold number, or "all" (the full-data refit)
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
    report: BlendReport | None = field(repr=False, default=None)
    space: str = "rank"  # prob | rank: where the weights apply (blend.json's)
    link: str = "identity"  # identity | logistic
    intercept: float = 0.0  # a logistic link's (a stacker's)
    refit: str = "none"  # none | only | both: how each experiment's full-data refit joins its fold models
    refits: dict[str, Member] = field(default_factory=dict)  # experiment -> its refit (refit only | both)
    stack_meta: dict | None = None  # a stacker's metadata terms {encoding, coef} (blend --stack-meta)

    @property
    def meta_columns(self) -> list[str]:
        """The metadata columns the blend needs beside each image (a stacker's; usually none)."""
        return meta_columns(self.stack_meta)

    def scored_members(self, exp: str) -> list[Member]:
        """The models that score new images for `exp`: its fold models, its refit, or both."""
        folds = [] if self.refit == "only" else self.members[exp]
        return folds + ([self.refits[exp]] if self.refit != "none" else [])

    def combine(self, preds: dict[tuple, np.ndarray], meta: dict[str, list] | None = None) -> np.ndarray:
        """The blend's score from every scored member's probabilities, keyed (experiment, fold), and
        for a stacker with metadata, the images' `meta` (column -> values, image order)."""
        members = []
        for exp, folds in self.members.items():
            fold_preds = [preds[exp, m.fold] for m in folds] if self.refit != "only" else []
            r = self.refits.get(exp)
            refit = (preds[exp, r.fold], r.ref, self.refit) if self.refit != "none" else None
            members.append((fold_preds, [m.ref for m in folds], refit))
        return blend_scores(self.space, self.link, [self.weights[e] for e in self.members], members,
                            stack_intercept(self.intercept, self.stack_meta, meta))


class _Blend(NamedTuple):
    """Where a blend's members are looked up: the working folder, its blend.json, its folds file's hash."""
    layout: Layout
    path: Path
    folds_hash: str


def _member(blend: _Blend, exp: str, k: int | str, scores: bool = True, ref: np.ndarray | None = None) -> Member:
    """Fold `k` of `exp` (k = REFIT: its full-data refit, whose reference `ref` is given), checked to be
    complete and made with the blend's folds; its checkpoint only when it `scores` new images."""
    blend_path, folds_hash = blend.path, blend.folds_hash
    paths = blend.layout.fold(exp, k)
    what = "the full-data refit" if k == REFIT else f"fold {k}"
    if not paths.meta.exists():
        hint = "python src/train.py --fold all" if k == REFIT else "train it again"
        raise InputError(f"{blend_path}: experiment {exp!r} {what} is not complete ({paths.meta} missing); "
                         f"{hint}, or blend again without it")
    meta = FoldRecord.read(paths.meta)
    if folds_hash and meta.folds_hash != folds_hash:
        raise InputError(f"{paths.meta}: made with another folds file than the blend in {blend_path}; "
                         "blend again (python src/blend.py)")
    if scores and not paths.best.exists():
        raise InputError(f"{paths.best}: model of {what} missing (experiment {exp!r} of {blend_path})")
    if ref is None:
        oof = read_csv(paths.oof, "OOF file")
        check_columns(oof, ["pred"], paths.oof)
        check_predictions(oof["pred"], paths.oof)  # a reference in rank space: every value a finite probability
        ref = oof["pred"].to_numpy(float)
    return Member(exp, k, paths, meta.run_id, ref)


def load_ensemble(layout: Layout, blend_path: str | Path | None = None) -> Ensemble:
    """The ensemble of `blend_path` (default submissions/blend.json), every file it needs
    checked to be there and to belong to it."""
    path = Path(blend_path) if blend_path else layout.result("blend.json")
    if not path.exists():
        raise InputError(f"{path}: no blend yet; run python src/blend.py (or src/run.py) first")
    report = BlendReport.read(path)
    members, refits = {}, {}
    for exp in report.weights:
        members[exp], refits[exp] = _experiment_members(layout, path, exp, report.folds_hash, report.refit)
    return Ensemble(report.competition, report.method, report.weights, members, report.operating_points, path,
                    file_hash(path), report, report.space, report.link, report.intercept, report.refit,
                    {e: r for e, r in refits.items() if r is not None}, report.stack_meta)


def _experiment_members(layout: Layout, path: Path, exp: str, folds_hash: str, refit: str) -> tuple:
    """(fold members, refit member or None) of one blended experiment."""
    d = layout.oof_root / exp
    if not d.is_dir():
        raise InputError(f"{path}: experiment {exp!r}: its folder {d} is missing (trained elsewhere, or "
                         "removed); bring oof/ and models/ along, or blend again")
    metas = layout.fold_metas(exp)
    if not metas:
        raise InputError(f"{path}: experiment {exp!r} has no complete fold in {d}")
    n_folds = FoldRecord.read(metas[0]).n_folds
    blend = _Blend(layout, path, folds_hash)
    folds = [_member(blend, exp, k, refit != "only") for k in range(n_folds)]
    if refit == "none":
        return folds, None
    member = _member(blend, exp, REFIT, True, np.concatenate([m.ref for m in folds]))
    if not refit_matches_folds(FoldRecord.read(member.paths.meta), [FoldRecord.read(m.paths.meta) for m in folds]):
        raise InputError(f"{member.paths.meta}: the refit of {exp} was made by another recipe than its folds; "
                         "train it again with their recipe, and blend again")
    return folds, member
