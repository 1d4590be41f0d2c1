"""Blend the out-of-fold predictions of every experiment by OOF AUC and write the submission.

    python src/blend.py --competition elpv [--blend-method hill|rank|mean] [--exps A B ...] [--strict]

Reads oof/<exp>/fold<k>.{csv,json} and test_fold<k>.csv of every experiment made for this
competition with the current folds file; checks them; prints per-experiment OOF AUC, per-fold
mean +- std and correlations; finds blend weights (hill = Caruana ensemble selection with
replacement on rank-transformed OOF predictions, from the best single model, until no step
improves OOF AUC); cross-checks the weights fold-wise; reports operating points chosen on OOF;
scores against input/<comp>/solution.csv when it exists (local leaderboard); and writes
submissions/submission.csv (columns and row order of sample_submission.csv), blend.json and
roc.png as one result set: all three are replaced together, or none is.
"""
import sys

from defectkit.cli.blend import main

if __name__ == "__main__":
    sys.exit(main())
