"""A fold's inputs: its training and validation rows (from the folds file; a refit: every row), the
images of the training and test sets at the recipe's input (the image cache), and the targets (labels,
soft targets, a teacher's scores, pseudo-labels)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defectkit.core.checks import InputError, check_classifier_defects, check_soft_target
from defectkit.core.config import Config
from defectkit.core.layout import REFIT, Layout
from defectkit.core.members import get_member
from defectkit.data.cache import cached_images
from defectkit.data.tables import load_folds, load_test_ids, load_train_table, read_pseudo, read_teacher


@dataclass
class FoldData:
    """The rows of one fold (training, validation, test) and their images at the recipe's size."""

    fold: int
    n_folds: int
    folds_file: Path
    ids: np.ndarray  # training ids, in train.csv order
    y: np.ndarray  # their targets
    tr_idx: np.ndarray
    val_idx: np.ndarray
    test_ids: list[str]
    train_images: np.ndarray  # (N, h, w, 3) uint8, memory-mapped
    test_images: np.ndarray
    pseudo_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # test rows trained on (pseudo)
    pseudo_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    y_soft: np.ndarray | None = None  # what training fits, when the recipe names a soft target

    @property
    def y_fit(self) -> np.ndarray:
        """The training rows' targets as training fits them: the soft target, or the 0/1 target."""
        return self.y if self.y_soft is None else self.y_soft

    def pseudo_targets(self) -> np.ndarray:
        """A target per test row: the pseudo-label where there is one (others are never drawn)."""
        t = np.zeros(len(self.test_ids), np.float32)
        t[self.pseudo_idx] = self.pseudo_y
        return t

    @property
    def y_val(self) -> np.ndarray:
        return self.y[self.val_idx]


def fold_rows(folds: np.ndarray, y: np.ndarray, fold, n_folds: int, folds_file: Path, both: bool = True) -> tuple:
    """(validation rows, training rows) of fold `fold`; both must hold both classes when `both` (a
    classifier's fold; the anomaly member's needs good training rows alone)."""
    if not isinstance(fold, int) or not 0 <= fold < n_folds:
        raise InputError(f"--fold {fold}: {folds_file} has folds 0..{n_folds - 1} (or all: the full-data refit)")
    val_idx, tr_idx = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
    if len(val_idx) == 0:
        raise InputError(f"{folds_file}: fold {fold} has no validation rows; re-run python src/make_folds.py")
    if both and (len(np.unique(y[val_idx])) < 2 or len(np.unique(y[tr_idx])) < 2):
        raise InputError(f"{folds_file}: fold {fold} needs both classes in its validation and training rows "
                         f"(validation has {int(y[val_idx].sum())} defect(s) of {len(val_idx)}); "
                         "re-run python src/make_folds.py, with fewer folds for so small a set")
    return val_idx, tr_idx


def load_fold_data(cfg: Config, layout: Layout, fold: int, progress: bool = True) -> FoldData:
    """train.csv, the folds file and sample_submission.csv checked against each other; the
    validation fold must hold both classes; images decoded (or read from the cache)."""
    comp, rec = cfg.competition, cfg.recipe
    train_df = load_train_table(comp, layout)
    folds_file = layout.folds_file(comp)
    folds, n_folds = load_folds(folds_file, train_df, comp.id_col, comp.target_col)
    y = train_df[comp.target_col].to_numpy()
    if fold == REFIT:  # every training row; no validation rows
        val_idx, tr_idx = np.zeros(0, int), np.arange(len(y))
    else:
        both = get_member(rec.member).needs_defects
        if both:
            check_classifier_defects(int(y.sum()), n_folds, layout.train_csv(comp))
        val_idx, tr_idx = fold_rows(folds, y, fold, n_folds, folds_file, both=both)
    test_ids = load_test_ids(comp, layout)
    cache = layout.cache_dir(comp)
    ext = comp.image_ext
    images = {tag: cached_images([folder / f"{i}{ext}" for i in ids], rec.preprocess, cache, tag,
                                 progress=progress)
              for tag, folder, ids in (("train", layout.train_dir(comp), train_df[comp.id_col]),
                                       ("test", layout.test_dir(comp), test_ids))}
    fd = FoldData(fold, n_folds, folds_file, train_df[comp.id_col].to_numpy(), y, tr_idx, val_idx, test_ids,
                  images["train"], images["test"])
    if rec.soft_target:
        fd.y_soft = check_soft_target(train_df, rec.soft_target, comp.target_col, layout.train_csv(comp))
    if rec.teacher:  # a distilled student: the teacher's scores instead of the labels (and test rows it scores)
        fd.y_soft, fd.pseudo_idx, fd.pseudo_y = read_teacher(Path(rec.teacher), fd.ids, test_ids)
    if rec.pseudo:  # test rows join the training rows only: OOF rows stay the training rows
        fd.pseudo_idx, fd.pseudo_y = read_pseudo(Path(rec.pseudo), test_ids)
    return fd
