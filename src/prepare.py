"""Build input/<competition>/ in Kaggle's shape from a known source.

    python src/prepare.py elpv                                   # the embedded default competition
    python src/prepare.py elpv --from DIR                        # the same from a copy (labels.csv, images/)
    python src/prepare.py folder PATH --good NAME --defect NAME [--test NAME] --name COMP
    python src/prepare.py yolo PATH --name COMP                  # images/ + labels/ (YOLO boxes)
    python src/prepare.py kaggle --slug SLUG [--name COMP]
    python src/prepare.py --config configs/nexperia.yaml          # the source named in a YAML

A competition folder holds train.csv (id, target, ...), train/<id><ext>, test/<id><ext>,
sample_submission.csv and, when the test labels are known (a held-out split), the answers
solution.csv (id, target, Usage) that only local scoring reads. A marker file records the
arguments: a second run with the same arguments does nothing; an interrupted run is repaired;
--force rebuilds every image whose source changed. `folder` and `yolo` also write
configs/<name>.yaml (preset: auto, and an input shape that suits the images' sizes) and
print the one command to run next.
"""
import sys

from defectkit.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main())
