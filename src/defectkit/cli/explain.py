"""Grad-CAM heat maps of what a fold's model looks at, for the quality check that it looks at
the defect and not at the border or the printed text.

    python src/explain.py --competition elpv --exp tf_efficientnet_lite0_cpu160 --fold 0 [--n 8]

Reads the fold's best checkpoint and its OOF predictions, and writes one PNG grid per group to
models/<exp>/gradcam/fold<k>_{confident_defects,missed_defects,false_alarms}.png:
  confident_defects  defects the model is most sure of (what it has learnt to see)
  missed_defects     defects with the lowest scores (false negatives)
  false_alarms       good cells with the highest scores (false positives)
The threshold between "missed" and "found" is the one that maximises OOF accuracy.

With --masks DIR (one mask image per id, non-zero = defect) or --boxes CSV (id, x_1, y_1, x_2, y_2),
it scores where every fold model looks instead (localise.py): the share of the CAM's energy inside
the defect areas and the pointing game, per fold and overall, written to
models/<exp>/gradcam/localisation_<cam>_l<layer>.{json,csv} with a histogram and the worst cases:

    python src/explain.py --competition C --exp EXP --boxes input/C/defect_boxes.csv [--cam layercam] [--layer -2]
"""
from __future__ import annotations

from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import config_from_args, config_parser
from defectkit.core.checks import InputError
from defectkit.explain.gradcam import CAMS, explain, localisation
from defectkit.explain.localise import summary_line


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    p.add_argument("--exp", required=True, help="experiment name (a folder of models/ and oof/)")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--n", type=int, default=8, help="images per group")
    p.add_argument("--masks", help="localisation score: one mask image per id (non-zero = defect)")
    p.add_argument("--boxes", help="localisation score: defect boxes (id, x_1, y_1, x_2, y_2), e.g. defect_boxes.csv")
    p.add_argument("--cam", choices=CAMS, default="gradcam")
    p.add_argument("--layer", type=int, default=-1, help="feature layer: -1 the last, -2 the one before (finer)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    if args.masks or args.boxes:
        if args.masks and args.boxes:
            raise InputError("give one of --masks DIR or --boxes CSV, not both")
        truth = args.masks or args.boxes
        summary = localisation(cfg.competition, Path(args.workdir), args.exp, truth and Path(truth), args.cam,
                               args.layer)
        print(summary_line(summary, args.cam, args.layer))
        return 0
    for path in explain(cfg.competition, Path(args.workdir), args.exp, args.fold, args.n):
        print(f"wrote {path}")
