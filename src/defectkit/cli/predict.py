"""Score new images with the blended ensemble that blend.py chose (submissions/blend.json).

    python src/predict.py --competition elpv input/elpv/test/ --out preds.csv
    python src/predict.py --competition elpv a.png b.png --operating-point recall_99
    python src/predict.py --competition elpv ids.csv --image-dir /data/today --threshold 0.5 --skip-bad
    python src/predict.py --competition elpv input/elpv/test/ --meta input/elpv/test.csv   # stack + --stack-meta

Input: a folder (every image in it), image files, or a CSV with an `id` column (--id-col) whose
images are <image-dir>/<id><image_ext> (default: the competition's test folder). Every fold
model of every blended experiment scores each image with its recipe's size, resize mode, border
crop and TTA (as train.py predicted the test set, the frozen-feature cache's float16 rounding
included), and the experiments are combined exactly as blend.py does (in rank space, a new
prediction is ranked against that fold model's own OOF predictions; a full-data refit's, when the
blend used refits, against all the experiment's OOF predictions). Output: a CSV with
`id, prob, defect` (prob: the blend's score, on blend.py's scale; defect: prob >= the threshold of
--operating-point, chosen on OOF predictions, or --threshold). Unreadable images are one error
listing them, or with --skip-bad are reported and left out. Nothing is written unless all is well.
"""
from __future__ import annotations

from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import config_from_args, config_parser
from defectkit.core.records import OPERATING_POINTS
from defectkit.runtime.runner import ScoreOptions
from defectkit.ship.predict import Scoring, predict


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    p.add_argument("inputs", nargs="+", help="a folder, image files, or a CSV with an id column")
    p.add_argument("--out", default="predictions.csv", help="output CSV (id, prob, defect)")
    p.add_argument("--operating-point", choices=OPERATING_POINTS, default="chosen",
                   help="the OOF threshold for `defect` (chosen = blend.py's --threshold-by rule)")
    p.add_argument("--threshold", type=float, help="a threshold of your own, on the blend's scale")
    p.add_argument("--image-dir", help="where a CSV's ids are (default: the competition's test folder)")
    p.add_argument("--id-col", default="id")
    p.add_argument("--skip-bad", action="store_true", help="leave unreadable images out (reported)")
    p.add_argument("--device", default="auto")
    p.add_argument("--blend", help="a blend.json (default: submissions/blend.json)")
    p.add_argument("--meta", help="a CSV of id + the metadata columns a stacker fitted with --stack-meta needs")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    opts = ScoreOptions(args.operating_point, args.threshold, args.skip_bad, args.image_dir, args.id_col, args.meta)
    predict(cfg.competition, Path(args.workdir), args.inputs, Path(args.out), opts,
            Scoring(args.blend, args.device, progress=not args.quiet))
