"""Stratified (optionally grouped) k-fold assignment: writes folds/<competition>.csv.

    python src/make_folds.py --competition elpv [--n-folds 5] [--seed 42] [--group-col lot]
"""
import sys

from defectkit.cli.make_folds import main

if __name__ == "__main__":
    sys.exit(main())
