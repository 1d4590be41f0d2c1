"""Where every file of the pipeline lives: the one place that spells the paths under a working
folder (input/, folds/, models/, oof/, submissions/). Every reader and writer asks a `Layout`.

    input/<comp>/               train.csv, train/, test/, sample_submission.csv [, solution.csv]
    input/<comp>/.cache/        decoded images and frozen-stage features (.npy)
    folds/<comp>.csv            id, target, fold
    models/<exp>/fold<k>.pt     best checkpoint (+ _last.pt until complete, _log.csv, _curves.png, _config.yaml, .log)
    oof/<exp>/fold<k>.csv       OOF rows; test_fold<k>.csv test rows; fold<k>.json written last
    submissions/submission.csv, blend.json, roc.png, run_summary.json: links into
    submissions/runs/<stamp>/, switched all at once through the link submissions/current
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from defectkit.core.checks import check_name

REFIT = "all"  # the fold name of a model trained on every training row (no OOF rows)


def _fold_file(folder: str, pattern: str, doc: str) -> property:
    """A FoldPaths property: `pattern` (with {k} for the fold) inside its model or OOF folder."""
    return property(lambda self: getattr(self, folder) / pattern.format(k=self.fold), doc=doc)


def _input(field: str | None, name: str = ""):
    """A Layout method: the file a competition's config field names (or `name`) in its data_dir."""
    def path(self, comp) -> Path:
        return self.data_dir(comp) / (getattr(comp, field) if field else name)
    return path


@dataclass(frozen=True)
class FoldPaths:
    """Every file one fold of one experiment reads or writes."""

    model_dir: Path
    oof_dir: Path
    fold: int | str  # a fold number, or "all" for a model trained on every training row

    best = _fold_file("model_dir", "fold{k}.pt", "the best epoch's checkpoint")
    last = _fold_file("model_dir", "fold{k}_last.pt", "the last epoch, with optimizer/scheduler/EMA state")
    log = _fold_file("model_dir", "fold{k}_log.csv", "one row per epoch")
    curves = _fold_file("model_dir", "fold{k}_curves.png", "loss and AUC per epoch")
    config = _fold_file("model_dir", "fold{k}_config.yaml", "the resolved config")
    job_log = _fold_file("model_dir", "fold{k}.log", "full console output of the job under an executor (Ray)")
    lock = _fold_file("model_dir", "fold{k}.lock", "held while the fold is written")
    oof = _fold_file("oof_dir", "fold{k}.csv", "OOF rows")
    test = _fold_file("oof_dir", "test_fold{k}.csv", "test rows")
    synthetic = _fold_file("oof_dir", "synthetic_fold{k}.csv", "scores of synthetic defects made on the fold's "
                           "held-out good images (an anomaly member's yardstick, not a result)")
    meta = _fold_file("oof_dir", "fold{k}.json", "the fold record, written last: its presence marks the fold complete")

    @classmethod
    def of_oof(cls, oof_dir: Path, fold: int | str) -> FoldPaths:
        """Fold `fold` of the experiment whose OOF folder is `oof_dir` (oof/<exp>: models/<exp> beside it):
        for the readers that walk the OOF folders."""
        oof_dir = Path(oof_dir)
        return cls(oof_dir.parent.parent / "models" / oof_dir.name, oof_dir, fold)

    def outputs(self) -> list[Path]:
        return [self.best, self.last, self.log, self.curves, self.config, self.oof, self.test, self.synthetic,
                self.meta]


class Layout:
    """The files of one working folder (the repository by default, or --workdir)."""

    def __init__(self, base: str | Path):
        self.base = Path(base)

    # --- input/ ---------------------------------------------------------------------------
    def data_dir(self, comp) -> Path:
        return self.base / (comp.data_dir or f"input/{check_name(comp.name, 'competition name')}")

    # a competition's files, named by its config (Competition's fields) inside data_dir
    train_csv = _input("train_csv")
    train_dir = _input("train_dir")
    test_dir = _input("test_dir")
    sample_submission = _input("sample_submission")
    test_csv = _input("test_csv")
    solution = _input("solution")
    boxes = _input(None, "defect_boxes.csv")
    cache_dir = _input(None, ".cache")

    def raw_input(self, name: str) -> Path:
        return self.base / "input" / check_name(name, "competition name")

    # --- folds/, models/, oof/ ------------------------------------------------------------------
    def folds_file(self, comp) -> Path:
        return self.base / "folds" / f"{check_name(comp.name, 'competition name')}.csv"

    @property
    def oof_root(self) -> Path:
        return self.base / "oof"

    def experiment_dirs(self) -> list[Path]:
        return sorted(p for p in self.oof_root.glob("*") if p.is_dir())

    def fold(self, exp: str, fold: int | str) -> FoldPaths:
        check_name(exp, "experiment name")
        return FoldPaths(self.base / "models" / exp, self.oof_root / exp, fold)

    def fold_metas(self, exp: str) -> list[Path]:
        return sorted((self.oof_root / check_name(exp, "experiment name")).glob("fold[0-9]*.json"))

    # --- submissions/ ---------------------------------------------------------------------------
    @property
    def submissions(self) -> Path:
        return self.base / "submissions"

    RESULT_FILES = ("submission.csv", "blend.json", "roc.png", "run_summary.json")

    def result(self, name: str) -> Path:
        """submissions/<name>: a link into the current result set (see `results.commit`)."""
        return self.submissions / name

    @property
    def bundle(self) -> Path:
        return self.submissions / "bundle"
