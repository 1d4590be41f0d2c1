"""predict.py: the blended ensemble on new images reproduces the submission, in every blend space,
through the frozen-feature cache too; bad inputs are one-line errors and nothing is written."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from defectkit.cli.predict import main as predict_main
from defectkit.ensemble.report import BlendOptions, run_blend
from defectkit.pipeline.grid import run_grid
from defectkit.runtime.runner import ScoreOptions
from defectkit.ship.export import export
from defectkit.ship.predict import Scoring, predict

QUIET = Scoring(progress=False)

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out

EXPS = ["resnet10t", "test_efficientnet_cached"]


def _submission(base):
    sub = pd.read_csv(base / "submissions/submission.csv", dtype={"id": str})
    return sub.set_index("id")["target"]


def test_predict_reproduces_the_submission_in_rank_space(blended, tmp_path):
    base, cfg = blended
    report = json.loads((base / "submissions/blend.json").read_text())
    assert sorted(report["weights"]) == EXPS  # both experiments, both shapes, the cache included
    out = tmp_path / "preds.csv"
    df = predict(cfg.competition, base, [str(base / "input/toy/test")], out, scorer=QUIET)
    got = pd.read_csv(out, dtype={"id": str}).set_index("id")
    want = _submission(base)
    assert list(got.columns) == ["prob", "defect"] and sorted(got.index) == sorted(want.index)
    np.testing.assert_allclose(got.prob.loc[want.index], want, rtol=0, atol=1e-6)
    t = report["operating_points"]["chosen"]["threshold"]
    assert (got.defect == (got.prob >= t)).all() and len(df) == len(want)
    strict = predict(cfg.competition, base, [str(base / "input/toy/test")], tmp_path / "r99.csv",
                     ScoreOptions("recall_99"), QUIET)
    assert strict.defect.sum() >= df.defect.sum()


def test_predict_reproduces_a_mean_blend_from_a_csv_of_ids(blended, tmp_path):
    base, cfg = blended
    work = tmp_path / "w"
    for d in ("input", "oof", "models", "folds", "configs"):
        shutil.copytree(base / d, work / d, symlinks=True)
    run_blend(cfg.competition, work, "mean", verbose=False)
    ids = pd.read_csv(work / "input/toy/sample_submission.csv", dtype={"id": str})[["id"]]
    ids.to_csv(tmp_path / "ids.csv", index=False)
    df = predict(cfg.competition, work, [str(tmp_path / "ids.csv")], tmp_path / "p.csv", scorer=QUIET)
    np.testing.assert_allclose(df.set_index("id").prob.loc[ids.id], _submission(work).loc[ids.id], atol=1e-6)


def test_an_unreadable_image_is_one_error_or_left_out_with_skip_bad(blended, tmp_path, capsys):
    base, _ = blended
    folder = tmp_path / "new"
    shutil.copytree(base / "input/toy/test", folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image IEND")
    out = tmp_path / "p.csv"
    argv = ["--config", str(base / "configs/toy.yaml"), "--workdir", str(base), str(folder), "--out", str(out),
            "--quiet"]
    assert predict_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 33 images cannot be used" in err and "broken.png" in err
    assert not out.exists()
    assert predict_main(argv + ["--skip-bad"]) == 0
    assert "left out:" in capsys.readouterr().out and "broken.png" not in out.read_text()
    assert len(pd.read_csv(out)) == 32


@pytest.mark.parametrize("case", ["empty folder", "experiment folder missing", "no blend"])
def test_bad_inputs_are_one_line_errors(blended, tmp_path, capsys, case):
    base, _ = blended
    work, inputs = base, [str(base / "input/toy/test")]
    if case == "empty folder":
        (tmp_path / "empty").mkdir()
        inputs, want = [str(tmp_path / "empty")], "no images"
    else:
        work = tmp_path / "w"
        for d in ("input", "oof", "models", "folds", "configs", "submissions"):
            shutil.copytree(base / d, work / d, symlinks=True)
        if case == "experiment folder missing":
            shutil.rmtree(work / "oof/test_efficientnet_cached")
            want = "experiment 'test_efficientnet_cached': its folder"
        else:
            shutil.rmtree(work / "submissions")
            want = "no blend yet"
    out = tmp_path / "p.csv"
    code = predict_main(["--config", str(base / "configs/toy.yaml"), "--workdir", str(work), *inputs,
                         "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and want in err and not out.exists()


def test_a_stack_with_metadata_is_applied_with_meta_by_predict_and_the_bundle(tmp_path, capsys):
    """Labels the images cannot tell and a column that knows them make the stacker win;
    predict.py and the bundle need the images' metadata (--meta) and then reproduce the submission."""

    from defectkit.core.config import load_config
    from defectkit.core.layout import Layout
    from defectkit.ensemble.members import load_ensemble
    from defectkit.testing import make_toy_competition, no_torch_env, run_bundle, write_toy_config
    work = tmp_path / "w"
    make_toy_competition(work)
    rng = np.random.default_rng(0)
    for name in ("train.csv", "solution.csv"):  # a quarter of the labels flipped: no image tells them
        df = pd.read_csv(work / "input/toy" / name, dtype={"id": str})
        df["target"] = np.where(rng.random(len(df)) < 0.25, 1 - df.target, df.target)
        df.to_csv(work / "input/toy" / name, index=False)
        df["line"] = np.where(df.target == 1, "L2", "L1")  # ... but the metadata does
        (df[["id", "target", "line"]] if name == "train.csv" else df[["id", "line"]]).to_csv(
            work / "input/toy" / ("train.csv" if name == "train.csv" else "test.csv"), index=False)
    cfg = load_config(write_toy_config(work, archs=["resnet10t"], epochs=1))
    run_grid(cfg, work, progress=False, say=lambda *a: None)
    rep = run_blend(cfg.competition, work, BlendOptions("stack", stack_meta=["line"]), verbose=False)
    st = rep.stack
    assert rep.method == "stack" and st["meta"] == ["line=L1", "line=L2"], st["hill_cross_check"]
    sub = _submission(work)
    test_dir, meta = str(work / "input/toy/test"), str(work / "input/toy/test.csv")
    argv = ["--config", str(work / "configs/toy.yaml"), "--workdir", str(work), test_dir, "--out",
            str(tmp_path / "p.csv"), "--quiet"]
    assert predict_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stacker also uses metadata (line); give a CSV" in err
    assert predict_main(argv + ["--meta", meta]) == 0
    got = pd.read_csv(tmp_path / "p.csv", dtype={"id": str}).set_index("id").prob
    np.testing.assert_allclose(got.loc[sub.index], sub, rtol=0, atol=1e-6)
    out = tmp_path / "bundle"
    export(load_ensemble(Layout(work)), out, ".png", say=lambda *a: None)
    env = no_torch_env(tmp_path)
    r = run_bundle(out, [test_dir, "--out", str(tmp_path / "b.csv"), "--threads", "1"], env)
    assert r.returncode == 2 and "give a CSV of id + those columns with --meta" in r.stderr
    r = run_bundle(out, [test_dir, "--out", str(tmp_path / "b.csv"), "--threads", "1", "--meta", meta], env)
    assert r.returncode == 0, r.stderr
    bundled = pd.read_csv(tmp_path / "b.csv", dtype={"id": str}).set_index("id").prob
    np.testing.assert_allclose(bundled.loc[sub.index], sub, rtol=0, atol=1e-4)


@pytest.mark.parametrize("bad", ["../secret", ".", "a\\b"])
def test_a_csv_id_that_is_a_path_is_refused_by_the_rule_checks_uses(tmp_path, bad):
    """image_inputs (shipped in the bundle, no pandas) and checks.check_name share names.is_plain_name."""
    from defectkit.core.checks import InputError, check_name
    from defectkit.runtime.image_inputs import InputsError, list_inputs
    (tmp_path / "ids.csv").write_text(f"id\nok\n{bad}\n")
    with pytest.raises(InputsError, match="is not a plain file name"):
        list_inputs([str(tmp_path / "ids.csv")], tmp_path, ".png")
    with pytest.raises(InputError, match="must be a plain name"):
        check_name(bad, "id")
