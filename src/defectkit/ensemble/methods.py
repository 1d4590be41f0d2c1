"""Blend methods: how the experiments' OOF predictions become weights, one estimator contract.

A method is a class registered by name (`@register_method("hill")`), scikit-learn style: `fit(O, y,
M=None)` learns from the OOF matrix O (rows x experiments, in the method's `space`: probabilities for
`prob`, each model's percentiles within its own OOF predictions for `rank`) and the 0/1 targets y
(M: optional metadata columns), and leaves what it learnt in attributes ending in `_` (`weights_`,
`intercept_`, `meta_coef_`); `apply(X, M=None)` scores rows of the same space:
`link(intercept_ + X @ weights_ + M @ meta_coef_)`, the link `identity` or `logistic`. That shape is
what blend.json records and what predict.py and the bundle apply, so a registered method works
everywhere without them knowing it.

Class attributes say how the blend uses a method: `cross_fitted_oof` (its OOF scores are the
cross-check's held-out ones, e.g. a stacker's, so that operating points are chosen on scores it did
not fit), `fallback` (the method used instead unless this one's cross-checked AUC beats it),
`uses_meta` (it takes metadata columns, --stack-meta). Every method is cross-checked by the same
loop (`cross_check`): fitted on k-1 folds, scored on the held-out fold.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pandas as pd

from defectkit.core import metrics
from defectkit.core.checks import InputError, check_predictions
from defectkit.core.registry import METHODS
from defectkit.ensemble.experiments import BlendInputs, Experiment
from defectkit.runtime.combine import rank_pct

register_method = METHODS.register  # class decorator: a BlendMethod available as --blend-method NAME
get_method = METHODS.lookup


class BlendMethod:
    """The contract (see the module's docstring); subclasses implement `fit`."""

    name: ClassVar[str] = ""
    space: ClassVar[str] = "rank"  # prob | rank
    link: ClassVar[str] = "identity"  # identity | logistic
    cross_fitted_oof: ClassVar[bool] = False
    fallback: ClassVar[str | None] = None
    uses_meta: ClassVar[bool] = False

    weights_: np.ndarray
    intercept_: float = 0.0
    meta_coef_: np.ndarray | None = None

    def fit(self, O: np.ndarray, y: np.ndarray, M: np.ndarray | None = None) -> BlendMethod:
        raise NotImplementedError

    def apply(self, X: np.ndarray, M: np.ndarray | None = None) -> np.ndarray:
        z = X @ self.weights_
        if self.intercept_ or M is not None:
            z = self.intercept_ + z + (M @ self.meta_coef_ if M is not None else 0.0)
        return 1 / (1 + np.exp(-z)) if self.link == "logistic" else z


@register_method("mean")
class MeanBlend(BlendMethod):
    """The average of the experiments' probabilities."""

    space = "prob"

    def fit(self, O, y, M=None):
        self.weights_ = np.full(O.shape[1], 1.0 / O.shape[1])
        return self


@register_method("rank")
class RankBlend(MeanBlend):
    """The average of the experiments' rank percentiles (robust to calibration differences)."""

    space = "rank"


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


@register_method("hill")
class HillBlend(BlendMethod):
    """Caruana hill climbing on rank percentiles (`hill_climb`)."""

    def fit(self, O, y, M=None):
        self.weights_, self.history_ = hill_climb(y, O)
        return self


@register_method("stack")
class StackBlend(BlendMethod):
    """A level-2 logistic regression (scikit-learn, mild L2) on the rank percentiles, plus optional
    metadata columns; used only when its cross-checked AUC beats hill's."""

    link = "logistic"
    cross_fitted_oof = True
    fallback = "hill"
    uses_meta = True
    C = 1.0  # inverse L2 strength: mild, the features are few and on one scale

    def fit(self, O, y, M=None):
        from sklearn.linear_model import LogisticRegression
        X = O if M is None else np.hstack([O, M])
        self.model_ = LogisticRegression(C=self.C, max_iter=2000).fit(X, y)
        coef = self.model_.coef_[0]
        self.weights_, self.meta_coef_ = coef[:O.shape[1]], (coef[O.shape[1]:] if M is not None else None)
        self.intercept_ = float(self.model_.intercept_[0])
        return self

    def apply(self, X, M=None):
        return self.model_.predict_proba(X if M is None else np.hstack([X, M]))[:, 1]


# --- the one cross-check, and the blend of one method ---------------------------------------------

def cross_check(cls: type[BlendMethod], y: np.ndarray, O: np.ndarray, fold: np.ndarray,
                M: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """The method fitted on k-1 folds and scored on the held-out fold, for every fold: the honest
    gain of the blend, against the best single model chosen the same way (on k-1 folds). Returns
    the summary and the held-out scores of every row."""
    held, blend, single = np.zeros(len(y)), [], []
    for k in np.unique(fold):
        tr, va = fold != k, fold == k
        m = cls().fit(O[tr], y[tr], None if M is None else M[tr])
        held[va] = m.apply(O[va], None if M is None else M[va])
        blend.append(metrics.auc(y[va], held[va]))
        best = int(np.argmax([metrics.auc(y[tr], O[tr, j]) for j in range(O.shape[1])]))
        single.append(metrics.auc(y[va], O[va, best]))
    return {"blend_auc_mean": float(np.mean(blend)), "blend_auc_std": float(np.std(blend)),
            "best_single_auc_mean": float(np.mean(single)), "per_fold": [round(a, 5) for a in blend]}, held


def blend_space(space: str, exps: list[Experiment], refit: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """(OOF matrix, test matrix), n x m, in a blend space: probabilities (`prob`) or percentiles
    within each model's OOF predictions (`rank`). The test columns come from the fold models, the
    refits, or both (`refit`); OOF ones always from the folds."""
    O = np.column_stack([e.oof for e in exps])
    T = np.column_stack([e.test_scores(space, refit) for e in exps])
    if space == "prob":
        return O, T
    return np.column_stack([rank_pct(O[:, j], O[:, j]) for j in range(O.shape[1])]), T


def fit_blend(cls: type[BlendMethod], inp: BlendInputs, O, T, threshold_by: str, meta=(None, None)) -> dict:
    """One method on the OOF and test matrices of its space: fitted model, blended OOF and test
    scores, the cross-check and the operating points."""
    M, MT = meta
    y = inp.y
    model = cls().fit(O, y, M)
    cv, held = cross_check(cls, y, O, inp.fold, M)
    oof = held if cls.cross_fitted_oof else model.apply(O, M)
    test = model.apply(T, MT)
    check_predictions(test, "blend of test predictions")
    return {"method": cls.name, "model": model, "weights": model.weights_, "oof": oof, "test": test,
            "auc": metrics.auc(y, oof), "cv": cv, "ops": metrics.operating_points(y, oof, threshold_by)}


def too_few_defects(inp: BlendInputs) -> str:
    """Why weights cannot be found and cross-checked on these OOF rows (a fold without defects, or
    none at all: the anomaly member's case), or ""."""
    y, fold = inp.y, inp.fold
    bare = [int(k) for k in np.unique(fold) if not (y[fold == k] == 1).any()]
    if not bare:
        return ""
    return (f"{int(y.sum())} defect(s) among the OOF rows and none in fold(s) {bare}: no weights can be found and "
            "cross-checked fold-wise, so the members' probabilities are averaged (mean)"
            + ("" if y.sum() else "; AUC undefined without defects; operating points from the good images' scores"))


def mean_blend(inp: BlendInputs, threshold_by: str, note: str, refit: str = "none") -> dict:
    """The plain mean of the members' probabilities, with operating points (few or no defects)."""
    O, T = blend_space("prob", inp.exps, refit)
    model = MeanBlend().fit(O, inp.y)
    syn = synthetic_matrix(inp.exps)
    chosen = choose_by_yardstick(syn, O, inp.y, [e.name for e in inp.exps])
    if chosen:
        model.weights_ = chosen["weights"]
        note += f"; {chosen['note']}"
    oof, test = model.apply(O), model.apply(T)
    check_predictions(test, "blend of test predictions")
    auc = metrics.auc(inp.y, oof)
    cv = {"blend_auc_mean": auc, "blend_auc_std": float("nan"), "best_single_auc_mean": float("nan"),
          "per_fold": [], "note": note}
    ops = metrics.operating_points(inp.y, oof, threshold_by)
    recall = synthetic_recall(syn, model, ops)
    if recall:
        cv["synthetic"] = {**recall, **({"members": chosen["aucs"]} if chosen else {})}
    return {"method": "mean", "model": model, "weights": model.weights_, "oof": oof, "test": test, "auc": auc,
            "cv": cv, "ops": ops}


def synthetic_matrix(exps: list[Experiment]) -> tuple[np.ndarray, np.ndarray] | None:
    """(Scores, kinds) of the synthetic defects every member scored: an n x m matrix, one column per member,
    and each defect's kind; None unless all members scored the same defects (anomaly members of one seed and
    folds file)."""
    tables = [e.synthetic for e in exps]
    if not exps or any(t is None for t in tables):
        return None
    whole = [pd.concat(t) for t in tables]
    ids = [w["id"].astype(str).to_numpy() for w in whole]
    if any(len(i) != len(ids[0]) or (i != ids[0]).any() for i in ids[1:]):
        return None  # members of different seeds made different defects: nothing to blend
    return np.column_stack([w["pred"].to_numpy(float) for w in whole]), whole[0]["kind"].astype(str).to_numpy()


def choose_by_yardstick(syn: tuple | None, O: np.ndarray, y: np.ndarray, names: list[str],
                        min_gain: float = 1e-3) -> dict | None:
    """Without defects enough to weigh by, which of the members (`names`) the mean keeps: forward selection on
    the yardstick (the good OOF rows of `O`, n x m probabilities, against the members' scores of the synthetic
    defects, `syn` = synthetic_matrix's;
    with a few real defects among the OOF rows, each scored by fold models that never saw it, the mean of
    that AUC and the AUC of the good rows against the real defects): the best member first, then the one
    that most raises the mean's yardstick, while it raises it by `min_gain`. {weights, aucs (each member's
    and the blend's), note}; None with one member or without common synthetic scores (then every member is
    averaged)."""
    good, real = O[y == 0], O[y == 1]
    if syn is None or len(names) < 2 or len(good) < 2:
        return None
    S = syn[0]

    def yard(cols: list[int]) -> float:
        g = good[:, cols].mean(1)
        a = float(metrics.auc(np.r_[np.zeros(len(g)), np.ones(len(S))], np.r_[g, S[:, cols].mean(1)]))
        if not len(real):
            return a
        r = float(metrics.auc(np.r_[np.zeros(len(g)), np.ones(len(real))], np.r_[g, real[:, cols].mean(1)]))
        return (a + r) / 2
    single = [yard([j]) for j in range(len(names))]
    chosen, best = [int(np.argmax(single))], max(single)
    while len(chosen) < len(names):
        gains = {j: yard([*chosen, j]) for j in range(len(names)) if j not in chosen}
        j = max(gains, key=gains.get)
        if gains[j] < best + min_gain:
            break
        chosen, best = [*chosen, j], gains[j]
    w = np.zeros(len(names))
    w[chosen] = 1.0 / len(chosen)
    what = "synthetic defects" + (f" and the {len(real)} real one(s) held out" if len(real) else "")
    return {"weights": w, "aucs": {**{n: round(a, 5) for n, a in zip(names, single)}, "blend": round(best, 5)},
            "note": f"members chosen by the synthetic yardstick (AUC on {what}, not a result): "
                    f"{', '.join(names[j] for j in chosen)} ({best:.4f}; alone: "
                    + ", ".join(f"{a:.4f}" for a in single) + ")"}


def synthetic_recall(syn: tuple | None, model: BlendMethod, ops: dict) -> dict | None:
    """With no defects to weigh by, what the synthetic yardstick estimates: the blend (`model`, in
    probability space) of each member's scores of the same synthetic defects (`syn` = synthetic_matrix's),
    and at each operating point
    the share of them above its threshold (`synthetic_recall`, added to `ops`), with the chosen point's
    share per kind of defect. None unless every member scored the same synthetic defects (anomaly members
    of one seed and folds file). Never a result: synthetic defects are not the user's."""
    if syn is None:
        return None
    s, kinds = model.apply(syn[0]), syn[1]
    for op in ops.values():
        op["synthetic_recall"] = round(float((s >= op["threshold"]).mean()), 4)
    t = ops["chosen"]["threshold"]
    return {"n": len(s), "note": "recall estimated on synthetic defects made on the held-out good images "
                                 "(data/synthetic.py), not on real ones",
            "chosen_by_kind": {k: round(float((s[kinds == k] >= t).mean()), 4) for k in dict.fromkeys(kinds)}}


def compute_blend(inp: BlendInputs, method: str, threshold_by: str, meta: tuple | None = None,
                  refit: str = "none") -> dict:
    """The blend by `method` (its fallback kept when the method's cross-check does not beat it;
    the comparison is kept under "stack"). `meta`: (train matrix, test matrix, names, encoding).
    With a fold without defects: the mean of the members' probabilities (`too_few_defects`)."""
    note = too_few_defects(inp)
    if note:
        return mean_blend(inp, threshold_by, note, refit)
    b = _compute_blend(inp, method, threshold_by, meta, refit)
    for j, e in enumerate(inp.exps):  # a member on trial (anomaly) stays only if the cross-check says it helps
        if not e.on_trial or len(inp.exps) == 1:
            continue
        if not b["weights"][j] > 0:
            b["cv"].setdefault("anomaly_member", {})[e.name] = f"left out: {b['method']} gave it no weight"
        else:
            rest = dataclasses.replace(inp, exps=[x for x in inp.exps if x is not e])
            alt = _compute_blend(rest, method, threshold_by, meta, refit)
            with_, without = b["cv"]["blend_auc_mean"], alt["cv"]["blend_auc_mean"]
            if without >= with_:
                why = f"left out: the cross-checked AUC is {without:.5f} without it, {with_:.5f} with it"
                return {**alt, "weights": np.insert(np.asarray(alt["weights"], float), j, 0.0),
                        "cv": {**alt["cv"], "anomaly_member": {e.name: why}}}
            b["cv"].setdefault("anomaly_member", {})[e.name] = (f"kept: the cross-checked AUC is {with_:.5f} with it, "
                                                                f"{without:.5f} without it")
    return b


def _compute_blend(inp: BlendInputs, method: str, threshold_by: str, meta: tuple | None = None,
                   refit: str = "none") -> dict:
    cls = get_method(method)
    M, MT, names, encoding = meta if meta else (None, None, [], [])
    if M is not None and not cls.uses_meta:
        raise InputError(f"--stack-meta {' '.join(e['col'] for e in encoding)}: blend method {method!r} uses no "
                         "metadata; "
                         f"use one that does ({', '.join(n for n, c in METHODS.items() if c.uses_meta)})")
    O, T = blend_space(cls.space, inp.exps, refit)
    b = fit_blend(cls, inp, O, T, threshold_by, (M, MT))
    if cls.fallback is None:
        return b
    fb_cls = get_method(cls.fallback)
    fb = fit_blend(fb_cls, inp, *blend_space(fb_cls.space, inp.exps, refit), threshold_by)
    model = b["model"]
    coef = [*model.weights_.tolist(), *([] if model.meta_coef_ is None else model.meta_coef_.tolist())]
    info = {"meta": names, "encoding": encoding, "intercept": model.intercept_,
            "coef": dict(zip([e.name for e in inp.exps] + names, coef)), "cross_check": b["cv"],
            "hill_cross_check": fb["cv"]["blend_auc_mean"],
            "chosen": b["cv"]["blend_auc_mean"] > fb["cv"]["blend_auc_mean"]}
    if not info["chosen"]:
        return {**fb, "stack": info}
    b["cv"]["best_single_auc_mean"] = fb["cv"]["best_single_auc_mean"]
    return {**b, "stack": info}
