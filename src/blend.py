"""Blend every experiment's out-of-fold predictions by OOF AUC and write the submission.

python src/blend.py --help; the code is defectkit.cli.blend (this script only calls it).
"""
import sys

from defectkit.cli.blend import main

if __name__ == "__main__":
    sys.exit(main())
