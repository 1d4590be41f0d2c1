"""Export the blended ensemble as a bundle that runs without torch: one ONNX file per fold model (TTA
and normalisation inside the graph), bundle.json, refs.npz and the runtime package."""
from __future__ import annotations

import datetime
import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from defectkit.core.checks import InputError, read_csv
from defectkit.core.fileio import file_hash, write_json_atomic
from defectkit.core.layout import REFIT, Layout
from defectkit.core.records import FoldRecord, read_json
from defectkit.ensemble.members import Ensemble, Member
from defectkit.runtime.imaging import Preprocess
from defectkit.runtime.runner import run_model, session
from defectkit.runtime.spec import BundleSpec, ExperimentEntry, ModelEntry
from defectkit.ship.exporters import Exporter, get_exporter
from defectkit.ship.predict import load_member
from defectkit.train.checkpoint import Checkpoint
from defectkit.train.engine import D4
from defectkit.train.models import CachedPrefixNet, run_prefix

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"  # stdlib + numpy + OpenCV: shipped whole
RUNTIME_PACKAGE = "defect_runtime"  # its name inside a bundle
MAX_INT8_DRIFT = 0.1  # a quantised model whose probability on a check image moves further from fp32's is refused


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


@dataclass
class ExportOptions:
    """The model format (`target`: a registered exporter), its precision, and for int8 the images
    of the training set that calibrate it, at a model's input shape (`calib(Preprocess) -> uint8 NHWC`)."""

    target: str = "onnx"
    precision: str = "fp32"
    calib: Callable | None = None
    n_check: int = 16  # of the calibration images, kept in the bundle to check a quantised model there


def export_member(m: Member, path: Path, exporter: Exporter, opts: ExportOptions, refs: dict, say=print) -> tuple:
    """One fold model exported at `path`; returns (its checkpoint, its preprocessing (a Preprocess:
    its geometry), the drift bound of a quantised model (0 for fp32)). For int8, the bundle keeps a few
    calibration images and the fp32 model's scores on them (`refs`), and the bound the quantised
    model kept from them at export, which the runner checks before it scores anything."""
    model, ck = load_member(m)
    pre = ck.preprocess.geometry
    net = ExportNet.of(model, ck).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    calib = opts.calib(pre) if opts.precision != "fp32" else None
    note = exporter.export(net, torch.zeros((2, *pre.hw, 3), dtype=torch.uint8), path, opts.precision, calib)
    if note:
        say(f"{path.name}: int8 with the first {note['fp32_layers']} of {note['layers']} layers in fp32 "
              f"(scores on the calibration images correlate with fp32's at {note['corr']})")
    if calib is None:
        return ck, pre, 0.0
    check = calib[:opts.n_check]
    with torch.no_grad():
        want = net(torch.from_numpy(check)).numpy().astype(np.float64)
    got = run_model(session(path, 1, exporter.runtime), check, 1, f"{path.name}: the {exporter.runtime} "
                    f"{opts.precision} model, on its {len(check)} check images,")
    drift = float(np.abs(got - want).max())
    if drift > MAX_INT8_DRIFT:  # e.g. OpenVINO's int8 transformations reach the anomaly member's fp32 distances
        raise InputError(f"{path.name}: the {exporter.runtime} {opts.precision} model's scores on {len(check)} check "
                         f"images move by up to {drift:.3f} from fp32's (at most {MAX_INT8_DRIFT} is accepted); "
                         "export it with --precision fp32, or with another --target")
    key = f"{m.exp}/fold{m.fold}"
    refs[f"{key}/check_images"], refs[f"{key}/check_scores"] = check, want
    return ck, pre, drift * 2 + 0.002


def export_experiment(ens: Ensemble, exp: str, tmp: Path, exporter: Exporter, parts: tuple,
                      say=print) -> ExperimentEntry:
    """Every scored model of one experiment into `tmp`/models; `parts` = (options, the references
    it fills, the checkpoints' sha256 it fills)."""
    opts, refs, sources = parts
    folds, refit, pre = [], None, None
    for m in ens.scored_members(exp):
        rel = f"models/{exp}_fold{m.fold}{exporter.suffix}"
        ck, pre, bound = export_member(m, tmp / rel, exporter, opts, refs, say)
        refs[f"{exp}/fold{m.fold}"] = m.ref
        sources[str(m.checkpoint)] = file_hash(m.checkpoint, 64)
        entry = ModelEntry(rel, f"{exp}/fold{m.fold}", m.fold, ck.tta, ck.arch, ck.cache_frozen,
                           round(model_mb(tmp / rel), 2), ens.refit if m.fold == REFIT else "", opts.precision,
                           bound)
        if m.fold == REFIT:
            refit = entry
        else:
            folds.append(entry)
        say(f"exported {exp} fold {m.fold} -> {rel} ({entry.mb} MB, {opts.precision}"
            + (f", drift bound {bound:.4f}" if bound else "") + ")")
    return ExperimentEntry(exp, ens.weights[exp], pre, folds, refit)


