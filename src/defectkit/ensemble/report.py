"""The whole blend: load, weigh, cross-check, choose operating points, score on the local leaderboard,
and publish submission.csv, blend.json and roc.png as one result set."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core import metrics
from defectkit.core.checks import InputError, check_binary_target, check_columns, check_unique_ids, read_csv
from defectkit.core.config import Competition
from defectkit.core.fileio import file_hash, write_csv_atomic
from defectkit.core.layout import Layout
from defectkit.core.plots import figure
from defectkit.core.records import BlendReport
from defectkit.core.results import ResultSet
from defectkit.ensemble.experiments import BlendInputs, Experiment, load_inputs
from defectkit.ensemble.methods import compute_blend
from defectkit.ensemble.stack import meta_features


def plot_roc(y, curves: dict, path: Path, title: str) -> None:
    from sklearn.metrics import roc_curve
    with figure(path, figsize=(5.5, 5), dpi=100) as (fig, ax):
        grid = np.linspace(0, 1, 1001)  # a fixed FPR grid: 40,000-point lines are slow to draw, no sharper
        both = len(np.unique(y)) == 2  # no curve without both classes
        for name, s in (curves.items() if both else ()):
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(grid, np.interp(grid, fpr, tpr), lw=2.5 if name.startswith("blend") else 1.2,
                    label=f"{name} (AUC {metrics.auc(y, s):.4f})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_xlabel("false positive rate"), ax.set_ylabel("defect recall (TPR)"), ax.set_title(title)
        if both:
            ax.legend(fontsize=7, loc="lower right")
        else:
            ax.text(0.5, 0.5, "one class among the OOF rows: no ROC curve", ha="center")


def score_table(exps: list[Experiment], y: np.ndarray) -> pd.DataFrame:
    O = np.column_stack([e.oof for e in exps])
    corr = np.corrcoef(np.argsort(np.argsort(O, axis=0), axis=0).T) if len(exps) > 1 else np.ones((1, 1))
    rows = []
    for j, e in enumerate(exps):
        others = np.delete(corr[j], j)
        fold_auc = [a for a in e.fold_auc if np.isfinite(a)]  # a fold without defects has none
        rows.append({"experiment": e.name, "oof_auc": round(metrics.auc(y, e.oof), 5),
                     "fold_auc_mean": round(float(np.mean(fold_auc)), 5) if fold_auc else float("nan"),
                     "fold_auc_std": round(float(np.std(fold_auc)), 5) if fold_auc else float("nan"),
                     "max_corr_others": round(float(others.max()), 4) if len(others) else float("nan")})
    return pd.DataFrame(rows).sort_values("oof_auc", ascending=False).reset_index(drop=True)


def read_solution(comp: Competition, layout: Layout, test_ids: list[str]) -> pd.DataFrame | None:
    """solution.csv checked like train.csv (unique ids, 0/1 answers, good rows), in the
    submission's id order; None when the competition has none."""
    path = layout.solution(comp)
    if not path.exists():
        return None
    id_col, col = comp.submission_columns
    sol = read_csv(path, "solution", (id_col,))
    check_columns(sol, [id_col, col], path)
    check_unique_ids(sol, id_col, path)
    check_binary_target(sol, col, path, need_defect=False)
    sol = sol.set_index(sol[id_col].astype(str))
    missing = set(test_ids) - set(sol.index)
    if missing:
        raise InputError(f"{path}: no answer for {len(missing)} submission ids, e.g. {sorted(missing)[:2]}")
    return sol.loc[test_ids]


def local_leaderboard(sol: pd.DataFrame | None, col: str, scores: dict, threshold: float) -> dict | None:
    """Scores of the submission (and of each experiment) on the answers, if there are any."""
    if sol is None:
        return None
    y = pd.to_numeric(sol[col]).to_numpy(int)
    out = {name: round(metrics.auc(y, s), 5) for name, s in scores.items()}  # NaN (null) without defects
    blend = scores["blend"]
    if "Usage" in sol:
        for usage in ("Public", "Private"):
            m = (sol["Usage"] == usage).to_numpy()
            if m.any() and len(np.unique(y[m])) == 2:
                out[f"blend_{usage.lower()}"] = round(metrics.auc(y[m], blend[m]), 5)
    out["at_oof_threshold"] = metrics.confusion_metrics(y, blend, threshold)
    return out


