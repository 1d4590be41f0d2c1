"""The contract of a data source and its registry (see defectkit.data.sources)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import ClassVar

from defectkit.core.checks import InputError, check_name
from defectkit.core.registry import SOURCES

register_source = SOURCES.register  # class decorator: a Source available as prepare.py NAME and source.type


def get_source(name: str) -> Source:
    return SOURCES.lookup(name)()


def source_path(source: dict, base: Path) -> Path:
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


class LabelledSource(Source):
    """folder and yolo: a path, a held-out split, the submission's columns, and a config written."""

    writes_config = True

    def add_arguments(self, p):
        p.add_argument("--test-size", type=float, default=0.25)
        p.add_argument("--name", required=True, help="competition name: input/NAME, configs/NAME.yaml")
        p.add_argument("--submission-columns", default="id,target", help="e.g. id,label")

    def common(self, args) -> dict:
        return {"path": str(Path(args.path).resolve()), **({"test_size": args.test_size} if args.test_size != 0.25
                                                            else {})}
