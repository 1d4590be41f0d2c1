import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from defectkit.cli.blend import main as blend_main
from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.core.config import Competition, load_config
from defectkit.core.layout import Layout
from defectkit.core.records import FoldRecord
from defectkit.ensemble.methods import hill_climb
from defectkit.ensemble.report import BlendOptions, run_blend
from defectkit.testing import make_blend_workdir, sigmoid, write_experiment


def _comp(base, name="syn"):
    return load_config(base / "configs" / f"{name}.yaml").competition


@pytest.fixture
def complementary(tmp_path):
    """Two models, each seeing a different half of the signal: together they are better."""
    w = make_blend_workdir(tmp_path)
    rng, y = w["rng"], w["y"]
    a_sig, b_sig = rng.normal(0, 1, len(y)), rng.normal(0, 1, len(y))
    latent = y * 1.6
    write_experiment(tmp_path, "model_a", w, sigmoid(latent * 0.5 + a_sig + rng.normal(0, 0.8, len(y))))
    write_experiment(tmp_path, "model_b", w, sigmoid(latent * 0.5 - a_sig + b_sig + rng.normal(0, 0.8, len(y))))
    write_experiment(tmp_path, "weak", w, sigmoid(latent * 0.1 + rng.normal(0, 1, len(y))))
    return tmp_path, w


def test_fast_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + y * 0.3, 1)  # many ties
    assert abs(metrics.auc(y, s) - roc_auc_score(y, s)) < 1e-12


def test_hill_blend_beats_best_single_when_signal_is_complementary(complementary):
    base, w = complementary
    rep = run_blend(_comp(base), base, "hill", verbose=False)
    best_single = max(r["oof_auc"] for r in rep.table)
    assert rep.blend_oof_auc > best_single + 0.01
    assert set(rep.weights) >= {"model_a", "model_b"}
    assert rep.cross_check["blend_auc_mean"] > rep.cross_check["best_single_auc_mean"]
    # the submission matches sample_submission exactly in columns, ids and order
    sub = pd.read_csv(base / "submissions/submission.csv", dtype={"id": str})
    sample = pd.read_csv(base / "input/syn/sample_submission.csv", dtype={"id": str})
    assert list(sub.columns) == list(sample.columns) and list(sub.id) == list(sample.id)
    assert sub.target.between(0, 1).all() and sub.target.notna().all()
    # the local leaderboard scores it against solution.csv, and it beats each model there too
    lb = rep.local_leaderboard
    sol = pd.read_csv(base / "input/syn/solution.csv", dtype={"id": str})
    assert abs(lb["blend"] - roc_auc_score(sol.target, sub.target)) < 1e-5  # reported to 5 digits
    assert lb["blend"] > max(lb["model_a"], lb["model_b"])
    saved = json.loads((base / "submissions/blend.json").read_text())
    assert saved["weights"] == rep.weights and (base / "submissions/roc.png").stat().st_size > 1000


def test_hill_picks_the_complementary_models_and_leaves_out_noise(tmp_path):
    """Two models that each see half of the signal and one that sees none: ensemble selection
    must weight the two about equally and never choose the noise."""
    w = make_blend_workdir(tmp_path, seed=3)
    rng, y = w["rng"], w["y"][:w["n"]]
    half_a, half_b = rng.normal(0, 1, len(y)), rng.normal(0, 1, len(y))
    O = np.column_stack([y * 1.0 + half_a, y * 1.0 - half_a + half_b, rng.normal(0, 1, len(y))])
    weights, hist = hill_climb(y, O)
    assert weights[2] == 0 and abs(weights[0] - weights[1]) <= 0.34
    assert hist[-1] > max(metrics.auc(y, O[:, j]) for j in range(3)) + 0.02


def test_thresholds_by_f1_and_youden_are_the_best_on_a_brute_force_grid():
    rng = np.random.default_rng(1)
    y = (rng.random(600) < 0.3).astype(int)
    s = np.round(y * 1.1 + rng.normal(0, 1, 600), 2)
    cands = np.unique(s)
    tp = np.array([((s >= t) & (y == 1)).sum() for t in cands])
    fp = np.array([((s >= t) & (y == 0)).sum() for t in cands])
    fn = y.sum() - tp
    f1 = 2 * tp / (2 * tp + fp + fn)
    youden = tp / y.sum() - fp / (len(y) - y.sum())
    assert metrics.best_threshold(y, s, "f1") == cands[np.argmax(f1)]
    assert metrics.best_threshold(y, s, "youden") == cands[np.argmax(youden)]


def test_rank_blend_is_invariant_to_monotone_transform(complementary):
    base, w = complementary
    rep1 = run_blend(_comp(base), base, "rank", verbose=False)
    sub1 = pd.read_csv(base / "submissions/submission.csv")
    for k in range(4):  # squash model_a's predictions monotonically
        for f in (f"fold{k}.csv", f"test_fold{k}.csv"):
            p = base / "oof/model_a" / f
            df = pd.read_csv(p)
            df["pred"] = df["pred"] ** 5
            df.to_csv(p, index=False)
    rep2 = run_blend(_comp(base), base, "rank", verbose=False)
    sub2 = pd.read_csv(base / "submissions/submission.csv")
    assert rep1.blend_oof_auc == rep2.blend_oof_auc
    assert rep1.local_leaderboard["blend"] == rep2.local_leaderboard["blend"]
    # the mean of probabilities, by contrast, does change
    m1 = run_blend(_comp(base), base, "mean", verbose=False).blend_oof_auc
    assert m1 != rep1.blend_oof_auc
    np.testing.assert_allclose(sub1.target, sub2.target)  # same submission, not just the same AUC


