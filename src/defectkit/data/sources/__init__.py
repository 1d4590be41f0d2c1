"""Data sources: where a competition's images come from, registered by name.

A source is a class registered with `@register_source("folder")`. `add_arguments(parser)` gives
its `prepare.py NAME` subcommand its flags; `from_args(args)` turns them into the `source:`
mapping a competition YAML keeps (`{"type": NAME, ...}`); `prepare(out, source, sub_cols, force,
base)` builds input/<competition>/ in Kaggle's shape from that mapping and returns what it did.
`competition(args)` names the competition, and `writes_config` says whether prepare.py then
writes configs/<name>.yaml with the recipe it suggests. run.py prepares any registered source
named in a YAML; a YAML with another type must bring its input/<name>/ itself.

Each source is a module of this package that registers itself where it is defined (elpv, folder,
yolo, kaggle); importing the package imports them all, so the registry is full. `common` holds what
they share (marker, held-out split, tables, image import).
"""
from __future__ import annotations

from pathlib import Path

from defectkit.core.config import ROOT, Competition
from defectkit.core.layout import Layout
from defectkit.core.registry import SOURCES
from defectkit.data.sources import elpv, folder, kaggle, yolo  # noqa: F401 - each registers its source
from defectkit.data.sources.base import LabelledSource, Source, get_source, register_source

__all__ = ["SOURCES", "LabelledSource", "Source", "get_source", "prepare_from_config", "register_source"]


def prepare_from_config(comp: Competition, force: bool = False, base: Path = ROOT) -> str:
    """Prepare the source a competition's YAML names (source.type: a registered source)."""
    src = dict(comp.source or {})
    return get_source(src.get("type")).prepare(Layout(base).data_dir(comp), src, comp.submission_columns, force,
                                                Path(base))
