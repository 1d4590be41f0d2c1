"""Where users extend the package: a blend method, a data source, an exporter and a member kind registered from
outside it (as README "Extending it" shows), each run end to end; stage tables; the typed
records' versions.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.core.records import BlendReport, FoldRecord
from defectkit.data.sources import SOURCES, register_source
from defectkit.ensemble.methods import METHODS, register_method
from defectkit.ensemble.report import run_blend
from defectkit.runtime import runner
from defectkit.runtime.combine import rank_pct
from defectkit.ship.exporters import EXPORTERS, Exporter, register_exporter
from defectkit.testing import (
    BestSingle,
    Brightness,
    ListingSource,
    learnt,
    make_blend_workdir,
    sigmoid,
    toy_image,
    write_experiment,
)

# --- a blend method ---------------------------------------------------------------------------------

@pytest.fixture
def best_single():
    register_method("best")(BestSingle)
    yield
    METHODS.pop("best")


def test_an_outside_blend_method_blends_through_the_config_and_writes_what_predict_applies(tmp_path, best_single):
    w = make_blend_workdir(tmp_path)
    rng = np.random.default_rng(0)
    for name, noise in (("strong", 0.5), ("weak", 3.0)):
        write_experiment(tmp_path, name, w, sigmoid(2 * (w["y"] - 0.5) + rng.normal(0, noise, len(w["y"]))))
    cfg = load_config(tmp_path / "configs/syn.yaml", {"blend_method": "best"})  # the registry is the choice list
    rep = run_blend(cfg.competition, tmp_path, cfg.recipe.blend_method, verbose=False)
    assert rep.method == "best" and rep.weights == {"strong": 1.0} and (rep.space, rep.link) == ("rank", "identity")
    back = BlendReport.read(Layout(tmp_path).result("blend.json"))
    assert back.weights == rep.weights and back.space == "rank"
    sub = pd.read_csv(tmp_path / "submissions/submission.csv", dtype={"id": str})
    oof = pd.concat([pd.read_csv(tmp_path / f"oof/strong/fold{k}.csv") for k in range(4)])
    tests = [pd.read_csv(tmp_path / f"oof/strong/test_fold{k}.csv", dtype={"id": str}).set_index("id").pred
             for k in range(4)]
    want = np.mean([rank_pct(oof.pred[oof.fold == k].to_numpy(), t.loc[sub.id].to_numpy())
                    for k, t in enumerate(tests)], axis=0)
    np.testing.assert_allclose(sub.target, want, atol=1e-12)
    with pytest.raises(InputError, match=r"--blend-method: 'nope' is not one of mean, rank, hill, stack, best"):
        load_config(tmp_path / "configs/syn.yaml", {"blend_method": "nope"})


# --- a data source -----------------------------------------------------------------------------------

@pytest.fixture
def listing_source():
    register_source("listing")(ListingSource)
    yield
    SOURCES.pop("listing")


def test_an_outside_source_is_a_prepare_subcommand_and_run_prepares_it_from_the_config(tmp_path, listing_source):
    import cv2

    from defectkit.cli.prepare import main as prepare_main
    from defectkit.data.sources import prepare_from_config
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    rows = []
    for i in range(40):
        cv2.imwrite(str(tmp_path / "imgs" / f"p{i:02d}.png"), toy_image(rng, i % 3 == 0))
        rows.append({"path": str(tmp_path / "imgs" / f"p{i:02d}.png"), "label": int(i % 3 == 0)})
    pd.DataFrame(rows).to_csv(tmp_path / "list.csv", index=False)
    assert prepare_main(["listing", str(tmp_path / "list.csv"), "--name", "lst", "--workdir", str(tmp_path)]) == 0
    train = pd.read_csv(tmp_path / "input/lst/train.csv", dtype={"id": str})
    sol = pd.read_csv(tmp_path / "input/lst/solution.csv", dtype={"id": str})
    assert len(train) + len(sol) == 40 and train.target.sum() + sol.target.sum() == 14
    cfg = load_config(tmp_path / "configs/lst.yaml")
    assert cfg.competition.source["type"] == "listing"
    assert "nothing to do" in prepare_from_config(cfg.competition, base=tmp_path)


# --- an exporter and the runtime that loads it -------------------------------------------------------

class TorchScriptExporter(Exporter):
    suffix, runtime = ".ts", "torchscript"

    def export(self, net, example, path, precision="fp32", calib=None):
        torch.jit.trace(net, example).save(str(path))


class TorchScriptSession:
    """What the runner asks of a session: get_inputs()[0].name and run(None, {name: images})."""

    def __init__(self, path, threads, alone=True):
        self.net = torch.jit.load(str(path))

    def get_inputs(self):
        return [type("Input", (), {"name": "images"})()]

    def run(self, _, feeds):
        with torch.no_grad():
            return [self.net(torch.from_numpy(feeds["images"])).numpy()]


@pytest.fixture
def torchscript():
    register_exporter("torchscript")(TorchScriptExporter)
    runner.RUNTIMES["torchscript"] = TorchScriptSession
    yield
    EXPORTERS.pop("torchscript")
    runner.RUNTIMES.pop("torchscript")


@pytest.mark.slow
def test_an_outside_exporter_writes_a_bundle_that_its_runtime_scores_like_the_submission(blended, tmp_path,
                                                                                          torchscript):
    from defectkit.ensemble.members import load_ensemble
    from defectkit.ship.export import export
    base, cfg = blended
    out = tmp_path / "bundle"
    spec = export(load_ensemble(Layout(base)), out, cfg.competition.image_ext, say=lambda *a: None,
                  exporter="torchscript")
    assert spec.runtime == "torchscript" and all(f.model.endswith(".ts") for e in spec.experiments for f in e.folds)
    assert json.loads((out / "bundle.json").read_text())["exporter"] == "torchscript"
    ids, prob = runner.predict(out, [str(base / "input/toy/test")], tmp_path / "p.csv", say=lambda *a: None)
    sub = pd.read_csv(base / "submissions/submission.csv", dtype={"id": str}).set_index("id").target
    np.testing.assert_allclose(pd.Series(prob, index=ids).loc[sub.index], sub, atol=1e-4)


# --- records of the layout before versions ------------------------------------------------------------

def test_records_without_a_format_are_read_and_a_newer_format_is_one_line(tmp_path):
    old = {"competition": "c", "exp": "e", "arch": "a", "fold": 0, "n_folds": 5, "folds_file": "f",
           "folds_hash": "h", "config_hash": "x", "weights": "w", "run_id": "r", "best_epoch": 2, "epochs_run": 3,
           "val_auc": 0.9, "tta": 4, "oof_auc": 0.91, "n_val": 10, "n_test": 5, "n_train": 40, "n_pseudo": 0,
           "device": "cpu", "secs": 1.0, "created": "", "config": {}}
    (tmp_path / "fold0.json").write_text(json.dumps(old))
    rec = FoldRecord.read(tmp_path / "fold0.json")
    assert (rec.fold, rec.oof_auc, rec.peak_gpu_mem_gib, rec.data_path) == (0, 0.91, None, None)
    (tmp_path / "fold0.json").write_text(json.dumps({**old, "data_path": "gpu"}))
    with pytest.raises(InputError, match=r"fold0.json: data_path = 'gpu'; expected loader or device or cache or null"):
        FoldRecord.read(tmp_path / "fold0.json")
    (tmp_path / "fold0.json").write_text(json.dumps({**old, "format": 99}))
    with pytest.raises(InputError, match=r"fold0.json: a fold record of format 99; this code reads formats 1 to 2"):
        FoldRecord.read(tmp_path / "fold0.json")
    (tmp_path / "fold0.json").write_text(json.dumps({**old, "oof_auc": "high"}))
    with pytest.raises(InputError, match=r"fold0.json: oof_auc = 'high'; expected a finite number in \[0, 1\]"):
        FoldRecord.read(tmp_path / "fold0.json")
    blend = {"method": "stack", "weights": {"e": 1.5}, "stack": {"intercept": -0.5, "meta": []},
             "operating_points": {k: {"threshold": 0.5} for k in ("chosen", "recall_95", "recall_99")}}
    (tmp_path / "blend.json").write_text(json.dumps(blend))
    rep = BlendReport.read(tmp_path / "blend.json")  # format 1: space and link from the method's name
    assert (rep.space, rep.link, rep.intercept) == ("rank", "logistic", -0.5)


# --- stage tables ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "resnet10t", "mobilenetv3_small_100"])
def test_a_stage_table_cuts_a_model_into_a_prefix_and_a_rest_that_compose_to_it(arch):
    import timm

    from defectkit.train.models import CachedPrefixNet, run_prefix
    model = timm.create_model(arch, pretrained=False, num_classes=1).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for k in (1, 3):
            np.testing.assert_allclose(CachedPrefixNet(model, k)(run_prefix(model, k, x)), model(x), atol=1e-6)


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "resnet10t", "test_efficientnet"])
def test_the_stage_table_freezes_what_timms_coarse_groups_freeze(arch):
    import timm
    from timm.models import group_parameters

    from defectkit.train.models import frozen_parameter_names, head_parameters, stage_groups
    from defectkit.train.stages import table_for
    model = timm.create_model(arch, pretrained=False, num_classes=1)
    timm_groups = list(group_parameters(model, model.group_matcher(coarse=True)).values())
    head = {n for n, p in model.named_parameters() if id(p) in head_parameters(model)}
    assert table_for(model) is not None and len(stage_groups(model)) >= len(timm_groups)
    for k in range(1, len(table_for(model).stages(model)) + 1):  # the stem + up to every stage but the last
        assert frozen_parameter_names(model, k) == {n for g in timm_groups[:k] for n in g} - head


# --- a member kind ------------------------------------------------------------------------------------

@pytest.fixture
def brightness_member():
    from defectkit.core.members import MEMBERS, register_member
    register_member("brightness")(Brightness)
    yield
    MEMBERS.pop("brightness")


def test_an_outside_member_kind_trains_by_the_grid_blends_and_predicts(tmp_path, brightness_member):
    from defectkit.cli.predict import main as predict_main
    from defectkit.core.metrics import auc
    from defectkit.pipeline.grid import run_grid
    from defectkit.testing import make_toy_competition, write_toy_config
    make_toy_competition(tmp_path, n_train=64, n_test=32, kind="blob", size=48)
    cfg = load_config(write_toy_config(tmp_path, member="brightness", tta=1), {"name": "{arch}_bright"})
    run_grid(cfg, tmp_path, progress=False, say=lambda *a: None)
    rec = FoldRecord.read(tmp_path / "oof/test_efficientnet_bright/fold0.json")
    assert rec.recipe["member"] == "brightness" and rec.n_train == int((pd.read_csv(
        tmp_path / "folds/toy.csv").query("fold == 1").target == 0).sum())
    sub = pd.read_csv(tmp_path / "submissions/submission.csv").set_index("id")["target"]
    sol = pd.read_csv(tmp_path / "input/toy/solution.csv").set_index("id").loc[sub.index, "target"]
    # a bright disk raises the mean
    learnt("seams: outside member kind held-out AUC", auc(sol.to_numpy(), sub.to_numpy()), 0.7)
    assert predict_main(["--config", str(tmp_path / "configs/toy.yaml"), "--workdir", str(tmp_path),
                         str(tmp_path / "input/toy/test"), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    p = pd.read_csv(tmp_path / "p.csv").set_index("id")["prob"].loc[sub.index]
    np.testing.assert_allclose(p, sub, atol=1e-6)  # the checkpoint rebuilds the member through its kind's build
