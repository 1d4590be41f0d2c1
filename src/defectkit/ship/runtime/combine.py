"""How the blend turns its members' predictions into one score: numpy only, so the exported
bundle ships this very file and combines exactly as blend.py does.

An experiment's score for new images is the average over its fold models of
  mean:        the fold model's probability;
  rank, hill:  the probability's percentile within that fold model's own OOF predictions
               (its reference), so OOF and new scores share one scale;
and the blend is the weighted sum of the experiments' scores (stack: the logistic function of
an intercept plus that sum, the stacker's coefficients as weights). An experiment with a full-data
refit (blend --refit only|both) scores with the refit alone, or with the mean of the fold models'
score and the refit's; in rank space the refit is ranked against all the experiment's OOF predictions.
"""
from __future__ import annotations

import numpy as np

METHODS = ("mean", "rank", "hill", "stack")


def rank_pct(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Percentile of each x within the reference predictions `ref` (a model's OOF). For OOF
    itself this is the rank transform; other predictions land on the same scale."""
    return np.searchsorted(np.sort(ref), x, side="right") / len(ref)


REFIT_USES = ("none", "only", "both")


def experiment_score(method: str, fold_preds: list[np.ndarray], fold_refs: list[np.ndarray] | None,
                     refit: tuple | None = None) -> np.ndarray:
    """One experiment's score from its fold models' probabilities (and OOF references), and
    `refit` = (the refit's probabilities, every OOF prediction of the experiment, "only" | "both")."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {METHODS}")
    use = "none" if refit is None else refit[2]
    if use not in REFIT_USES:
        raise ValueError(f"refit use {use!r}: expected one of {REFIT_USES}")
    if use != "only":
        if method == "mean":
            folds = np.mean(fold_preds, axis=0)  # rank, hill and stack: in rank space
        else:
            folds = np.mean([rank_pct(ref, p) for ref, p in zip(fold_refs, fold_preds)], axis=0)
        if use == "none":
            return folds
    pred, ref = refit[0], refit[1]
    own = pred if method == "mean" else rank_pct(ref, pred)
    return own if use == "only" else (folds + own) / 2


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def meta_matrix(encoding: list[dict], rows: dict[str, list]) -> np.ndarray:
    """The stacker's metadata features of some rows (`rows`: column -> values): a number
    standardised as on the training rows (missing: 0), a category one-hot over the training rows'
    categories (an unseen one: all zeros). `encoding`: per column {col, kind: number, mean, sd} or
    {col, kind: category, values}."""
    blocks = []
    for enc in encoding:
        v = rows[enc["col"]]
        if enc["kind"] == "number":
            x = (np.array([_number(a) for a in v], float) - enc["mean"]) / enc["sd"]
            blocks.append(np.nan_to_num(x, nan=0.0)[:, None])
        else:
            s = np.array([str(a) for a in v], dtype=object)
            blocks.append((s[:, None] == np.array(enc["values"], dtype=object)[None]).astype(float))
    return np.hstack(blocks)


def meta_columns(stack_meta: dict | None) -> list[str]:
    """The metadata columns a stacker fitted with --stack-meta needs (none for any other blend)."""
    return [e["col"] for e in (stack_meta or {}).get("encoding", [])]


def stack_intercept(intercept: float, stack_meta: dict | None, rows: dict[str, list] | None):
    """The stacker's intercept, plus, for one fitted with metadata (`stack_meta` = {encoding, coef},
    as blend.json and bundle.json keep it), its metadata terms: one value per row of `rows`."""
    if not stack_meta:
        return intercept
    if rows is None:
        raise ValueError(f"the stacker also uses metadata ({', '.join(meta_columns(stack_meta))}); none given")
    return intercept + meta_matrix(stack_meta["encoding"], rows) @ np.asarray(stack_meta["coef"], float)


def blend_scores(method: str, weights: list[float], members: list[tuple], intercept=0.0) -> np.ndarray:
    """The blend: sum over experiments of weight x experiment_score; `members` holds per
    experiment (fold probabilities, fold OOF references[, refit triple or None]). `intercept`: the
    stacker's, a number or one per row (its metadata terms added)."""
    cols = [experiment_score(method, *m) for m in members]
    z = np.column_stack(cols) @ np.asarray(weights, dtype=float)
    return 1 / (1 + np.exp(-(intercept + z))) if method == "stack" else z
