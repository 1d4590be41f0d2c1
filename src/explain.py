"""Grad-CAM heat maps of what a fold's model looks at, for the quality check that it looks at
the defect and not at the border or the printed text.

    python src/explain.py --competition elpv --exp tf_efficientnet_lite0_cpu160 --fold 0 [--n 8]

Reads the fold's best checkpoint and its OOF predictions, and writes one PNG grid per group to
models/<exp>/gradcam/fold<k>_{confident_defects,missed_defects,false_alarms}.png:
  confident_defects  defects the model is most sure of (what it has learnt to see)
  missed_defects     defects with the lowest scores (false negatives)
  false_alarms       good cells with the highest scores (false positives)
The threshold between "missed" and "found" is the one that maximises OOF accuracy.

With --masks DIR (one mask image per id, non-zero = defect) or --boxes CSV (id, x_1, y_1, x_2, y_2),
it scores where every fold model looks instead (localise.py): the share of the CAM's energy inside
the defect areas and the pointing game, per fold and overall, written to
models/<exp>/gradcam/localisation_<cam>_l<layer>.{json,csv} with a histogram and the worst cases:

    python src/explain.py --competition C --exp EXP --boxes input/C/defect_boxes.csv [--cam layercam] [--layer -2]
"""
import sys

from defectkit.cli.explain import main

if __name__ == "__main__":
    sys.exit(main())
