"""Blend the out-of-fold predictions of every experiment by OOF AUC and write the submission.

    python src/blend.py --competition elpv [--blend-method hill|rank|mean] [--exps A B ...] [--strict]

Reads oof/<exp>/fold<k>.{csv,json} and test_fold<k>.csv of every experiment made for this
competition with the current folds file; checks them; prints per-experiment OOF AUC, per-fold
mean +- std and correlations; finds blend weights (hill = Caruana ensemble selection with
replacement on rank-transformed OOF predictions, from the best single model, until no step
improves OOF AUC); cross-checks the weights fold-wise; reports operating points chosen on OOF;
scores against input/<comp>/solution.csv when it exists (local leaderboard); and writes
submissions/submission.csv (columns and row order of sample_submission.csv), blend.json and
roc.png as one result set: all three are replaced together, or none is.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import metrics
from checks import (InputError, check_binary_target, check_columns, check_predictions, check_unique_ids, cli_main,
                    read_csv)
from combine import experiment_score, rank_pct
from config import Competition, add_config_flags, add_recipe_flags, config_from_args
from data import load_sample_submission
from fileio import file_hash, write_csv_atomic, write_json_atomic
from layout import Layout
from plots import figure
from stack import meta_features, stack
from results import ResultSet



# --- loading and checking -----------------------------------------------------------------------

@dataclass
class Experiment:
    name: str
    oof: np.ndarray  # pred per training row, in folds-file order
    test_folds: list  # per fold k: fold k's model's probability per test id, in sample_submission order
    fold: np.ndarray  # fold per training row
    fold_auc: list = field(default_factory=list)
    meta: list = field(default_factory=list)
    refit: np.ndarray | None = None  # the full-data refit's test probabilities, when there is one

    def test_scores(self, method: str, refit: str = "none") -> np.ndarray:
        """Test predictions in the method's space from the fold models (refit none), the
        full-data refit (only: ranked against all OOF predictions in rank space), or both (their mean)."""
        if refit == "none":
            return experiment_score(method, self.test_folds, self.fold_refs())
        if self.refit is None:
            raise InputError(f"{self.name}: no full-data refit (oof/{self.name}/test_foldall.csv); train it with "
                             f"python src/train.py --fold all, or blend with --refit none")
        return experiment_score(method, self.test_folds, self.fold_refs(), (self.refit, self.oof, refit))

    def fold_refs(self) -> list[np.ndarray]:
        """Per fold k, the OOF predictions of fold k's model: its reference in rank space."""
        return [self.oof[self.fold == k] for k in range(len(self.test_folds))]

    @property
    def test(self) -> np.ndarray:
        """Test probabilities averaged over the fold models."""
        return experiment_score("mean", self.test_folds, None)


@dataclass
class BlendInputs:
    """The folds file, the test ids and every usable experiment, checked against each other."""

    folds: pd.DataFrame
    folds_hash: str
    test_ids: list[str]
    sample: pd.DataFrame
    exps: list[Experiment]
    left_out: dict

    @property
    def y(self) -> np.ndarray:
        return self.folds["target"].to_numpy(int)

    @property
    def fold(self) -> np.ndarray:
        return self.folds["fold"].to_numpy(int)


def _why_left_out(meta: list[dict], comp: Competition, folds_hash: str, n_folds: int) -> str:
    if any(m.get("competition") != comp.name for m in meta):
        return f"made for competition {meta[0].get('competition')!r}"
    if any(m.get("folds_hash") != folds_hash for m in meta):
        return "made with another folds file (hash differs); re-train it or remove it"
    have = sorted(m["fold"] for m in meta)
    if have != list(range(n_folds)):
        return f"folds {sorted(set(range(n_folds)) - set(have))} missing (has {have})"
    hashes = {m.get("config_hash") for m in meta}
    if len(hashes) > 1:
        by = {h: [m["fold"] for m in meta if m.get("config_hash") == h] for h in hashes}
        return f"its folds were made by different recipes ({by}); retrain them with one recipe"
    return ""


