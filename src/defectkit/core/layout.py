"""Where every file of the pipeline lives: the one place that spells the paths under a working
folder (input/, folds/, models/, oof/, submissions/). Every reader and writer asks a `Layout`.

    input/<comp>/               train.csv, train/, test/, sample_submission.csv [, solution.csv]
    input/<comp>/.cache/        decoded images and frozen-stage features (.npy)
    folds/<comp>.csv            id, target, fold
    models/<exp>/fold<k>.pt     best checkpoint (+ _last.pt, _log.csv, _curves.png, _config.yaml, .log)
    oof/<exp>/fold<k>.csv       OOF rows; test_fold<k>.csv test rows; fold<k>.json written last
    submissions/submission.csv, blend.json, roc.png, run_summary.json: links into
    submissions/runs/<stamp>/, switched all at once through the link submissions/current
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from defectkit.core.checks import check_name

REFIT = "all"  # the fold name of a model trained on every training row (no OOF rows)


@dataclass(frozen=True)
class FoldPaths:
    """Every file one fold of one experiment reads or writes."""

    model_dir: Path
    oof_dir: Path
    fold: int | str  # a fold number, or "all" for a model trained on every training row

    def _m(self, suffix: str) -> Path:
        return self.model_dir / f"fold{self.fold}{suffix}"

    @property
    def best(self) -> Path:
        return self._m(".pt")

    @property
    def last(self) -> Path:
        return self._m("_last.pt")

    @property
    def log(self) -> Path:
        return self._m("_log.csv")

    @property
    def curves(self) -> Path:
        return self._m("_curves.png")

    @property
    def config(self) -> Path:
        return self._m("_config.yaml")

    @property
    def job_log(self) -> Path:
        """Full console output of the job when it ran under an executor (Ray)."""
        return self._m(".log")

    @property
    def lock(self) -> Path:
        return self._m(".lock")

    @property
    def oof(self) -> Path:
        return self.oof_dir / f"fold{self.fold}.csv"

    @property
    def test(self) -> Path:
        return self.oof_dir / f"test_fold{self.fold}.csv"

    @property
    def meta(self) -> Path:
        """Written last: its presence marks the fold complete."""
        return self.oof_dir / f"fold{self.fold}.json"

    def outputs(self) -> list[Path]:
        return [self.best, self.last, self.log, self.curves, self.config, self.oof, self.test, self.meta]


class Layout:
    """The files of one working folder (the repository by default, or --workdir)."""

    def __init__(self, base: str | Path):
        self.base = Path(base)

    # --- input/ ---------------------------------------------------------------------------
    def data_dir(self, comp) -> Path:
        return self.base / (comp.data_dir or f"input/{check_name(comp.name, 'competition name')}")

    def train_csv(self, comp) -> Path:
        return self.data_dir(comp) / comp.train_csv

    def train_dir(self, comp) -> Path:
        return self.data_dir(comp) / comp.train_dir

    def test_dir(self, comp) -> Path:
        return self.data_dir(comp) / comp.test_dir

    def sample_submission(self, comp) -> Path:
        return self.data_dir(comp) / comp.sample_submission

    def test_csv(self, comp) -> Path:
        return self.data_dir(comp) / comp.test_csv

    def solution(self, comp) -> Path:
        return self.data_dir(comp) / comp.solution

    def boxes(self, comp) -> Path:
        return self.data_dir(comp) / "defect_boxes.csv"

    def cache_dir(self, comp) -> Path:
        return self.data_dir(comp) / ".cache"

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
