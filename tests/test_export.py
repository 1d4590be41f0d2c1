"""export.py: the ONNX bundle reproduces the submission without torch; an edited bundle is refused."""
import json

import numpy as np
import pandas as pd
import pytest

from defectkit.core.layout import Layout
from defectkit.core.metrics import auc
from defectkit.ensemble.members import load_ensemble
from defectkit.ship.export import export
from defectkit.testing import no_torch_env, run_bundle

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out


@pytest.fixture(scope="module")
def bundle(blended, tmp_path_factory):
    base, cfg = blended
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    spec = export(load_ensemble(Layout(base)), out, cfg.competition.image_ext, say=lambda *a: None)
    return base, out, spec


def test_the_bundle_reproduces_the_submission_without_torch(bundle, tmp_path):
    base, out, spec = bundle
    assert sorted(e.name for e in spec.experiments) == ["resnet10t", "test_efficientnet_cached"]
    assert {f.cache_frozen for e in spec.experiments for f in e.folds} == {True, False}
    assert all(f.mb > 0 for e in spec.experiments for f in e.folds)
    preds = tmp_path / "preds.csv"
    r = run_bundle(out, [str(base / "input/toy/test"), "--out", str(preds), "--threads", "1"], no_torch_env(tmp_path))
    assert r.returncode == 0, r.stderr
    got = pd.read_csv(preds, dtype={"id": str}).set_index("id")
    sub = pd.read_csv(base / "submissions/submission.csv", dtype={"id": str}).set_index("id")["target"]
    np.testing.assert_allclose(got.prob.loc[sub.index], sub, rtol=0, atol=1e-4)
    sol = pd.read_csv(base / "input/toy/solution.csv", dtype={"id": str}).set_index("id").target.loc[sub.index]
    assert auc(sol.to_numpy(), got.prob.loc[sub.index].to_numpy()) == auc(sol.to_numpy(), sub.to_numpy())
    t = json.loads((out / "bundle.json").read_text())["operating_points"]["chosen"]
    assert (got.defect == (got.prob >= t)).all()


def test_an_edited_bundle_is_refused_in_one_line(bundle, tmp_path):
    import shutil
    base, out, spec = bundle
    copy = tmp_path / "edited"
    shutil.copytree(out, copy)
    model = copy / spec.experiments[0].folds[0].model
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    preds = tmp_path / "p.csv"
    r = run_bundle(copy, [str(base / "input/toy/test"), "--out", str(preds)], no_torch_env(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "edited or damaged" in r.stderr
    assert model.name in r.stderr and not preds.exists()


def test_the_runner_names_an_undecodable_image(bundle, tmp_path):
    import shutil
    base, out, _ = bundle
    folder = tmp_path / "imgs"
    shutil.copytree(base / "input/toy/test", folder)
    (folder / "bad.jpg").write_bytes(b"\xff\xd8 garbage \xff\xd9")
    r = run_bundle(out, [str(folder), "--out", str(tmp_path / "p.csv")], no_torch_env(tmp_path))
    assert r.returncode == 2 and "bad.jpg" in r.stderr and not (tmp_path / "p.csv").exists()
    r = run_bundle(out, [str(folder), "--out", str(tmp_path / "p.csv"), "--skip-bad"], no_torch_env(tmp_path))
    assert r.returncode == 0 and len(pd.read_csv(tmp_path / "p.csv")) == 32
