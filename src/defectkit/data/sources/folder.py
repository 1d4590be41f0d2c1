"""A folder per class (good, defect; optional test folder and masks): `prepare.py folder`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core.checks import InputError
from defectkit.data.masks import check_mask_shape, read_mask
from defectkit.data.sources.base import LabelledSource, register_source, source_path
from defectkit.data.sources.common import (
    build_labelled,
    check_user_edits,
    few_defects_note,
    image_ids,
    is_prepared,
    list_images,
    write_image,
)
from defectkit.runtime.imaging import read_image


def copy_masks(masks: Path, rows: pd.DataFrame, out: Path) -> str:
    """Each defect image's mask (same file name stem, any image format, non-zero = defect) as
    input/<name>/masks/<id>.png, for explain.py --masks."""
    masks = Path(masks)
    if not masks.is_dir():
        raise InputError(f"--masks {masks}: folder not found")
    found = {p.stem: p for p in list_images(masks, "masks folder")}
    todo = [(i, found[Path(p).stem], p) for i, p in zip(rows.id[rows.target == 1], rows.path[rows.target == 1])
            if Path(p).stem in found]
    decoded = []
    for i, m, image in todo:  # every mask checked before any is kept
        mask = read_mask(m)
        check_mask_shape(mask, read_image(Path(image)).shape[:2], m)
        decoded.append((i, mask))
    (out / "masks").mkdir(parents=True, exist_ok=True)
    n = 0
    for i, mask in decoded:
        write_image(out / "masks" / f"{i}.png", mask.astype(np.uint8) * 255, force=True)
        n += 1
    return f"; {n} of {int((rows.target == 1).sum())} defect masks kept in {out / 'masks'}"


@dataclass(frozen=True)
class ClassFolders:
    """A folder per class below `root`: `good`, `defect` (None: good images alone), `test` (a
    sub-folder of unlabelled test images, or the fraction of the labelled images held out as the
    test split, answers in solution.csv) and `masks` (a folder of defect masks named like the images)."""
    root: Path
    good: str
    defect: str | None = None
    test: str | float = 0.25
    masks: Path | None = None


def prepare_folder(folders: ClassFolders, out: Path, sub_cols=("id", "target"), force: bool = False) -> str:
    """A folder per class into a competition."""
    src, good, defect, masks = Path(folders.root), folders.good, folders.defect, folders.masks
    test, test_size = (folders.test, 0.25) if isinstance(folders.test, str) else (None, float(folders.test))
    args = {"source": "folder", "path": str(src.resolve()), "good": good, "defect": defect,
            "test": test, "test_size": test_size, "submission_columns": list(sub_cols),
            **({"masks": str(Path(masks).resolve())} if masks else {})}
    if is_prepared(out, args) and not force:
        return f"{out} is already prepared; nothing to do"
    folders = {"--good": (src / good).resolve(), **({"--defect": (src / defect).resolve()} if defect else {})}
    if test:
        folders["--test"] = (src / test).resolve()
    names = list(folders)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if folders[a] == folders[b] or folders[a] in folders[b].parents or folders[b] in folders[a].parents:
                raise InputError(f"{a} {folders[a]} and {b} {folders[b]} overlap; each must be its own folder")
    classes = {0: list_images(src / good, "good folder"), 1: list_images(src / defect) if defect else []}
    files = classes[0] + classes[1]
    roots = [src / good] * len(classes[0]) + [src / str(defect)] * len(classes[1])
    prefixes = [Path(good).name] * len(classes[0]) + [Path(str(defect)).name] * len(classes[1])
    rows = pd.DataFrame({"id": image_ids(files, roots, prefixes),
                         "target": [0] * len(classes[0]) + [1] * len(classes[1]),
                         "source": [str(p.relative_to(src)) for p in files], "path": files})
    test_files = list_images(src / test, "test folder") if test else []
    nested = sum(len(p.relative_to(r).parts) > 1 for p, r in zip(files, roots))
    check_user_edits(out, force)
    kept = copy_masks(masks, rows, out) if masks else ""  # checked and kept before the marker says done
    train, test_ids, sizes, held = build_labelled(out, rows, args, force, test_files)
    return (f"wrote {out}: {len(train)} train ({int(train.target.sum())} defect), {len(test_ids)} test"
            + (" (held out from the labelled images; answers in solution.csv)" if held else "")
            + (f"; {nested} image(s) from sub-folders included" if nested else "") + kept
            + few_defects_note(len(classes[1]), test_size))


@register_source("folder")
class FolderSource(LabelledSource):
    help = "a folder per class (good/defect), optional test folder"

    def add_arguments(self, p):
        p.add_argument("path")
        p.add_argument("--good", required=True, help="sub-folder of good images")
        p.add_argument("--defect", help="sub-folder of defect images (none: good images alone, for the anomaly "
                                        "member)")
        p.add_argument("--test", help="sub-folder of unlabelled test images (default: hold out --test-size)")
        p.add_argument("--masks", help="a folder of defect masks named like the images (kept for explain.py --masks)")
        super().add_arguments(p)

    def from_args(self, args):
        return {"type": "folder", **self.common(args), "good": args.good,
                **({"defect": args.defect} if args.defect else {}),
                **({"test": args.test} if args.test else {}),
                **({"masks": str(Path(args.masks).resolve())} if args.masks else {})}

    def prepare(self, out, source, sub_cols, force, base):
        masks = source_path({"path": source["masks"]}, base) if source.get("masks") else None
        folders = ClassFolders(source_path(source, base), source["good"], source.get("defect"),
                               source.get("test") or source.get("test_size", 0.25), masks)
        return prepare_folder(folders, out, sub_cols, force)
