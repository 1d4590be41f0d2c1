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

import metrics
from checks import InputError

C = 1.0  # inverse L2 strength: mild, the features are few and on one scale


def meta_features(train: pd.DataFrame, test: pd.DataFrame, cols: list[str], where: str) -> tuple:
    """(train matrix, test matrix, feature names) of metadata columns: categories one-hot by the
    training rows' categories (an unseen test category is all zeros), numbers standardised."""
    blocks_tr, blocks_te, names = [], [], []
    for c in cols:
        for df, what in ((train, "train.csv"), (test, "test.csv")):
            if c not in df:
                raise InputError(f"{where}: --stack-meta {c!r}: no such column in {what} (found {list(df.columns)})")
        a, b = train[c], test[c]
        if pd.api.types.is_numeric_dtype(a) and a.nunique() > 10:
            mu, sd = float(a.mean()), float(a.std()) or 1.0
            blocks_tr.append(((a - mu) / sd).fillna(0).to_numpy()[:, None])
            blocks_te.append(((pd.to_numeric(b, errors="coerce") - mu) / sd).fillna(0).to_numpy()[:, None])
            names.append(c)
        else:
            cats = sorted(a.astype(str).unique())
            blocks_tr.append((a.astype(str).to_numpy()[:, None] == np.array(cats)[None]).astype(float))
            blocks_te.append((b.astype(str).to_numpy()[:, None] == np.array(cats)[None]).astype(float))
            names += [f"{c}={v}" for v in cats]
    return np.hstack(blocks_tr), np.hstack(blocks_te), names


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
