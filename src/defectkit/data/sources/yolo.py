"""Detection data in YOLO format (images/ + labels/): a box of a defect class makes a defect image."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from defectkit.core.checks import InputError
from defectkit.core.fileio import write_csv_atomic
from defectkit.data.sources.base import LabelledSource, register_source, source_path
from defectkit.data.sources.common import (
    build_labelled,
    image_ids,
    is_prepared,
    list_images,
)


def read_yolo_boxes(label: Path, classes: set[int] | None) -> list[tuple[float, float, float, float]]:
    """Normalised (cx, cy, w, h) boxes of a YOLO label file, of the given classes (None = all)."""
    if not label.exists():
        return []
    boxes = []
    for n, line in enumerate(label.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
        except (ValueError, TypeError):
            raise InputError(f"{label}: line {n}: expected 'class cx cy w h', got {line.strip()!r}") from None
        if not all(0 <= v <= 1 for v in (cx, cy, w, h)) or w <= 0 or h <= 0:  # NaN fails every comparison
            raise InputError(f"{label}: line {n}: box {cx:g} {cy:g} {w:g} {h:g}; expected a centre and size "
                             "normalised to the image, in [0, 1], with a width and height above 0")
        if classes is None or cls in classes:
            boxes.append((cx, cy, w, h))
    return boxes


def prepare_yolo(src: Path, out: Path, test_size: float = 0.25, sub_cols=("id", "target"),
                 defect_classes: list[int] | None = None, force: bool = False) -> str:
    """Detection data as a good/defect competition: an image with at least one box (of the
    defect classes) is a defect, one with no box or no label file is good. Boxes are kept in
    pixels as defect_boxes.csv (id, x_1, y_1, x_2, y_2). Splits below images/ (train, val, ...)
    are pooled."""
    src = Path(src)
    args = {"source": "yolo", "path": str(src.resolve()), "test_size": test_size,
            "submission_columns": list(sub_cols), "defect_classes": defect_classes}
    if is_prepared(out, args) and not force:
        return f"{out} is already prepared; nothing to do"
    images = list_images(src / "images", "images folder")
    labels = [src / "labels" / p.relative_to(src / "images").with_suffix(".txt") for p in images]
    classes = set(defect_classes) if defect_classes else None
    boxes = [read_yolo_boxes(lb, classes) for lb in labels]
    ids = image_ids(images, [src / "images"] * len(images), ["img"] * len(images))
    rows = pd.DataFrame({"id": ids, "target": [int(bool(b)) for b in boxes],
                         "source": [str(p.relative_to(src)) for p in images], "path": images})
    train, test_ids, sizes, held = build_labelled(out, rows, args, force)
    box_rows = [(i, round((cx - w / 2) * W, 1), round((cy - h / 2) * H, 1), round((cx + w / 2) * W, 1),
                 round((cy + h / 2) * H, 1)) for i, bs, (H, W) in zip(ids, boxes, sizes) for cx, cy, w, h in bs]
    write_csv_atomic(pd.DataFrame(box_rows, columns=["id", "x_1", "y_1", "x_2", "y_2"]), out / "defect_boxes.csv")
    return (f"wrote {out}: {len(train)} train ({int(train.target.sum())} defect), {len(test_ids)} test (held out; "
            f"answers in solution.csv); {len(box_rows)} boxes in defect_boxes.csv")


@register_source("yolo")
class YoloSource(LabelledSource):
    help = "images/ + labels/ in YOLO format: a box = a defect"
    has_boxes = True

    def add_arguments(self, p):
        p.add_argument("path")
        p.add_argument("--defect-classes", type=int, nargs="+", help="box classes that count as defects (default: all)")
        super().add_arguments(p)

    def from_args(self, args):
        return {"type": "yolo", **self.common(args),
                **({"defect_classes": args.defect_classes} if args.defect_classes else {})}

    def prepare(self, out, source, sub_cols, force, base):
        return prepare_yolo(source_path(source, base), out, source.get("test_size", 0.25), sub_cols,
                            source.get("defect_classes"), force)
