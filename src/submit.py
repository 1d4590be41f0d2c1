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
import sys

from defectkit.cli.submit import main

if __name__ == "__main__":
    sys.exit(main())
