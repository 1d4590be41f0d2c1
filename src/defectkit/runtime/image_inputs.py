"""Which images to score, and reading them: a folder's images, image files, or a CSV of ids.
Needs only the standard library, numpy and OpenCV (through imaging.py), so the exported bundle
ships this very file (with names.py); predict.py uses it too."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .errors import OneLineError
from .imaging import IMAGE_EXTS, ImageError, read_image
from .names import is_plain_name


class InputsError(OneLineError):
    """Inputs that cannot be scored; the message names them."""


def _csv_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark (Excel) is not a column name
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputsError(f"{path}: cannot be read as CSV ({e})") from None


def _csv_ids(path: Path, id_col: str) -> list[str]:
    rows = _csv_rows(path)
    if not rows or id_col not in rows[0]:
        raise InputsError(f"{path}: no column {id_col!r} (found {list(rows[0]) if rows else 'no rows'}); "
                          "give --id-col")
    ids = [r[id_col] for r in rows]
    bad = next((i for i in ids if not is_plain_name(i)), None)
    if bad is not None:
        raise InputsError(f"{path}: id {bad!r} is not a plain file name")
    return ids


def read_meta(path: Path, ids: list[str], cols: list[str], id_col: str = "id") -> dict[str, list[str]]:
    """Metadata columns `cols` of a CSV (`id_col` + the columns), in the order of `ids`: what a
    stacker fitted with --stack-meta needs beside each image."""
    rows = _csv_rows(Path(path))
    missing = [c for c in [id_col, *cols] if not rows or c not in rows[0]]
    if missing:
        raise InputsError(f"{path}: missing column(s) {missing} (found {list(rows[0]) if rows else 'no rows'}); "
                          f"the stacker needs {id_col} and {', '.join(cols)}")
    by_id = {r[id_col]: r for r in rows}
    lost = [i for i in ids if i not in by_id]
    if lost:
        raise InputsError(f"{path}: no row for {len(lost)} of the {len(ids)} images, e.g. {lost[:2]}")
    return {c: [by_id[i][c] for i in ids] for c in cols}


def list_inputs(inputs: list[str], image_dir: Path, ext: str, id_col: str = "id") -> list[tuple[str, Path]]:
    """(id, path) per image: each folder's images (id = file name without extension), image
    files, or a CSV's ids as `image_dir`/<id><ext>. Ids must be unique."""
    if not inputs:
        raise InputsError("no input: give a folder, image files, or a CSV with an id column")
    items = []
    for arg in map(Path, inputs):
        if arg.is_dir():
            found = sorted(p for p in arg.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
            if not found:
                raise InputsError(f"{arg}: no images ({', '.join(IMAGE_EXTS)}) in this folder")
            items += [(p.stem, p) for p in found]
        elif arg.suffix.lower() == ".csv":
            items += [(i, Path(image_dir) / f"{i}{ext}") for i in _csv_ids(arg, id_col)]
        else:
            items.append((arg.stem, arg))
    seen = set()
    for i, _ in items:
        if i in seen:
            raise InputsError(f"id {i!r} appears more than once among the inputs (ids are file names without "
                              "their extension)")
        seen.add(i)
    return items


def read_all(items: list[tuple[str, Path]], skip_bad: bool, say=print) -> tuple[list[str], list[np.ndarray]]:
    """Every image decoded once (uint8 RGB); the unreadable ones listed in one error, or left
    out and reported with `skip_bad`. Nothing is scored from a partial set unless asked."""
    ids, images, bad = [], [], []
    for i, path in items:
        try:
            images.append(read_image(path))
            ids.append(i)
        except ImageError as e:
            bad.append(str(e))
    if bad and not skip_bad:
        raise InputsError(f"{len(bad)} of {len(items)} images cannot be used (nothing written; --skip-bad leaves "
                          f"them out): {'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    for msg in bad:
        say(f"left out: {msg}")
    if not ids:
        raise InputsError("no usable image among the inputs")
    return ids, images
