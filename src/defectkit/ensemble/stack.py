"""The stacker's metadata features (methods.StackBlend is the stacker): columns of train.csv /
test.csv (ELPV's `cell_type`: one-hot; numbers: standardised), encoded so that predict.py and the
bundle encode new images' metadata the same way (runtime.combine.meta_matrix).
"""
from __future__ import annotations

import pandas as pd

from defectkit.core.checks import InputError
from defectkit.runtime.combine import meta_matrix


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
