"""Pseudo-labels: the test rows the current blend is sure of, as extra training rows.

python src/pseudo.py --help; the code is defectkit.cli.pseudo (this script only calls it).
"""
import sys

from defectkit.cli.pseudo import main

if __name__ == "__main__":
    sys.exit(main())
