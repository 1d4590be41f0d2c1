"""The anomaly member (recipe member: anomaly): learnt from good images alone, it finds drawn spots in
held-out images and points at them, and it is one more experiment for the blend, predict.py and
the bundle (whose runner, without torch, reproduces predict.py); bad requests are one line each.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import numpy as np
import pandas as pd
import pytest
import torch

from defectkit.cli.export import main as export_main
from defectkit.cli.predict import main as predict_main
from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.pipeline.grid import run_grid
from defectkit.testing import learnt, make_toy_competition, no_torch_env, run_bundle, write_toy_config

RECIPE = {"archs": ["tf_efficientnet_lite0"], "member": "anomaly", "img_size": 96, "tta": 1, "pretrained": "auto",
          "anomaly_bank": 512}


@pytest.fixture(scope="module")
def spots(tmp_path_factory):
    """Grey noise, half of the images with a bright disk (masks kept); the member on the good ones."""
    base = tmp_path_factory.mktemp("anomaly")
    make_toy_competition(base, n_train=96, n_test=48, kind="blob", size=96)
    cfg = load_config(write_toy_config(base, **RECIPE), {"name": "{arch}_anomaly"})
    run_grid(cfg, base, progress=False, say=lambda *a: None)
    return base, cfg


@pytest.mark.slow  # trains the member
def test_good_images_alone_find_the_spots_in_held_out_images(spots):
    base, cfg = spots
    sub = pd.read_csv(base / "submissions/submission.csv").set_index("id")
    sol = pd.read_csv(base / "input/toy/solution.csv").set_index("id")
    from defectkit.core.metrics import auc
    learnt("anomaly: held-out AUC", auc(sol.loc[sub.index, "target"].to_numpy(), sub["target"].to_numpy()), 0.85)
    from defectkit.core.records import FoldRecord
    for k in (0, 1):
        rec = FoldRecord.read(Layout(base).fold("tf_efficientnet_lite0_anomaly", k).meta)
        learnt("anomaly: fold OOF AUC", rec.oof_auc, 0.85)
        # held-out good images against made-up defects (0.78 and 0.80 measured at seed 0)
        learnt("anomaly: fold AUC on synthetic defects", rec.synthetic_auc, 0.6)
        assert rec.n_train == 512  # the bank: 512 patches


@pytest.mark.slow  # trains the member
def test_explain_shows_the_anomaly_map_and_it_points_at_the_spots(spots):
    from defectkit.explain.gradcam import localisation
    base, cfg = spots
    s = localisation(cfg.competition, base, "tf_efficientnet_lite0_anomaly", base / "input/toy/masks")
    assert s["all"]["n"] >= 40
    learnt("anomaly: pointing game", s["all"]["pointing_game"], 0.7)  # its maximum inside the spot
    assert s["all"]["energy_in"] > 3 * s["all"]["area"]  # the map is brighter on the spot than elsewhere


@pytest.mark.slow  # trains the member
def test_predict_and_the_bundle_without_torch_score_the_member_alike(spots, tmp_path):
    base, _ = spots
    argv = ["--config", str(base / "configs/toy.yaml"), "--workdir", str(base)]
    assert predict_main([*argv, str(base / "input/toy/test"), "--out", str(tmp_path / "p.csv")]) == 0
    assert export_main([*argv, "--out", str(tmp_path / "bundle")]) == 0
    r = run_bundle(tmp_path / "bundle", [str(base / "input/toy/test"), "--out", str(tmp_path / "b.csv")],
                   no_torch_env(tmp_path))
    assert r.returncode == 0, r.stderr
    sub = pd.read_csv(base / "submissions/submission.csv").set_index("id")["target"]
    p = pd.read_csv(tmp_path / "p.csv").set_index("id")["prob"]
    b = pd.read_csv(tmp_path / "b.csv").set_index("id")["prob"]
    np.testing.assert_allclose(p.loc[sub.index], sub, atol=1e-6)
    np.testing.assert_allclose(b.loc[sub.index], sub, atol=1e-4)


@pytest.mark.slow  # trains the member's refit, exports it in fp32 and int8
def test_a_full_data_refit_is_the_bundles_one_model_and_scores_as_predict_does(spots, tmp_path, capsys, monkeypatch):
    """refit: only (what the planner sets when five fold models would be too slow on the line): the grid adds
    banks of every good training image (two draws here); the blend and the bundle score new images with it alone,
    in fp32 and in int8 (the backbone quantised, the distances kept in fp32)."""
    import dataclasses
    import json
    import shutil

    from defectkit.core.metrics import auc
    from defectkit.core.records import FoldRecord
    base, cfg = spots
    work = tmp_path / "w"
    shutil.copytree(base, work, ignore=shutil.ignore_patterns("submissions", "oof", "models"))
    said = []
    recipe = dataclasses.replace(cfg.recipe, refit="only", anomaly_draws=2, name="{arch}_draws")  # two banks each
    run_grid(dataclasses.replace(cfg, recipe=recipe), work, progress=False, say=said.append)
    exp = "tf_efficientnet_lite0_draws"
    rec = FoldRecord.read(Layout(work).fold(exp, "all").meta)
    assert (rec.n_train, rec.n_val, rec.synthetic_auc, rec.data_path) == (2 * 512, 0, None, None)
    assert not list((work / "oof" / exp).glob("synthetic_foldall*"))  # no held-out goods to make defects on
    blend = json.loads((work / "submissions/blend.json").read_text())
    assert blend["refit"] == "only"
    sub = pd.read_csv(work / "submissions/submission.csv").set_index("id")["target"]
    sol = pd.read_csv(work / "input/toy/solution.csv").set_index("id")["target"]
    learnt("anomaly refit: held-out AUC", auc(sol.loc[sub.index].to_numpy(), sub.to_numpy()), 0.85)
    argv = ["--config", str(work / "configs/toy.yaml"), "--workdir", str(work)]
    assert predict_main([*argv, str(work / "input/toy/test"), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    assert export_main([*argv, "--out", str(tmp_path / "bundle")]) == 0
    spec = json.loads((tmp_path / "bundle/bundle.json").read_text())
    (entry,) = spec["experiments"]
    assert entry["folds"] == [] and entry["refit"]["use"] == "only"  # one model an image, not five
    r = run_bundle(tmp_path / "bundle", [str(work / "input/toy/test"), "--out", str(tmp_path / "b.csv")],
                   no_torch_env(tmp_path))
    assert r.returncode == 0, r.stderr
    p = pd.read_csv(tmp_path / "p.csv").set_index("id")["prob"]
    b = pd.read_csv(tmp_path / "b.csv").set_index("id")["prob"]
    np.testing.assert_allclose(p.loc[sub.index], sub, atol=1e-6)
    np.testing.assert_allclose(b.loc[sub.index], sub, atol=1e-4)
    # int8: rounding would wipe out |a|^2 - 2ab + |b|^2, so the nearest-neighbour product stays fp32 while the
    # backbone is quantised, and the bundle still tells the held-out spots from the held-out good images.
    import onnx
    assert export_main([*argv, "--precision", "int8", "--out", str(tmp_path / "b8")]) == 0
    (model,) = (tmp_path / "b8/models").glob("*.onnx")  # the refit alone
    graph = onnx.load(str(model)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    nearest = [n for n in graph.node if n.name.startswith("/model/nearest/") and n.op_type == "MatMul"]
    assert len(nearest) == 1 and all(made_by[i].op_type != "DequantizeLinear" for i in nearest[0].input if i in made_by)
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) >= 10  # the backbone is int8
    r = run_bundle(tmp_path / "b8", [str(work / "input/toy/test"), "--out", str(tmp_path / "b8.csv")],
                   no_torch_env(tmp_path))
    assert r.returncode == 0, r.stderr
    b8 = pd.read_csv(tmp_path / "b8.csv").set_index("id")["prob"]
    learnt("anomaly refit: int8 bundle held-out AUC", auc(sol.loc[b8.index].to_numpy(), b8.to_numpy()), 0.85)
    # A quantised model whose check scores move too far from fp32's is refused, and nothing is left. (OpenVINO's
    # int8 transformations reached the fp32 distances on ELPV: every score near 1. Whether they do on this toy
    # depends on the CPU's int8 kernels, so the bound is lowered here to make the refusal happen on any CPU.)
    pytest.importorskip("openvino")
    from defectkit.ship import export as export_module
    monkeypatch.setattr(export_module, "MAX_INT8_DRIFT", 1e-9)
    # (Under another CPU's instruction set, OpenVINO's int8 model may instead return no scores at all: refused too.)
    assert export_main([*argv, "--precision", "int8", "--target", "openvino", "--out", str(tmp_path / "ov")]) == 2
    err = capsys.readouterr().err
    assert ("model's scores on 16 check images move by up to" in err
            or "model, on its 16 check images, returned 0 score(s) for 1 image(s), not one each" in err), err
    assert len(err.strip().splitlines()) == 1 and "export it with --precision fp32, or with another --target" in err
    assert not list(tmp_path.glob("*ov*"))


def test_the_net_scores_the_distance_to_the_nearest_bank_patch():
    from defectkit.train.anomaly import PatchCoreNet, backbone, coreset
    net = PatchCoreNet(backbone("resnet10t", [1, 2], "none")[0], [1, 2], torch.zeros(1, 1))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        p = net.patches(x)  # (2, D, 16, 16)
        flat = p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])
        bank = flat[coreset(flat, 50)]
        net = PatchCoreNet(net.model, [1, 2], bank, scale=2.0)
        want = torch.cdist(flat, bank).min(1).values.view(2, -1).max(1).values
        np.testing.assert_allclose(torch.exp(net(x)[:, 0]) * 2.0, want, rtol=1e-3)
        # two draws: the mean over the banks of log(largest patch distance / scale); the map, their mean distance
        other = flat[coreset(flat, 50, seed=1)]
        two = PatchCoreNet(net.model, [1, 2], torch.cat([bank, other]), scale=2.0, draws=2)
        want2 = torch.cdist(flat, other).min(1).values.view(2, -1).max(1).values
        np.testing.assert_allclose(two(x)[:, 0], (torch.log(want / 2) + torch.log(want2 / 2)) / 2, rtol=1e-3, atol=1e-4)
        maps = torch.stack([torch.cdist(flat, b).min(1).values.view(2, 16, 16) for b in (bank, other)]).mean(0)
        np.testing.assert_allclose(two.patch_scores(x), maps, atol=0.01)  # sqrt of |a|^2 - 2ab + |b|^2 near 0
    assert len(set(coreset(flat, 50).tolist())) == 50  # k distinct centres
    with pytest.raises(ValueError, match="does not split into 3 draws"):
        PatchCoreNet(net.model, [1, 2], torch.zeros(50, 4), draws=3)


def test_bad_requests_are_one_line(tmp_path, monkeypatch):
    from defectkit.train import anomaly
    with pytest.raises(InputError, match=r"anomaly_layers \[7\]: tf_efficientnet_lite0 has feature levels 0 to 4"):
        anomaly.backbone("tf_efficientnet_lite0", [7], "none")
    with pytest.raises(InputError, match="the fold has 1 good training image"):
        anomaly.split_good(np.array([0, 1, 1]), np.arange(3), 0)
    monkeypatch.setattr(anomaly.runtime, "free_memory_bytes", lambda: 2**20)
    with pytest.raises(InputError, match=r"anomaly_bank 4096: choosing it takes .* GiB of the 0.0 GiB free; lower"):
        anomaly.check_bank_memory(4096, 152, 65536)