def model_mb(path: Path) -> float:
    """A model's size with its weights file beside it (OpenVINO's .bin)."""
    return sum(p.stat().st_size for p in path.parent.glob(f"{path.stem}.*")) / 2**20


def bundle_spec(ens: Ensemble, experiments: list[ExperimentEntry], files: dict, sources: dict, image_ext: str,
                how: tuple[Exporter, ExportOptions]) -> BundleSpec:
    """bundle.json's content; `how` = (exporter, options), as write_bundle got it."""
    import timm
    exporter, precision = how[0], how[1].precision
    extra = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "exporter": exporter.name, "precision": precision,
             "chosen_by": ens.operating_points["chosen"].get("by", "accuracy"),
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


def write_bundle(ens: Ensemble, tmp: Path, image_ext: str, how: tuple, say=print) -> BundleSpec:
    """Every model, the runtime, the references and bundle.json into `tmp`; `how` = (exporter, options)."""
    exp_, opts = how
    refs, sources = {}, {}
    experiments = [export_experiment(ens, exp, tmp, exp_, (opts, refs, sources), say) for exp in ens.members]
    np.savez(tmp / "refs.npz", **refs)
    (tmp / RUNTIME_PACKAGE).mkdir()
    for src in sorted(RUNTIME.glob("*.py")):
        if src.name != "entry.py":
            shutil.copyfile(src, tmp / RUNTIME_PACKAGE / src.name)
    shutil.copyfile(RUNTIME / "entry.py", tmp / "predict_bundle.py")
    if exp_.runtime_module:  # an outside exporter's runtime travels with its models
        shutil.copyfile(importlib.import_module(exp_.runtime_module).__file__,
                        tmp / RUNTIME_PACKAGE / f"runtime_{exp_.runtime}.py")
    files = {str(p.relative_to(tmp)): file_hash(p, 64) for p in sorted(tmp.rglob("*")) if p.is_file()}
    spec = bundle_spec(ens, experiments, files, sources, image_ext, how)
    write_json_atomic(tmp / "bundle.json", spec.to_json())
    return spec


def export(ens: Ensemble, out: Path, image_ext: str, say=print, exporter: str = "onnx",
           opts: ExportOptions | None = None) -> BundleSpec:
    """Write the bundle into `out` (replacing one there, only once it is complete)."""
    opts = opts or ExportOptions(exporter)
    exp_ = get_exporter(opts.target)
    exp_.check_precision(opts.precision)
    if opts.precision != "fp32" and opts.calib is None:
        raise InputError(f"--precision {opts.precision}: needs calibration images (the training set)")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        spec = write_bundle(ens, tmp, image_ext, (exp_, opts), say)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a refused model or an interruption leaves no half-bundle
        raise
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    say(f"{out / 'bundle.json'} keeps the operating points (--operating-point NAME of predict_bundle.py): "
        + ", ".join(f"{k} {v:.4f}" for k, v in spec.operating_points.items()))
    return spec


def calib_images(layout: Layout, comp, n: int = 64, seed: int = 0) -> Callable:
    """`n` training images (a seeded draw) as a model sees them: calib(Preprocess) -> uint8 (n, h, w, 3)."""
    ids = read_csv(layout.train_csv(comp), "train table", (comp.id_col,))[comp.id_col].astype(str).to_numpy()
    pick = ids[np.random.default_rng(seed).permutation(len(ids))[:n]]

    def calib(pre: Preprocess) -> np.ndarray:
        return np.stack([pre.load(layout.train_dir(comp) / f"{i}{comp.image_ext}") for i in pick])
    return calib


def student_ensemble(layout: Layout, report: Path | None = None) -> Ensemble:
    """The distilled student (submissions/student.json) as an ensemble of one model: its full-data
    model's probability, the blend's operating points on its scale."""
    path = Path(report) if report else layout.submissions / "student.json"
    if not path.exists():
        raise InputError(f"{path}: no student yet; run python src/distill.py first")
    r = read_json(path, "student report")
    exp = r.get("experiment")
    paths = layout.fold(str(exp), REFIT)
    if not paths.meta.exists() or not paths.best.exists():
        raise InputError(f"{paths.meta}: the student {exp!r} is not complete; run python src/distill.py again")
    member = Member(exp, REFIT, paths, FoldRecord.read(paths.meta).run_id, np.zeros(1))
    return Ensemble(FoldRecord.read(paths.meta).competition, "student", {exp: 1.0}, {exp: []},
                    r["operating_points"], path, file_hash(path), None, "prob", "identity", 0.0, "only", {exp: member})
