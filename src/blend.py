"""Blend the out-of-fold predictions of every experiment by OOF AUC and write the submission.

    python src/blend.py --competition elpv [--method hill|rank|mean] [--exps A B ...] [--strict]

Reads oof/<exp>/fold<k>.{csv,json} and test_fold<k>.csv of every experiment made for this
competition with the current folds file; checks them; prints per-experiment OOF AUC, per-fold
mean +- std and correlations; finds blend weights (hill = Caruana ensemble selection with
replacement on rank-transformed OOF predictions, from the best single model, until no step
improves OOF AUC); cross-checks the weights fold-wise; reports operating points chosen on OOF;
writes submissions/submission.csv (columns and row order of sample_submission.csv),
submissions/blend.json and submissions/roc.png; scores against input/<comp>/solution.csv
when it exists (local leaderboard).
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

from checks import InputError, check_columns, check_predictions, cli_main, read_csv
from config import Competition, add_config_flags, config_from_args
from fileio import file_hash, save_figure_atomic, write_csv_atomic, write_json_atomic

METHODS = ("mean", "rank", "hill")


# --- fast, tie-aware AUC ------------------------------------------------------------------------

def fast_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula with mid-ranks for ties; equals sklearn's.
    Ties are grouped by value, so the sort need not be stable: numpy's SIMD quicksort is ~7x
    faster than its stable sort on 40,000 floats, and this runs thousands of times per blend."""
    order = np.argsort(s)
    ss, ys = s[order], y[order]
    edges = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1], True])
    ranks = np.repeat((edges[:-1] + edges[1:] + 1) / 2.0, np.diff(edges))
    n_pos = ys.sum()
    n_neg = len(ys) - n_pos
    return float((ranks[ys == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rank_pct(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Percentile of each x within the reference predictions `ref` (a model's OOF). For OOF
    itself this is the rank transform; test predictions land on the same scale."""
    return np.searchsorted(np.sort(ref), x, side="right") / len(ref)


# --- loading and checking -----------------------------------------------------------------------

@dataclass
class Experiment:
    name: str
    oof: np.ndarray  # pred per training row, in folds-file order
    test_folds: list  # per fold k: fold k's model's probability per test id, in sample_submission order
    fold: np.ndarray  # fold per training row
    fold_auc: list = field(default_factory=list)
    meta: list = field(default_factory=list)

    @property
    def test(self) -> np.ndarray:
        """Test probabilities averaged over the fold models."""
        return np.mean(self.test_folds, axis=0)

    def test_rank(self) -> np.ndarray:
        """Test predictions on the OOF percentile scale: each fold model's predictions ranked
        against that same model's OOF predictions, then averaged. Invariant to any monotone
        transform of the model, and evens out scale differences between fold models."""
        return np.mean([rank_pct(self.oof[self.fold == k], t) for k, t in enumerate(self.test_folds)], axis=0)


def load_experiment(d: Path, comp: Competition, folds: pd.DataFrame, folds_hash: str,
                    test_ids: list[str]) -> tuple[Experiment | None, str]:
    """An experiment's files checked and aligned, or (None, why it is left out). Files that
    are present but wrong (NaN, repeated or unknown ids) are errors, not reasons."""
    metas = sorted(d.glob("fold*.json"))
    if not metas:
        return None, "no finished fold"
    meta = [json.loads(m.read_text()) for m in metas]
    if any(m.get("competition") != comp.name for m in meta):
        return None, f"made for competition {meta[0].get('competition')!r}"
    if any(m.get("folds_hash") != folds_hash for m in meta):
        return None, "made with another folds file (hash differs); re-train it or remove it"
    n_folds = int(folds["fold"].max()) + 1
    test_index = pd.Index(test_ids)
    have = sorted(m["fold"] for m in meta)
    if have != list(range(n_folds)):
        return None, f"folds {sorted(set(range(n_folds)) - set(have))} missing (has {have})"
    parts, tests, fold_auc = [], [], []
    for k in range(n_folds):
        path = d / f"fold{k}.csv"
        df = read_csv(path, "OOF file")
        check_columns(df, ["id", "target", "fold", "pred"], path)
        check_predictions(df["pred"], path)
        if (df["fold"] != k).any():
            raise InputError(f"{path}: rows of fold {int(df['fold'][df['fold'] != k].iloc[0])} in the file of fold {k}")
        fold_auc.append(fast_auc(df["target"].to_numpy(), df["pred"].to_numpy(float)))
        parts.append(df)
        tpath = d / f"test_fold{k}.csv"
        t = read_csv(tpath, "test predictions")
        check_columns(t, ["id", "pred"], tpath)
        check_predictions(t["pred"], tpath)
        tid = pd.Index(t["id"].astype(str))
        if len(tid) != len(test_index) or not tid.is_unique or not tid.isin(test_index).all():
            raise InputError(f"{tpath}: ids do not match {comp.sample_submission} ({len(t)} rows, "
                             f"{int((~test_index.isin(tid)).sum())} submission ids missing)")
        tests.append(t["pred"].set_axis(tid).reindex(test_index).to_numpy(float))
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
    return Experiment(d.name, oof["pred"].to_numpy(float), tests, folds["fold"].to_numpy(int), fold_auc, meta), ""


def load_experiments(oof_root: Path, comp: Competition, folds: pd.DataFrame, folds_hash: str,
                     test_ids: list[str], names: list[str] | None = None, strict: bool = False):
    """All usable experiments, plus {name: reason} for those left out."""
    dirs = [oof_root / n for n in names] if names else sorted(p for p in oof_root.glob("*") if p.is_dir())
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
        raise InputError(f"{oof_root}: no complete experiment for competition {comp.name!r}"
                         + (f" (left out: {left_out})" if left_out else "; run python src/train.py first"))
    return exps, left_out


# --- blending -----------------------------------------------------------------------------------

def hill_climb(y: np.ndarray, P: np.ndarray, max_rounds: int = 100) -> tuple[np.ndarray, list[float]]:
    """Caruana ensemble selection with replacement: start from the best single column of P,
    add (again) the column that most raises the AUC of the running mean, stop when nothing
    improves. Returns weights (selection counts / rounds) and the AUC after each step."""
    m = P.shape[1]
    single = [fast_auc(y, P[:, j]) for j in range(m)]
    best = int(np.argmax(single))
    counts = np.zeros(m, int)
    counts[best] = 1
    total = P[:, best].copy()
    history = [single[best]]
    for _ in range(max_rounds):
        scores = [fast_auc(y, total + P[:, j]) for j in range(m)]
        j = int(np.argmax(scores))
        if scores[j] <= history[-1] + 1e-12:
            break
        counts[j] += 1
        total += P[:, j]
        history.append(scores[j])
    return counts / counts.sum(), history


def blend_space(method: str, exps: list[Experiment]) -> tuple[np.ndarray, np.ndarray]:
    """(OOF matrix, test matrix), n x m, in the space the method blends in: probabilities for
    mean, percentiles within each model's OOF predictions for rank and hill."""
    O = np.column_stack([e.oof for e in exps])
    if method == "mean":
        return O, np.column_stack([e.test for e in exps])
    return (np.column_stack([rank_pct(O[:, j], O[:, j]) for j in range(O.shape[1])]),
            np.column_stack([e.test_rank() for e in exps]))


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
        blend.append(fast_auc(y[va], O[va] @ w))
        best = int(np.argmax([fast_auc(y[tr], O[tr, j]) for j in range(O.shape[1])]))
        single.append(fast_auc(y[va], O[va, best]))
    return {"blend_auc_mean": float(np.mean(blend)), "blend_auc_std": float(np.std(blend)),
            "best_single_auc_mean": float(np.mean(single)), "per_fold": [round(a, 5) for a in blend]}


# --- operating points ---------------------------------------------------------------------------

def threshold_for_recall(y: np.ndarray, s: np.ndarray, recall: float) -> float:
    """The highest threshold whose recall of defects (score >= t) is at least `recall`."""
    pos = np.sort(s[y == 1])[::-1]
    k = int(np.ceil(recall * len(pos))) - 1
    return float(pos[max(k, 0)])


def best_threshold(y: np.ndarray, s: np.ndarray, by: str = "accuracy") -> float:
    cands = np.unique(s)
    pred = s[None, :] >= cands[:, None] if len(cands) * len(s) <= 2e7 else None
    if pred is None:  # too many candidates for one matrix: use quantiles
        cands = np.quantile(s, np.linspace(0, 1, 2001))
        pred = s[None, :] >= cands[:, None]
    tp = (pred & (y == 1)).sum(1)
    fp = (pred & (y == 0)).sum(1)
    fn = (y == 1).sum() - tp
    if by == "f1":
        score = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    elif by == "youden":
        score = tp / max((y == 1).sum(), 1) - fp / max((y == 0).sum(), 1)
    else:
        score = (tp + (y == 0).sum() - fp) / len(y)
    return float(cands[int(np.argmax(score))])


def confusion_metrics(y: np.ndarray, s: np.ndarray, t: float) -> dict:
    pred = s >= t
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    prec = tp / max(tp + fp, 1)
    rec = tp / max(tp + fn, 1)
    return {"threshold": round(t, 6), "precision": round(prec, 4), "recall": round(rec, 4),
            "f1": round(2 * prec * rec / max(prec + rec, 1e-12), 4), "accuracy": round((tp + tn) / len(y), 4),
            "fpr": round(fp / max(fp + tn, 1), 4), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def operating_points(y: np.ndarray, s: np.ndarray, by: str) -> dict:
    out = {f"recall_{int(r * 100)}": confusion_metrics(y, s, threshold_for_recall(y, s, r)) for r in (0.95, 0.99)}
    out["chosen"] = {"by": by, **confusion_metrics(y, s, best_threshold(y, s, by))}
    return out


# --- the whole blend ----------------------------------------------------------------------------

def plot_roc(y, curves: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve
    fig, ax = plt.subplots(figsize=(5.5, 5))
    grid = np.linspace(0, 1, 1001)  # a fixed FPR grid: 40,000-point lines are slow to draw, no sharper
    for name, s in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(grid, np.interp(grid, fpr, tpr), lw=2.5 if name.startswith("blend") else 1.2,
                label=f"{name} (AUC {fast_auc(y, s):.4f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate"), ax.set_ylabel("defect recall (TPR)"), ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)


def score_table(exps: list[Experiment], y: np.ndarray) -> pd.DataFrame:
    O = np.column_stack([e.oof for e in exps])
    corr = np.corrcoef(np.argsort(np.argsort(O, axis=0), axis=0).T) if len(exps) > 1 else np.ones((1, 1))
    rows = []
    for j, e in enumerate(exps):
        others = np.delete(corr[j], j)
        rows.append({"experiment": e.name, "oof_auc": round(fast_auc(y, e.oof), 5),
                     "fold_auc_mean": round(float(np.mean(e.fold_auc)), 5),
                     "fold_auc_std": round(float(np.std(e.fold_auc)), 5),
                     "max_corr_others": round(float(others.max()), 4) if len(others) else float("nan")})
    return pd.DataFrame(rows).sort_values("oof_auc", ascending=False).reset_index(drop=True)


def local_leaderboard(comp: Competition, base: Path, test_ids: list[str], scores: dict,
                      threshold: float) -> dict | None:
    """Scores of the submission (and of each experiment) on solution.csv, if the competition has one."""
    path = comp.root(base) / comp.solution
    if not path.exists():
        return None
    sol = read_csv(path, "solution")
    check_columns(sol, [comp.submission_columns[0], comp.submission_columns[1]], path)
    sol = sol.set_index(sol[comp.submission_columns[0]].astype(str))
    missing = set(test_ids) - set(sol.index)
    if missing:
        raise InputError(f"{path}: no answer for {len(missing)} submission ids, e.g. {sorted(missing)[:2]}")
    sol = sol.loc[test_ids]
    y = sol[comp.submission_columns[1]].to_numpy(int)
    out = {name: round(fast_auc(y, s), 5) for name, s in scores.items()}
    blend = scores["blend"]
    if "Usage" in sol:
        for usage in ("Public", "Private"):
            m = (sol["Usage"] == usage).to_numpy()
            if m.any() and len(np.unique(y[m])) == 2:
                out[f"blend_{usage.lower()}"] = round(fast_auc(y[m], blend[m]), 5)
    out["at_oof_threshold"] = confusion_metrics(y, blend, threshold)
    return out


def run_blend(comp: Competition, base: Path, method: str = "hill", names: list[str] | None = None,
              strict: bool = False, threshold_by: str = "accuracy", out_dir: Path | None = None,
              command: str = "", verbose: bool = True) -> dict:
    from data import load_test_ids
    say = print if verbose else (lambda *a, **k: None)
    base = Path(base)
    folds_file = base / "folds" / f"{comp.name}.csv"
    folds = read_csv(folds_file, "folds file")
    check_columns(folds, ["id", "target", "fold"], folds_file)
    folds["id"] = folds["id"].astype(str)
    sample_path = comp.root(base) / comp.sample_submission
    sample = read_csv(sample_path, "sample submission")
    check_columns(sample, comp.submission_columns, sample_path)
    test_ids = load_test_ids(comp, base)
    exps, left_out = load_experiments(base / "oof", comp, folds, file_hash(folds_file), test_ids, names, strict)
    for name, why in left_out.items():
        say(f"left out {name}: {why}")
    y, fold = folds["target"].to_numpy(int), folds["fold"].to_numpy(int)
    table = score_table(exps, y)
    say(table.to_string(index=False))

    O, T = blend_space(method, exps)
    w = find_weights(method, y, O)
    oof_blend, test_blend = O @ w, T @ w
    check_predictions(test_blend, "blend of test predictions")
    blend_auc = fast_auc(y, oof_blend)
    cv = cross_check(method, y, O, fold)
    best = table.iloc[0]
    weights = {e.name: round(float(x), 4) for e, x in zip(exps, w) if x > 0}
    say(f"blend ({method}) weights: " + ", ".join(f"{k} {v:.3f}" for k, v in weights.items()))
    say(f"blend OOF AUC {blend_auc:.5f} (best single {best.experiment} {best.oof_auc:.5f}); "
        f"fold-wise cross-check: blend {cv['blend_auc_mean']:.5f} +- {cv['blend_auc_std']:.5f} vs best single "
        f"{cv['best_single_auc_mean']:.5f} (weights found on k-1 folds, scored on the held-out fold)")
    ops = operating_points(y, oof_blend, threshold_by)
    for key, op in ops.items():
        say(f"  OOF operating point {key:>9}: threshold {op['threshold']:.4f} recall {op['recall']:.3f} "
            f"FPR {op['fpr']:.3f} precision {op['precision']:.3f} F1 {op['f1']:.3f} accuracy {op['accuracy']:.3f}")

    out_dir = Path(out_dir or base / "submissions")
    sub = sample.copy()
    sub[comp.submission_columns[0]] = sub[comp.submission_columns[0]].astype(str)
    sub[comp.submission_columns[1]] = pd.Series(test_blend, index=test_ids).loc[sub[comp.submission_columns[0]]].to_numpy()
    sub_path = out_dir / "submission.csv"
    write_csv_atomic(sub, sub_path)
    plot_roc(y, {**{e.name: e.oof for e in exps}, f"blend {method}": oof_blend}, out_dir / "roc.png",
             f"{comp.name}: OOF ROC")
    test_scores = {"blend": test_blend, **{e.name: e.test for e in exps}}
    lb = local_leaderboard(comp, base, test_ids, test_scores, ops["chosen"]["threshold"])
    if lb:
        c = lb["at_oof_threshold"]
        say(f"local leaderboard ({comp.solution}): blend test AUC {lb['blend']:.5f}"
            + "".join(f", {k.split('_')[1]} {v:.5f}" for k, v in lb.items() if k.startswith("blend_"))
            + f"; at the OOF threshold: accuracy {c['accuracy']:.4f}, recall {c['recall']:.3f}, "
              f"precision {c['precision']:.3f}")
    report = {"competition": comp.name, "method": method, "experiments": [e.name for e in exps],
              "left_out": left_out, "weights": weights, "table": table.to_dict("records"),
              "blend_oof_auc": round(blend_auc, 5), "cross_check": cv, "operating_points": ops,
              "local_leaderboard": lb, "submission": str(sub_path), "folds_hash": file_hash(folds_file),
              "command": command}
    write_json_atomic(out_dir / "blend.json", report)
    say(f"wrote {sub_path} ({len(sub)} rows), {out_dir / 'blend.json'}, {out_dir / 'roc.png'}")
    return report


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    p.add_argument("--method", choices=METHODS, help="default: the config's blend_method (hill)")
    p.add_argument("--exps", nargs="+", help="experiments to blend (default: every complete one)")
    p.add_argument("--strict", action="store_true", help="an incomplete or mismatched experiment is an error")
    p.add_argument("--threshold-by", choices=("accuracy", "f1", "youden"), default="accuracy",
                   help="how the operating threshold is chosen on OOF predictions")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    run_blend(cfg.competition, Path(args.workdir), args.method or cfg.recipe.blend_method, args.exps,
              args.strict, args.threshold_by, command=shlex.join(["python", "src/blend.py", *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
