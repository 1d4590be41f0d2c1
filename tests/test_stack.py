"""blend.py --blend-method stack: a logistic regression on the OOF ranks (+ metadata), chosen only
when its fold-wise cross-check beats hill's; what it writes is what predict.py would compute."""
import json

import numpy as np
import pandas as pd
import pytest

from defectkit.core.checks import InputError
from defectkit.core.config import Competition
from defectkit.core.layout import Layout
from defectkit.ensemble.experiments import load_inputs
from defectkit.ensemble.report import BlendOptions, run_blend
from defectkit.runtime.combine import blend_scores
from defectkit.testing import make_blend_workdir, sigmoid, write_experiment

COMP = Competition(name="syn")


def _workdir(tmp_path, meta_signal: bool, n=600):
    w = make_blend_workdir(tmp_path, n=n, n_test=200)
    y, rng = w["y"], w["rng"]
    for j in range(2):  # two models that see the target through noise, and never the group
        write_experiment(tmp_path, f"model{j}", w, sigmoid(1.2 * y + rng.normal(0, 1, len(y))))
    flip = rng.random(len(y)) < (0.15 if meta_signal else 0.5)
    group = np.where(y.astype(bool) ^ flip, "B", "A")  # informative: B mostly defects; else a coin
    root = Layout(tmp_path).raw_input("syn")
    train = pd.read_csv(root / "train.csv", dtype={"id": str})
    train["group"] = group[:n]
    train.to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": w["ids"][n:], "group": group[n:]}).to_csv(root / "test.csv", index=False)
    return w


def test_stack_with_an_informative_column_beats_hill_and_is_chosen(tmp_path):
    _workdir(tmp_path, meta_signal=True)
    rep = run_blend(COMP, tmp_path, BlendOptions("stack", stack_meta=["group"]), verbose=False)
    st = rep.stack
    assert rep.method == "stack" and st["chosen"] and st["meta"] == ["group=A", "group=B"]
    assert st["cross_check"]["blend_auc_mean"] > st["hill_cross_check"] + 0.02
    assert st["coef"]["group=B"] > st["coef"]["group=A"]
    assert rep.local_leaderboard["blend"] > max(rep.local_leaderboard[f"model{j}"] for j in range(2))


def test_stack_with_a_column_of_noise_is_not_chosen(tmp_path):
    _workdir(tmp_path, meta_signal=False)
    rep = run_blend(COMP, tmp_path, BlendOptions("stack", stack_meta=["group"]), verbose=False)
    assert rep.method == "hill" and rep.requested_method == "stack" and rep.stack["chosen"] is False
    sub = pd.read_csv(tmp_path / "submissions/submission.csv")
    hill = run_blend(COMP, tmp_path, "hill", verbose=False)
    assert rep.weights == hill.weights
    np.testing.assert_allclose(sub.target, pd.read_csv(tmp_path / "submissions/submission.csv").target)


def test_stack_uses_an_inverted_model_that_hill_cannot_and_its_file_is_the_combine_rule(tmp_path):
    w = make_blend_workdir(tmp_path, n=600, n_test=200)
    y, rng = w["y"], w["rng"]
    write_experiment(tmp_path, "good", w, sigmoid(1.0 * y + rng.normal(0, 1, len(y))))
    write_experiment(tmp_path, "inverted", w, sigmoid(-1.0 * y + rng.normal(0, 1, len(y))))
    rep = run_blend(COMP, tmp_path, "stack", verbose=False)
    assert rep.method == "stack" and rep.weights["inverted"] < 0 < rep.weights["good"]
    inp = load_inputs(COMP, Layout(tmp_path))
    members = [(e.test_folds, e.fold_refs()) for e in inp.exps]
    want = blend_scores("rank", "logistic", [rep.weights[e.name] for e in inp.exps], members, rep.intercept)
    sub = pd.read_csv(tmp_path / "submissions/submission.csv")
    np.testing.assert_allclose(sub.target, want, rtol=0, atol=1e-9)
    assert json.loads((tmp_path / "submissions/blend.json").read_text())["stack"]["meta"] == []


def test_stack_meta_without_a_test_table_is_one_line(tmp_path):
    _workdir(tmp_path, meta_signal=True)
    (Layout(tmp_path).raw_input("syn") / "test.csv").unlink()
    with pytest.raises(InputError, match=r"test.csv: not found; --stack-meta group needs"):
        run_blend(COMP, tmp_path, BlendOptions("stack", stack_meta=["group"]), verbose=False)
    with pytest.raises(InputError, match=r"--stack-meta 'nope': no such column in train.csv"):
        _workdir(tmp_path / "b", meta_signal=True)
        run_blend(COMP, tmp_path / "b", BlendOptions("stack", stack_meta=["nope"]), verbose=False)
