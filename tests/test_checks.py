"""Every bad input named in the issues is a clear error naming the file and row."""

import numpy as np
import pandas as pd
import pytest

from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.data.cache import cached_images
from defectkit.data.tables import load_folds, load_train_table
from defectkit.runtime.imaging import Preprocess


def _edit_train(work, fn):
    path = work / "input/toy/train.csv"
    df = fn(pd.read_csv(path))
    df.to_csv(path, index=False)
    return load_config(work / "configs/toy.yaml").competition


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.drop(columns="target"), r"train.csv: missing column\(s\) \['target'\]"),
    (lambda d: d.assign(id=list(d.id[:-1]) + [d.id[0]]), "'img0000' repeats"),
    (lambda d: d.assign(target=[2] + list(d.target[1:])), r"row 2: 'target' = 2"),
    (lambda d: d.assign(target=[np.nan] + list(d.target[1:])), r"row 2: 'target' = empty"),
    (lambda d: d.assign(target=["yes"] + list(d.target[1:])), r"row 2: 'target' = 'yes'"),
    (lambda d: d.assign(target=1), r"no good \(0\) rows"),
])
def test_bad_train_table(work, edit, match):
    comp = _edit_train(work, edit)
    with pytest.raises(InputError, match=match):
        load_train_table(comp, Layout(work))


def test_missing_image_names_the_file(work):
    (work / "input/toy/train/img0003.png").unlink()
    comp = load_config(work / "configs/toy.yaml").competition
    with pytest.raises(InputError, match="img0003.png: image missing for id 'img0003'"):
        load_train_table(comp, Layout(work))


def test_undecodable_image_names_the_file(work):
    path = work / "input/toy/train/img0004.png"
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="img0004.png: cannot be decoded"):
        cached_images([path], Preprocess((16, 16)), work / "cache")
    assert not list((work / "cache").glob("*.npy"))  # nothing half-written


def test_folds_that_do_not_match_train(work):
    comp = load_config(work / "configs/toy.yaml").competition
    train = load_train_table(comp, Layout(work))
    folds = pd.read_csv(work / "folds/toy.csv")
    folds.iloc[:-1].to_csv(work / "folds/short.csv", index=False)
    with pytest.raises(InputError, match="does not match"):
        load_folds(work / "folds/short.csv", train, "id", "target")
    folds.assign(target=1 - folds.target).to_csv(work / "folds/flip.csv", index=False)
    with pytest.raises(InputError, match="target of id"):
        load_folds(work / "folds/flip.csv", train, "id", "target")
    with pytest.raises(InputError, match="run python src/make_folds.py"):
        load_folds(work / "folds/none.csv", train, "id", "target")
