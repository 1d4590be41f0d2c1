"""ELPV solar cells (the elpv-dataset package, or a copy of its data): `prepare.py elpv`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core.checks import InputError, check_columns, read_csv
from defectkit.core.fileio import write_csv_atomic
from defectkit.data.sources.base import Source, register_source, source_path
from defectkit.data.sources.common import (
    SPLIT_SEED,
    check_user_edits,
    held_out_split,
    is_prepared,
    solution_table,
    write_competition,
    write_image,
    write_marker,
)
from defectkit.runtime.imaging import IMAGE_EXTS, ImageError, read_image


def load_elpv():
    """(ids, images uint8 (N, 300, 300), defect probabilities, cell types) from the elpv-dataset package.
    Ids are the package's own file names (cell0001 ...), so a row can be traced to its image."""
    try:
        import elpv_dataset.utils as elpv
    except ImportError as e:
        raise InputError("the ELPV data comes from the `elpv-dataset` package: pip install elpv-dataset") from e
    labels = Path(elpv.__file__).parent / "data" / "labels.csv"
    names = np.genfromtxt(labels, dtype=["|S19", "<f8", "|S4"], names=["path", "probability", "type"])["path"]
    ids = np.array([Path(n).stem for n in np.char.decode(names)])
    images, probs, types = elpv.load_dataset(str(labels))
    return ids, np.asarray(images), np.asarray(probs, dtype=float), np.asarray(types).astype(str)


def load_elpv_copy(folder: Path):
    """The same as `load_elpv`, from a copy of the package's data: `labels.csv` (id, probability,
    type) and `images/<id>.<ext>` (a compact copy, e.g. the GPU kit's JPEGs, for a machine
    without the package)."""
    folder = Path(folder)
    labels = read_csv(folder / "labels.csv", "ELPV labels")
    check_columns(labels, ["id", "probability", "type"], folder / "labels.csv")
    ids = labels["id"].astype(str).to_numpy()
    files = {p.stem: p for p in (folder / "images").glob("*") if p.suffix.lower() in IMAGE_EXTS}
    missing = [i for i in ids if i not in files]
    if missing:
        raise InputError(f"{folder / 'images'}: no image for {len(missing)} ids of labels.csv, e.g. {missing[:2]}")
    try:
        images = np.stack([read_image(files[i])[:, :, 0] for i in ids])
    except ImageError as e:
        raise InputError(str(e)) from None
    probs = pd.to_numeric(labels["probability"], errors="coerce")
    if probs.isna().any() or not probs.between(0, 1).all():
        row = int(np.flatnonzero((probs.isna() | ~probs.between(0, 1)).to_numpy())[0])
        raise InputError(f"{folder / 'labels.csv'}: row {row + 2}: probability {labels['probability'].iloc[row]!r}; "
                         "expected a number between 0 and 1")
    return ids, images, probs.to_numpy(float), labels["type"].astype(str).to_numpy()


def prepare_elpv(out: Path, test_size: float = 0.25, force: bool = False, loader=load_elpv) -> str:
    args = {"source": "elpv", "test_size": test_size, "seed": SPLIT_SEED}
    if is_prepared(out, args) and not force:
        if (out / "test.csv").exists():
            return f"{out} is already prepared ({args}); nothing to do"
        ids, _, _, types = loader()  # prepared by a version that wrote no test.csv: add it alone
        test = pd.read_csv(out / "sample_submission.csv", dtype={"id": str})["id"]
        cell = pd.Series(types, index=ids).loc[test]
        write_csv_atomic(pd.DataFrame({"id": test, "cell_type": cell.to_numpy()}), out / "test.csv")
        return f"{out} is already prepared ({args}); added test.csv (the test cells' types)"
    check_user_edits(out, force)
    ids, images, probs, types = loader()
    target = (probs >= 0.5).astype(int)
    test = held_out_split(target, test_size, np.char.add(target.astype(str), types))
    for sub in ("train", "test"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm
    for i in tqdm(range(len(images)), desc="elpv images", unit="img", leave=False):
        write_image(out / ("test" if test[i] else "train") / f"{ids[i]}.png", images[i], force)
    train = pd.DataFrame({"id": ids[~test], "target": target[~test],
                          "defect_probability": probs[~test].round(4), "cell_type": types[~test]})
    sol = solution_table(ids[test], target[test], "id", "target")
    files = write_competition(out, train, list(ids[test]), ["id", "target"], sol)
    write_csv_atomic(pd.DataFrame({"id": ids[test], "cell_type": types[test]}), out / "test.csv")  # metadata only
    files += ["test.csv"] + [f"{'test' if t else 'train'}/{i}.png" for i, t in zip(ids, test)]
    write_marker(out, args, files)
    return (f"wrote {out}: {len(train)} train ({int(train.target.sum())} defect), "
            f"{int(test.sum())} test ({int(target[test].sum())} defect, answers in solution.csv)")


@register_source("elpv")
class ElpvSource(Source):
    help = "ELPV solar cells from the elpv-dataset package"

    def add_arguments(self, p):
        p.add_argument("--test-size", type=float, default=0.25)
        p.add_argument("--from", dest="copy", help="a copy of the data (labels.csv + images/) instead of the "
                                                   "package, e.g. the GPU kit's compact copy")

    def from_args(self, args):
        return {"type": "elpv", "test_size": args.test_size,
                **({"from": str(Path(args.copy).resolve())} if args.copy else {})}

    def competition(self, args):
        return "elpv"

    def prepare(self, out, source, sub_cols, force, base):
        copy = source.get("from")
        loader = (lambda: load_elpv_copy(source_path({"path": copy}, base))) if copy else load_elpv
        return prepare_elpv(out, source.get("test_size", 0.25), force, loader)
