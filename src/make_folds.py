"""Stratified (optionally grouped) k-fold assignment: writes folds/<competition>.csv.

python src/make_folds.py --help; the code is defectkit.cli.make_folds (this script only calls it).
"""
import sys

from defectkit.cli.make_folds import main

if __name__ == "__main__":
    sys.exit(main())
