"""Build input/<competition>/ in Kaggle's shape from a known source (elpv, folder, yolo, kaggle, ...).

python src/prepare.py --help; the code is defectkit.cli.prepare (this script only calls it).
"""
import sys

from defectkit.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main())
