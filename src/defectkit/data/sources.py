"""Data sources: where a competition's images come from, registered by name.

A source is a class registered with `@register_source("folder")`. `add_arguments(parser)` gives
its `prepare.py NAME` subcommand its flags; `from_args(args)` turns them into the `source:`
mapping a competition YAML keeps (`{"type": NAME, ...}`); `prepare(out, source, sub_cols, force,
base)` builds input/<competition>/ in Kaggle's shape from that mapping and returns what it did.
`competition(args)` names the competition, and `writes_config` says whether prepare.py then
writes configs/<name>.yaml with the recipe it suggests. run.py prepares any registered source
named in a YAML; a YAML with another type must bring its input/<name>/ itself.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import ClassVar

from defectkit.core.checks import InputError, check_name
from defectkit.core.config import ROOT, Competition
from defectkit.core.layout import Layout
from defectkit.core.registry import SOURCES
from defectkit.data.prepare import (
    load_elpv,
    load_elpv_copy,
    prepare_elpv,
    prepare_folder,
    prepare_kaggle,
    prepare_yolo,
)

register_source = SOURCES.register  # class decorator: a Source available as prepare.py NAME and source.type


def get_source(name: str) -> Source:
    return SOURCES.lookup(name)()


def _path(source: dict, base: Path) -> Path:
    p = Path(source["path"])
    return p if p.is_absolute() else Path(base) / p


def _columns(text: str) -> list[str]:
    cols = [c.strip() for c in text.split(",")]
    if len(cols) != 2 or not all(cols) or cols[0] == cols[1]:
        raise InputError(f"--submission-columns {text!r}: expected two different names, e.g. id,label")
    return cols


class Source:
    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    writes_config: ClassVar[bool] = False
    has_boxes: ClassVar[bool] = False  # its train.csv has defect boxes (explain.py --boxes)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        pass

    def from_args(self, args: argparse.Namespace) -> dict:
        return {"type": self.name}

    def competition(self, args: argparse.Namespace) -> str:
        return check_name(args.name, "--name")

    def columns(self, args: argparse.Namespace) -> list[str]:
        return _columns(getattr(args, "submission_columns", "id,target"))

    def prepare(self, out: Path, source: dict, sub_cols, force: bool, base: Path) -> str:
        raise NotImplementedError


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
        loader = (lambda: load_elpv_copy(_path({"path": source["from"]}, base))) if source.get("from") else load_elpv
        return prepare_elpv(out, source.get("test_size", 0.25), force, loader)


class _Labelled(Source):
    """folder and yolo: a path, a held-out split, the submission's columns, and a config written."""

    writes_config = True

    def add_arguments(self, p):
        p.add_argument("--test-size", type=float, default=0.25)
        p.add_argument("--name", required=True, help="competition name: input/NAME, configs/NAME.yaml")
        p.add_argument("--submission-columns", default="id,target", help="e.g. id,label")

    def common(self, args) -> dict:
        return {"path": str(Path(args.path).resolve()), **({"test_size": args.test_size} if args.test_size != 0.25
                                                            else {})}


@register_source("folder")
class FolderSource(_Labelled):
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
        masks = _path({"path": source["masks"]}, base) if source.get("masks") else None
        return prepare_folder(_path(source, base), out, source["good"], source.get("defect"),
                              source.get("test") or source.get("test_size", 0.25), sub_cols, force, masks)


@register_source("yolo")
class YoloSource(_Labelled):
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
        return prepare_yolo(_path(source, base), out, source.get("test_size", 0.25), sub_cols,
                            source.get("defect_classes"), force)


@register_source("kaggle")
class KaggleSource(Source):
    help = "download a competition with the Kaggle API"

    def add_arguments(self, p):
        p.add_argument("--slug", required=True, help="the Kaggle competition's slug (from its URL)")
        p.add_argument("--name", help="local name (default: the slug)")

    def from_args(self, args):
        return {"type": "kaggle", "slug": args.slug}

    def competition(self, args):
        return check_name(args.name or args.slug, "--name")

    def prepare(self, out, source, sub_cols, force, base):
        return prepare_kaggle(source["slug"], out, force=force)


def prepare_from_config(comp: Competition, force: bool = False, base: Path = ROOT) -> str:
    """Prepare the source a competition's YAML names (source.type: a registered source)."""
    src = dict(comp.source or {})
    return get_source(src.get("type")).prepare(Layout(base).data_dir(comp), src, comp.submission_columns, force,
                                                Path(base))
