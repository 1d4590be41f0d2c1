"""Experiments as the blend reads them: every fold's OOF and test predictions of one experiment,
checked against the folds file and the submission's ids, aligned, with the reason an incomplete one
is left out."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core import metrics
from defectkit.core.checks import InputError, check_columns, check_predictions, read_csv
from defectkit.core.config import Competition
from defectkit.core.fileio import file_hash
from defectkit.core.layout import REFIT, FoldPaths, Layout
from defectkit.core.records import FoldRecord, fold_differences, refit_matches_folds
from defectkit.data.tables import load_sample_submission
from defectkit.runtime.combine import experiment_score


@dataclass
class Experiment:
    name: str
    oof: np.ndarray  # pred per training row, in folds-file order
    test_folds: list  # per fold k: fold k's model's probability per test id, in sample_submission order
    fold: np.ndarray  # fold per training row
    fold_auc: list = field(default_factory=list)
    meta: list = field(default_factory=list)
    refit: np.ndarray | None = None  # the full-data refit's test probabilities, when there is one
    refit_why: str = ""  # why there is none
    synthetic: list[pd.DataFrame] | None = None  # per fold: its model's scores of synthetic defects (anomaly kinds)

    @property
    def on_trial(self) -> bool:
        """Its folds' member kind is on trial (their records say): blended only if the cross-check says it helps."""
        return bool(self.meta) and self.meta[0].on_trial

    def test_scores(self, space: str, refit: str = "none") -> np.ndarray:
        """Test predictions in a blend space (prob | rank) from the fold models (refit none), the
        full-data refit (only: ranked against all OOF predictions in rank space), or both (their mean)."""
        if refit == "none":
            return experiment_score(space, self.test_folds, self.fold_refs())
        if self.refit is None:
            raise InputError(f"{self.name}: no full-data refit to use ({self.refit_why}); or blend with --refit none")
        return experiment_score(space, self.test_folds, self.fold_refs(), (self.refit, self.oof, refit))

    def fold_refs(self) -> list[np.ndarray]:
        """Per fold k, the OOF predictions of fold k's model: its reference in rank space."""
        return [self.oof[self.fold == k] for k in range(len(self.test_folds))]

    @property
    def test(self) -> np.ndarray:
        """Test probabilities averaged over the fold models."""
        return experiment_score("prob", self.test_folds, None)


@dataclass
class BlendInputs:
    """The folds file, the test ids and every usable experiment, checked against each other."""

    folds: pd.DataFrame
    folds_hash: str
    test_ids: list[str]
    sample: pd.DataFrame
    exps: list[Experiment]
    left_out: dict

    @property
    def y(self) -> np.ndarray:
        return self.folds["target"].to_numpy(int)

    @property
    def fold(self) -> np.ndarray:
        return self.folds["fold"].to_numpy(int)


def _why_left_out(meta: list[FoldRecord], comp: Competition, folds_hash: str, n_folds: int) -> str:
    differs = {w for m in meta for w in fold_differences(m, competition=comp.name, folds_hash=folds_hash)}
    if "competition" in differs:
        return f"made for competition {meta[0].competition!r}"
    if "folds file" in differs:
        return "made with another folds file (hash differs); re-train it or remove it"
    have = sorted(m.fold for m in meta)
    if have != list(range(n_folds)):
        return f"folds {sorted(set(range(n_folds)) - set(have))} missing (has {have})"
    hashes = {m.config_hash for m in meta}
    if len(hashes) > 1:
        by = {h: [m.fold for m in meta if m.config_hash == h] for h in hashes}
        return f"its folds were made by different recipes ({by}); retrain them with one recipe"
    return ""


def _read_fold(d: Path, k: int, folds_by_id: pd.DataFrame, test_index: pd.Index, sample_name: str):
    """Fold k's OOF rows (checked against the folds file) and its test predictions (aligned)."""
    paths = FoldPaths.of_oof(d, k)
    path = paths.oof
    df = read_csv(path, "OOF file")
    check_columns(df, ["id", "target", "fold", "pred"], path)
    check_predictions(df["pred"], path)
    if (df["fold"] != k).any():
        raise InputError(f"{path}: rows of fold {int(df['fold'][df['fold'] != k].iloc[0])} in the file of fold {k}")
    truth = folds_by_id["target"].reindex(df["id"].astype(str))
    wrong = truth.notna().to_numpy() & (truth.to_numpy() != df["target"].to_numpy())
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise InputError(f"{path}: row {row + 2}: target of id {df['id'].iloc[row]!r} is {df['target'].iloc[row]} "
                         f"but the folds file says {int(truth.iloc[row])} ({int(wrong.sum())} such row(s))")
    tpath = paths.test
    t = read_csv(tpath, "test predictions")
    check_columns(t, ["id", "pred"], tpath)
    check_predictions(t["pred"], tpath)
    tid = pd.Index(t["id"].astype(str))
    if len(tid) != len(test_index) or not tid.is_unique or not tid.isin(test_index).all():
        raise InputError(f"{tpath}: ids do not match {sample_name} ({len(t)} rows, "
                         f"{int((~test_index.isin(tid)).sum())} submission ids missing)")
    return df, t["pred"].set_axis(tid).reindex(test_index).to_numpy(float)


