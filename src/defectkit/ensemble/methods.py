"""How the blend finds its weights: Caruana hill climbing, equal weights in rank or probability space,
the stacker; the fold-wise cross-check of each."""
from __future__ import annotations

import numpy as np

from defectkit.core import metrics
from defectkit.core.checks import check_predictions
from defectkit.ensemble.experiments import BlendInputs, Experiment
from defectkit.ensemble.stack import stack
from defectkit.ship.runtime.combine import rank_pct


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
