"""Extensions found the way Python packages find each other: an installed distribution that names a
module in the entry-point group `defectkit.plugins` adds a blend method, an exporter with its runtime, a
data source and a member kind, which work from the scripts in fresh processes (the member kind inside Ray
workers too), and the exporter's bundle is scored by the shipped predict_bundle.py, which carries the
outside runtime (the plugin itself not installed there)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from defectkit.core.checks import InputError
from defectkit.core.plugins import load_plugins

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = '''"""A plugin: an all-or-nothing blend method, a TorchScript exporter with its runtime, a data
source (a CSV of image paths and labels) and a member kind (the good images' mean brightness)."""
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from defectkit.core.members import MemberKind, register_member
from defectkit.core.metrics import auc
from defectkit.data.prepare import build_labelled
from defectkit.data.sources import Source, register_source
from defectkit.ensemble.methods import BlendMethod, register_method
from defectkit.ship.exporters import Exporter, register_exporter
from defectkit.train.checkpoint import Checkpoint
from defectkit.train.engine import image_batches, make_setup, predict, to_input
from defectkit.train.fold import FoldFacts, load_fold_data, write_fold_outputs


@register_method("best_single")
class BestSingle(BlendMethod):
    def fit(self, O, y, M=None):
        self.weights_ = np.eye(O.shape[1])[int(np.argmax([auc(y, O[:, j]) for j in range(O.shape[1])]))]
        return self


@register_exporter("torchscript")
class TorchScriptExporter(Exporter):
    suffix, runtime, runtime_module = ".ts", "torchscript", "tsplug.session"

    def export(self, net, example, path, precision="fp32", calib=None):
        torch.jit.trace(net, example).save(str(path))


@register_source("listing")
class ListingSource(Source):
    writes_config = True

    def add_arguments(self, p):
        p.add_argument("listing")
        p.add_argument("--name", required=True)

    def from_args(self, args):
        return {"type": "listing", "path": str(Path(args.listing).resolve())}

    def prepare(self, out, source, sub_cols, force, base):
        rows = pd.read_csv(source["path"])
        rows = pd.DataFrame({"id": [Path(p).stem for p in rows.path], "target": rows.label, "path": rows.path})
        train, test_ids, _, _ = build_labelled(out, rows, [], 0.25, sub_cols, {"source": "listing", **source}, force)
        return f"wrote {out}: {len(train)} train, {len(test_ids)} test"


class BrightnessNet(torch.nn.Module):
    def __init__(self, mu=0.0, sd=1.0):
        super().__init__()
        self.register_buffer("mu", torch.tensor(float(mu)))
        self.register_buffer("sd", torch.tensor(float(sd)))

    def forward(self, x):
        return ((x.float().mean((1, 2, 3)) - self.mu) / self.sd - 2.0)[:, None]


@register_member("brightness")
class Brightness(MemberKind):
    needs_defects, on_trial = False, True

    def fit(self, cfg, arch, fold, layout, progress=True, resume=False, on_epoch_end=None):
        t0, rec, d = time.time(), cfg.recipe, load_fold_data(cfg, layout, fold, progress=False)
        setup = make_setup(torch.device("cpu"), (0.5,) * 3, (0.25,) * 3, amp=False, channels_last=False)
        good = d.tr_idx[d.y[d.tr_idx] == 0]
        m = torch.cat([to_input(x, setup).mean((1, 2, 3)) for x, _ in image_batches(d.train_images[good], 16)])
        net, paths = BrightnessNet(m.mean(), m.std()), layout.fold(cfg.exp_name(arch), fold)
        Checkpoint(arch=arch, model=net.state_dict(), hw=rec.hw, resize=rec.resize, border_crop=rec.border_crop,
                   mean=(0.5,) * 3, std=(0.25,) * 3, tta=1, run_id=f"b{fold}", config=cfg.to_dict()).save(paths.best)
        preds = [predict(net, image_batches(x, 16), setup, 1) for x in (d.train_images[d.val_idx], d.test_images)]
        return write_fold_outputs(cfg, arch, d, paths, tuple(preds), FoldFacts(
            weights="none", run_id=f"b{fold}", best_epoch=1, epochs_run=1, val_auc=None, n_train=len(good),
            device="cpu", secs=round(time.time() - t0, 1)))

    def build(self, ck):
        net = BrightnessNet()
        net.load_state_dict(ck.model)
        return net.eval()
'''
SESSION = '''"""The torchscript runtime: what the bundle's runner asks of a session."""
import torch


class _Session:
    def __init__(self, path, threads):
        torch.set_num_threads(max(threads, 1))
        self.net = torch.jit.load(str(path))

    def get_inputs(self):
        return [type("Input", (), {"name": "images"})()]

    def run(self, _, feeds):
        with torch.no_grad():
            return [self.net(torch.from_numpy(feeds["images"])).numpy()]


def session(path, threads, alone=True):
    return _Session(path, threads)
'''


def install_plugin(site: Path, body: str = PLUGIN) -> Path:
    """tsplug, 'installed' into `site` as pip would leave it: the package and its dist-info."""
    (site / "tsplug").mkdir(parents=True)
    (site / "tsplug/__init__.py").write_text(body)
    (site / "tsplug/session.py").write_text(SESSION)
    info = site / "tsplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tsplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[defectkit.plugins]\ntsplug = tsplug\n")
    return site


def script(name: str, args: list, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "src" / f"{name}.py"), *map(str, args)], capture_output=True,
                          text=True, env=env)


@pytest.mark.slow  # four scripts in fresh processes
def test_a_plugins_blend_method_and_exporter_work_from_the_scripts_and_its_bundle_runs_alone(blended, tmp_path):
    base, cfg = blended
    work = tmp_path / "w"
    for d in ("input", "oof", "models", "folds", "configs"):
        shutil.copytree(base / d, work / d, symlinks=True)
    site = install_plugin(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    common = ["--config", work / "configs/toy.yaml", "--workdir", work]
    r = script("blend", [*common, "--blend-method", "best_single"], env)
    assert r.returncode == 0, r.stderr
    report = json.loads((work / "submissions/blend.json").read_text())
    weights = sorted(report["weights"].values())
    assert report["method"] == "best_single" and weights[-1] == 1.0 and sum(weights) == 1.0  # all on one
    r = script("export", [*common, "--target", "torchscript", "--out", tmp_path / "bundle"], env)
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "bundle/bundle.json").read_text())
    assert spec["runtime"] == "torchscript" and (tmp_path / "bundle/defect_runtime/runtime_torchscript.py").exists()
    alone = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the plugin is not installed there
    r = subprocess.run([sys.executable, str(tmp_path / "bundle/predict_bundle.py"), str(work / "input/toy/test"),
                        "--out", str(tmp_path / "p.csv")], capture_output=True, text=True, env=alone,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    sub = pd.read_csv(work / "submissions/submission.csv", dtype={"id": str}).set_index("id").target
    got = pd.read_csv(tmp_path / "p.csv", dtype={"id": str}).set_index("id").prob
    np.testing.assert_allclose(got.loc[sub.index], sub, atol=1e-4)  # the bundle scores as the blend did
    r = script("blend", [*common, "--blend-method", "best_single"], {k: v for k, v in env.items()
                                                                     if k != "PYTHONPATH"})
    assert r.returncode == 2 and "best_single" in r.stderr  # without the plugin: a one-line refusal


@pytest.mark.slow  # prepare, then a grid on a local Ray, in fresh processes
def test_a_plugins_source_prepares_and_its_member_kind_trains_in_ray_workers(tmp_path):
    pytest.importorskip("ray")
    import cv2

    from defectkit.testing import toy_blob
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    rows = []
    for i in range(48):
        cv2.imwrite(str(tmp_path / "imgs" / f"p{i:02d}.png"), toy_blob(rng, i % 2 == 1, 48)[0])
        rows.append({"path": str(tmp_path / "imgs" / f"p{i:02d}.png"), "label": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "list.csv", index=False)
    site = install_plugin(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    work = tmp_path / "w"
    r = script("prepare", ["listing", tmp_path / "list.csv", "--name", "lst", "--workdir", work], env)
    assert r.returncode == 0, r.stderr
    cfg = work / "configs/lst.yaml"
    data = yaml.safe_load(cfg.read_text())
    assert data["competition"]["source"]["type"] == "listing"
    data["recipe"] = {"member": "brightness", "archs": ["test_efficientnet"], "n_folds": 2, "img_size": 48, "tta": 1,
                      "pretrained": "none", "name": "{arch}_bright"}
    cfg.write_text(yaml.safe_dump(data))
    r = script("run", ["--config", cfg, "--workdir", work, "--quiet", "--executor", "ray", "--cpus-per-job", "1"], env)
    assert r.returncode == 0, r.stderr[-2000:]
    for k in (0, 1):  # each fold was trained by a Ray worker, which loaded the plugin to know the kind
        rec = json.loads((work / f"oof/test_efficientnet_bright/fold{k}.json").read_text())
        assert rec["config"]["recipe"]["member"] == "brightness" and rec["on_trial"] is True
        assert (work / f"models/test_efficientnet_bright/fold{k}.log").exists()
    assert (work / "submissions/submission.csv").exists()


def test_a_plugin_that_fails_to_import_is_one_line_naming_it(tmp_path, monkeypatch):
    site = install_plugin(tmp_path / "site", body="raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(InputError) as e:
        load_plugins()
    msg = str(e.value)
    assert "\n" not in msg and "'tsplug'" in msg and "broken on purpose" in msg and "defectkit.plugins" in msg
