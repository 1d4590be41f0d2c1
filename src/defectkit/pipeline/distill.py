"""A blend, then its student: the teacher's scores (ensemble/distill.py), the student's recipe (one
backbone, by default the fastest of the blend's here, at the smallest input the blend used), its
training as fold "all" of its own experiment (and with `cv` its k-fold siblings), and its report.
See ensemble/distill.py for what the student learns."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from defectkit.core.checks import InputError
from defectkit.core.config import Config
from defectkit.core.fileio import file_hash
from defectkit.core.layout import REFIT, Layout
from defectkit.core.members import FitOptions
from defectkit.core.records import BlendReport, FoldRecord
from defectkit.ensemble.distill import teacher_scores, write_report, write_teacher
from defectkit.train.fold import train_fold
from defectkit.train.models import create_model


def student_config(cfg: Config, layout: Layout, blend: BlendReport, teacher: Path, arch: str | None,
                   over: dict) -> Config:
    """The student's recipe: the competition's, one backbone (`arch`, default the fastest of the
    blend's here), the smallest input the blend used (its resize, crop, freezing and cache), TTA x1,
    twice the epochs, the teacher's targets, its own name; `over` = fields given explicitly."""
    layout_cfgs = [FoldRecord.read(layout.fold_metas(e)[0]).recipe for e in blend.weights if layout.fold_metas(e)]
    if not layout_cfgs:
        raise InputError("the blend's experiments have no fold records here; distill where they were trained")
    smallest = min(layout_cfgs, key=lambda r: np.prod(r["img_size"]) if isinstance(r["img_size"], list)
                   else r["img_size"] ** 2)
    size = smallest["img_size"]
    pick = arch or fastest_arch(sorted({r["archs"][0] for r in layout_cfgs}),
                                tuple(size) if isinstance(size, list) else (size, size))
    rec = dataclasses.replace(cfg.recipe, **{k: smallest[k] for k in ("img_size", "aspect_ratio", "resize",
                                                                      "border_crop", "freeze_stages",
                                                                      "cache_frozen", "pool") if k in smallest})
    # twice the recipe's epochs: a student keeps learning from soft targets long after labels stop
    # teaching (Beyer et al. 2022, "a good teacher is patient"; on ELPV 10 epochs beat 5)
    fields = {"archs": [pick], "tta": 1, "teacher": str(teacher), "name": "{arch}_student{img_size}",
              "blend_method": "mean", "refit": "none", "stack_meta": [], "epochs": 2 * rec.epochs, **over}
    rec = dataclasses.replace(rec, **fields)
    return dataclasses.replace(cfg, recipe=rec, auto=False)


def fastest_arch(archs: list[str], hw: tuple[int, int], reps: int = 5) -> str:
    """The backbone that scores one image at `hw` fastest on this machine (the median of `reps`
    forward passes each, random weights: the speed does not depend on them)."""
    if len(archs) == 1:
        return archs[0]
    secs = {}
    x = torch.randn(1, 3, *hw)
    for a in archs:
        net = create_model(a, pretrained="none")[0].eval()
        with torch.inference_mode():
            net(x)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - t0)
        secs[a] = float(np.median(times))
    return min(secs, key=secs.get)


def distill(cfg: Config, base: Path, arch: str | None = None, with_test: bool = False, cv: bool = False,
            over: dict | None = None) -> dict:
    """Train the student (and with `cv` its k-fold siblings); write submissions/student.json."""
    layout = Layout(base)
    path = layout.result("blend.json")
    if not path.exists():
        raise InputError(f"{path}: no blend yet; run python src/blend.py (or src/run.py) first")
    blend = BlendReport.read(path)
    t = teacher_scores(cfg, base, blend)
    name = f"teacher_{file_hash(path)}{'_test' if with_test else ''}.csv"  # one table per blend and kind
    teacher = write_teacher(t, layout.data_dir(cfg.competition) / name, with_test)
    scfg = student_config(cfg, layout, blend, teacher, arch, over or {})
    scfg = dataclasses.replace(scfg, recipe=dataclasses.replace(scfg.recipe, patience=0))  # its last epoch
    a = scfg.recipe.archs[0]
    again = FitOptions(force=True)
    record = train_fold(scfg, a, REFIT, base, again)
    folds = [train_fold(scfg, a, k, base, again) for k in range(scfg.recipe.n_folds)] if cv else []
    return write_report(scfg, base, (blend, t, with_test), record, folds)
