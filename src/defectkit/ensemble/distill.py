"""One fast student from the blend: the ensemble's accuracy in a single small model.

The teacher's view of each training image is its out-of-fold score from the blend (the blend
recomputed from blend.json's experiments, which it reproduces exactly), as a rank percentile
within all OOF scores: a number in [0, 1] on the scale of the blend's operating points once they
are turned into percentiles too. The student (one backbone, by default the fastest of the blend's
at the smallest input size it used, TTA x1) trains on every training row fitting those numbers
instead of the labels (`recipe.teacher`), optionally with the test rows' teacher scores too
(`with_test`: soft pseudo-labels), as fold "all" of its own experiment; with `cv`, k-fold students
on the same targets give an honest estimate on the OOF rows. A student experiment is never blended.
A blend with full-data refits teaches the same way: its training rows' targets are still the fold
models' OOF scores (a refit has no honest view of them), its test rows' are the blend's test scores.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.core.config import Config
from defectkit.core.fileio import file_hash, write_csv_atomic, write_json_atomic
from defectkit.core.layout import REFIT, Layout
from defectkit.core.records import BlendReport
from defectkit.ship.runtime.combine import rank_pct


def teacher_scores(cfg: Config, base: Path, blend: BlendReport) -> dict:
    """The blend's OOF and test scores, recomputed from its experiments: {ids, oof, y, test_ids, test}."""
    from defectkit.ensemble.experiments import load_inputs
    from defectkit.ensemble.methods import compute_blend
    if blend.stack_meta:
        raise InputError(f"{blend.competition}: the blend is a stacker fitted with metadata "
                         f"({', '.join(e['col'] for e in blend.stack_meta['encoding'])}), which a student of images "
                         "alone cannot learn; blend without --stack-meta, then distill")
    inp = load_inputs(cfg.competition, Layout(base), blend.experiments or list(blend.weights), strict=True)
    b = compute_blend(inp, blend.requested_method or blend.method, "accuracy", None, blend.refit)
    if not np.allclose(b["auc"], blend.blend_oof_auc or b["auc"], atol=1e-5, equal_nan=True):
        raise InputError(f"blend.json says OOF AUC {blend.blend_oof_auc} but its experiments now blend to "
                         f"{b['auc']:.5f}; blend again, then distill")
    return {"ids": inp.folds["id"].to_numpy(), "y": inp.y, "oof": np.asarray(b["oof"], float),
            "test_ids": np.asarray(inp.test_ids), "test": np.asarray(b["test"], float)}


def write_teacher(t: dict, path: Path, with_test: bool) -> Path:
    """id, target: each training row's OOF score as a percentile of all OOF scores (and the test rows'
    scores on the same scale with `with_test`)."""
    ids, target = list(t["ids"]), list(rank_pct(t["oof"], t["oof"]))
    if with_test:
        ids += list(t["test_ids"])
        target += list(rank_pct(t["oof"], t["test"]))
    write_csv_atomic(pd.DataFrame({"id": ids, "target": np.clip(target, 0, 1)}), path)
    return path


def read_teacher(path: Path, train_ids, test_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(soft targets of the training rows in order, indices of test rows it names, their targets)."""
    from defectkit.core.checks import check_columns, check_unique_ids, read_csv
    df = read_csv(path, "teacher table")
    check_columns(df, ["id", "target"], path)
    check_unique_ids(df, "id", path)
    t = pd.to_numeric(df["target"], errors="coerce")
    bad = (t.isna() | (t < 0) | (t > 1)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: row {row + 2}: target {str(df['target'].iloc[row])!r}; expected a number in [0, 1]")
    by_id = pd.Series(t.to_numpy(float), index=df["id"].astype(str))
    missing = [i for i in map(str, train_ids) if i not in by_id.index]
    if missing:
        raise InputError(f"{path}: no target for {len(missing)} training rows, e.g. {missing[:2]}; distill again")
    test_pos = {str(i): k for k, i in enumerate(test_ids)}
    on_test = [i for i in by_id.index if i in test_pos]
    return (by_id.loc[list(map(str, train_ids))].to_numpy(np.float32),
            np.array([test_pos[i] for i in on_test], int), by_id.loc[on_test].to_numpy(np.float32))


def student_points(blend: BlendReport, oof: np.ndarray) -> dict:
    """The blend's operating points on the student's scale: each threshold as the share of OOF
    scores below it."""
    return {k: {**v, "threshold": float(rank_pct(oof, np.array([v["threshold"]]))[0]),
                "blend_threshold": float(v["threshold"])} for k, v in blend.operating_points.items()}


def student_config(cfg: Config, layout: Layout, blend: BlendReport, teacher: Path, arch: str | None,
                   over: dict) -> Config:
    """The student's recipe: the competition's, one backbone (`arch`, default the fastest of the
    blend's here), the smallest input the blend used (its resize, crop, freezing and cache), TTA x1,
    twice the epochs, the teacher's targets, its own name; `over` = fields given explicitly."""
    from defectkit.core.records import FoldRecord
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
    import time

    import torch

    from defectkit.train.models import create_model
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
    from defectkit.train.fold import train_fold
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
    record = train_fold(scfg, a, REFIT, base, force=True)
    folds = [train_fold(scfg, a, k, base, force=True) for k in range(scfg.recipe.n_folds)] if cv else []
    return write_report(scfg, base, (blend, t, with_test), record, folds)


def write_report(scfg: Config, base: Path, teacher: tuple, record, folds: list) -> dict:
    """submissions/student.json: the student against the ensemble it came from (the teacher's own
    scores, the local leaderboard when the answers are known, the k-fold students' OOF AUC), and
    the operating points on its scale; `teacher` = (the blend, its scores, whether the test rows were fitted)."""
    from defectkit.ensemble.report import read_solution
    blend, t, with_test = teacher
    layout = Layout(base)
    exp = scfg.exp_name(scfg.recipe.archs[0])
    test = pd.read_csv(layout.fold(exp, REFIT).test, dtype={"id": str}).set_index("id")["pred"]
    student = test.loc[list(map(str, t["test_ids"]))].to_numpy(float)
    out = {"experiment": exp, "arch": scfg.recipe.archs[0], "img_size": scfg.recipe.img_size,
           "teacher": scfg.recipe.teacher, "with_test": with_test,
           "ensemble": {"method": blend.method, "experiments": list(blend.weights), "oof_auc": blend.blend_oof_auc},
           "rank_corr_with_teacher_test": round(float(pd.Series(student).corr(pd.Series(t["test"]), "spearman")), 4),
           "operating_points": student_points(blend, t["oof"]), "student_secs": record.secs}
    sol = read_solution(scfg.competition, layout, list(map(str, t["test_ids"])))
    if sol is not None:
        y = pd.to_numeric(sol[scfg.competition.submission_columns[1]]).to_numpy(int)
        thr = out["operating_points"]["chosen"]["threshold"]
        out["held_out"] = {"student_auc": round(metrics.auc(y, student), 5), "ensemble_auc": round(metrics.auc(
            y, t["test"]), 5), "student_acc": metrics.confusion_metrics(y, student, thr)["accuracy"],
            "ensemble_acc": metrics.confusion_metrics(y, t["test"], blend.operating_points["chosen"]["threshold"])[
                "accuracy"]}
    if folds:
        oof = pd.concat([pd.read_csv(layout.fold(exp, k).oof) for k in range(len(folds))])
        out["cv"] = {"student_oof_auc": round(metrics.auc(oof["target"].to_numpy(), oof["pred"].to_numpy()), 5)}
    write_json_atomic(layout.submissions / "student.json", out)
    return out

