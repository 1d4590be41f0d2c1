"""Grad-CAM heat maps of what a fold's model looks at, and localisation scores against masks or boxes.

python src/explain.py --help; the code is defectkit.cli.explain (this script only calls it).
"""
import sys

from defectkit.cli.explain import main

if __name__ == "__main__":
    sys.exit(main())
