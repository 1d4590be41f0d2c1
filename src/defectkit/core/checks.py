"""Input validation shared by every stage. Each problem is an `InputError` whose message
names the file, the row or column, and what was expected."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.runtime.errors import OneLineError, cli_main, describe_os_error  # noqa: F401 (shared)
from defectkit.runtime.names import is_plain_name


class InputError(OneLineError):
    """Bad input from the user: a message meant to be printed as is, without a traceback."""


def check_name(value: str, what: str) -> str:
    """Ids, experiment and competition names are names, not paths: no separators, no '..'."""
    s = str(value)
    if not is_plain_name(s):
        raise InputError(f"{what} {s!r}: must be a plain name (no '/', '\\', '..' or control character; not empty)")
    return s


# pandas' default NA strings, minus none: used for every column except id columns, which are
# names ('NA' and 'null' are valid ids) and become NaN only when empty.
_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def read_csv(path: str | Path, what: str = "file", id_cols=("id",)) -> pd.DataFrame:
    """A CSV whose id columns (`id_cols`, and always the first column) are read as strings."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if path.is_dir():
        raise InputError(f"{path}: {what} is a folder, expected a CSV file")
    try:
        header = pd.read_csv(path, nrows=0).columns
        ids = set(id_cols) | ({header[0]} if len(header) else set())
        na = {c: ([""] if c in ids else _NA) for c in header}
        return pd.read_csv(path, dtype={c: str for c in ids if c in header}, keep_default_na=False,
                           na_values=na)
    except pd.errors.EmptyDataError as e:
        raise InputError(f"{path}: {what} is empty") from e
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be read as CSV ({str(e).splitlines()[0]})") from e


def shown(value) -> str:
    """A cell's value as a person reads it: 2, 'yes', empty (not np.int64(2) or nan)."""
    if pd.isna(value):
        return "empty"
    return repr(value.item() if hasattr(value, "item") else value)


def check_columns(df: pd.DataFrame, required, path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")


def check_unique_ids(df: pd.DataFrame, id_col: str, path) -> None:
    ids = df[id_col].astype(str)
    if df[id_col].isna().any():
        row = int(np.flatnonzero(df[id_col].isna().to_numpy())[0])
        raise InputError(f"{path}: row {row + 2}: empty {id_col!r}")
    for row, i in enumerate(ids):
        try:
            check_name(i, f"row {row + 2}: {id_col!r}")
        except InputError as e:
            raise InputError(f"{path}: {e}; ids name image files inside the competition") from None
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        rows = [int(i) + 2 for i in np.flatnonzero((ids == first).to_numpy())]
        raise InputError(f"{path}: {id_col!r} {first!r} repeats (rows {rows}; "
                         f"{dup.nunique()} repeated id(s) in all); ids must be unique")


def check_binary_target(df: pd.DataFrame, target_col: str, path, need_defect: bool = True) -> None:
    """0/1 targets with good rows; defect rows too unless `need_defect` is off (a training table of
    good images alone is valid: the anomaly member learns from it)."""
    t = pd.to_numeric(df[target_col], errors="coerce")
    bad = t.isna() | ~t.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: row {row + 2}: {target_col!r} = {shown(df[target_col].iloc[row])}; "
                         f"expected 0 (good) or 1 (defect) ({int(bad.sum())} bad row(s))")
    counts = t.value_counts()
    if counts.get(0, 0) == 0:
        raise InputError(f"{path}: no good (0) rows in {target_col!r}; good images are needed (every model "
                         "learns what good looks like)")
    if need_defect and counts.get(1, 0) == 0:
        raise InputError(f"{path}: no defect (1) rows in {target_col!r}; both classes are needed")


def check_classifier_defects(n_defect: int, n_folds: int, path) -> None:
    """A classifier's k folds each need a defect to validate on (and more to learn from): the
    supervised path's message, which points at the member that needs none."""
    if n_defect < n_folds:
        raise InputError(f"{path}: {n_defect} defect image(s); a classifier's {n_folds} stratified folds need at "
                         f"least {n_folds} (one to validate on in each fold). With few or no defects use the "
                         "anomaly member, learnt from the good images alone (member: anomaly, or preset: auto, "
                         "which chooses it), or add defect images")


def check_soft_target(df: pd.DataFrame, col: str, target_col: str, path) -> np.ndarray:
    """The soft-target column as float32 in [0, 1]; a row whose soft target and 0/1 target disagree
    on the side of 0.5 is an error (a swapped column, a percentage)."""
    check_columns(df, [col], path)
    t = pd.to_numeric(df[col], errors="coerce")
    bad = t.isna() | (t < 0) | (t > 1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: row {row + 2}: soft target {col!r} = {shown(df[col].iloc[row])}; "
                         f"expected a defect probability in [0, 1] ({int(bad.sum())} bad row(s))")
    hard = pd.to_numeric(df[target_col]).to_numpy()
    off = np.flatnonzero((t.to_numpy() >= 0.5) != (hard == 1))
    if len(off):
        row = int(off[0])
        raise InputError(f"{path}: row {row + 2}: soft target {col!r} = {t.iloc[row]:g} but {target_col!r} = "
                         f"{hard[row]}; a soft target must be >= 0.5 exactly for the defects ({len(off)} row(s))")
    return t.to_numpy(np.float32)


def check_train_table(df: pd.DataFrame, id_col: str, target_col: str, path) -> pd.DataFrame:
    """Columns present, ids unique, targets 0/1 with good rows (defect rows may be few or none:
    the members that need them check their number). Returns df with int targets."""
    check_columns(df, [id_col, target_col], path)
    check_unique_ids(df, id_col, path)
    check_binary_target(df, target_col, path, need_defect=False)
    df = df.copy()
    df[id_col] = df[id_col].astype(str)
    df[target_col] = pd.to_numeric(df[target_col]).astype(int)
    return df


def check_images_exist(ids, image_dir: Path, ext: str, table_path) -> list[Path]:
    """Every id has its image file. Returns the paths in id order."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: image folder not found (needed by {table_path})")
    paths = [image_dir / f"{i}{ext}" for i in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: image missing for id {missing[0].stem!r} listed in {table_path} "
                         f"({len(missing)} missing in all)")
    return paths


def check_predictions(values, path, col: str = "pred") -> None:
    v = np.asarray(values, dtype=float)
    bad = ~np.isfinite(v)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: row {row + 2}: {col!r} is {v[row]}; predictions must be finite "
                         f"({int(bad.sum())} bad row(s))")
