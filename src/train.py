"""Train one backbone on one fold, keep the best epoch, write its OOF and test predictions.

python src/train.py --help; the code is defectkit.cli.train (this script only calls it).
"""
import sys

from defectkit.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
