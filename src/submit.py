"""Check submissions/submission.csv against sample_submission.csv, then submit it to Kaggle.

    python src/submit.py --competition nexperia -m "lite0+lite1 hill blend" [--dry-run]
    python src/submit.py --competition nexperia --slug nexperia-kaggle-comp -m "..." --file other.csv

The file must have exactly the columns, ids and row order of sample_submission.csv, values
in [0, 1] and no NaN. The Kaggle slug is --slug, or the competition's `kaggle_slug` (or `source.slug`).

A code competition (the notebook predicts offline on Kaggle):
    python src/export.py --competition C                                    # the ONNX bundle first
    python src/submit.py --competition C --code --dataset ME/c-bundle --kernel ME/c-submit [--dry-run]
uploads submissions/bundle as a Kaggle dataset (a new version when it exists) and pushes a
notebook that runs it on the competition's test images and writes submission.csv; --dry-run
writes both folders to submissions/kaggle_code/ and checks them, without calling Kaggle.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from checks import InputError, cli_main, read_csv, shown
from config import Competition, add_config_flags, config_from_args
import kaggle_code
from kaggle_client import kaggle_api
from layout import Layout


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


def submit(comp: Competition, base: Path, message: str, file: Path | None = None, slug: str | None = None,
           dry_run: bool = False, api=None) -> str:
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


def submit_code(comp: Competition, base: Path, dataset: str, kernel: str, slug: str | None = None,
                bundle: Path | None = None, dry_run: bool = False, notes: str = "", api=None, say=print) -> dict:
    """Stage the bundle as a dataset and the notebook as a kernel; push both unless dry_run."""
    layout = Layout(base)
    slug = slug or comp.kaggle_slug or (comp.source or {}).get("slug", "")
    staged = kaggle_code.stage(Path(bundle or layout.bundle), layout.submissions / "kaggle_code", comp, slug,
                               dataset, kernel)
    say(f"staged {staged['dataset']} (dataset {dataset}) and {staged['kernel']} (kernel {kernel}, offline, "
        f"competition {slug})")
    if not dry_run:
        say(kaggle_code.push(api or kaggle_api(), staged, dataset, notes or "ensemble bundle", say))
    return staged


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    p.add_argument("-m", "--message", default="", help="the submission's message (the version notes with --code)")
    p.add_argument("--file", help="default: submissions/submission.csv")
    p.add_argument("--slug", help="Kaggle competition slug (default: the config's source.slug)")
    p.add_argument("--dry-run", action="store_true", help="validate only")
    g = p.add_argument_group("code competitions")
    g.add_argument("--code", action="store_true", help="upload the bundle as a dataset and push a notebook")
    g.add_argument("--dataset", help="OWNER/NAME of the bundle's Kaggle dataset")
    g.add_argument("--kernel", help="OWNER/NAME of the notebook")
    g.add_argument("--bundle", help="the exported bundle (default: submissions/bundle)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    if args.code:
        submit_code(cfg.competition, Path(args.workdir), args.dataset or "", args.kernel or "", args.slug,
                    args.bundle and Path(args.bundle), args.dry_run, args.message)
        return 0
    print(submit(cfg.competition, Path(args.workdir), args.message, args.file and Path(args.file), args.slug,
                 args.dry_run))


if __name__ == "__main__":
    sys.exit(main())
