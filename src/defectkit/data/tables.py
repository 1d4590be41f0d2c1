"""The competition's tables, checked: train.csv (ids, 0/1 target, images present),
sample_submission.csv and the test ids, the folds file, and the tables later stages hand to training:
a student's teacher table and a pseudo-label table (each written in ensemble/, read here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core.checks import (
    InputError,
    check_columns,
    check_images_exist,
    check_train_table,
    check_unique_ids,
    read_csv,
)
from defectkit.core.layout import Layout


def load_train_table(comp, layout: Layout, check_images: bool = True):
    """train.csv checked: columns, unique ids, binary targets, and (optionally) every image present."""
    path = layout.train_csv(comp)
    df = check_train_table(read_csv(path, "train table", (comp.id_col,)), comp.id_col, comp.target_col, path)
    if check_images:
        check_images_exist(df[comp.id_col], layout.train_dir(comp), comp.image_ext, path)
    return df


def load_sample_submission(comp, layout: Layout, check_images: bool = True):
    """sample_submission.csv checked: its submission columns, unique ids and (optionally) every
    test image present."""
    path = layout.sample_submission(comp)
    sub = read_csv(path, "sample submission", (comp.submission_columns[0],))
    check_columns(sub, comp.submission_columns, path)
    check_unique_ids(sub, comp.submission_columns[0], path)
    if check_images:
        check_images_exist(sub[comp.submission_columns[0]], layout.test_dir(comp), comp.image_ext, path)
    return sub


def load_test_ids(comp, layout: Layout, check_images: bool = True) -> list[str]:
    """Test ids in sample_submission.csv order; their images must exist."""
    return load_sample_submission(comp, layout, check_images)[comp.submission_columns[0]].astype(str).tolist()


def load_folds(path: Path, train, id_col: str, target_col: str):
    """The folds file, checked against train.csv (as loaded by `load_train_table`) and aligned
    to its row order. Returns (fold per train row as an int array, number of folds)."""
    if not Path(path).exists():
        raise InputError(f"{path}: folds file not found; run python src/make_folds.py first")
    folds = read_csv(path, "folds file")
    check_columns(folds, ["id", "target", "fold"], path)
    folds = folds.set_index(folds["id"].astype(str))
    ids = train[id_col].astype(str)
    extra, missing = folds.index.difference(ids), ids[~ids.isin(folds.index)]
    if len(extra) or len(missing) or len(folds) != len(ids):
        raise InputError(f"{path}: does not match {target_col!r} rows of train.csv ({len(missing)} train ids "
                         f"missing, e.g. {list(missing[:2])}; {len(extra)} unknown ids, e.g. {list(extra[:2])}); "
                         "re-run python src/make_folds.py")
    folds = folds.loc[ids]
    if not (folds["target"].to_numpy() == train[target_col].to_numpy()).all():
        bad = ids[folds["target"].to_numpy() != train[target_col].to_numpy()].iloc[0]
        raise InputError(f"{path}: target of id {bad!r} differs from train.csv; re-run python src/make_folds.py")
    fold = folds["fold"].to_numpy()
    if not np.issubdtype(fold.dtype, np.integer) or fold.min() < 0:
        raise InputError(f"{path}: column 'fold' must hold integers 0..k-1")
    return fold.astype(int), int(fold.max()) + 1


def read_teacher(path: Path, train_ids, test_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A distilled student's teacher table (ensemble/distill.py writes it), checked: (soft targets of the
    training rows in order, indices of the test rows it names, their targets)."""
    df = read_csv(path, "teacher table")
    check_columns(df, ["id", "target"], path)
    check_unique_ids(df, "id", path)
    t = pd.to_numeric(df["target"], errors="coerce")
    bad = (t.isna() | (t < 0) | (t > 1)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: row {row + 2}: target {str(df['target'].iloc[row])!r}; expected a number in [0, 1]")
    by_id = pd.Series(t.to_numpy(float), index=df["id"].astype(str))
    missing = [i for i in map(str, train_ids) if i not in by_id.index]
    if missing:
        raise InputError(f"{path}: no target for {len(missing)} training rows, e.g. {missing[:2]}; distill again")
    test_pos = {str(i): k for k, i in enumerate(test_ids)}
    on_test = [i for i in by_id.index if i in test_pos]
    return (by_id.loc[list(map(str, train_ids))].to_numpy(np.float32),
            np.array([test_pos[i] for i in on_test], int), by_id.loc[on_test].to_numpy(np.float32))


def read_pseudo(path: Path, test_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(indices into the test rows, their 0/1 targets) of a pseudo-label table, checked."""
    df = read_csv(path, "pseudo-label table")
    check_columns(df, ["id", "target"], path)
    check_unique_ids(df, "id", path)
    t = pd.to_numeric(df["target"], errors="coerce")
    if (t.isna() | ~t.isin([0, 1])).any():
        row = int(np.flatnonzero((t.isna() | ~t.isin([0, 1])).to_numpy())[0])
        raise InputError(f"{path}: row {row + 2}: 'target' = {df['target'].iloc[row]!r}; expected 0 or 1")
    pos = pd.Series(np.arange(len(test_ids)), index=pd.Index(test_ids))
    unknown = df.id[~df.id.astype(str).isin(pos.index)]
    if len(unknown):
        raise InputError(f"{path}: {len(unknown)} ids are not test rows, e.g. {list(unknown[:2])}; pseudo-labels "
                         "name test images only")
    return pos.loc[df.id.astype(str)].to_numpy(), pd.to_numeric(df.target).to_numpy(np.float32)
