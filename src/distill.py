"""One fast student from the blend: one backbone fitted to the ensemble's out-of-fold scores.

python src/distill.py --help; the code is defectkit.cli.distill (this script only calls it).
"""
import sys

from defectkit.cli.distill import main

if __name__ == "__main__":
    sys.exit(main())
