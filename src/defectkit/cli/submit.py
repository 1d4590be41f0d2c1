"""Check submissions/submission.csv against sample_submission.csv, then submit it to Kaggle.

    python src/submit.py --competition nexperia -m "lite0+lite1 hill blend" [--dry-run]
    python src/submit.py --competition nexperia --slug nexperia-kaggle-comp -m "..." --file other.csv

The file must have exactly the columns, ids and row order of sample_submission.csv, values
in [0, 1] and no NaN. The Kaggle slug is --slug, or the competition's `kaggle_slug` (or `source.slug`).

A code competition (the notebook predicts offline on Kaggle):
    python src/export.py --competition C                                    # the ONNX bundle first
    python src/submit.py --competition C --code --dataset ME/c-bundle --kernel ME/c-submit [--dry-run]
uploads submissions/bundle as a Kaggle dataset (a new version when it exists) and pushes a
notebook that runs it on the competition's test images and writes submission.csv; --dry-run
writes both folders to submissions/kaggle_code/ and checks them, without calling Kaggle.
"""
from __future__ import annotations

from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import config_from_args, config_parser
from defectkit.ship.submit import CodeTarget, Submission, submit, submit_code


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    p.add_argument("-m", "--message", default="", help="the submission's message (the version notes with --code)")
    p.add_argument("--file", help="default: submissions/submission.csv")
    p.add_argument("--slug", help="Kaggle competition slug (default: the config's source.slug)")
    p.add_argument("--dry-run", action="store_true", help="validate only")
    g = p.add_argument_group("code competitions")
    g.add_argument("--code", action="store_true", help="upload the bundle as a dataset and push a notebook")
    g.add_argument("--dataset", help="OWNER/NAME of the bundle's Kaggle dataset")
    g.add_argument("--kernel", help="OWNER/NAME of the notebook")
    g.add_argument("--bundle", help="the exported bundle (default: submissions/bundle)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    if args.code:
        target = CodeTarget(args.dataset or "", args.kernel or "", args.slug, args.message,
                            args.bundle and Path(args.bundle))
        submit_code(cfg.competition, Path(args.workdir), target, args.dry_run)
        return 0
    print(submit(cfg.competition, Path(args.workdir),
                 Submission(args.message, args.file and Path(args.file), args.slug, args.dry_run)))
