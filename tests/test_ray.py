"""The grid through `--executor ray` on a local Ray (2 CPUs): the same files as the local
executor, a failed job named with its log while the others complete, and the shared-folder check.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import json
import shutil
import socket

import numpy as np
import pandas as pd
import pytest

from defectkit.core.config import load_config  # noqa: E402
from defectkit.core.fileio import file_hash  # noqa: E402
from defectkit.core.layout import Layout  # noqa: E402
from defectkit.testing import learnt, make_toy_competition, write_toy_config  # noqa: E402

ray = pytest.importorskip("ray")
from defectkit.cli.run import main as run_main  # noqa: E402
from defectkit.core.checks import InputError  # noqa: E402
from defectkit.pipeline.grid import run_grid  # noqa: E402
from defectkit.train import ray_executor  # noqa: E402
from defectkit.train.fold import JobOptions  # noqa: E402

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out

ARCHS = ["resnet10t", "test_efficientnet"]
EXPS = ARCHS  # the toy recipe's name is {arch}


@pytest.fixture(scope="module")
def ray_session():
    ray_executor.init_ray(None, num_cpus=2, object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def grids(tmp_path_factory, ray_session):
    """The same 2 archs x 2 folds toy grid, once through each executor (1 thread per job in both)."""
    base = tmp_path_factory.mktemp("grid")
    make_toy_competition(base)
    write_toy_config(base, archs=ARCHS, epochs=2, threads=1)
    local, on_ray = base / "local", base / "ray"
    for d in (local, on_ray):
        shutil.copytree(base / "input", d / "input")
        shutil.copytree(base / "configs", d / "configs")
    cfg = load_config(local / "configs/toy.yaml")
    run_grid(cfg, local, progress=False, say=lambda *a: None)
    lines = []
    summary = run_grid(load_config(on_ray / "configs/toy.yaml"), on_ray, progress=False,
                           say=lambda *a: lines.append(" ".join(map(str, a))),
                           ray=ray_executor.RayOptions(cpus_per_job=1))
    return local, on_ray, lines, summary


def test_ray_grid_writes_the_files_of_the_local_executor(grids):
    local, on_ray, lines, summary = grids
    for exp in EXPS:
        for k in (0, 1):
            a, b = Layout(local).fold(exp, k), Layout(on_ray).fold(exp, k)
            np.testing.assert_allclose(pd.read_csv(b.oof).pred, pd.read_csv(a.oof).pred, rtol=0, atol=1e-6)
            np.testing.assert_allclose(pd.read_csv(b.test).pred, pd.read_csv(a.test).pred, rtol=0, atol=1e-6)
            assert json.loads(b.meta.read_text())["config_hash"] == json.loads(a.meta.read_text())["config_hash"]
            log = b.job_log.read_text()  # the job's whole console output, on the shared folder
            assert f"{exp} fold {k} on " in log and "epoch  2/2" in log and "OOF AUC" in log
    sub_local = pd.read_csv(local / "submissions/submission.csv")
    sub_ray = pd.read_csv(on_ray / "submissions/submission.csv")
    np.testing.assert_allclose(sub_ray.target, sub_local.target, atol=1e-6)
    learnt("ray: blend held-out AUC", summary["table"][-1]["test_auc"], 0.8)  # made on the driver; learns the task
    assert any("[4/4]" in line and "OOF AUC" in line for line in lines)  # one line per finished job


def test_a_failed_job_is_named_with_its_log_and_the_others_complete(grids, capsys):
    _, on_ray, _, _ = grids
    work = on_ray.parent / "failing"
    shutil.copytree(on_ray / "input", work / "input")
    shutil.copytree(on_ray / "configs", work / "configs")
    bad = Layout(work).fold("resnet10t", 1)
    bad.model_dir.mkdir(parents=True)
    bad.last.write_bytes(b"not a checkpoint")  # fold 1 resumes from an unreadable checkpoint
    argv = ["--config", str(work / "configs/toy.yaml"), "--workdir", str(work), "--executor", "ray",
            "--cpus-per-job", "1", "--quiet"]
    assert run_main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "1 of 4 jobs failed (resnet10t fold 1)" in err and "no blend" in err
    assert f"FAILED resnet10t fold 1 on {socket.gethostname()}" in out and "last lines of" in out
    assert f"error: {bad.last}: cannot be read as a checkpoint (UnpicklingError)" in bad.job_log.read_text()
    assert not bad.meta.exists() and not (work / "submissions/submission.csv").exists()
    for exp, k in [("resnet10t", 0), ("test_efficientnet", 0), ("test_efficientnet", 1)]:
        assert Layout(work).fold(exp, k).meta.exists()
    stamps = {p: p.stat().st_mtime_ns for p in (work / "oof").rglob("*.json")}

    bad.last.unlink()  # the cause fixed: a rerun runs only the missing job, then blends
    assert run_main(argv) == 0
    assert "3 complete, 1 to run" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert bad.meta.exists() and (work / "submissions/submission.csv").exists()


def test_a_task_that_sees_another_folds_file_fails_with_one_line(grids):
    _, on_ray, _, _ = grids
    cfg = load_config(on_ray / "configs/toy.yaml")
    folds = Layout(on_ray).folds_file(cfg.competition)
    task = ray.remote(ray_executor.job_body).options(num_cpus=1)
    res = ray.get(task.remote(cfg, "resnet10t", 0, str(on_ray), JobOptions("0" * 16)))
    assert not res.ok and res.error == (f"node {socket.gethostname()}: {folds} has hash {file_hash(folds)}, the "
                                        "driver's has 0000000000000000; every node must see the driver's working "
                                        "folder (a shared filesystem), not a copy of its own")
    res = ray.get(task.remote(cfg, "resnet10t", 0, str(on_ray.parent / "elsewhere"), JobOptions(file_hash(folds))))
    assert not res.ok and "folds/toy.csv not found" in res.error and "same path" in res.error


def test_job_resources_follow_the_cluster():
    class Fake:
        def __init__(self, res):
            self.res = res

        def cluster_resources(self):
            return self.res

    opts = ray_executor.RayOptions
    assert ray_executor.job_resources(Fake({"CPU": 16, "GPU": 2}), opts()) == (8.0, 1.0)
    assert ray_executor.job_resources(Fake({"CPU": 16, "GPU": 2}), opts(gpus_per_job=0.5)) == (4.0, 0.5)
    assert ray_executor.job_resources(Fake({"CPU": 2}), opts()) == (1.0, 0.0)
    with pytest.raises(InputError, match="no GPU"):
        ray_executor.job_resources(Fake({"CPU": 2}), opts(gpus_per_job=1))
    with pytest.raises(InputError, match="more than the cluster's 2 CPU"):
        ray_executor.job_resources(Fake({"CPU": 2}), opts(cpus_per_job=4))


def test_ray_flags_without_the_ray_executor_are_refused(tmp_path, capsys):
    assert run_main(["--competition", "elpv", "--workdir", str(tmp_path), "--gpus-per-job", "1"]) == 2
    assert "need --executor ray" in capsys.readouterr().err


@pytest.mark.parametrize("cpus", [1, 0.5])
def test_a_refit_starts_only_after_its_folds_and_a_rerun_changes_nothing(grids, cpus):
    """Issue 25, case 5: with 2 (or 4) job slots the refit waited for both folds: its epoch count
    is their median best epoch, and the same command again leaves the submission as it was."""
    import statistics

    from defectkit.core.records import FoldRecord
    _, on_ray, _, _ = grids
    work = on_ray.parent / f"refit{cpus}"
    shutil.copytree(on_ray / "input", work / "input")
    write_toy_config(work, archs=["resnet10t"], epochs=4, threads=1, refit="both")
    cfg = load_config(work / "configs/toy.yaml")
    opts = ray_executor.RayOptions(cpus_per_job=cpus)
    run_grid(cfg, work, progress=False, say=lambda *a: None, ray=opts)
    layout = Layout(work)
    folds = [FoldRecord.read(p) for p in layout.fold_metas("resnet10t")]
    refit = FoldRecord.read(layout.fold("resnet10t", "all").meta)
    assert len(folds) == 2 and refit.epochs_run == max(1, round(statistics.median(f.best_epoch for f in folds)))
    first = (work / "submissions/submission.csv").read_bytes()
    lines = []
    run_grid(cfg, work, progress=False, say=lambda *a: lines.append(" ".join(map(str, a))), ray=opts)
    assert any("3 complete, 0 to run" in line for line in lines)
    assert (work / "submissions/submission.csv").read_bytes() == first
