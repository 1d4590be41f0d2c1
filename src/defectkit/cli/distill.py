"""One fast student from the blend: one backbone trained on every training row to reproduce the
blend's out-of-fold scores (their rank percentiles), for an inspection line.

    python src/distill.py --competition elpv [--arch tf_efficientnet_lite0] [--with-test] [--cv] [--epochs N]
    python src/export.py --competition elpv --student [--precision int8] [--target onnx|openvino]

The student is fold "all" of its own experiment (<arch>_student<size>), at the smallest input the
blend used, TTA x1, for twice the recipe's epochs; --with-test adds the test rows with the blend's
scores as soft pseudo-labels (for a test set known in advance; a line's new images have none);
--cv also trains k-fold students on the same targets, whose OOF AUC is the student's honest
estimate (without it there is none: its training rows are the ones it is scored on).
submissions/student.json compares it with the ensemble: rank correlation with the teacher on the
test rows, held-out AUC and accuracy at the chosen point when the answers are known.
"""
from __future__ import annotations

from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import config_from_args, config_parser
from defectkit.pipeline.distill import distill


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    p.add_argument("--arch", help="the student's backbone (default: the fastest of the blend's)")
    p.add_argument("--with-test", action="store_true", help="also fit the test rows' blend scores")
    p.add_argument("--cv", action="store_true", help="k-fold students too: an honest estimate on the OOF rows")
    p.add_argument("--epochs", type=int, help="default: twice the recipe's")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    over = {"epochs": args.epochs} if args.epochs else {}
    r = distill(cfg, Path(args.workdir), args.arch, args.with_test, args.cv, over)
    lb = r.get("held_out")
    print(f"student {r['experiment']}: rank correlation with the ensemble on the test rows "
          f"{r['rank_corr_with_teacher_test']:.3f}"
          + (f"; held-out AUC {lb['student_auc']:.4f} (ensemble {lb['ensemble_auc']:.4f}), accuracy "
             f"{lb['student_acc']:.4f} (ensemble {lb['ensemble_acc']:.4f})" if lb else "")
          + (f"; k-fold students' OOF AUC {r['cv']['student_oof_auc']:.4f}" if "cv" in r else
             "; no honest estimate without --cv")
          + "; submissions/student.json; export it with python src/export.py --student")
    return 0