def _read_fold(d: Path, k: int, folds_by_id: pd.DataFrame, test_index: pd.Index, sample_name: str):
    """Fold k's OOF rows (checked against the folds file) and its test predictions (aligned)."""
    path = d / f"fold{k}.csv"
    df = read_csv(path, "OOF file")
    check_columns(df, ["id", "target", "fold", "pred"], path)
    check_predictions(df["pred"], path)
    if (df["fold"] != k).any():
        raise InputError(f"{path}: rows of fold {int(df['fold'][df['fold'] != k].iloc[0])} in the file of fold {k}")
    truth = folds_by_id["target"].reindex(df["id"].astype(str))
    wrong = truth.notna().to_numpy() & (truth.to_numpy() != df["target"].to_numpy())
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise InputError(f"{path}: row {row + 2}: target of id {df['id'].iloc[row]!r} is {df['target'].iloc[row]} "
                         f"but the folds file says {int(truth.iloc[row])} ({int(wrong.sum())} such row(s))")
    tpath = d / f"test_fold{k}.csv"
    t = read_csv(tpath, "test predictions")
    check_columns(t, ["id", "pred"], tpath)
    check_predictions(t["pred"], tpath)
    tid = pd.Index(t["id"].astype(str))
    if len(tid) != len(test_index) or not tid.is_unique or not tid.isin(test_index).all():
        raise InputError(f"{tpath}: ids do not match {sample_name} ({len(t)} rows, "
                         f"{int((~test_index.isin(tid)).sum())} submission ids missing)")
    return df, t["pred"].set_axis(tid).reindex(test_index).to_numpy(float)


def load_experiment(d: Path, comp: Competition, folds: pd.DataFrame, folds_hash: str,
                    test_ids: list[str]) -> tuple[Experiment | None, str]:
    """An experiment's files checked and aligned, or (None, why it is left out). Files that
    are present but wrong (NaN, repeated or unknown ids, targets that contradict the folds
    file) are errors, not reasons."""
    metas = sorted(d.glob("fold[0-9]*.json"))
    if not metas:
        return None, "no finished fold"
    meta = [json.loads(m.read_text()) for m in metas]
    n_folds = int(folds["fold"].max()) + 1
    why = _why_left_out(meta, comp, folds_hash, n_folds)
    if why:
        return None, why
    folds_by_id = folds.set_index("id")
    parts, tests = zip(*(_read_fold(d, k, folds_by_id, pd.Index(test_ids), comp.sample_submission)
                         for k in range(n_folds)))
    fold_auc = [metrics.auc(p["target"].to_numpy(), p["pred"].to_numpy(float)) for p in parts]
    oof = pd.concat(parts)
    oid = pd.Index(oof["id"].astype(str))
    if not oid.is_unique:
        raise InputError(f"{d}: id {oid[oid.duplicated()][0]!r} appears in more than one OOF row; "
                         "every training id once")
    fid = pd.Index(folds["id"])
    missing = fid[~fid.isin(oid)]
    if len(missing) or len(oid) != len(fid):
        raise InputError(f"{d}: OOF rows do not cover the training ids of the folds file "
                         f"({len(missing)} missing, e.g. {list(missing[:2])})")
    oof = oof.set_axis(oid).reindex(fid)
    if not (oof["fold"].to_numpy() == folds["fold"].to_numpy()).all():
        raise InputError(f"{d}: OOF fold numbers differ from the folds file")
    return Experiment(d.name, oof["pred"].to_numpy(float), list(tests), folds["fold"].to_numpy(int), fold_auc,
                      meta, _read_refit(d, folds_hash, pd.Index(test_ids), comp.sample_submission)), ""


def _read_refit(d: Path, folds_hash: str, test_index: pd.Index, sample_name: str) -> np.ndarray | None:
    """The refit's test probabilities (aligned), when it is complete and made with these folds."""
    meta = d / "foldall.json"
    if not meta.exists() or json.loads(meta.read_text()).get("folds_hash") != folds_hash:
        return None
    tpath = d / "test_foldall.csv"
    t = read_csv(tpath, "test predictions")
    check_columns(t, ["id", "pred"], tpath)
    check_predictions(t["pred"], tpath)
    tid = pd.Index(t["id"].astype(str))
    if len(tid) != len(test_index) or not tid.isin(test_index).all():
        raise InputError(f"{tpath}: ids do not match {sample_name}")
    return t["pred"].set_axis(tid).reindex(test_index).to_numpy(float)


