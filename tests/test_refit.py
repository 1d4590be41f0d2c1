"""The full-data refit: one model on every training row with the CV's epoch count, test
predictions only; the blend uses the folds, the refit or both; a rerun skips it when current.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import json

import numpy as np
import pandas as pd
import pytest

from defectkit.cli.train import main as train_main
from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.core.records import FoldRecord
from defectkit.ensemble.experiments import load_inputs
from defectkit.ensemble.report import BlendOptions, run_blend
from defectkit.pipeline.grid import run_grid
from defectkit.ship.export import export
from defectkit.ship.predict import Scoring, predict
from defectkit.testing import learnt, make_toy_competition, no_torch_env, run_bundle, write_toy_config

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out


@pytest.fixture(scope="module")
def refitted(tmp_path_factory):
    base = tmp_path_factory.mktemp("refit")
    make_toy_competition(base)
    cfg = load_config(write_toy_config(base, archs=["resnet10t"], epochs=3, refit="both"))
    lines = []
    run_grid(cfg, base, progress=False, say=lambda *a: lines.append(" ".join(map(str, a))))
    return base, cfg, lines


def test_the_refit_trains_on_every_row_for_the_folds_median_epoch_and_writes_test_predictions_only(refitted):
    base, cfg, lines = refitted
    assert any("3 jobs (1 archs x 2 folds + a full-data refit each)" in line for line in lines)
    p = Layout(base).fold("resnet10t", "all")
    meta = FoldRecord.read(p.meta)
    folds = [FoldRecord.read(m) for m in Layout(base).fold_metas("resnet10t")]
    assert len(folds) == 2 and meta.fold == "all" and meta.oof_auc is None and meta.n_val == 0
    assert meta.epochs_run == int(round(np.median([m.best_epoch for m in folds])))
    assert not p.oof.exists() and p.best.exists()
    test = pd.read_csv(p.test, dtype={"id": str})
    sample = pd.read_csv(base / "input/toy/sample_submission.csv", dtype={"id": str})
    assert list(test.id) == list(sample.id) and test.pred.between(0, 1).all()
    sol = pd.read_csv(base / "input/toy/solution.csv", dtype={"id": str})
    from defectkit.core.metrics import auc
    learnt("refit: held-out AUC", auc(sol.target.to_numpy(), test.pred.to_numpy()), 0.8)  # it learnt the task
    again = []
    run_grid(cfg, base, progress=False, say=lambda *a: again.append(" ".join(map(str, a))))
    assert any("3 complete, 0 to run" in line for line in again)


def test_the_blend_uses_folds_refit_or_both(refitted):
    base, cfg, _ = refitted
    exp = load_inputs(cfg.competition, Layout(base)).exps[0]
    subs = {}
    for mode in ("none", "only", "both"):
        rep = run_blend(cfg.competition, base, BlendOptions("mean", refit=mode), verbose=False)
        assert rep.refit == mode
        subs[mode] = pd.read_csv(base / "submissions/submission.csv").target.to_numpy()
    np.testing.assert_allclose(subs["none"], exp.test)
    np.testing.assert_allclose(subs["only"], exp.refit)
    np.testing.assert_allclose(subs["both"], (exp.test + exp.refit) / 2)


@pytest.mark.parametrize("mode", ["only", "both"])
def test_predict_and_the_bundle_apply_a_blend_with_refits(refitted, tmp_path, mode):
    """In rank space, where the refit is ranked against all the experiment's OOF predictions."""

    from defectkit.ensemble.members import load_ensemble
    base, cfg, _ = refitted
    run_blend(cfg.competition, base, BlendOptions("rank", refit=mode), verbose=False)
    sub = pd.read_csv(base / "submissions/submission.csv", dtype={"id": str}).set_index("id")["target"]
    test_dir = str(base / "input/toy/test")
    got = predict(cfg.competition, base, [test_dir], tmp_path / "p.csv", scorer=Scoring(progress=False))
    got = got.set_index("id").prob
    np.testing.assert_allclose(got.loc[sub.index], sub, rtol=0, atol=1e-6)
    spec = export(load_ensemble(Layout(base)), tmp_path / "bundle", ".png", say=lambda *a: None)
    e = spec.experiments[0]
    assert e.refit.use == mode and len(e.folds) == (0 if mode == "only" else 2)
    assert len(list((tmp_path / "bundle/models").glob("*.onnx"))) == (1 if mode == "only" else 3)
    r = run_bundle(tmp_path / "bundle", [test_dir, "--out", str(tmp_path / "b.csv"), "--threads", "1"],
             no_torch_env(tmp_path))
    assert r.returncode == 0, r.stderr
    bundled = pd.read_csv(tmp_path / "b.csv", dtype={"id": str}).set_index("id").prob
    np.testing.assert_allclose(bundled.loc[sub.index], sub, rtol=0, atol=1e-4)


def test_train_py_fold_all_and_a_blend_without_refits(refitted, tmp_path, capsys):
    base, cfg, _ = refitted
    argv = ["--config", str(base / "configs/toy.yaml"), "--workdir", str(base), "--fold", "all", "--arch",
            "resnet10t", "--quiet", "--name", "other"]
    assert train_main(argv) == 2  # no folds of "other" to take the epoch count from
    assert "no complete fold to take the epoch count from" in capsys.readouterr().err
    assert train_main(argv + ["--epochs", "1"]) == 0 and "test predictions only" in capsys.readouterr().out
    assert json.loads(Layout(base).fold("other", "all").meta.read_text())["epochs_run"] == 1
    work = tmp_path / "w"
    make_toy_competition(work)
    cfg2 = load_config(write_toy_config(work, archs=["resnet10t"], epochs=1))
    run_grid(cfg2, work, progress=False, say=lambda *a: None)
    with pytest.raises(InputError, match=r"resnet10t: no full-data refit .*--fold all"):
        run_blend(cfg2.competition, work, BlendOptions("hill", refit="only"), verbose=False)


def test_an_out_of_date_refit_is_retrained_not_resumed(refitted):
    """When the folds change, the refit's complete files are out of date: the next run retrains
    it from the start (a complete refit keeps no resume checkpoint to continue from)."""
    base, cfg, _ = refitted
    p = Layout(base).fold("resnet10t", "all")
    assert not p.last.exists()
    meta = json.loads(p.meta.read_text())
    p.meta.write_text(json.dumps({**meta, "config_hash": "another"}))
    lines = []
    run_grid(cfg, base, progress=False, say=lambda *a: lines.append(" ".join(map(str, a))))
    assert any("2 complete, 1 to run" in line for line in lines)
    fresh = json.loads(p.meta.read_text())
    assert fresh["config_hash"] != "another" and fresh["run_id"] != meta["run_id"]
