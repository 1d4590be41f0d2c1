"""Score images with this bundle: numpy, OpenCV and onnxruntime only (no torch, no timm, no
repository). export.py copies this file into the bundle as predict_bundle.py, beside the package
defect_runtime/ (the runner and what it needs), bundle.json, refs.npz and models/*.onnx.

    python bundle/predict_bundle.py IMAGES_OR_FOLDERS_OR_CSV... --out preds.csv
           [--operating-point chosen|recall_95|recall_99 | --threshold T] [--skip-bad] [--threads N]
           [--meta CSV]   (id + metadata columns, for a stacker fitted with them)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from defect_runtime.runner import ScoreOptions, main, predict  # noqa: E402,F401 (the bundle's folder is on the path)

if __name__ == "__main__":
    sys.exit(main())
