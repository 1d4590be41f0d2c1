"""Pseudo-labels: the blend's confident test rows, chosen by OOF thresholds, join every fold's
training rows and never a validation fold or an OOF file; the experiments say so in their names.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import json

import numpy as np
import pandas as pd
import pytest

from defectkit.core.checks import InputError
from defectkit.core.config import config_hash, load_config
from defectkit.core.layout import Layout
from defectkit.data.tables import read_pseudo
from defectkit.ensemble.pseudo import make_pseudo, threshold_for_fpr
from defectkit.ensemble.report import run_blend
from defectkit.pipeline.grid import run_grid
from defectkit.testing import learnt, make_toy_competition, write_toy_config

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out


def test_threshold_for_fpr_by_hand():
    y = np.array([0] * 10 + [1] * 3)
    s = np.r_[np.arange(10) / 10, [0.5, 0.95, 0.99]]
    t = threshold_for_fpr(y, s, 0.1)  # at most 1 of the 10 goods above t
    assert t == 0.8 and (s[y == 0] > t).sum() == 1


@pytest.fixture(scope="module")
def second_round(tmp_path_factory):
    base = tmp_path_factory.mktemp("pseudo")
    make_toy_competition(base)
    quiet = {"progress": False, "say": lambda *a: None}
    run_grid(load_config(write_toy_config(base, archs=["resnet10t"], epochs=2)), base, **quiet)
    table = make_pseudo(load_config(base / "configs/toy.yaml").competition, base, say=lambda *a: None)
    cfg = load_config(base / "configs/toy.yaml", {"pseudo": str(base / "input/toy/pseudo.csv")})
    run_grid(cfg, base, **quiet)
    return base, cfg, table


def test_the_confident_test_rows_become_pseudo_labels(second_round):
    base, _, table = second_round
    sol = pd.read_csv(base / "input/toy/solution.csv", dtype={"id": str}).set_index("id").target
    assert len(table) >= 16 and set(table.id) <= set(sol.index)
    learnt("pseudo: share of confident rows labelled right", (table.set_index("id").target == sol.loc[table.id]).mean(),
           0.8)  # confident = mostly right


def test_pseudo_rows_train_every_fold_but_never_validate(second_round):
    base, cfg, table = second_round
    assert cfg.exp_name("resnet10t") == "resnet10t_pl"
    folds = pd.read_csv(base / "folds/toy.csv", dtype={"id": str})
    test_ids = set(pd.read_csv(base / "input/toy/sample_submission.csv", dtype={"id": str}).id)
    for k in (0, 1):
        p = Layout(base).fold("resnet10t_pl", k)
        oof = pd.read_csv(p.oof, dtype={"id": str})
        assert not set(oof.id) & test_ids  # no test id in an OOF file
        assert sorted(oof.id) == sorted(folds.id[folds.fold == k])  # exactly the fold's training rows
        meta = json.loads(p.meta.read_text())
        assert meta["n_pseudo"] == len(table) and meta["n_train"] == int((folds.fold != k).sum())
    plain = json.loads(Layout(base).fold("resnet10t", 0).meta.read_text())
    assert plain["n_pseudo"] == 0 and plain["config_hash"] != config_hash(cfg)
    rep = run_blend(cfg.competition, base, "hill", verbose=False)  # both rounds blend on the same OOF rows
    assert set(rep.experiments) == {"resnet10t", "resnet10t_pl"}


def test_a_pseudo_table_naming_a_training_row_is_refused(second_round, tmp_path):
    base, _, _ = second_round
    bad = tmp_path / "pseudo.csv"
    train_id = pd.read_csv(base / "folds/toy.csv", dtype={"id": str}).id[0]
    pd.DataFrame({"id": [train_id], "target": [1]}).to_csv(bad, index=False)
    test_ids = pd.read_csv(base / "input/toy/sample_submission.csv", dtype={"id": str}).id.tolist()
    with pytest.raises(InputError, match="are not test rows"):
        read_pseudo(bad, test_ids)
