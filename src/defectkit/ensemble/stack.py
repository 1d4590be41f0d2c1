"""Stacking: a level-2 logistic regression (scikit-learn) on the experiments' OOF predictions, in
blend.py's rank space (each model's percentile within its own OOF predictions), plus optional
metadata columns of train.csv / test.csv (ELPV's `cell_type`: one-hot; numbers: standardised).

It is fitted and cross-checked with the same folds as `hill`: the logistic regression fitted on
k-1 folds scores the held-out fold, and those held-out scores are the stack's OOF predictions
(so its operating points are chosen on scores it did not fit). blend.py uses it only when its
cross-checked AUC beats hill's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.ship.runtime.combine import meta_matrix

C = 1.0  # inverse L2 strength: mild, the features are few and on one scale


def meta_features(train: pd.DataFrame, test: pd.DataFrame, cols: list[str], where: str) -> tuple:
    """(train matrix, test matrix, feature names, encoding) of metadata columns: categories one-hot
    by the training rows' categories (an unseen test category is all zeros), numbers standardised.
    The encoding (combine.meta_matrix) goes into blend.json, so that new images' metadata is
    encoded the same way by predict.py and the bundle."""
    encoding, names = [], []
    for c in cols:
        for df, what in ((train, "train.csv"), (test, "test.csv")):
            if c not in df:
                raise InputError(f"{where}: --stack-meta {c!r}: no such column in {what} (found {list(df.columns)})")
        a = train[c]
        if pd.api.types.is_numeric_dtype(a) and a.nunique() > 10:
            encoding.append({"col": c, "kind": "number", "mean": float(a.mean()), "sd": float(a.std()) or 1.0})
            names.append(c)
        else:
            cats = sorted(a.astype(str).unique())
            encoding.append({"col": c, "kind": "category", "values": cats})
            names += [f"{c}={v}" for v in cats]
    rows = [{c: df[c].tolist() for c in cols} for df in (train, test)]
    return meta_matrix(encoding, rows[0]), meta_matrix(encoding, rows[1]), names, encoding


def _fit(X: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=C, max_iter=2000).fit(X, y)


def stack(y: np.ndarray, O: np.ndarray, T: np.ndarray, fold: np.ndarray, M: np.ndarray | None = None,
          MT: np.ndarray | None = None) -> dict:
    """Cross-fitted OOF scores, test scores of the model fitted on every row, its coefficients,
    and the fold-wise cross-check (the same shape as blend.cross_check's)."""
    X = O if M is None else np.hstack([O, M])
    XT = T if MT is None else np.hstack([T, MT])
    oof, per_fold = np.zeros(len(y)), []
    for k in np.unique(fold):
        tr, va = fold != k, fold == k
        oof[va] = _fit(X[tr], y[tr]).predict_proba(X[va])[:, 1]
        per_fold.append(metrics.auc(y[va], oof[va]))
    full = _fit(X, y)
    return {"oof": oof, "test": full.predict_proba(XT)[:, 1], "coef": full.coef_[0].tolist(),
            "intercept": float(full.intercept_[0]),
            "cv": {"blend_auc_mean": float(np.mean(per_fold)), "blend_auc_std": float(np.std(per_fold)),
                   "per_fold": [round(a, 5) for a in per_fold]}}
