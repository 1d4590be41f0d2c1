"""Build input/<competition>/ in Kaggle's shape from a known source.

    python src/prepare.py elpv                                   # the embedded default competition
    python src/prepare.py elpv --from DIR                        # the same from a copy (labels.csv, images/)
    python src/prepare.py folder PATH --good NAME --defect NAME [--test NAME] --name COMP
    python src/prepare.py folder PATH --good NAME --name COMP      # good images alone: the anomaly member
    python src/prepare.py yolo PATH --name COMP                  # images/ + labels/ (YOLO boxes)
    python src/prepare.py kaggle --slug SLUG [--name COMP]
    python src/prepare.py --config configs/nexperia.yaml          # the source named in a YAML

A competition folder holds train.csv (id, target, ...), train/<id><ext>, test/<id><ext>,
sample_submission.csv and, when the test labels are known (a held-out split), the answers
solution.csv (id, target, Usage) that only local scoring reads. A marker file records the
arguments: a second run with the same arguments does nothing; an interrupted run is repaired;
--force rebuilds every image whose source changed. `folder` and `yolo` also write
configs/<name>.yaml (preset: auto: the run plans its recipe from the images and a time budget) and
print the one command to run next.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import add_workdir_flag
from defectkit.core.config import ROOT, load_config
from defectkit.core.layout import Layout
from defectkit.data.sources import SOURCES, get_source, prepare_from_config
from defectkit.data.sources.common import write_config_and_say_next


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_workdir_flag(common, default=argparse.SUPPRESS)
    common.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                        help="rebuild what differs even if already prepared")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                parents=[common])
    p.add_argument("--config", help="prepare the source named in this competition YAML")
    sub = p.add_subparsers(dest="source")
    for name, cls in SOURCES.items():
        cls().add_arguments(sub.add_parser(name, parents=[common], help=cls.help))
    return p


@command
def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    base, force = Path(getattr(args, "workdir", ROOT)), getattr(args, "force", False)
    if args.config:
        print(prepare_from_config(load_config(args.config).competition, force, base))
        return 0
    if not args.source:
        p.print_help()
        return 2
    src = get_source(args.source)
    name, cols, source = src.competition(args), src.columns(args), src.from_args(args)
    print(src.prepare(Layout(base).raw_input(name), source, cols, force, base))
    if src.writes_config:
        print(write_config_and_say_next(base, name, source, cols, boxes=src.has_boxes))
    return 0