def load_meta(comp: Competition, layout: Layout, inp: BlendInputs, cols: list[str]) -> tuple | None:
    """The stacker's metadata: `cols` of train.csv (folds-file order) and test.csv (submission order)."""
    if not cols:
        return None
    tpath = layout.test_csv(comp)
    if not tpath.exists():
        raise InputError(f"{tpath}: not found; --stack-meta {' '.join(cols)} needs the test rows' metadata there "
                         f"({comp.submission_columns[0]} + the columns); prepare again with --force")
    train = read_csv(layout.train_csv(comp), "train table", (comp.id_col,))
    test = read_csv(tpath, "test table", (comp.id_col,))
    train = train.set_index(train[comp.id_col].astype(str)).loc[inp.folds["id"]]
    test = test.set_index(test[comp.id_col].astype(str))
    missing = [i for i in inp.test_ids if i not in test.index]
    if missing:
        raise InputError(f"{tpath}: no row for {len(missing)} submission ids, e.g. {missing[:2]}")
    return meta_features(train, test.loc[inp.test_ids], cols, str(tpath))


def print_blend(say, inp: BlendInputs, table: pd.DataFrame, b: dict, method: str) -> None:
    cv = b["cv"]
    if cv.get("note"):  # few or no defects: no weights, no cross-check
        say(f"blend ({b['method']}) of {', '.join(e.name for e in inp.exps)}: {cv['note']}")
    else:
        print_weights(say, inp, table, b)
    for name, why in cv.get("anomaly_member", {}).items():
        say(f"anomaly member {name}: {why}")
    for key, op in b["ops"].items():
        say(f"  OOF operating point {key:>18}: {describe_point(op)}")
    syn = cv.get("synthetic")
    if syn:
        say(f"  synthetic recall at the chosen point, by kind ({syn['n']} synthetic defects, a yardstick, not a "
            "result): " + ", ".join(f"{k} {v:.2f}" for k, v in syn["chosen_by_kind"].items()))


def print_weights(say, inp: BlendInputs, table: pd.DataFrame, b: dict) -> None:
    """The stacker's verdict, the weights, and the blend's OOF and cross-checked AUC against the best single."""
    best, cv = table.iloc[0], b["cv"]
    if "stack" in b:
        st = b["stack"]
        say(f"stack: logistic regression on {len(inp.exps)} experiments' OOF ranks"
            + (f" + {', '.join(st['meta'])}" if st["meta"] else "") + f": cross-checked AUC "
            f"{st['cross_check']['blend_auc_mean']:.5f} vs hill {st['hill_cross_check']:.5f}: "
            + ("stack chosen" if st["chosen"] else "not better, hill kept"))
    method = b["method"]
    say(f"blend ({method}) weights: " + ", ".join(f"{e.name} {x:.3f}" for e, x in zip(inp.exps, b["weights"])
                                               if x > 0 or method == "stack"))
    say(f"blend OOF AUC {b['auc']:.5f} (best single {best.experiment} {best.oof_auc:.5f}); "
        f"fold-wise cross-check: blend {cv['blend_auc_mean']:.5f} +- {cv['blend_auc_std']:.5f} vs best single "
        f"{cv['best_single_auc_mean']:.5f} (weights found on k-1 folds, scored on the held-out fold)")


def describe_point(op: dict) -> str:
    """One operating point in a line: threshold, false alarms, and the defect figures where defined."""
    out = (f"threshold {op['threshold']:.4f} accuracy {op['accuracy']:.3f} FPR {op['fpr']:.4f} "
           f"({op['fp']} of {op['fp'] + op['tn']} good)")
    if op.get("recall") is not None:
        out += f" recall {op['recall']:.3f} precision {op['precision']:.3f} F1 {op['f1']:.3f}"
    if op.get("synthetic_recall") is not None:
        out += f" synthetic recall {op['synthetic_recall']:.3f}"
    if op.get("resolved") is False:
        out += f" (too few good images to resolve {op['rate']:.1%}: above every good OOF score)"
    return out + (f" [= {op['by']}]" if op.get("by") in metrics.FALSE_ALARMS else "")


