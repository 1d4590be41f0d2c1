"""One fold of one member, whatever its kind: the job (`train_fold` under the fold's lock, its recipe
checked against the experiment's; `train_job` for the grid's executors, the refit included) and the
outputs every kind writes the same way (`write_fold_outputs`: OOF and test predictions, the fold record)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.core.config import Config, config_hash
from defectkit.core.fileio import (
    FileLock,
    file_hash,
    remove_stale_tmps,
    write_csv_atomic,
)
from defectkit.core.layout import REFIT, FoldPaths, Layout
from defectkit.core.members import FitOptions, get_member
from defectkit.core.records import FoldRecord, fold_differences, refit_key
from defectkit.train.fold_data import FoldData


def check_experiment_consistent(cfg: Config, arch: str, layout: Layout, fold: int, force: bool) -> None:
    """Refuse to mix recipes or folds files inside one experiment: every complete fold of it
    must have been made by this recipe and folds file, unless --force (then the others are
    left as they are and the blend leaves the experiment out until all folds agree)."""
    exp, want = cfg.exp_name(arch), config_hash(cfg)
    folds_hash = file_hash(layout.folds_file(cfg.competition))
    if fold == REFIT and not force:
        folds = [FoldRecord.read(p) for p in layout.fold_metas(exp)]
        if folds and refit_key(dataclasses.asdict(cfg.recipe)) != refit_key(folds[0].recipe):
            raise InputError(f"{layout.fold_metas(exp)[0]}: the folds of {exp} were made by another recipe; a "
                             "full-data refit trains with its folds' recipe (the same flags, but --epochs): pass "
                             "their flags, or give the refit another --name")
    metas = layout.fold_metas(exp) if fold != REFIT else [p for p in [layout.fold(exp, REFIT).meta] if p.exists()]
    for meta_path in metas:
        meta = FoldRecord.read(meta_path)
        differs = fold_differences(meta, competition=meta.competition, folds_hash=folds_hash, config_hash=want,
                                   arch=arch)
        if differs and not force:
            raise InputError(f"{meta_path} was made by another {' and '.join(differs)}; the folds of one "
                             f"experiment must agree: give this recipe another name (--name), or pass --force "
                             f"to retrain fold {fold} anyway")


def prepare_outputs(paths: FoldPaths) -> None:
    """Under the fold's lock: forget the fold's completion first (so nothing half-replaced is
    ever taken as complete), and remove temporaries a killed run left."""
    paths.meta.unlink(missing_ok=True)
    for folder, prefixes in ((paths.model_dir, (f"fold{paths.fold}.", f"fold{paths.fold}_")),
                             (paths.oof_dir, (f"fold{paths.fold}.", f"test_fold{paths.fold}."))):
        if folder.is_dir():
            for prefix in prefixes:
                remove_stale_tmps(folder, prefix)


@dataclass
class FoldFacts:
    """What a member kind knows of its fold for the record: where its weights came from, its run id,
    epochs, best validation AUC, training rows (an anomaly member: its bank's patches), device, time."""

    weights: str
    run_id: str
    best_epoch: int
    epochs_run: int
    val_auc: float | None
    n_train: int
    device: str
    secs: float
    peak_gpu_mem_gib: float | None = None
    synthetic_auc: float | None = None  # on the fold's held-out good images and synthetic defects made on them
    data_path: str | None = None  # how training batches reached the model (loader, device, cache); None: no training


def write_fold_outputs(cfg: Config, arch: str, d: FoldData, paths, preds: tuple, facts: FoldFacts) -> FoldRecord:
    """The one writer of a fold's files, for every member kind: its OOF rows (none for a refit), its
    test predictions, then its FoldRecord, last (the fold is complete; its resume checkpoint is
    then removed). `preds`: (OOF, test) scores."""
    p_val, p_test = preds
    oof_auc = metrics.defined_auc(d.y_val, p_val)  # None for a refit, or a fold without defects
    if len(d.val_idx):
        write_csv_atomic(pd.DataFrame({"id": d.ids[d.val_idx], "target": d.y_val, "fold": d.fold, "pred": p_val}),
                         paths.oof)
    write_csv_atomic(pd.DataFrame({"id": d.test_ids, "pred": p_test}), paths.test)
    facts = dataclasses.replace(facts, val_auc=facts.val_auc if oof_auc is not None else None)
    meta = FoldRecord(
        competition=cfg.competition.name, exp=cfg.exp_name(arch), arch=arch, fold=d.fold, n_folds=d.n_folds,
        folds_file=str(d.folds_file), folds_hash=file_hash(d.folds_file), config_hash=config_hash(cfg),
        tta=cfg.recipe.tta_views, oof_auc=oof_auc, n_val=len(d.val_idx), n_test=len(d.test_ids),
        n_pseudo=len(d.pseudo_idx), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=cfg.to_dict(), on_trial=get_member(cfg.recipe.member).on_trial, **dataclasses.asdict(facts))
    meta.write(paths.meta)
    paths.last.unlink(missing_ok=True)  # a complete fold is never resumed: its resume state (weights,
    # optimizer moments, EMA: 3-4x the best checkpoint) would only fill the disk
    return meta


def refit_epochs(layout: Layout, exp: str) -> int:
    """The epoch count the CV chose: the median best epoch of the experiment's complete folds."""
    metas = [FoldRecord.read(p) for p in layout.fold_metas(exp)]
    if not metas:
        raise InputError(f"--fold all of {exp}: no complete fold to take the epoch count from; train the folds "
                         "first, or give --epochs")
    return max(1, int(round(float(np.median([m.best_epoch for m in metas])))))


def refit_config(cfg: Config, arch: str, base: Path, epochs: int | None = None) -> Config:
    """The recipe of a full-data refit: the folds' recipe with the CV's epoch count (or `epochs`)."""
    n = epochs or refit_epochs(Layout(base), cfg.exp_name(arch))
    return dataclasses.replace(cfg, recipe=dataclasses.replace(cfg.recipe, epochs=n, patience=0))


def train_fold(cfg: Config, arch: str, fold: int | str, base: Path, opts: FitOptions = FitOptions()) -> dict:
    """Train one fold of one arch end to end, under the fold's lock; returns its meta record."""
    layout = Layout(base)
    paths = layout.fold(cfg.exp_name(arch), fold)
    with FileLock(paths.lock, f"fold {fold} of {paths.model_dir.name}"):
        check_experiment_consistent(cfg, arch, layout, fold, opts.force)
        if opts.resume and not opts.force and paths.meta.exists() and not paths.last.exists():
            print(f"[{paths.model_dir.name} fold {fold}] complete, by this recipe: nothing to resume (its record "
                  f"{paths.meta}; --force trains it again)")
            return FoldRecord.read(paths.meta)
        return get_member(cfg.recipe.member).fit(cfg, arch, fold, layout, opts)


@dataclass(frozen=True)
class JobOptions:
    """How the grid's jobs run, the same for every executor (never what they learn): the folds
    file's hash they were planned against (a Ray task checks that its node sees that file), `force`
    (train again over a fold of another recipe), progress bars, CPU threads per job (0: the
    recipe's) and where the driver's lines go."""
    folds_hash: str = ""
    force: bool = False
    progress: bool = True
    threads: int = 0
    say: Callable[[str], None] = print


def train_job(cfg: Config, arch: str, fold: int | str, base: Path, jobs: JobOptions = JobOptions()) -> dict:
    """One job of the grid, for every executor: a fold, or the refit (with the CV's epoch count;
    replaced whenever it is out of date, as it derives from the folds). It resumes from its last
    checkpoint when it was interrupted (a last checkpoint, no completion record), never a
    complete one that is out of date."""
    paths = Layout(base).fold(cfg.exp_name(arch), fold)
    opts = FitOptions(progress=jobs.progress, resume=paths.last.exists() and not paths.meta.exists(), force=jobs.force)
    if fold == REFIT:
        cfg, opts = refit_config(cfg, arch, base), dataclasses.replace(opts, force=True)
    return train_fold(cfg, arch, fold, base, opts)
