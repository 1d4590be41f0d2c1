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
from __future__ import annotations

from pathlib import Path

from defectkit.cli import command
from defectkit.cli.flags import config_from_args, config_parser
from defectkit.core.checks import InputError
from defectkit.core.layout import Layout
from defectkit.ensemble.members import load_ensemble
from defectkit.ship.export import ExportOptions, calib_images, export, student_ensemble
from defectkit.ship.exporters import EXPORTERS, PRECISIONS


@command
def main(argv=None) -> int:
    p = config_parser(__doc__)
    p.add_argument("--out", help="the bundle's folder (default: submissions/bundle)")
    p.add_argument("--blend", help="a blend.json (default: submissions/blend.json)")
    p.add_argument("--student", action="store_true", help="the distilled student alone (src/distill.py) instead of "
                                                          "the ensemble (default --out: submissions/student_bundle)")
    p.add_argument("--target", default="onnx", help=f"the model format: {', '.join(EXPORTERS)} (default: onnx)")
    p.add_argument("--precision", default="fp32", help="fp32 or int8 (static quantisation calibrated on 64 training "
                                                       "images)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    layout = Layout(args.workdir)
    out = Path(args.out) if args.out else (layout.submissions / "student_bundle" if args.student else layout.bundle)
    if out.exists() and not (out / "bundle.json").exists():
        raise InputError(f"{out}: exists and is not a bundle; give another --out")
    if args.precision not in PRECISIONS:
        raise InputError(f"--precision {args.precision!r}: expected one of {', '.join(PRECISIONS)}")
    ens = student_ensemble(layout) if args.student else load_ensemble(layout, args.blend)
    opts = ExportOptions(args.target, args.precision, calib_images(layout, cfg.competition))
    spec = export(ens, out, cfg.competition.image_ext, opts=opts)
    models = [f for e in spec.experiments for f in e.folds + [e.refit] if f]
    print(f"wrote {out}: {len(models)} {args.target} {args.precision} models ({sum(f.mb for f in models):.1f} MB); "
          f"run python {out / 'predict_bundle.py'} IMAGES --out preds.csv")
