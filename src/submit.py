"""Check the submission against sample_submission.csv, then submit it to Kaggle.

python src/submit.py --help; the code is defectkit.cli.submit (this script only calls it).
"""
import sys

from defectkit.cli.submit import main

if __name__ == "__main__":
    sys.exit(main())