def test_a_prediction_read_back_from_its_csv_ranks_where_the_fresh_one_does(tmp_path):
    """rank_pct compares in float32, the members' precision: the OOF references come back from the fold's CSV
    a few 1e-8 off the float32 the model predicted, and a new image that ties one of them (an image scored
    twice) must land on the same side of it in predict.py and the bundle (fresh) as in blend.py (read back):
    in float64 one reference step, 1 / n, flipped with the last bits (seen under one thread a worker)."""
    from defectkit.core.fileio import write_csv_atomic
    from defectkit.runtime.combine import rank_pct
    fresh = np.random.default_rng(0).random(200).astype(np.float32)
    write_csv_atomic(pd.DataFrame({"id": range(200), "pred": fresh}), tmp_path / "fold0.csv")
    back = pd.read_csv(tmp_path / "fold0.csv").pred.to_numpy()
    assert (back != fresh.astype(np.float64)).sum() > 50  # the CSV's shortest decimals are not float32's values
    np.testing.assert_array_equal(rank_pct(back, fresh), rank_pct(fresh, fresh))
    np.testing.assert_array_equal(rank_pct(back, back), (np.argsort(np.argsort(fresh)) + 1) / 200)


def test_operating_points_are_chosen_on_oof():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    s = y * 1.5 + rng.normal(0, 1, 2000)
    ops = metrics.operating_points(y, s, "accuracy")
    assert ops["recall_95"]["recall"] >= 0.95 and ops["recall_99"]["recall"] >= 0.99
    assert ops["recall_99"]["fpr"] >= ops["recall_95"]["fpr"]
    acc = [((s >= t) == y).mean() for t in np.quantile(s, np.linspace(0.01, 0.99, 99))]
    assert ops["chosen"]["accuracy"] >= max(acc) - 1e-9


def test_incomplete_experiment_is_left_out_or_strict_error(complementary, capsys):
    base, w = complementary
    write_experiment(base, "half_done", w, sigmoid(w["y"] * 1.0), skip_folds=(2, 3))
    rep = run_blend(_comp(base), base, "hill")
    assert "half_done" in rep.left_out and "half_done" not in rep.experiments
    assert "left out half_done: folds [2, 3] missing" in capsys.readouterr().out
    with pytest.raises(InputError, match="--strict: half_done"):
        run_blend(_comp(base), base, BlendOptions("hill", strict=True), verbose=False)


def test_other_folds_file_is_not_mixed(complementary):
    base, w = complementary
    write_experiment(base, "old_folds", w, sigmoid(w["y"] * 3.0))
    for meta in Layout(base).fold_metas("old_folds"):  # as if made with another folds file
        dataclasses.replace(FoldRecord.read(meta), folds_hash="0123456789abcdef").write(meta)
    rep = run_blend(_comp(base), base, "hill", verbose=False)
    assert "another folds file" in rep.left_out["old_folds"]


@pytest.mark.parametrize("corrupt, match", [
    (lambda d: d.assign(pred=[np.nan] + list(d.pred[1:])), r"fold0.csv: row 2: 'pred' is nan"),
    (lambda d: d.assign(pred=[np.inf] + list(d.pred[1:])), r"fold0.csv: row 2: 'pred' is inf"),
    (lambda d: pd.concat([d, d.iloc[:1]]), "appears in more than one OOF row"),
    (lambda d: d.iloc[1:], "do not cover the training ids"),
    (lambda d: d.drop(columns="pred"), r"missing column\(s\) \['pred'\]"),
])
def test_bad_oof_file_is_a_clear_error(complementary, corrupt, match):
    base, _ = complementary
    p = base / "oof/model_a/fold0.csv"
    corrupt(pd.read_csv(p)).to_csv(p, index=False)
    with pytest.raises(InputError, match=match):
        run_blend(_comp(base), base, "hill", verbose=False)
    assert not (base / "submissions/submission.csv").exists()  # nothing half-written


def test_test_file_not_covering_submission_ids(complementary):
    base, _ = complementary
    p = base / "oof/model_b/test_fold1.csv"
    pd.read_csv(p).iloc[:-3].to_csv(p, index=False)
    with pytest.raises(InputError, match="test_fold1.csv: ids do not match sample_submission.csv"):
        run_blend(_comp(base), base, "hill", verbose=False)


def test_submission_columns_come_from_the_competition(tmp_path):
    w = make_blend_workdir(tmp_path, comp=Competition(name="nex", submission_columns=["id", "label"]))
    write_experiment(tmp_path, "m", w, sigmoid(w["y"] * 2.0 + w["rng"].normal(0, 1, len(w["y"]))))
    (tmp_path / "input/nex/solution.csv").unlink()  # a real contest keeps its answers
    rep = run_blend(_comp(tmp_path, "nex"), tmp_path, "hill", verbose=False)
    sub = pd.read_csv(tmp_path / "submissions/submission.csv")
    assert list(sub.columns) == ["id", "label"] and rep.local_leaderboard is None


def test_blend_cli_prints_table(complementary, capsys):
    base, _ = complementary
    assert blend_main(["--competition", "syn", "--workdir", str(base), "--blend-method", "hill"]) == 0
    out = capsys.readouterr().out
    for word in ("experiment", "oof_auc", "fold_auc_std", "max_corr_others", "blend (hill) weights",
                 "cross-check", "recall_95", "local leaderboard"):
        assert word in out
