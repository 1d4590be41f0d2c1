"""The whole competition in one command: prepare, folds, every arch x fold, blend, submission.

python src/run.py --help; the code is defectkit.cli.run (this script only calls it).
"""
import sys

from defectkit.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
