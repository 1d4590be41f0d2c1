"""Stratified (optionally grouped) k-fold assignment of the training rows: folds/<competition>.csv."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from defectkit.core.checks import InputError, check_columns
from defectkit.core.config import ROOT, Competition
from defectkit.core.fileio import write_csv_atomic
from defectkit.core.layout import Layout
from defectkit.data.tables import load_train_table


def assign_folds(target: np.ndarray, n_folds: int, seed: int, groups=None) -> np.ndarray:
    """Fold number per row; stratified by target, and never splitting a group when given. Good rows
    must fill every fold; defects may be fewer than the folds, or none (a fold without defects serves
    the anomaly member, which learns from good images; classifiers refuse such folds)."""
    import warnings
    target = np.asarray(target)
    n_good = int((target == 0).sum())
    if n_good < n_folds:
        raise InputError(f"only {n_good} good rows; {n_folds} folds need at least {n_folds} good rows "
                         "(use fewer folds: --n-folds)")
    fold = np.full(len(target), -1, dtype=int)
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(target)), target)
    else:
        groups = np.asarray(groups)
        if len(np.unique(groups)) < n_folds:
            raise InputError(f"only {len(np.unique(groups))} groups; cannot make {n_folds} grouped folds")
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(target)), target, groups)
    with warnings.catch_warnings():  # scikit-learn warns of a class smaller than the folds: allowed here
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, val) in enumerate(splits):
            fold[val] = k
    return fold


def fold_summary(folds: pd.DataFrame, target_col: str = "target") -> pd.DataFrame:
    g = folds.groupby("fold")[target_col]
    out = pd.DataFrame({"rows": g.size(), "defects": g.sum(), "defect_rate": g.mean().round(4)})
    out.loc["all"] = [len(folds), int(folds[target_col].sum()), round(folds[target_col].mean(), 4)]
    return out


def make_folds(comp: Competition, n_folds: int, seed: int, group_col: str | None = None,
               base: Path = ROOT, out: Path | None = None) -> pd.DataFrame:
    layout = Layout(base)
    df = load_train_table(comp, layout)
    group_col = group_col or comp.group_col
    groups = None
    if group_col:
        check_columns(df, [group_col], layout.train_csv(comp))
        if df[group_col].isna().any():
            row = int(np.flatnonzero(df[group_col].isna().to_numpy())[0])
            raise InputError(f"{layout.train_csv(comp)}: row {row + 2}: empty group {group_col!r}")
        groups = df[group_col].astype(str).to_numpy()
    folds = pd.DataFrame({"id": df[comp.id_col], "target": df[comp.target_col]})
    if group_col:
        folds[group_col] = groups
    folds["fold"] = assign_folds(folds["target"].to_numpy(), n_folds, seed, groups)
    write_csv_atomic(folds, out or layout.folds_file(comp))
    return folds
