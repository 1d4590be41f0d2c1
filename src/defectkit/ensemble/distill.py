"""One fast student from the blend: the ensemble's accuracy in a single small model.

The teacher's view of each training image is its out-of-fold score from the blend (the blend
recomputed from blend.json's experiments, which it reproduces exactly), as a rank percentile
within all OOF scores: a number in [0, 1] on the scale of the blend's operating points once they
are turned into percentiles too. The student (one backbone, by default the fastest of the blend's
at the smallest input size it used, TTA x1) trains on every training row fitting those numbers
instead of the labels (`recipe.teacher`), optionally with the test rows' teacher scores too
(`with_test`: soft pseudo-labels), as fold "all" of its own experiment; with `cv`, k-fold students
on the same targets give an honest estimate on the OOF rows. A student experiment is never blended.
Here: the teacher's scores, its table, the operating points on the student's scale and the student's
report; the workflow that trains it is pipeline/distill.py (a stage never trains the next one).
A blend with full-data refits teaches the same way: its training rows' targets are still the fold
models' OOF scores (a refit has no honest view of them), its test rows' are the blend's test scores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.core.config import Config
from defectkit.core.fileio import write_csv_atomic, write_json_atomic
from defectkit.core.layout import REFIT, Layout
from defectkit.core.records import BlendReport
from defectkit.ensemble.experiments import load_inputs
from defectkit.ensemble.methods import compute_blend
from defectkit.ensemble.report import read_solution
from defectkit.runtime.combine import rank_pct


def teacher_scores(cfg: Config, base: Path, blend: BlendReport) -> dict:
    """The blend's OOF and test scores, recomputed from its experiments: {ids, oof, y, test_ids, test}."""
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


def student_points(blend: BlendReport, oof: np.ndarray) -> dict:
    """The blend's operating points on the student's scale: each threshold as the share of OOF
    scores below it."""
    return {k: {**v, "threshold": float(rank_pct(oof, np.array([v["threshold"]]))[0]),
                "blend_threshold": float(v["threshold"])} for k, v in blend.operating_points.items()}


def write_report(scfg: Config, base: Path, teacher: tuple, record, folds: list) -> dict:
    """submissions/student.json: the student against the ensemble it came from (the teacher's own
    scores, the local leaderboard when the answers are known, the k-fold students' OOF AUC), and
    the operating points on its scale; `teacher` = (the blend, its scores, whether the test rows were fitted)."""
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

