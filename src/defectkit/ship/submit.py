"""Check a submission against sample_submission.csv, then submit it to Kaggle (a CSV, or a code
competition's bundle and notebook)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core.checks import InputError, read_csv, shown
from defectkit.core.config import Competition
from defectkit.core.layout import Layout
from defectkit.data.kaggle_client import kaggle_api
from defectkit.ship import kaggle_code


def validate_submission(path: Path, sample_path: Path, cols: list[str]) -> pd.DataFrame:
    """The submission, or an InputError naming the first problem and its row."""
    sub, sample = read_csv(path, "submission", cols[:1]), read_csv(sample_path, "sample submission", cols[:1])
    if list(sub.columns) != list(sample.columns):
        raise InputError(f"{path}: columns {list(sub.columns)}; expected exactly {list(sample.columns)} "
                         f"as in {sample_path}")
    id_col, pred_col = cols
    if len(sub) != len(sample):
        raise InputError(f"{path}: {len(sub)} rows; {sample_path} has {len(sample)}")
    ids, want = sub[id_col].astype(str).to_numpy(), sample[id_col].astype(str).to_numpy()
    if (ids != want).any():
        row = int(np.flatnonzero(ids != want)[0])
        raise InputError(f"{path}: row {row + 2}: id {ids[row]!r}, expected {want[row]!r} "
                         f"(ids and their order must be those of {sample_path})")
    pred = pd.to_numeric(sub[pred_col], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(pred) | (pred < 0) | (pred > 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: row {row + 2}: {pred_col!r} = {shown(sub[pred_col].iloc[row])}; expected a "
                         f"probability in [0, 1] ({int(bad.sum())} bad row(s))")
    return sub


@dataclass
class Submission:
    """A file submitted to a Kaggle competition: its message, the file (default: submissions/submission.csv),
    the competition's slug (default: the config's), and `dry_run` (check it, send nothing)."""

    message: str
    file: Path | None = None
    slug: str | None = None
    dry_run: bool = False


def submit(comp: Competition, base: Path, what: Submission, api=None) -> str:
    message, file, slug, dry_run = what.message, what.file, what.slug, what.dry_run
    layout = Layout(base)
    path = Path(file or layout.result("submission.csv"))
    sub = validate_submission(path, layout.sample_submission(comp), comp.submission_columns)
    slug = slug or comp.kaggle_slug or (comp.source or {}).get("slug")
    if not message.strip():
        raise InputError("-m MESSAGE: Kaggle needs a submission message")
    if dry_run:
        return f"{path}: {len(sub)} rows match {comp.sample_submission}; dry run, not submitted"
    if not slug:
        raise InputError(f"competition {comp.name!r} has no Kaggle slug: pass --slug, or set kaggle_slug in its YAML")
    if api is None:
        api = kaggle_api()
    api.competition_submit(str(path), message, slug)
    return f"submitted {path} ({len(sub)} rows) to {slug}: {message!r}"


@dataclass
class CodeTarget:
    """Where a code competition's submission goes: the bundle's Kaggle dataset and the notebook's
    kernel (OWNER/NAME each), the competition's slug (default: the config's), the version notes."""

    dataset: str
    kernel: str
    slug: str | None = None
    notes: str = ""
    bundle: Path | None = None  # the exported bundle sent (default: submissions/bundle)


def submit_code(comp: Competition, base: Path, target: CodeTarget, dry_run: bool = False, api=None,
                say=print) -> dict:
    """Stage the bundle as a dataset and the notebook as a kernel; push both unless dry_run."""
    dataset, kernel, slug, notes, bundle = target.dataset, target.kernel, target.slug, target.notes, target.bundle
    layout = Layout(base)
    slug = slug or comp.kaggle_slug or (comp.source or {}).get("slug", "")
    staged = kaggle_code.stage(Path(bundle or layout.bundle), layout.submissions / "kaggle_code", comp, slug,
                               dataset, kernel)
    say(f"staged {staged['dataset']} (dataset {dataset}) and {staged['kernel']} (kernel {kernel}, offline, "
        f"competition {slug})")
    if not dry_run:
        say(kaggle_code.push(api or kaggle_api(), staged, dataset, notes or "ensemble bundle", say))
    return staged
