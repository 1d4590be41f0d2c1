"""Export the blended ensemble as a bundle that scores images without torch (ONNX + a runner).

python src/export.py --help; the code is defectkit.cli.export (this script only calls it).
"""
import sys

from defectkit.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