def print_leaderboard(say, lb: dict | None, comp: Competition) -> None:
    if lb:
        c = lb["at_oof_threshold"]
        if c["recall"] is None:
            say(f"local leaderboard ({comp.solution}): no defects among the answers (AUC undefined); at the OOF "
                f"threshold {c['fp']} of {c['fp'] + c['tn']} held-out good images flagged (FPR {c['fpr']:.4f})")
            return
        say(f"local leaderboard ({comp.solution}): blend test AUC {lb['blend']:.5f}"
            + "".join(f", {k.split('_')[1]} {v:.5f}" for k, v in lb.items() if k.startswith("blend_"))
            + f"; at the OOF threshold: accuracy {c['accuracy']:.4f}, recall {c['recall']:.3f}, "
              f"precision {c['precision']:.3f}, FPR {c['fpr']:.4f}")


@dataclass
class BlendOptions:
    """What to blend and how: the method (a registered name), the experiments (default: every
    complete one), --strict, the rule that picks the operating threshold, the stacker's metadata
    columns, how full-data refits join, and the command line recorded in blend.json."""

    method: str = "hill"
    names: list[str] | None = None
    strict: bool = False
    threshold_by: str = "accuracy"
    stack_meta: list[str] | None = None
    refit: str = "none"
    command: str = ""


def blend_report(comp: Competition, inp: BlendInputs, table: pd.DataFrame, b: dict, opts: BlendOptions,
                 outputs: dict) -> BlendReport:
    """blend.json's record of a blend `b` (compute_blend's): what predict.py and the bundle apply.
    `outputs`: the local leaderboard, the submission's final path and the sha256 of the result set's files."""
    model = b["model"]
    weights = {e.name: float(x) for e, x in zip(inp.exps, b["weights"])  # exact: predict.py uses them
               if x > 0 or (model.link != "identity" and x != 0)}
    return BlendReport(competition=comp.name, method=b["method"], weights=weights, operating_points=b["ops"],
                       space=model.space, link=model.link, intercept=float(model.intercept_), refit=opts.refit,
                       folds_hash=inp.folds_hash, requested_method=opts.method, stack=b.get("stack"),
                       experiments=[e.name for e in inp.exps], left_out=inp.left_out,
                       table=table.to_dict("records"), blend_oof_auc=round(b["auc"], 5), cross_check=b["cv"],
                       command=opts.command, **outputs)


def run_blend(comp: Competition, base: Path, opts: BlendOptions | str = "hill", verbose: bool = True,
              extra=None) -> BlendReport:
    """Blend, score, and publish submission.csv + blend.json + roc.png as one result set (`opts`:
    a BlendOptions, or a method's name). `extra(result_set, report)` may add files (run.py's
    summary) before the set is committed."""
    opts = BlendOptions(opts) if isinstance(opts, str) else opts
    say = print if verbose else (lambda *a, **k: None)
    layout = Layout(base)
    inp = load_inputs(comp, layout, opts.names, opts.strict)
    for name, why in inp.left_out.items():
        say(f"left out {name}: {why}")
    table = score_table(inp.exps, inp.y)
    say(table.to_string(index=False))
    b = compute_blend(inp, opts.method, opts.threshold_by, load_meta(comp, layout, inp, opts.stack_meta or []),
                      opts.refit)
    print_blend(say, inp, table, b, opts.method)
    sol = read_solution(comp, layout, inp.test_ids)  # checked before anything is written
    singles = {e.name: e.test_scores("prob", opts.refit) for e in inp.exps}
    lb = local_leaderboard(sol, comp.submission_columns[1], {"blend": b["test"], **singles},
                           b["ops"]["chosen"]["threshold"])
    print_leaderboard(say, lb, comp)
    id_col, col = comp.submission_columns
    sub = inp.sample.copy()
    sub[id_col] = sub[id_col].astype(str)
    sub[col] = pd.Series(b["test"], index=inp.test_ids).loc[sub[id_col]].to_numpy()
    rs = ResultSet(layout)
    try:
        write_csv_atomic(sub, rs.path("submission.csv"))
        plot_roc(inp.y, {**{e.name: e.oof for e in inp.exps}, f"blend {b['method']}": b["oof"]}, rs.path("roc.png"),
                 f"{comp.name}: OOF ROC")
        outputs = {"local_leaderboard": lb, "submission": str(rs.final_path("submission.csv")),
                   "files": {n: file_hash(rs.path(n)) for n in ("submission.csv", "roc.png")}}
        report = blend_report(comp, inp, table, b, opts, outputs)
        report.write(rs.path("blend.json"))
        if extra is not None:
            extra(rs, report)
        rs.commit()
    except BaseException:
        rs.discard()
        raise
    say(f"wrote {rs.final_path('submission.csv')} ({len(sub)} rows), blend.json, roc.png")
    return report
