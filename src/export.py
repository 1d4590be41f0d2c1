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

import argparse
import datetime
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from checks import InputError, cli_main
from config import add_config_flags, config_from_args
from engine import D4
from ensemble import Ensemble, Member, load_ensemble
from fileio import file_hash, write_json_atomic
from layout import REFIT, Layout
from models import CachedPrefixNet, run_prefix
from models import shape_key
from predict import load_member

SRC = Path(__file__).resolve().parent
SHIPPED = {"imaging.py": "imaging.py", "image_inputs.py": "image_inputs.py", "names.py": "names.py",
           "combine.py": "combine.py", "bundle_runner.py": "predict_bundle.py"}
OPSET = 17


class ExportNet(nn.Module):
    """uint8 (B, H, W, 3) RGB images -> (B,) probabilities, as train.py predicted them: the
    recipe's normalisation, its first `tta` symmetries batched together, and (cache_frozen) the
    frozen stages' output rounded to float16 before the rest of the network."""

    def __init__(self, model: nn.Module, ck: dict):
        super().__init__()
        self.model, self.tta = model.eval(), int(ck["tta"])
        self.register_buffer("mean", torch.tensor(ck["mean"], dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(ck["std"], dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.rest = CachedPrefixNet(model, ck["freeze_stages"]) if ck.get("cache_frozen") else None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.rest is None:
            return self.model(x)
        feats = run_prefix(self.model, self.rest.freeze_stages, x)
        return self.rest(feats.half().float())  # what the float16 cache did to the frozen stages' output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        views = torch.cat([t(x) for t in D4[:self.tta]], 0)
        p = torch.sigmoid(self.logits(views).squeeze(1).float())
        return p.view(self.tta, -1).mean(0)


def export_member(m: Member, path: Path) -> tuple[dict, dict]:
    """One fold model as ONNX at `path`; returns (its checkpoint, its preprocessing)."""
    model, ck = load_member(m)
    hw, resize, crop = shape_key(ck)
    net = ExportNet(model, ck).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros((2, *hw, 3), dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: no onnxscript needed
        torch.onnx.export(net, (dummy,), str(path), input_names=["images"], output_names=["prob"],
                          dynamic_axes={"images": {0: "batch"}, "prob": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    return ck, {"hw": list(hw), "resize": resize, "border_crop": crop}


def bundle_spec(ens: Ensemble, experiments: list[dict], files: dict, image_ext: str) -> dict:
    import onnx
    import onnxruntime
    import timm
    ops = {k: float(v["threshold"]) for k, v in ens.operating_points.items()}
    return {"format": 1, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "competition": ens.competition, "method": ens.method, "intercept": ens.intercept,
            "stack_meta": ens.stack_meta,
            "experiments": experiments,
            "operating_points": ops, "chosen_by": ens.operating_points["chosen"].get("by", "accuracy"),
            "input": {"dtype": "uint8", "layout": "NHWC", "channels": "RGB", "note": "normalisation and TTA are "
                      "inside each ONNX graph; resize/crop as preprocess says (imaging.fit_image)"},
            "image_ext": image_ext, "source": {"blend_json": str(ens.source), "blend_json_sha256": ens.source_hash},
            "versions": {"torch": torch.__version__, "timm": timm.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__, "opset": OPSET},
            "files": files}


def export(ens: Ensemble, out: Path, image_ext: str, say=print) -> dict:
    """Write the bundle into `out` (replacing one there, only once it is complete)."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    experiments, refs, sources = [], {}, {}
    for exp in ens.members:
        entry = {"name": exp, "weight": ens.weights[exp], "folds": [], "refit": None}
        for m in ens.scored_members(exp):
            rel = f"models/{exp}_fold{m.fold}.onnx"
            ck, entry["preprocess"] = export_member(m, tmp / rel)
            refs[f"{exp}/fold{m.fold}"] = m.ref
            sources[str(m.checkpoint)] = file_hash(m.checkpoint, 64)
            item = {"fold": m.fold, "onnx": rel, "ref": f"{exp}/fold{m.fold}", "tta": ck["tta"],
                    "cache_frozen": bool(ck.get("cache_frozen")), "arch": ck["arch"],
                    "mb": round((tmp / rel).stat().st_size / 2**20, 2)}
            if m.fold == REFIT:
                entry["refit"] = {**item, "use": ens.refit}
            else:
                entry["folds"].append(item)
            say(f"exported {exp} fold {m.fold} -> {rel} ({item['mb']} MB)")
        experiments.append(entry)
    np.savez(tmp / "refs.npz", **refs)
    for src, dst in SHIPPED.items():
        shutil.copyfile(SRC / src, tmp / dst)
    files = {str(p.relative_to(tmp)): file_hash(p, 64) for p in sorted(tmp.rglob("*")) if p.is_file()}
    spec = bundle_spec(ens, experiments, files, image_ext)
    spec["source"]["checkpoints_sha256"] = sources
    write_json_atomic(tmp / "bundle.json", spec)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return spec


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    p.add_argument("--out", help="the bundle's folder (default: submissions/bundle)")
    p.add_argument("--blend", help="a blend.json (default: submissions/blend.json)")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    layout = Layout(args.workdir)
    out = Path(args.out) if args.out else layout.bundle
    if out.exists() and not (out / "bundle.json").exists():
        raise InputError(f"{out}: exists and is not a bundle; give another --out")
    spec = export(load_ensemble(layout, args.blend), out, cfg.competition.image_ext)
    models = [f for e in spec["experiments"] for f in e["folds"] + [e["refit"]] if f]
    print(f"wrote {out}: {len(models)} ONNX models ({sum(f['mb'] for f in models):.1f} MB); "
          f"run python {out / 'predict_bundle.py'} IMAGES --out preds.csv")


if __name__ == "__main__":
    sys.exit(main())
