"""The main job end to end on a tiny made-up competition: 2 archs x 2 folds.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.explain.gradcam import GROUPS, explain, gradcam_maps
from defectkit.pipeline.grid import estimate_eta, run_grid
from defectkit.runtime.imaging import Preprocess
from defectkit.testing import learnt, make_toy_competition, write_toy_config
from defectkit.train import fold as fold_module
from defectkit.train.fold import train_fold

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out


@pytest.fixture
def work(tmp_path):
    make_toy_competition(tmp_path)
    return tmp_path


def test_run_grid_end_to_end_and_rerun_skips(work, capsys):
    cfg = load_config(write_toy_config(work, archs=["resnet10t", "test_efficientnet"], epochs=4, tta=4))
    summary = run_grid(cfg, work, progress=False)
    out = capsys.readouterr().out
    assert "[job 1/4]" in out and "[job 4/4]" in out and "ETA" in out
    # folds, per-fold files of both experiments, submission, blend report, summary
    folds = pd.read_csv(work / "folds/toy.csv", dtype={"id": str})
    assert sorted(folds.fold.unique()) == [0, 1]
    for exp in ("resnet10t", "test_efficientnet"):
        oof = pd.concat(pd.read_csv(work / f"oof/{exp}/fold{k}.csv", dtype={"id": str}) for k in (0, 1))
        assert sorted(oof.id) == sorted(folds.id) and oof.pred.between(0, 1).all()
        for k in (0, 1):
            assert (work / f"models/{exp}/fold{k}.pt").exists()
            assert json.loads((work / f"oof/{exp}/fold{k}.json").read_text())["tta"] == 4
    sub = pd.read_csv(work / "submissions/submission.csv", dtype={"id": str})
    sample = pd.read_csv(work / "input/toy/sample_submission.csv", dtype={"id": str})
    sol = pd.read_csv(work / "input/toy/solution.csv", dtype={"id": str})
    assert list(sub.columns) == list(sample.columns) and list(sub.id) == list(sample.id)
    test_auc = roc_auc_score(sol.target, sub.target)
    learnt("run: blend held-out AUC", test_auc, 0.8)  # the task is learnt, and held-out scoring matches the file
    table = pd.DataFrame(summary["table"])
    assert list(table.experiment) == ["resnet10t", "test_efficientnet", "BLEND (hill)"]
    assert abs(table.test_auc.iloc[-1] - test_auc) < 1e-5
    assert (work / "submissions/run_summary.json").exists() and (work / "submissions/blend.json").exists()
    assert "BLEND (hill)" in out and "test_auc" in out

    stamp = (work / "oof/resnet10t/fold0.csv").stat().st_mtime_ns
    run_grid(cfg, work, progress=False)  # a rerun trains nothing
    assert "0 to run" in capsys.readouterr().out
    assert (work / "oof/resnet10t/fold0.csv").stat().st_mtime_ns == stamp


def test_rerun_with_another_recipe_is_refused(work):
    cfg = load_config(write_toy_config(work, archs=["resnet10t"], epochs=1))
    run_grid(cfg, work, progress=False, say=lambda *a: None)
    changed = load_config(write_toy_config(work, archs=["resnet10t"], epochs=2))
    with pytest.raises(InputError, match="made by another recipe.*--force"):
        run_grid(changed, work, progress=False, say=lambda *a: None)
    run_grid(changed, work, force=True, progress=False, say=lambda *a: None)
    assert json.loads((work / "oof/resnet10t/fold0.json").read_text())["epochs_run"] == 2


def test_a_grid_interrupted_inside_a_fold_resumes_that_fold_and_ends_as_an_uninterrupted_run(work, tmp_path):
    """The one resume test: a job killed after its second epoch (strong augmentation, EMA of the
    weights) resumes from its last checkpoint, and the grid ends with the OOF predictions of a run
    never interrupted (optimizer, schedule, EMA, sampler and augmentation state all restored)."""
    import shutil

    cfg = load_config(write_toy_config(work, archs=["resnet10t"], epochs=3, aug="strong", ema=0.9))
    clean = tmp_path / "clean"
    shutil.copytree(work, clean)
    run_grid(cfg, clean, progress=False, say=lambda *a: None)

    real = train_fold
    calls = []

    def dies_in_the_second_job(cfg, arch, fold, base, opts):
        calls.append((cfg, arch, fold, base))
        if len(calls) == 2:  # job 2 (fold 1): killed after its second epoch
            def stop(epoch):
                if epoch == 1:
                    raise KeyboardInterrupt
            opts = dataclasses.replace(opts, on_epoch_end=stop)
        return real(cfg, arch, fold, base, opts)

    import pytest as _pt
    mp = _pt.MonkeyPatch()
    mp.setattr(fold_module, "train_fold", dies_in_the_second_job)
    with _pt.raises(KeyboardInterrupt):
        run_grid(cfg, work, progress=False, say=lambda *a: None)
    mp.undo()
    assert not (work / "oof/resnet10t/fold1.json").exists() and (work / "models/resnet10t/fold1_last.pt").exists()
    assert torch.load(work / "models/resnet10t/fold1_last.pt", weights_only=False)["state"]["epochs_done"] == 2
    lines = []
    run_grid(cfg, work, progress=False, say=lambda *a: lines.append(str(a[0])))
    assert any("1 complete, 1 to run" in line for line in lines)
    assert not (work / "models/resnet10t/fold1_last.pt").exists()  # complete now: the resume state is gone
    log = pd.read_csv(work / "models/resnet10t/fold1_log.csv")
    assert list(log.epoch) == [1, 2, 3]
    for k in (0, 1):
        a = pd.read_csv(work / f"oof/resnet10t/fold{k}.csv")
        b = pd.read_csv(clean / f"oof/resnet10t/fold{k}.csv")
        np.testing.assert_allclose(a.pred, b.pred, rtol=1e-4, atol=1e-5)


def test_explain_and_notebooks_run_on_the_main_jobs_outputs(work, monkeypatch):
    """Grad-CAM grids, then both notebooks executed top to bottom (nbclient) on the toy outputs."""
    import nbformat
    from nbclient import NotebookClient

    cfg = load_config(write_toy_config(work, archs=["resnet10t"], epochs=2))
    run_grid(cfg, work, progress=False, say=lambda *a: None)
    paths = explain(cfg.competition, work, "resnet10t", 0, n=3)
    assert [p.name for p in paths] == [f"fold0_{g}.png" for g in GROUPS]
    assert all(p.stat().st_size > 2000 for p in paths)
    model, mean, std = _loaded(work)
    maps = gradcam_maps(model, np.full((1, 32, 32, 3), 128, np.uint8), Preprocess((32, 32), mean=mean, std=std))
    assert maps.shape == (1, 32, 32) and 0 <= maps.min() <= maps.max() <= 1

    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("DEFECT_REPO", str(repo))
    monkeypatch.setenv("DEFECT_WORKDIR", str(work))
    monkeypatch.setenv("DEFECT_COMPETITION", "toy")
    for name in ("eda.ipynb", "results.ipynb"):
        nb = nbformat.read(repo / "notebooks" / name, as_version=4)
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} shows no figure"


def _loaded(work):
    import torch

    from defectkit.train.models import create_model
    ck = torch.load(work / "models/resnet10t/fold0.pt", weights_only=False)
    model, _ = create_model("resnet10t", pretrained="none")
    model.load_state_dict(ck["model"])
    return model, ck["mean"], ck["std"]


def test_eta_counts_the_cache_building_first_job_of_each_arch_apart():
    assert estimate_eta([], [True, False]) is None
    # arch A: first job 100 s (caches), then 10 s jobs; 2 more of A and a new arch B (3 jobs) to go
    done = [(True, 100.0), (False, 10.0), (False, 12.0), (False, 10.0)]
    assert estimate_eta(done, [False, False, True, False, False]) == 10.0 * 5 + 90.0
    # only first jobs seen so far: they are all we know
    assert estimate_eta([(True, 50.0)], [False, True]) == 100.0
