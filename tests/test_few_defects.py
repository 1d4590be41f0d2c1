"""Few or no defect images: a folder of good images alone prepares, plans the anomaly member, trains,
blends (operating points from the good images' scores), exports, and the bundle's runner (no torch)
reproduces predict.py; fresh defects score above fresh good images; the supervised path says why it
cannot run and what to use instead.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import json

import numpy as np
import pandas as pd
import pytest

from defectkit.cli.export import main as export_main
from defectkit.cli.predict import main as predict_main
from defectkit.cli.prepare import main as prepare_main
from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.core.metrics import auc
from defectkit.pipeline.grid import run_grid
from defectkit.testing import learnt, make_class_folder, no_torch_env, run_bundle


@pytest.fixture(scope="module")
def good_only(tmp_path_factory):
    """prepare.py folder --good ok (no defect folder), then run.py on the config it wrote (preset auto)."""
    base = tmp_path_factory.mktemp("goodonly")
    make_class_folder(base / "images", n_good=60)
    assert prepare_main(["folder", str(base / "images"), "--good", "ok", "--name", "chips",
                         "--workdir", str(base)]) == 0
    cfg = load_config(base / "configs/chips.yaml")
    lines = []
    run_grid(cfg, base, progress=False, say=lines.append)
    return base, "\n".join(map(str, lines))


@pytest.mark.slow  # plans and trains the member
def test_good_images_alone_plan_train_and_blend_the_anomaly_member(good_only):
    """With time left at the images' own size the plan buys more backbones as members; the mean keeps those the
    synthetic yardstick says help, and every operating point carries the recall the yardstick estimates there."""
    base, said = good_only
    assert "plan: the anomaly member alone (too few defects for classifiers), 96 x 96 px" in said
    plan = json.loads(next((base / "plans").glob("*.json")).read_text())["plan"]
    lites = [f"{a}_anomaly96" for a in plan["archs"]]  # lite2 first (at 96 px it fits), lite0/1 if they fit too
    assert plan["archs"][0] == "tf_efficientnet_lite2"
    assert all((base / "oof" / e / "fold4.json").exists() for e in lites)
    assert plan["draws"] > 1 and f"{plan['draws']} bank draws averaged" in said  # time and line speed left
    meta = json.loads((base / "oof" / lites[0] / "fold0.json").read_text())
    assert meta["config"]["recipe"]["anomaly_draws"] == plan["draws"] and meta["n_train"] % plan["draws"] == 0
    assert "the members' bundle: about" in said
    assert "bank draws and backbones are bought only within 42 ms, the 50 ms target less" in said
    blend = json.loads((base / "submissions/blend.json").read_text())
    cv = blend["cross_check"]
    assert "none in fold(s) [0, 1, 2, 3, 4]: no weights can be found" in cv["note"]
    chosen = list(blend["weights"])
    assert blend["method"] == "mean" and set(chosen) <= set(lites) and chosen
    assert set(blend["weights"].values()) == {1 / len(chosen)}
    if len(lites) > 1:  # chosen by the yardstick, each member's figure kept
        members = cv["synthetic"]["members"]
        assert "members chosen by the synthetic yardstick" in cv["note"]
        assert members["blend"] >= max(members[e] for e in lites) and set(members) == {*lites, "blend"}
    ops = blend["operating_points"]
    assert "recall_95" not in ops and ops["chosen"]["by"] == "false_alarm_1pct"
    assert ops["false_alarm_1pct"]["fp"] == 0 and ops["false_alarm_1pct"]["resolved"] is False  # 45 good OOF rows
    assert blend["blend_oof_auc"] is None  # strict JSON: undefined without defects

    def files(exp, pattern):
        return pd.concat(pd.read_csv(p) for p in sorted((base / "oof" / exp).glob(pattern))).reset_index(drop=True)
    oof = sum(files(e, "fold[0-9].csv")["pred"] for e in chosen) / len(chosen)
    ids = files(chosen[0], "fold[0-9].csv")["id"]
    assert len(oof) == 45 and ops["chosen"]["threshold"] > oof.max()
    # the synthetic yardstick's recall at each point: one synthetic defect per held-out good image, the share of
    # the blend of the chosen members' scores of them above the point's threshold (the files say the same)
    syn = files(chosen[0], "synthetic_fold[0-9].csv")
    pred = sum(files(e, "synthetic_fold[0-9].csv")["pred"] for e in chosen) / len(chosen)
    assert len(syn) == 45 and set(syn["source"]) == set(ids) and syn["id"].is_unique
    assert all((files(e, "synthetic_fold[0-9].csv")["id"] == syn["id"]).all() for e in lites)  # the same defects
    assert set(syn["kind"]) == {"patch", "scratch", "blob", "blur", "brightness"}
    for op in ops.values():
        assert op["synthetic_recall"] == round(float((pred >= op["threshold"]).mean()), 4)
    assert ops["false_alarm_1pct"]["synthetic_recall"] >= ops["false_alarm_0.1pct"]["synthetic_recall"]
    scratches = pred[syn.kind == "scratch"]
    assert cv["synthetic"]["chosen_by_kind"]["scratch"] == round(float((scratches >= ops["chosen"]["threshold"])
                                                                      .mean()), 4)
    assert cv["synthetic"]["n"] == 45 and "not on real ones" in cv["synthetic"]["note"]


@pytest.mark.slow  # plans and trains the member
def test_fresh_defects_score_above_fresh_goods_and_the_bundle_agrees_without_torch(good_only, tmp_path, capsys):
    base, _ = good_only
    fresh = make_class_folder(tmp_path / "line", n_good=24, n_defect=24, seed=7)
    argv = ["--config", str(base / "configs/chips.yaml"), "--workdir", str(base)]
    images = [str(fresh / "ok"), str(fresh / "ng")]
    assert predict_main([*argv, *images, "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    p = pd.read_csv(tmp_path / "p.csv")
    y = p["id"].str.startswith("ng").to_numpy(int)
    learnt("few defects: member AUC on fresh images", auc(y, p["prob"].to_numpy()), 0.85)
    learnt("few defects: false alarms at the chosen point", p["defect"][y == 0].mean(), 0.3, below=True)
    learnt("few defects: recall at the chosen point", p["defect"][y == 1].mean(), 0.5)  # at 1 % false alarms on OOF
    assert predict_main([*argv, *images, "--out", str(tmp_path / "r.csv"), "--operating-point", "recall_95"]) == 2
    err = capsys.readouterr().err
    assert "recall_95" in err and "need defects" in err and not (tmp_path / "r.csv").exists()
    assert export_main([*argv, "--out", str(tmp_path / "bundle")]) == 0
    spec = json.loads((tmp_path / "bundle/bundle.json").read_text())
    assert {"chosen", "false_alarm_1pct", "false_alarm_0.1pct"} <= set(spec["operating_points"])
    r = run_bundle(tmp_path / "bundle", [*images, "--out", str(tmp_path / "b.csv")], no_torch_env(tmp_path))
    assert r.returncode == 0, r.stderr
    b = pd.read_csv(tmp_path / "b.csv").set_index("id").loc[p["id"]]
    np.testing.assert_allclose(b["prob"], p["prob"], atol=1e-4)
    r = run_bundle(tmp_path / "bundle", [*images, "--operating-point", "recall_95", "--out", str(tmp_path / "c.csv")],
                   no_torch_env(tmp_path))
    assert r.returncode != 0 and "recall_95" in r.stderr and "need defects" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.csv").exists()


def test_few_defects_prepare_and_the_supervised_path_says_what_to_use(tmp_path, capsys):
    make_class_folder(tmp_path / "images", n_good=95, n_defect=5, size=32)
    assert prepare_main(["folder", str(tmp_path / "images"), "--good", "ok", "--defect", "ng", "--name", "thesis",
                         "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 defect image(s): fewer than the 7 that classifiers need" in out
    train = pd.read_csv(tmp_path / "input/thesis/train.csv")
    sol = pd.read_csv(tmp_path / "input/thesis/solution.csv")
    assert train.target.sum() == 4 and sol.target.sum() == 1 and len(sol) == 25  # each class held out alone
    cfg = load_config(tmp_path / "configs/thesis.yaml", {"preset": "cpu-fast"})  # classifiers asked for
    with pytest.raises(InputError, match=r"train.csv: 4 defect image\(s\); a classifier's 5 stratified folds need "
                                         r"at least 5 .* anomaly member"):
        run_grid(cfg, tmp_path, progress=False, say=lambda *a: None)
    assert not (tmp_path / "oof").exists()


@pytest.mark.parametrize("n, seed, signal, verdict", [
    (600, 5, 0.0, "left out: hill gave it no weight"),  # noise: never chosen
    (100, 19, 0.6, "left out: the cross-checked AUC is"),  # chosen on the OOF rows, but held-out folds say no
    (600, 5, 1.5, "kept: the cross-checked AUC is"),  # a part of the signal the classifiers miss
])
def test_an_anomaly_member_stays_in_the_blend_only_if_the_cross_check_says_it_helps(tmp_path, n, seed, signal,
                                                                                     verdict):
    """Two classifiers that each see half of the signal, and an anomaly member that sees a third part
    of it, or nothing; its weight and the reason are in blend.json."""
    from defectkit.ensemble.report import run_blend
    from defectkit.testing import make_blend_workdir, sigmoid, write_experiment
    w = make_blend_workdir(tmp_path, n=n, seed=seed)
    rng, y = w["rng"], w["y"]
    a, b, c = (rng.normal(0, 1, len(y)) for _ in range(3))
    write_experiment(tmp_path, "cls_a", w, sigmoid(y + a))
    write_experiment(tmp_path, "cls_b", w, sigmoid(y - a + b))
    write_experiment(tmp_path, "anom", w, sigmoid(signal * y + c), on_trial=True)
    comp = load_config(tmp_path / "configs/syn.yaml").competition
    report = run_blend(comp, tmp_path, "hill", verbose=False)
    why = report.cross_check["anomaly_member"]["anom"]
    assert why.startswith(verdict) and (report.weights.get("anom", 0) > 0) == verdict.startswith("kept")
    assert {"cls_a", "cls_b"} <= set(report.weights)
    saved = json.loads((tmp_path / "submissions/blend.json").read_text())
    assert saved["cross_check"]["anomaly_member"]["anom"] == why and saved["weights"] == report.weights


@pytest.mark.slow  # a classifier grid and the member beside it
def test_with_anomaly_trains_the_member_beside_the_classifiers_and_blends_it(tmp_path):
    from defectkit.core.records import FoldRecord
    from defectkit.testing import make_toy_competition, write_toy_config
    make_toy_competition(tmp_path, n_train=64, n_test=16, kind="blob", size=48)
    cfg = load_config(write_toy_config(tmp_path, with_anomaly=True, anomaly_bank=256))
    lines = []
    run_grid(cfg, tmp_path, progress=False, say=lambda *a: lines.append(" ".join(map(str, a))))
    assert any("jobs (the anomaly member) (1 archs x 2 folds)" in line for line in lines)
    rec = FoldRecord.read(tmp_path / "oof/test_efficientnet_anomaly32/fold1.json")
    # the bank: 256 patches, or every pooled patch where the fold's good images give fewer (seeds of the toy)
    assert rec.recipe["member"] == "anomaly" and rec.recipe["tta"] == 1 and 0 < rec.n_train <= 256
    blend = json.loads((tmp_path / "submissions/blend.json").read_text())
    assert "test_efficientnet_anomaly32" in blend["experiments"]
    why = blend["cross_check"]["anomaly_member"]["test_efficientnet_anomaly32"]
    assert why.startswith(("kept", "left out")) and ("test_efficientnet_anomaly32" in blend["weights"]) == \
        why.startswith("kept")
    summary = json.loads((tmp_path / "submissions/run_summary.json").read_text())
    assert [r["experiment"] for r in summary["table"]][:2] == [cfg.exp_name("test_efficientnet"),
                                                                "test_efficientnet_anomaly32"]
