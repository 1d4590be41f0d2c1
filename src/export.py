"""Export the blended ensemble (submissions/blend.json) as a bundle that runs without torch,
timm or this repository: one ONNX file per fold model, and a runner that needs only numpy,
OpenCV and onnxruntime.

    python src/export.py --competition elpv [--out submissions/bundle]
    python submissions/bundle/predict_bundle.py input/elpv/test --out preds.csv

Each ONNX model takes uint8 RGB images (B, H, W, 3) at its recipe's size and returns the defect
probability (B,), averaged over the recipe's TTA views, which it computes itself (the views of a
batch run as one batch); normalisation and, for a model trained on the frozen-feature cache, the
cache's float16 rounding are inside the graph. bundle.json holds the preprocessing (size, resize
mode, border crop, channel order), the blend's method and weights, the operating points chosen on
OOF predictions, and the versions and sha256 of everything; refs.npz holds each fold model's OOF
predictions (its reference in rank space). A blend with full-data refits (--refit only|both) ships
each experiment's refit (and, for both, its fold models), the refit's reference being all the
experiment's OOF predictions. The runner refuses a bundle whose files were edited.
"""
import sys

from defectkit.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
