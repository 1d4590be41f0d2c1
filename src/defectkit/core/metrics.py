"""Scores and operating points on (target, score) arrays: ROC AUC (one implementation, used by
training, blending and explaining), log loss, thresholds and confusion figures."""
from __future__ import annotations

import numpy as np


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula with mid-ranks for ties; equals
    scikit-learn's roc_auc_score. NaN when `y` holds one class only.

    Ties are grouped by value, so the sort need not be stable (numpy's unstable sort is the
    fast SIMD one; a blend calls this thousands of times).

    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(y)
    s = np.asarray(s, dtype=float)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s)
    ss, ys = s[order], y[order]
    edges = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1], True])
    ranks = np.repeat((edges[:-1] + edges[1:] + 1) / 2.0, np.diff(edges))
    return float((ranks[ys == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def defined_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """`auc`, or None where it is undefined (no rows, or one class only: a fold without defects),
    as the records keep it."""
    if len(y) == 0:
        return None
    a = auc(y, s)
    return a if np.isfinite(a) else None


def bce(prob: np.ndarray, target: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1)."""
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-7, 1 - 1e-7)
    t = np.asarray(target)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def threshold_for_recall(y: np.ndarray, s: np.ndarray, recall: float) -> float:
    """The highest threshold whose recall of defects (score >= t) is at least `recall`."""
    pos = np.sort(s[y == 1])[::-1]
    k = int(np.ceil(recall * len(pos))) - 1
    return float(pos[max(k, 0)])


THRESHOLD_RULES = ("accuracy", "f1", "youden")


def best_threshold(y: np.ndarray, s: np.ndarray, by: str = "accuracy") -> float:
    """The threshold (score >= t is a defect) that maximises accuracy, F1 or Youden's J."""
    if by not in THRESHOLD_RULES:
        raise ValueError(f"by={by!r}: expected one of {THRESHOLD_RULES}")
    cands = np.unique(s)
    if len(cands) * len(s) > 2e7:  # too many candidates for one matrix: use quantiles
        cands = np.unique(np.quantile(s, np.linspace(0, 1, 2001)))
    pred = s[None, :] >= cands[:, None]
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    tp = (pred & (y == 1)).sum(1)
    fp = (pred & (y == 0)).sum(1)
    fn = n_pos - tp
    if by == "f1":
        score = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    elif by == "youden":
        score = tp / max(n_pos, 1) - fp / max(n_neg, 1)
    else:
        score = (tp + n_neg - fp) / len(y)
    return float(cands[int(np.argmax(score))])


def threshold_for_false_alarms(y: np.ndarray, s: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most `rate` of the good rows score >= t: just above the
    (k+1)-th highest good score, k = floor(rate x goods); above every good score when k = 0."""
    good = np.sort(np.asarray(s, float)[np.asarray(y) == 0])[::-1]
    k = int(np.floor(rate * len(good) + 1e-9))
    return float(np.nextafter(good[k], np.inf)) if k < len(good) else float(good[-1])


def confusion_metrics(y: np.ndarray, s: np.ndarray, t: float) -> dict:
    """Counts and rates at threshold t; recall (and F1) None when there is no defect to recall."""
    pred = s >= t
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    prec = tp / max(tp + fp, 1)
    rec = tp / (tp + fn) if tp + fn else None
    return {"threshold": float(t), "precision": round(prec, 4), "recall": None if rec is None else round(rec, 4),
            "f1": None if rec is None else round(2 * prec * rec / max(prec + rec, 1e-12), 4),
            "accuracy": round((tp + tn) / len(y), 4), "fpr": round(fp / max(fp + tn, 1), 4),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


FALSE_ALARMS = {"false_alarm_1pct": 0.01, "false_alarm_0.1pct": 0.001}
MIN_DEFECTS_TO_CHOOSE = 5  # fewer OOF defects than this: the chosen point is the 1 % false-alarm one


def operating_points(y: np.ndarray, s: np.ndarray, by: str = "accuracy") -> dict:
    """Operating points chosen on these (OOF) scores: 95 % and 99 % defect recall (when there are
    defects), at most 1 % and 0.1 % false alarms among the good rows (`resolved`: the good rows are
    enough to measure that rate), and `chosen`: the threshold that maximises `by`, or, with fewer
    than MIN_DEFECTS_TO_CHOOSE defects, the 1 % false-alarm threshold."""
    y, s = np.asarray(y), np.asarray(s, float)
    n_good, n_def = int((y == 0).sum()), int((y == 1).sum())
    out = {f"recall_{int(r * 100)}": confusion_metrics(y, s, threshold_for_recall(y, s, r))
           for r in ((0.95, 0.99) if n_def else ())}
    for name, rate in FALSE_ALARMS.items():
        out[name] = {**confusion_metrics(y, s, threshold_for_false_alarms(y, s, rate)), "rate": rate,
                     "resolved": bool(rate * n_good >= 1)}
    if n_def >= MIN_DEFECTS_TO_CHOOSE:
        out["chosen"] = {"by": by, **confusion_metrics(y, s, best_threshold(y, s, by))}
    else:
        out["chosen"] = {**out["false_alarm_1pct"], "by": "false_alarm_1pct"}
    return out
