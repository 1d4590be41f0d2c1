"""Behaviour kept across the move to one package: a toy grid (2 archs x 2 folds, rank and hill
blends, an export, predict.py) gives the predictions the flat-layout code gave
(tests/data/toy_reference, made by that code on 2026-11-30 with the same commands). On the machine
that made them the files are byte-identical; the test allows 1e-7 for another CPU's arithmetic."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.ensemble.members import load_ensemble
from defectkit.ensemble.report import run_blend
from defectkit.ship.export import export
from defectkit.ship.predict import predict
from defectkit.testing import make_toy_competition, no_torch_env, run_bundle, write_toy_config
from defectkit.train.grid import run_grid

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out
REF = Path(__file__).resolve().parent / "data" / "toy_reference"


def _same(got: Path, want: Path, col: str) -> None:
    g, w = pd.read_csv(got, dtype={"id": str}), pd.read_csv(want, dtype={"id": str})
    assert list(g.columns) == list(w.columns) and list(g.id) == list(w.id), got.name
    np.testing.assert_allclose(g[col], w[col], rtol=0, atol=1e-7, err_msg=str(got))


def test_a_toy_grid_predicts_what_the_flat_layout_predicted(tmp_path):
    base = tmp_path / "w"
    make_toy_competition(base)
    cfg = load_config(write_toy_config(base, archs=["resnet10t", "test_efficientnet"], epochs=3, tta=4, threads=1))
    run_grid(cfg, base, progress=False, say=lambda *a: None)
    for want in sorted((REF / "oof").rglob("*.csv")):
        _same(base / "oof" / want.parent.name / want.name, want, "pred")
    run_blend(cfg.competition, base, "rank", verbose=False)
    _same(base / "submissions/submission.csv", REF / "submission_rank.csv", "target")
    run_blend(cfg.competition, base, "hill", verbose=False)
    _same(base / "submissions/submission.csv", REF / "submission_hill.csv", "target")
    export(load_ensemble(Layout(base)), base / "bundle", cfg.competition.image_ext, say=lambda *a: None)
    r = run_bundle(base / "bundle", [str(base / "input/toy/test"), "--out", str(tmp_path / "b.csv")],
                   no_torch_env(tmp_path))
    assert r.returncode == 0, r.stderr
    _same(tmp_path / "b.csv", REF / "bundle_preds.csv", "prob")
    predict(cfg.competition, base, [str(base / "input/toy/test")], tmp_path / "p.csv", progress=False)
    _same(tmp_path / "p.csv", REF / "predict_preds.csv", "prob")
