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
import torch

from defectkit.core.members import register_member
from defectkit.data.sources import register_source
from defectkit.ensemble.methods import register_method
from defectkit.ship.exporters import Exporter, register_exporter
from defectkit.testing import BestSingle, Brightness, ListingSource


register_method("best_single")(BestSingle)


@register_exporter("torchscript")
class TorchScriptExporter(Exporter):
    suffix, runtime, runtime_module = ".ts", "torchscript", "tsplug.session"

    def export(self, net, example, path, precision="fp32", calib=None):
        torch.jit.trace(net, example).save(str(path))


register_source("listing")(ListingSource)  # defined in defectkit.testing, shared with tests/test_seams.py
register_member("brightness")(Brightness)
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