def load_experiment(d: Path, comp: Competition, folds: pd.DataFrame, folds_hash: str,
                    test_ids: list[str]) -> tuple[Experiment | None, str]:
    """An experiment's files checked and aligned, or (None, why it is left out). Files that
    are present but wrong (NaN, repeated or unknown ids, targets that contradict the folds
    file) are errors, not reasons."""
    metas = sorted(d.glob("fold[0-9]*.json"))
    if not metas:
        return None, "no finished fold"
    meta = [FoldRecord.read(m) for m in metas]
    if any(m.recipe.get("teacher") for m in meta):
        return None, "a distilled student (its targets are the blend's): python src/export.py --student"
    n_folds = int(folds["fold"].max()) + 1
    why = _why_left_out(meta, comp, folds_hash, n_folds)
    if why:
        return None, why
    folds_by_id = folds.set_index("id")
    parts, tests = zip(*(_read_fold(d, k, folds_by_id, pd.Index(test_ids), comp.sample_submission)
                         for k in range(n_folds)))
    fold_auc = [metrics.auc(p["target"].to_numpy(), p["pred"].to_numpy(float)) for p in parts]
    oof = pd.concat(parts)
    oid = pd.Index(oof["id"].astype(str))
    if not oid.is_unique:
        raise InputError(f"{d}: id {oid[oid.duplicated()][0]!r} appears in more than one OOF row; "
                         "every training id once")
    fid = pd.Index(folds["id"])
    missing = fid[~fid.isin(oid)]
    if len(missing) or len(oid) != len(fid):
        raise InputError(f"{d}: OOF rows do not cover the training ids of the folds file "
                         f"({len(missing)} missing, e.g. {list(missing[:2])})")
    oof = oof.set_axis(oid).reindex(fid)
    if not (oof["fold"].to_numpy() == folds["fold"].to_numpy()).all():
        raise InputError(f"{d}: OOF fold numbers differ from the folds file")
    refit, why = _read_refit(d, folds_hash, pd.Index(test_ids), comp.sample_submission, meta)
    return Experiment(d.name, oof["pred"].to_numpy(float), list(tests), folds["fold"].to_numpy(int), fold_auc,
                      meta, refit, why, _read_synthetic(d, meta, n_folds)), ""


def _read_synthetic(d: Path, meta: list[FoldRecord], n_folds: int) -> list[pd.DataFrame] | None:
    """Per fold, the fold model's scores of the synthetic defects made on its held-out good images
    (synthetic_fold{k}.csv: id, kind, pred), or None unless every fold's record says it has them."""
    by_fold = {m.fold: m for m in meta}
    if any(by_fold.get(k) is None or by_fold[k].synthetic_auc is None for k in range(n_folds)):
        return None
    tables = []
    for k in range(n_folds):
        path = FoldPaths.of_oof(d, k).synthetic
        if not path.exists():
            return None  # made before the scores were kept
        t = read_csv(path, "synthetic defects' scores")
        check_columns(t, ["id", "kind", "pred"], path)
        check_predictions(t["pred"], path)
        tables.append(t)
    return tables


def _read_refit(d: Path, folds_hash: str, test_index: pd.Index, sample_name: str,
                folds: list[FoldRecord]) -> tuple[np.ndarray | None, str]:
    """(The refit's test probabilities, aligned, or None, and why not): a refit counts when it is
    complete, made with these folds and with their recipe (but for the epoch count)."""
    paths = FoldPaths.of_oof(d, REFIT)
    meta = paths.meta
    if not meta.exists():
        return None, f"no {meta.name}; train it with python src/train.py --fold all"
    rec = FoldRecord.read(meta)
    if rec.folds_hash != folds_hash:
        return None, f"{meta} was made with another folds file; train it again"
    if not refit_matches_folds(rec, folds):
        return None, (f"{meta} was made by another recipe than the experiment's folds; train it again with "
                      "their recipe (python src/train.py --fold all and the folds' flags)")
    tpath = paths.test
    t = read_csv(tpath, "test predictions")
    check_columns(t, ["id", "pred"], tpath)
    check_predictions(t["pred"], tpath)
    tid = pd.Index(t["id"].astype(str))
    if len(tid) != len(test_index) or not tid.isin(test_index).all():
        raise InputError(f"{tpath}: ids do not match {sample_name}")
    return t["pred"].set_axis(tid).reindex(test_index).to_numpy(float), ""


def load_experiments(layout: Layout, comp: Competition, folds: pd.DataFrame, folds_hash: str,
                     test_ids: list[str], names: list[str] | None = None):
    """All usable experiments, plus {name: reason} for those left out."""
    dirs = [layout.oof_root / n for n in names] if names else layout.experiment_dirs()
    exps, left_out = [], {}
    for d in dirs:
        if names and not d.is_dir():
            raise InputError(f"{d}: experiment not found")
        exp, why = load_experiment(d, comp, folds, folds_hash, test_ids)
        if exp is None:
            if why.startswith("made for competition") and not names:
                continue  # another competition's experiment: not ours to list
            left_out[d.name] = why
        else:
            exps.append(exp)
    return exps, left_out


def load_inputs(comp: Competition, layout: Layout, names=None, strict: bool = False) -> BlendInputs:
    folds_file = layout.folds_file(comp)
    folds = read_csv(folds_file, "folds file")
    check_columns(folds, ["id", "target", "fold"], folds_file)
    folds["id"] = folds["id"].astype(str)
    sample = load_sample_submission(comp, layout, check_images=False)
    test_ids = sample[comp.submission_columns[0]].astype(str).tolist()
    fh = file_hash(folds_file)
    exps, left_out = load_experiments(layout, comp, folds, fh, test_ids, names)
    if strict and left_out:
        raise InputError("--strict: " + "; ".join(f"{k}: {v}" for k, v in left_out.items()))
    if not exps:
        raise InputError(f"{layout.oof_root}: no complete experiment for competition {comp.name!r}"
                         + (f" (left out: {left_out})" if left_out else "; run python src/train.py first"))
    return BlendInputs(folds, fh, test_ids, sample, exps, left_out)
