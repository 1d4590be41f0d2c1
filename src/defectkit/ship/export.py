"""Export the blended ensemble as a bundle that runs without torch: one ONNX file per fold model (TTA
and normalisation inside the graph), bundle.json, refs.npz and the runtime package."""
from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from defectkit.core.fileio import file_hash, write_json_atomic
from defectkit.core.layout import REFIT
from defectkit.ensemble.members import Ensemble, Member
from defectkit.ship.exporters import Exporter, get_exporter
from defectkit.ship.predict import load_member
from defectkit.ship.runtime.spec import BundleSpec, ExperimentEntry, ModelEntry
from defectkit.train.checkpoint import Checkpoint
from defectkit.train.engine import D4
from defectkit.train.models import CachedPrefixNet, run_prefix

RUNTIME = Path(__file__).resolve().parent / "runtime"  # stdlib + numpy + OpenCV: shipped whole
RUNTIME_PACKAGE = "defect_runtime"  # its name inside a bundle


class ExportNet(nn.Module):
    """uint8 (B, H, W, 3) RGB images -> (B,) probabilities, as train.py predicted them: the
    recipe's normalisation, its first `tta` symmetries batched together, and (cache_frozen) the
    frozen stages' output rounded to float16 before the rest of the network."""

    def __init__(self, model: nn.Module, tta: int, mean, std, freeze_stages: int = 0, cache_frozen: bool = False):
        super().__init__()
        self.model, self.tta = model.eval(), int(tta)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.rest = CachedPrefixNet(model, freeze_stages) if cache_frozen else None

    @classmethod
    def of(cls, model: nn.Module, ck: Checkpoint) -> ExportNet:
        """The net a fold checkpoint predicted with: its TTA, normalisation and frozen-stage cache."""
        return cls(model, ck.tta, ck.mean, ck.std, ck.freeze_stages, ck.cache_frozen)

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


def export_member(m: Member, path: Path, exporter: Exporter) -> tuple[dict, tuple]:
    """One fold model exported at `path`; returns (its checkpoint, its preprocessing (hw, resize, crop))."""
    model, ck = load_member(m)
    hw, resize, crop = ck.shape_key
    net = ExportNet.of(model, ck).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter.export(net, torch.zeros((2, *hw, 3), dtype=torch.uint8), path)
    return ck, (hw, resize, crop)


def export_experiment(ens: Ensemble, exp: str, tmp: Path, exporter: Exporter, refs: dict, sources: dict,
                      say=print) -> ExperimentEntry:
    """Every scored model of one experiment into `tmp`/models (their OOF references into `refs`)."""
    folds, refit, pre = [], None, None
    for m in ens.scored_members(exp):
        rel = f"models/{exp}_fold{m.fold}{exporter.suffix}"
        ck, pre = export_member(m, tmp / rel, exporter)
        refs[f"{exp}/fold{m.fold}"] = m.ref
        sources[str(m.checkpoint)] = file_hash(m.checkpoint, 64)
        entry = ModelEntry(rel, f"{exp}/fold{m.fold}", m.fold, ck.tta, ck.arch, ck.cache_frozen,
                           round((tmp / rel).stat().st_size / 2**20, 2), ens.refit if m.fold == REFIT else "")
        if m.fold == REFIT:
            refit = entry
        else:
            folds.append(entry)
        say(f"exported {exp} fold {m.fold} -> {rel} ({entry.mb} MB)")
    return ExperimentEntry(exp, ens.weights[exp], pre[0], pre[1], pre[2], folds, refit)


def bundle_spec(ens: Ensemble, experiments: list[ExperimentEntry], files: dict, image_ext: str,
                exporter: Exporter, sources: dict) -> BundleSpec:
    import timm
    extra = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "exporter": exporter.name, "chosen_by": ens.operating_points["chosen"].get("by", "accuracy"),
             "input": {"dtype": "uint8", "layout": "NHWC", "channels": "RGB", "note": "normalisation and TTA are "
                       "inside each model; resize/crop as preprocess says (imaging.fit_image)"},
             "source": {"blend_json": str(ens.source), "blend_json_sha256": ens.source_hash,
                        "checkpoints_sha256": sources},
             "versions": {"torch": torch.__version__, "timm": timm.__version__, **exporter.versions()}}
    return BundleSpec(competition=ens.competition, method=ens.method, space=ens.space, link=ens.link,
                      intercept=ens.intercept, experiments=experiments,
                      operating_points={k: float(v["threshold"]) for k, v in ens.operating_points.items()},
                      image_ext=image_ext, runtime=exporter.runtime, stack_meta=ens.stack_meta, files=files,
                      extra=extra)


def export(ens: Ensemble, out: Path, image_ext: str, say=print, exporter: str = "onnx") -> BundleSpec:
    """Write the bundle into `out` (replacing one there, only once it is complete)."""
    exp_ = get_exporter(exporter)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    refs, sources = {}, {}
    experiments = [export_experiment(ens, exp, tmp, exp_, refs, sources, say) for exp in ens.members]
    np.savez(tmp / "refs.npz", **refs)
    (tmp / RUNTIME_PACKAGE).mkdir()
    for src in sorted(RUNTIME.glob("*.py")):
        if src.name != "entry.py":
            shutil.copyfile(src, tmp / RUNTIME_PACKAGE / src.name)
    shutil.copyfile(RUNTIME / "entry.py", tmp / "predict_bundle.py")
    files = {str(p.relative_to(tmp)): file_hash(p, 64) for p in sorted(tmp.rglob("*")) if p.is_file()}
    spec = bundle_spec(ens, experiments, files, image_ext, exp_, sources)
    write_json_atomic(tmp / "bundle.json", spec.to_json())
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return spec
