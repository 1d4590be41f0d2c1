import numpy as np
import pandas as pd
import pytest

from defectkit.cli.make_folds import main as folds_main
from defectkit.core.checks import InputError
from defectkit.data.folds import assign_folds, fold_summary


def test_stratified_folds_every_id_once_and_balanced():
    rng = np.random.default_rng(0)
    y = (rng.random(1000) < 0.3).astype(int)
    fold = assign_folds(y, 5, seed=42)
    assert set(fold) == set(range(5)) and len(fold) == len(y)  # every row exactly one fold
    for k in range(5):
        assert abs(y[fold == k].mean() - y.mean()) <= 0.02
    assert (assign_folds(y, 5, seed=42) == fold).all()  # deterministic
    assert (assign_folds(y, 5, seed=1) != fold).any()


def test_grouped_folds_never_split_a_group():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 60, 800)  # e.g. a wafer or lot id
    y = (rng.random(800) < 0.25).astype(int)
    fold = assign_folds(y, 5, seed=0, groups=groups)
    for g in np.unique(groups):
        assert len(np.unique(fold[groups == g])) == 1
    for k in range(5):
        assert abs(y[fold == k].mean() - y.mean()) <= 0.05


def test_too_few_good_rows_is_a_clear_error():
    with pytest.raises(InputError, match="only 3 good rows; 5 folds need at least 5"):
        assign_folds(np.array([0] * 3 + [1] * 10), 5, 0)


@pytest.mark.parametrize("n_defect", [0, 1, 3])
def test_fewer_defects_than_folds_fill_some_folds_and_goods_fill_all(n_defect):
    y = np.array([0] * 40 + [1] * n_defect)
    fold = assign_folds(y, 5, 0)
    assert sorted(np.bincount(fold[y == 0], minlength=5)) == [8] * 5  # goods stratified over every fold
    assert (np.bincount(fold[y == 1], minlength=5) <= 1).all() and (y[fold >= 0] == y).all()
    assert int(y.sum()) == sum(y[fold == k].sum() for k in range(5))


def test_make_folds_cli_writes_file_and_prints_counts(toy_base, tmp_path, capsys):
    import shutil
    work = tmp_path / "w"
    shutil.copytree(toy_base / "input", work / "input")
    shutil.copytree(toy_base / "configs", work / "configs")
    df = pd.read_csv(work / "input/toy/train.csv")
    df["lot"] = np.arange(len(df)) % 12
    df.to_csv(work / "input/toy/train.csv", index=False)
    assert folds_main(["--competition", "toy", "--workdir", str(work), "--n-folds", "3", "--group-col", "lot"]) == 0
    out = capsys.readouterr().out
    folds = pd.read_csv(work / "folds/toy.csv", dtype={"id": str})
    assert list(folds.columns) == ["id", "target", "lot", "fold"]
    assert sorted(folds.id) == sorted(df.id.astype(str)) and set(folds.fold) == {0, 1, 2}
    assert folds.groupby("lot").fold.nunique().max() == 1
    assert "defect_rate" in out and str(len(df)) in out
    assert fold_summary(folds).loc["all", "rows"] == len(df)
