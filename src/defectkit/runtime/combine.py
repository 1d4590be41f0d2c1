"""How the blend turns its members' predictions into one score: numpy only, so the exported
bundle ships this very file and combines exactly as blend.py does.

An experiment's score for new images is the average over its fold models of, by the blend
method's space,
  prob:  the fold model's probability;
  rank:  the probability's percentile within that fold model's own OOF predictions (its
         reference), so OOF and new scores share one scale;
and the blend is the weighted sum of the experiments' scores, through the method's link
(logistic for a stacker: the logistic function of an intercept plus that sum). An experiment with a full-data
refit (blend --refit only|both) scores with the refit alone, or with the mean of the fold models'
score and the refit's; in rank space the refit is ranked against all the experiment's OOF predictions.
"""
from __future__ import annotations

import numpy as np

SPACES = ("prob", "rank")
LINKS = ("identity", "logistic")


def rank_pct(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Percentile of each x within the reference predictions `ref` (a model's OOF): the share of them at
    most x. For OOF itself this is the rank transform; other predictions land on the same scale. Compared
    in float32, the precision the members predict in: a prediction read back from a CSV (float32's
    shortest decimal, parsed as float64, a few 1e-8 off) and the same prediction made afresh by predict.py
    or the bundle are then one number, and a prediction that ties a reference (an image scored twice)
    lands on the same side of it on both paths, where in float64 one reference step (1 / its length)
    flipped with the last bits."""
    ref32 = np.sort(np.asarray(ref, np.float32))
    return np.searchsorted(ref32, np.asarray(x, np.float32), side="right") / len(ref32)


REFIT_USES = ("none", "only", "both")


def experiment_score(space: str, fold_preds: list[np.ndarray], fold_refs: list[np.ndarray] | None,
                     refit: tuple | None = None) -> np.ndarray:
    """One experiment's score in `space` from its fold models' probabilities (and OOF references),
    and `refit` = (the refit's probabilities, every OOF prediction of the experiment, "only" | "both")."""
    if space not in SPACES:
        raise ValueError(f"space {space!r}: expected one of {SPACES}")
    use = "none" if refit is None else refit[2]
    if use not in REFIT_USES:
        raise ValueError(f"refit use {use!r}: expected one of {REFIT_USES}")
    if use != "only":
        if space == "prob":
            folds = np.mean(fold_preds, axis=0)
        else:
            folds = np.mean([rank_pct(ref, p) for ref, p in zip(fold_refs, fold_preds)], axis=0)
        if use == "none":
            return folds
    pred, ref = refit[0], refit[1]
    own = pred if space == "prob" else rank_pct(ref, pred)
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


def blend_scores(space: str, link: str, weights: list[float], members: list[tuple], intercept=0.0) -> np.ndarray:
    """The blend: sum over experiments of weight x experiment_score in `space`, through `link`;
    `members` holds per experiment (fold probabilities, fold OOF references[, refit triple or None]).
    `intercept`: a logistic link's, a number or one per row (a stacker's metadata terms added)."""
    if link not in LINKS:
        raise ValueError(f"link {link!r}: expected one of {LINKS}")
    cols = [experiment_score(space, *m) for m in members]
    z = np.column_stack(cols) @ np.asarray(weights, dtype=float)
    return 1 / (1 + np.exp(-(intercept + z))) if link == "logistic" else z
