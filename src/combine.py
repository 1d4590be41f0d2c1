"""How the blend turns its members' predictions into one score: numpy only, so the exported
bundle ships this very file and combines exactly as blend.py does.

An experiment's score for new images is the average over its fold models of
  mean:        the fold model's probability;
  rank, hill:  the probability's percentile within that fold model's own OOF predictions
               (its reference), so OOF and new scores share one scale;
and the blend is the weighted sum of the experiments' scores (stack: the logistic function of
an intercept plus that sum, the stacker's coefficients as weights).
"""
from __future__ import annotations

import numpy as np

METHODS = ("mean", "rank", "hill", "stack")


def rank_pct(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Percentile of each x within the reference predictions `ref` (a model's OOF). For OOF
    itself this is the rank transform; other predictions land on the same scale."""
    return np.searchsorted(np.sort(ref), x, side="right") / len(ref)


def experiment_score(method: str, fold_preds: list[np.ndarray], fold_refs: list[np.ndarray] | None) -> np.ndarray:
    """One experiment's score from its fold models' probabilities (and OOF references)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {METHODS}")
    if method == "mean":
        return np.mean(fold_preds, axis=0)  # rank, hill and stack: in rank space
    return np.mean([rank_pct(ref, p) for ref, p in zip(fold_refs, fold_preds)], axis=0)


def blend_scores(method: str, weights: list[float], members: list[tuple[list, list | None]],
                 intercept: float = 0.0) -> np.ndarray:
    """The blend: sum over experiments of weight x experiment_score; `members` holds per
    experiment (fold probabilities, fold OOF references)."""
    cols = [experiment_score(method, preds, refs) for preds, refs in members]
    z = np.column_stack(cols) @ np.asarray(weights, dtype=float)
    return 1 / (1 + np.exp(-(intercept + z))) if method == "stack" else z
