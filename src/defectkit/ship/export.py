"""Export the blended ensemble as a bundle that runs without torch: one ONNX file per fold model (TTA
and normalisation inside the graph), bundle.json, refs.npz and the runtime package."""
from __future__ import annotations

import datetime
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from defectkit.core.fileio import file_hash, write_json_atomic
from defectkit.core.layout import REFIT
from defectkit.ensemble.members import Ensemble, Member
from defectkit.ship.predict import load_member
from defectkit.train.engine import D4
from defectkit.train.models import CachedPrefixNet, run_prefix, shape_key

RUNTIME = Path(__file__).resolve().parent / "runtime"  # stdlib + numpy + OpenCV: shipped whole
RUNTIME_PACKAGE = "defect_runtime"  # its name inside a bundle


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
    (tmp / RUNTIME_PACKAGE).mkdir()
    for src in sorted(RUNTIME.glob("*.py")):
        if src.name != "entry.py":
            shutil.copyfile(src, tmp / RUNTIME_PACKAGE / src.name)
    shutil.copyfile(RUNTIME / "entry.py", tmp / "predict_bundle.py")
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