def load_experiments(layout: Layout, comp: Competition, folds: pd.DataFrame, folds_hash: str,
                     test_ids: list[str], names: list[str] | None = None, strict: bool = False):
    """All usable experiments, plus {name: reason} for those left out."""
    dirs = [layout.oof_root / n for n in names] if names else layout.experiment_dirs()
    exps, left_out = [], {}
    for d in dirs:
        if names and not d.is_dir():
            raise InputError(f"{d}: experiment not found")
        exp, why = load_experiment(d, comp, folds, folds_hash, test_ids)
        if exp is None:
            if why.startswith("made for competition") and not names:
                continue  # another competition's experiment: not ours to list
            left_out[d.name] = why
        else:
            exps.append(exp)
    if strict and left_out:
        raise InputError("--strict: " + "; ".join(f"{k}: {v}" for k, v in left_out.items()))
    if not exps:
        raise InputError(f"{layout.oof_root}: no complete experiment for competition {comp.name!r}"
                         + (f" (left out: {left_out})" if left_out else "; run python src/train.py first"))
    return exps, left_out


def load_inputs(comp: Competition, layout: Layout, names=None, strict: bool = False) -> BlendInputs:
    folds_file = layout.folds_file(comp)
    folds = read_csv(folds_file, "folds file")
    check_columns(folds, ["id", "target", "fold"], folds_file)
    folds["id"] = folds["id"].astype(str)
    sample = load_sample_submission(comp, layout, check_images=False)
    test_ids = sample[comp.submission_columns[0]].astype(str).tolist()
    fh = file_hash(folds_file)
    exps, left_out = load_experiments(layout, comp, folds, fh, test_ids, names, strict)
    return BlendInputs(folds, fh, test_ids, sample, exps, left_out)


# --- blending -----------------------------------------------------------------------------------

def hill_climb(y: np.ndarray, P: np.ndarray, max_rounds: int = 100) -> tuple[np.ndarray, list[float]]:
    """Caruana ensemble selection with replacement: start from the best single column of P,
    add (again) the column that most raises the AUC of the running mean, stop when nothing
    improves. Returns weights (selection counts / rounds) and the AUC after each step."""
    m = P.shape[1]
    single = [metrics.auc(y, P[:, j]) for j in range(m)]
    best = int(np.argmax(single))
    counts = np.zeros(m, int)
    counts[best] = 1
    total = P[:, best].copy()
    history = [single[best]]
    for _ in range(max_rounds):
        scores = [metrics.auc(y, total + P[:, j]) for j in range(m)]
        j = int(np.argmax(scores))
        if scores[j] <= history[-1] + 1e-12:
            break
        counts[j] += 1
        total += P[:, j]
        history.append(scores[j])
    return counts / counts.sum(), history


