"""submit.py --code: the bundle as a Kaggle dataset and an offline notebook; the notebook runs
against a /kaggle/input-like folder and writes a valid submission; the Kaggle calls go through
the package's API (a fake here)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from defectkit.core.checks import InputError
from defectkit.core.layout import Layout
from defectkit.ensemble.members import load_ensemble
from defectkit.ship.export import export
from defectkit.ship.submit import CodeTarget, submit_code

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out


class FakeApi:
    def __init__(self, existing=()):
        self.existing, self.calls = set(existing), []

    def dataset_status(self, dataset):
        if dataset not in self.existing:
            raise ValueError(f"404 {dataset}")
        return "ready"

    def dataset_create_new(self, folder, public=False, dir_mode="skip"):
        self.calls.append(("create_new", folder, public, dir_mode))

    def dataset_create_version(self, folder, notes, dir_mode="skip"):
        self.calls.append(("create_version", folder, notes, dir_mode))

    def kernels_push(self, folder):
        self.calls.append(("kernels_push", folder))


@pytest.fixture(scope="module")
def exported(blended, tmp_path_factory):
    base, cfg = blended
    work = tmp_path_factory.mktemp("code")
    for d in ("input", "oof", "models", "folds", "configs", "submissions"):
        shutil.copytree(base / d, work / d, symlinks=True)
    export(load_ensemble(Layout(work)), Layout(work).bundle, cfg.competition.image_ext, say=lambda *a: None)
    return work, cfg


def test_dry_run_writes_valid_metadata_and_a_notebook_that_runs_offline(exported, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    work, cfg = exported
    staged = submit_code(cfg.competition, work, CodeTarget("me/toy-bundle", "me/toy-submit", "toy-comp"),
                         dry_run=True, say=lambda *a: None)
    ds = json.loads((staged["dataset"] / "dataset-metadata.json").read_text())
    km = json.loads((staged["kernel"] / "kernel-metadata.json").read_text())
    assert ds["id"] == "me/toy-bundle" and 6 <= len(ds["title"]) <= 50 and (staged["dataset"] / "bundle.json").exists()
    assert km["dataset_sources"] == ["me/toy-bundle"] and km["competition_sources"] == ["toy-comp"]
    assert km["enable_internet"] is False and km["code_file"] == "notebook.ipynb" and km["kernel_type"] == "notebook"

    kaggle = tmp_path / "kaggle"  # what Kaggle mounts: the dataset and the competition's files
    shutil.copytree(staged["dataset"], kaggle / "input/toy-bundle")
    shutil.copytree(work / "input/toy/test", kaggle / "input/toy-comp/test")
    shutil.copyfile(work / "input/toy/sample_submission.csv", kaggle / "input/toy-comp/sample_submission.csv")
    monkeypatch.setenv("KAGGLE_INPUT", str(kaggle / "input"))
    monkeypatch.setenv("KAGGLE_WORKING", str(kaggle / "working"))
    nb = nbformat.read(staged["kernel"] / "notebook.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    sub = pd.read_csv(kaggle / "working/submission.csv", dtype={"id": str})
    sample = pd.read_csv(work / "input/toy/sample_submission.csv", dtype={"id": str})
    assert list(sub.columns) == list(sample.columns) and list(sub.id) == list(sample.id)
    ours = pd.read_csv(work / "submissions/submission.csv", dtype={"id": str})
    np.testing.assert_allclose(sub.target, ours.target, atol=1e-4)


def test_the_kaggle_calls_create_then_version_the_dataset_and_push_the_kernel(exported):
    work, cfg = exported
    api = FakeApi()
    submit_code(cfg.competition, work, CodeTarget("me/toy-bundle", "me/toy-submit", "toy-comp"), api=api,
                say=lambda *a: None)
    kinds = [c[0] for c in api.calls]
    assert kinds == ["create_new", "kernels_push"] and api.calls[0][2] is False and api.calls[0][3] == "zip"
    api = FakeApi(existing={"me/toy-bundle"})
    submit_code(cfg.competition, work, CodeTarget("me/toy-bundle", "me/toy-submit", "toy-comp", "v2"), api=api,
                say=lambda *a: None)
    assert [c[0] for c in api.calls] == ["create_version", "kernels_push"] and api.calls[0][2] == "v2"


@pytest.mark.parametrize("dataset,kernel,slug,bundle,want", [
    ("toy-bundle", "me/k-sub", "c", None, "--dataset 'toy-bundle': expected OWNER/NAME"),
    ("me/toy-bundle", "me/K", "c", None, "--kernel 'me/K'"),
    ("me/toy-bundle", "me/toy-sub", "", None, "has no Kaggle slug"),
    ("me/toy-bundle", "me/toy-sub", "c", "nowhere", "no bundle.json; run python src/export.py first"),
])
def test_bad_code_submissions_are_one_line_errors(exported, tmp_path, dataset, kernel, slug, bundle, want):
    work, cfg = exported
    with pytest.raises(InputError, match=want.replace("(", r"\(").replace(")", r"\)")):
        submit_code(cfg.competition, work, CodeTarget(dataset, kernel, slug or None,
                                                      bundle=tmp_path / bundle if bundle else None),
                    dry_run=True, say=lambda *a: None)
