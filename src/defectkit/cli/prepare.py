"""Build input/<competition>/ in Kaggle's shape from a known source.

    python src/prepare.py elpv                                   # the embedded default competition
    python src/prepare.py elpv --from DIR                        # the same from a copy (labels.csv, images/)
    python src/prepare.py folder PATH --good NAME --defect NAME [--test NAME] --name COMP
    python src/prepare.py yolo PATH --name COMP                  # images/ + labels/ (YOLO boxes)
    python src/prepare.py kaggle --slug SLUG [--name COMP]
    python src/prepare.py --config configs/nexperia.yaml          # the source named in a YAML

A competition folder holds train.csv (id, target, ...), train/<id><ext>, test/<id><ext>,
sample_submission.csv and, when the test labels are known (a held-out split), the answers
solution.csv (id, target, Usage) that only local scoring reads. A marker file records the
arguments: a second run with the same arguments does nothing; an interrupted run is repaired;
--force rebuilds every image whose source changed. `folder` and `yolo` also write
configs/<name>.yaml (preset: auto, and an input shape that suits the images' sizes) and
print the one command to run next.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from defectkit.core.checks import InputError, check_name, cli_main
from defectkit.core.config import ROOT, add_workdir_flag, load_config
from defectkit.core.layout import Layout
from defectkit.data.prepare import (
    load_elpv,
    load_elpv_copy,
    prepare_elpv,
    prepare_folder,
    prepare_from_config,
    prepare_kaggle,
    prepare_yolo,
    write_config_and_say_next,
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_workdir_flag(common, default=argparse.SUPPRESS)
    common.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                        help="rebuild what differs even if already prepared")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                parents=[common])
    p.add_argument("--config", help="prepare the source named in this competition YAML")
    sub = p.add_subparsers(dest="source")
    e = sub.add_parser("elpv", parents=[common], help="ELPV solar cells from the elpv-dataset package")
    e.add_argument("--test-size", type=float, default=0.25)
    e.add_argument("--from", dest="copy", help="a copy of the data (labels.csv + images/) instead of the package, "
                                               "e.g. the GPU kit's compact copy")
    f = sub.add_parser("folder", parents=[common], help="a folder per class (good/defect), optional test folder")
    f.add_argument("path")
    f.add_argument("--good", required=True, help="sub-folder of good images")
    f.add_argument("--defect", required=True, help="sub-folder of defect images")
    f.add_argument("--test", help="sub-folder of unlabelled test images (default: hold out --test-size)")
    f.add_argument("--masks", help="a folder of defect masks named like the images (kept for explain.py --masks)")
    y = sub.add_parser("yolo", parents=[common], help="images/ + labels/ in YOLO format: a box = a defect")
    y.add_argument("path")
    y.add_argument("--defect-classes", type=int, nargs="+", help="box classes that count as defects (default: all)")
    for s in (f, y):
        s.add_argument("--test-size", type=float, default=0.25)
        s.add_argument("--name", required=True, help="competition name: input/NAME, configs/NAME.yaml")
        s.add_argument("--submission-columns", default="id,target", help="e.g. id,label")
    k = sub.add_parser("kaggle", parents=[common], help="download a competition with the Kaggle API")
    k.add_argument("--slug", required=True, help="the Kaggle competition's slug (from its URL)")
    k.add_argument("--name", help="local name (default: the slug)")
    return p


def _columns(text: str) -> list[str]:
    cols = [c.strip() for c in text.split(",")]
    if len(cols) != 2 or not all(cols) or cols[0] == cols[1]:
        raise InputError(f"--submission-columns {text!r}: expected two different names, e.g. id,label")
    return cols


@cli_main
def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    base, force = Path(getattr(args, "workdir", ROOT)), getattr(args, "force", False)
    layout = Layout(base)
    if args.config:
        print(prepare_from_config(load_config(args.config).competition, force, base))
    elif args.source == "elpv":
        loader = (lambda: load_elpv_copy(Path(args.copy))) if args.copy else load_elpv
        print(prepare_elpv(layout.raw_input("elpv"), args.test_size, force, loader))
    elif args.source in ("folder", "yolo"):
        cols = _columns(args.submission_columns)
        out = layout.raw_input(check_name(args.name, "--name"))
        src_path = Path(args.path).resolve()
        if args.source == "folder":
            print(prepare_folder(src_path, out, args.good, args.defect, args.test, args.test_size, cols, force,
                                 args.masks and Path(args.masks)))
            source = {"type": "folder", "path": str(src_path), "good": args.good, "defect": args.defect,
                      **({"test": args.test} if args.test else {})}
        else:
            print(prepare_yolo(src_path, out, args.test_size, cols, args.defect_classes, force))
            source = {"type": "yolo", "path": str(src_path),
                      **({"defect_classes": args.defect_classes} if args.defect_classes else {})}
        if args.test_size != 0.25:
            source["test_size"] = args.test_size
        print(write_config_and_say_next(base, args.name, source, cols, boxes=args.source == "yolo"))
    elif args.source == "kaggle":
        print(prepare_kaggle(args.slug, layout.raw_input(check_name(args.name or args.slug, "--name")), force=force))
    else:
        p.print_help()
        return 2
    return 0