def blend_space(method: str, exps: list[Experiment], refit: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """(OOF matrix, test matrix), n x m, in the space the method blends in: probabilities for
    mean, percentiles within each model's OOF predictions for rank, hill and stack. The test
    columns come from the fold models, the refits, or both (`refit`); OOF ones always from the folds."""
    O = np.column_stack([e.oof for e in exps])
    T = np.column_stack([e.test_scores(method, refit) for e in exps])
    if method == "mean":
        return O, T
    return np.column_stack([rank_pct(O[:, j], O[:, j]) for j in range(O.shape[1])]), T


def find_weights(method: str, y: np.ndarray, O: np.ndarray) -> np.ndarray:
    if method == "hill":
        return hill_climb(y, O)[0]
    return np.full(O.shape[1], 1.0 / O.shape[1])


def cross_check(method: str, y: np.ndarray, O: np.ndarray, fold: np.ndarray) -> dict:
    """Weights found on k-1 folds, scored on the held-out fold: the honest gain of the blend.
    Compared with the best single model (chosen the same way, on k-1 folds)."""
    blend, single = [], []
    for k in np.unique(fold):
        tr, va = fold != k, fold == k
        w = find_weights(method, y[tr], O[tr])
        blend.append(metrics.auc(y[va], O[va] @ w))
        best = int(np.argmax([metrics.auc(y[tr], O[tr, j]) for j in range(O.shape[1])]))
        single.append(metrics.auc(y[va], O[va, best]))
    return {"blend_auc_mean": float(np.mean(blend)), "blend_auc_std": float(np.std(blend)),
            "best_single_auc_mean": float(np.mean(single)), "per_fold": [round(a, 5) for a in blend]}


# --- reporting ----------------------------------------------------------------------------------

def plot_roc(y, curves: dict, path: Path, title: str) -> None:
    from sklearn.metrics import roc_curve
    with figure(path, figsize=(5.5, 5), dpi=100) as (fig, ax):
        grid = np.linspace(0, 1, 1001)  # a fixed FPR grid: 40,000-point lines are slow to draw, no sharper
        for name, s in curves.items():
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(grid, np.interp(grid, fpr, tpr), lw=2.5 if name.startswith("blend") else 1.2,
                    label=f"{name} (AUC {metrics.auc(y, s):.4f})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_xlabel("false positive rate"), ax.set_ylabel("defect recall (TPR)"), ax.set_title(title)
        ax.legend(fontsize=7, loc="lower right")


def score_table(exps: list[Experiment], y: np.ndarray) -> pd.DataFrame:
    O = np.column_stack([e.oof for e in exps])
    corr = np.corrcoef(np.argsort(np.argsort(O, axis=0), axis=0).T) if len(exps) > 1 else np.ones((1, 1))
    rows = []
    for j, e in enumerate(exps):
        others = np.delete(corr[j], j)
        rows.append({"experiment": e.name, "oof_auc": round(metrics.auc(y, e.oof), 5),
                     "fold_auc_mean": round(float(np.mean(e.fold_auc)), 5),
                     "fold_auc_std": round(float(np.std(e.fold_auc)), 5),
                     "max_corr_others": round(float(others.max()), 4) if len(others) else float("nan")})
    return pd.DataFrame(rows).sort_values("oof_auc", ascending=False).reset_index(drop=True)


def read_solution(comp: Competition, layout: Layout, test_ids: list[str]) -> pd.DataFrame | None:
    """solution.csv checked like train.csv (unique ids, 0/1 answers, both classes), in the
    submission's id order; None when the competition has none."""
    path = layout.solution(comp)
    if not path.exists():
        return None
    id_col, col = comp.submission_columns
    sol = read_csv(path, "solution", (id_col,))
    check_columns(sol, [id_col, col], path)
    check_unique_ids(sol, id_col, path)
    check_binary_target(sol, col, path)
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
    out = {name: round(metrics.auc(y, s), 5) for name, s in scores.items()}
    blend = scores["blend"]
    if "Usage" in sol:
        for usage in ("Public", "Private"):
            m = (sol["Usage"] == usage).to_numpy()
            if m.any() and len(np.unique(y[m])) == 2:
                out[f"blend_{usage.lower()}"] = round(metrics.auc(y[m], blend[m]), 5)
    out["at_oof_threshold"] = metrics.confusion_metrics(y, blend, threshold)
    return out


# --- the whole blend ----------------------------------------------------------------------------

def compute_blend(inp: BlendInputs, method: str, threshold_by: str, meta: tuple | None = None,
                  refit: str = "none") -> dict:
    """Weights, blended OOF and test scores, the cross-check and the operating points. `stack`
    is used only when its cross-check beats hill's (else hill, and the reason is kept)."""
    if method == "stack":
        return compute_stack(inp, threshold_by, meta, refit)
    return weighted_blend(inp, method, *blend_space(method, inp.exps, refit), threshold_by)


def weighted_blend(inp: BlendInputs, method: str, O: np.ndarray, T: np.ndarray, threshold_by: str) -> dict:
    """mean, rank or hill on the OOF and test matrices of their blend space."""
    y = inp.y
    w = find_weights(method, y, O)
    oof_blend, test_blend = O @ w, T @ w
    check_predictions(test_blend, "blend of test predictions")
    return {"method": method, "weights": w, "oof": oof_blend, "test": test_blend, "auc": metrics.auc(y, oof_blend),
            "cv": cross_check(method, y, O, inp.fold), "ops": metrics.operating_points(y, oof_blend, threshold_by)}


def compute_stack(inp: BlendInputs, threshold_by: str, meta: tuple | None, refit: str = "none") -> dict:
    O, T = blend_space("stack", inp.exps, refit)  # rank space: hill's too
    hill = weighted_blend(inp, "hill", O, T, threshold_by)
    M, MT, names, encoding = meta if meta else (None, None, [], [])
    st = stack(inp.y, O, T, inp.fold, M, MT)
    m = len(inp.exps)
    info = {"meta": names, "encoding": encoding, "intercept": st["intercept"],
            "coef": dict(zip([e.name for e in inp.exps] + names, st["coef"])),
            "cross_check": st["cv"], "hill_cross_check": hill["cv"]["blend_auc_mean"]}
    if st["cv"]["blend_auc_mean"] <= hill["cv"]["blend_auc_mean"]:
        info["chosen"] = False
        return {**hill, "stack": info}
    check_predictions(st["test"], "stacked test predictions")
    info["chosen"] = True
    return {"method": "stack", "weights": np.asarray(st["coef"][:m]), "oof": st["oof"], "test": st["test"],
            "auc": metrics.auc(inp.y, st["oof"]), "cv": {**st["cv"], "best_single_auc_mean":
                                                           hill["cv"]["best_single_auc_mean"]},
            "ops": metrics.operating_points(inp.y, st["oof"], threshold_by), "stack": info}


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
    for key, op in b["ops"].items():
        say(f"  OOF operating point {key:>9}: threshold {op['threshold']:.4f} recall {op['recall']:.3f} "
            f"FPR {op['fpr']:.3f} precision {op['precision']:.3f} F1 {op['f1']:.3f} accuracy {op['accuracy']:.3f}")


def print_leaderboard(say, lb: dict | None, comp: Competition) -> None:
    if lb:
        c = lb["at_oof_threshold"]
        say(f"local leaderboard ({comp.solution}): blend test AUC {lb['blend']:.5f}"
            + "".join(f", {k.split('_')[1]} {v:.5f}" for k, v in lb.items() if k.startswith("blend_"))
            + f"; at the OOF threshold: accuracy {c['accuracy']:.4f}, recall {c['recall']:.3f}, "
              f"precision {c['precision']:.3f}")


def run_blend(comp: Competition, base: Path, method: str = "hill", names: list[str] | None = None,
              strict: bool = False, threshold_by: str = "accuracy", command: str = "", verbose: bool = True,
              extra=None, stack_meta: list[str] | None = None, refit: str = "none") -> dict:
    """Blend, score, and publish submission.csv + blend.json + roc.png as one result set.
    `extra(result_set, report)` may add files (run.py's summary) before the set is committed."""
    say = print if verbose else (lambda *a, **k: None)
    layout = Layout(base)
    inp = load_inputs(comp, layout, names, strict)
    for name, why in inp.left_out.items():
        say(f"left out {name}: {why}")
    table = score_table(inp.exps, inp.y)
    say(table.to_string(index=False))
    b = compute_blend(inp, method, threshold_by, load_meta(comp, layout, inp, stack_meta or []), refit)
    print_blend(say, inp, table, b, method)
    sol = read_solution(comp, layout, inp.test_ids)  # checked before anything is written
    singles = {e.name: e.test_scores("mean", refit) for e in inp.exps}
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
        weights = {e.name: float(x) for e, x in zip(inp.exps, b["weights"])  # exact: predict.py uses them
                   if x > 0 or (b["method"] == "stack" and x != 0)}
        report = {"competition": comp.name, "method": b["method"], "requested_method": method, "refit": refit,
                  "stack": b.get("stack"), "experiments": [e.name for e in inp.exps],
                  "left_out": inp.left_out, "weights": weights,
                  "table": table.to_dict("records"), "blend_oof_auc": round(b["auc"], 5), "cross_check": b["cv"],
                  "operating_points": b["ops"], "local_leaderboard": lb,
                  "submission": str(rs.final_path("submission.csv")),
                  "folds_hash": inp.folds_hash, "command": command,
                  "files": {n: file_hash(rs.path(n)) for n in ("submission.csv", "roc.png")}}
        write_json_atomic(rs.path("blend.json"), report)
        if extra is not None:
            extra(rs, report)
        rs.commit()
    except BaseException:
        rs.discard()
        raise
    say(f"wrote {rs.final_path('submission.csv')} ({len(sub)} rows), blend.json, roc.png")
    return report


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    add_recipe_flags(p, only=("blend_method", "stack_meta", "refit"))
    p.add_argument("--exps", nargs="+", help="experiments to blend (default: every complete one)")
    p.add_argument("--strict", action="store_true", help="an incomplete or mismatched experiment is an error")
    p.add_argument("--threshold-by", choices=metrics.THRESHOLD_RULES, default="accuracy",
                   help="how the operating threshold is chosen on OOF predictions")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    run_blend(cfg.competition, Path(args.workdir), cfg.recipe.blend_method, args.exps, args.strict,
              args.threshold_by, command=shlex.join(["python", "src/blend.py", *sys.argv[1:]]),
              stack_meta=cfg.recipe.stack_meta, refit=cfg.recipe.refit)


if __name__ == "__main__":
    sys.exit(main())
