"""Score new images with the blended ensemble that blend.py chose (submissions/blend.json).

python src/predict.py --help; the code is defectkit.cli.predict (this script only calls it).
"""
import sys

from defectkit.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
