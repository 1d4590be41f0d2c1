"""One fast student from the blend: it learns what the ensemble knows (AUC well above 0.5, its scores
rank-correlated with the teacher's), its int8 and OpenVINO bundles run without torch and agree with
its fp32 one within the bound recorded at export, and bad requests are one line each.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from defectkit.cli.distill import main as distill_main
from defectkit.cli.export import main as export_main
from defectkit.core.checks import InputError
from defectkit.data.tables import read_teacher
from defectkit.ensemble.report import run_blend
from defectkit.pipeline.distill import distill
from defectkit.testing import learnt, no_torch_env, run_bundle

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out


@pytest.fixture(scope="module")
def distilled(blended, tmp_path_factory):
    base, cfg = blended
    work = tmp_path_factory.mktemp("distill") / "w"
    for d in ("input", "oof", "models", "folds", "configs", "submissions"):
        shutil.copytree(base / d, work / d, symlinks=True)
    report = distill(cfg, work, "resnet10t", with_test=True, cv=True, over={"epochs": 10})  # not timed: fixed
    return work, cfg, report


def test_the_student_learns_what_the_ensemble_knows(distilled):
    work, cfg, r = distilled
    assert r["experiment"].endswith("_student32")
    learnt("distill: rank correlation with the teacher", r["rank_corr_with_teacher_test"], 0.75)
    learnt("distill: student held-out AUC", r["held_out"]["student_auc"], 0.85)
    learnt("distill: student OOF AUC", r["cv"]["student_oof_auc"], 0.85)
    saved = json.loads((work / "submissions/student.json").read_text())
    assert saved["operating_points"]["chosen"]["threshold"] == r["operating_points"]["chosen"]["threshold"]
    assert 0 < saved["operating_points"]["chosen"]["threshold"] < 1  # a percentile of the blend's OOF scores
    left = run_blend(cfg.competition, work, "rank", verbose=False).left_out  # a student is never blended
    assert any("distilled student" in why for why in left.values())


def _bundle_preds(work, out, tmp, name):
    r = run_bundle(out, [str(work / "input/toy/test"), "--out", str(tmp / f"{name}.csv"), "--threads", "1"],
                   no_torch_env(tmp))
    assert r.returncode == 0, r.stderr
    return pd.read_csv(tmp / f"{name}.csv", dtype={"id": str}).set_index("id").prob


def test_int8_and_openvino_bundles_of_the_student_run_without_torch_and_agree(distilled, tmp_path):
    pytest.importorskip("openvino")
    work, _, _ = distilled
    common = ["--config", str(work / "configs/toy.yaml"), "--workdir", str(work), "--student"]
    preds = {}
    for target, precision in (("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8")):
        out = tmp_path / f"{target}_{precision}"
        assert export_main([*common, "--target", target, "--precision", precision, "--out", str(out)]) == 0
        preds[target, precision] = _bundle_preds(work, out, tmp_path, f"{target}_{precision}")
    spec = json.loads((tmp_path / "onnx_int8/bundle.json").read_text())
    bound = spec["experiments"][0]["refit"]["bound"]
    assert spec["runtime"] == "onnxruntime" and spec["precision"] == "int8" and 0 < bound
    learnt("distill: int8 drift bound", bound, 0.2, below=True)
    student = pd.read_csv(next((work / "oof").glob("*_student32/test_foldall.csv")), dtype={"id": str})
    np.testing.assert_allclose(preds["onnx", "fp32"].loc[student.id], student.pred, atol=1e-4)  # = the student
    learnt("distill: onnx int8 vs fp32", np.abs(preds["onnx", "int8"] - preds["onnx", "fp32"]).max(), 0.2, below=True)
    np.testing.assert_allclose(preds["openvino", "fp32"], preds["onnx", "fp32"], atol=1e-4)
    learnt("distill: openvino int8 vs fp32", np.abs(preds["openvino", "int8"] - preds["onnx", "fp32"]).max(), 0.2,
           below=True)


def test_an_int8_bundle_whose_scores_drift_is_refused_in_one_line(distilled, tmp_path):
    work, _, _ = distilled
    out = tmp_path / "int8"
    assert export_main(["--config", str(work / "configs/toy.yaml"), "--workdir", str(work), "--student",
                        "--precision", "int8", "--out", str(out)]) == 0
    refs = dict(np.load(out / "refs.npz"))
    key = next(k for k in refs if k.endswith("/check_scores"))
    refs[key] = refs[key] + 0.5  # as if another machine's int8 kernels scored them otherwise
    np.savez(out / "refs.npz", **refs)
    spec = json.loads((out / "bundle.json").read_text())  # re-sign the edited file, as a drift is not an edit
    from defectkit.runtime.spec import sha256_file, spec_digest
    spec["files"]["refs.npz"] = sha256_file(out / "refs.npz")
    spec["spec_sha256"] = spec_digest(spec)
    (out / "bundle.json").write_text(json.dumps(spec))
    r = run_bundle(out, [str(work / "input/toy/test"), "--out", str(tmp_path / "p.csv")], no_torch_env(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "drift by" in r.stderr and "bound" in r.stderr
    assert not (tmp_path / "p.csv").exists()


def test_bad_requests_are_one_line(distilled, blended, tmp_path, capsys):
    work, cfg, _ = distilled
    empty = tmp_path / "empty"
    shutil.copytree(work / "input", empty / "input")
    shutil.copytree(work / "configs", empty / "configs")
    argv = ["--config", str(work / "configs/toy.yaml")]
    assert distill_main([*argv, "--workdir", str(empty)]) == 2
    assert "no blend yet" in capsys.readouterr().err
    assert export_main([*argv, "--workdir", str(work), "--student", "--precision", "int4"]) == 2
    assert "--precision 'int4': expected one of fp32, int8" in capsys.readouterr().err
    assert export_main([*argv, "--workdir", str(work), "--target", "tensorrt"]) == 2
    assert "--target 'tensorrt': expected one of onnx, openvino" in capsys.readouterr().err
    gone = tmp_path / "gone"
    for d in ("input", "oof", "models", "folds", "configs", "submissions"):
        shutil.copytree(work / d, gone / d, symlinks=True)
    shutil.rmtree(gone / "oof/resnet10t")
    assert distill_main([*argv, "--workdir", str(gone)]) == 2
    assert "resnet10t" in capsys.readouterr().err


def test_a_teacher_table_is_checked_row_by_row(tmp_path):
    (tmp_path / "t.csv").write_text("id,target\na,0.2\nb,1.5\n")
    with pytest.raises(InputError, match=r"t.csv: row 3: target '1.5'; expected a number in \[0, 1\]"):
        read_teacher(tmp_path / "t.csv", ["a", "b"], [])
    (tmp_path / "t.csv").write_text("id,target\na,0.2\n")
    with pytest.raises(InputError, match=r"no target for 1 training rows, e.g. \['b'\]"):
        read_teacher(tmp_path / "t.csv", ["a", "b"], [])


def test_a_stacker_with_metadata_has_no_student(tmp_path):
    from defectkit.core.records import BlendReport
    from defectkit.ensemble.distill import teacher_scores
    ops = {k: {"threshold": 0.5} for k in ("chosen", "recall_95", "recall_99")}
    blend = BlendReport("c", "stack", {"a": 1.0}, ops, link="logistic",
                        stack={"meta": ["g=x"], "encoding": [{"col": "g", "kind": "category", "values": ["x"]}],
                               "coef": {"a": 1.0, "g=x": 0.5}})
    with pytest.raises(InputError, match=r"a stacker fitted with metadata \(g\), which a student of images alone"):
        teacher_scores(None, tmp_path, blend)


def test_the_default_student_is_the_blends_fastest_backbone_here():
    from defectkit.pipeline.distill import fastest_arch
    assert fastest_arch(["resnet50", "resnet10t"], (64, 64)) == "resnet10t"
    assert fastest_arch(["resnet50"], (64, 64)) == "resnet50"  # one: nothing to time
