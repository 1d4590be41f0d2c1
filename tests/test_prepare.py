import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from defectkit.cli.prepare import main as prepare_main
from defectkit.core.checks import InputError
from defectkit.core.config import Competition
from defectkit.core.layout import Layout
from defectkit.data.kaggle_client import KaggleAuthError
from defectkit.data.sources.common import MARKER
from defectkit.data.sources.elpv import load_elpv, prepare_elpv
from defectkit.data.sources.folder import ClassFolders, prepare_folder
from defectkit.data.sources.kaggle import prepare_kaggle
from defectkit.data.tables import load_train_table


@pytest.fixture(scope="module")
def elpv_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("elpv") / "input" / "elpv"
    msg = prepare_elpv(out)
    assert "1968 train" in msg and "656 test" in msg
    return out


@pytest.mark.slow
def test_elpv_split_sizes_stratified_disjoint(elpv_dir):
    train = pd.read_csv(elpv_dir / "train.csv")
    sol = pd.read_csv(elpv_dir / "solution.csv")
    sub = pd.read_csv(elpv_dir / "sample_submission.csv")
    assert list(train.columns) == ["id", "target", "defect_probability", "cell_type"]
    assert list(sol.columns) == ["id", "target", "Usage"] and list(sub.columns) == ["id", "target"]
    assert (len(train), len(sol)) == (1968, 656)  # Deitsch et al.'s 75/25 protocol
    assert not set(train.id) & set(sol.id) and list(sub.id) == list(sol.id)
    assert ((train.defect_probability >= 0.5).astype(int) == train.target).all()
    assert train.target.sum() + sol.target.sum() == 821  # p >= 0.5
    assert abs(train.target.mean() - sol.target.mean()) < 0.01  # stratified by label ...
    types = pd.Series(load_elpv()[3], index=load_elpv()[0])
    assert abs((types[train.id] == "mono").mean() - (types[sol.id] == "mono").mean()) < 0.01  # ... and cell type
    assert len(list((elpv_dir / "train").glob("*.png"))) == 1968 and len(list((elpv_dir / "test").glob("*.png"))) == 656
    img = cv2.imread(str(elpv_dir / "train" / f"{train.id[0]}.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (300, 300)


@pytest.mark.slow
def test_elpv_split_is_deterministic_and_idempotent(elpv_dir, tmp_path):
    again = tmp_path / "input" / "elpv"
    prepare_elpv(again)
    assert pd.read_csv(again / "train.csv").equals(pd.read_csv(elpv_dir / "train.csv"))
    assert "nothing to do" in prepare_elpv(again)
    # an interrupted build (no marker, some images and a table missing) is repaired
    (again / MARKER).unlink()
    (again / "train.csv").unlink()
    for p in sorted((again / "test").glob("*.png"))[:5]:
        p.unlink()
    assert "wrote" in prepare_elpv(again)
    assert len(list((again / "test").glob("*.png"))) == 656 and (again / "train.csv").exists()
    assert "nothing to do" in prepare_elpv(again)


def _class_folders(root: Path, n_good=12, n_bad=8, test=0, clash=False):
    rng = np.random.default_rng(0)
    for name, n in (("good_0", n_good), ("bad_1", n_bad), ("all_tests", test)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"{i:03d}" if clash else f"{name}_{i:03d}"
            cv2.imwrite(str(root / name / f"{stem}.jpg"), rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    return root


def test_folder_import_with_held_out_split(tmp_path):
    src = _class_folders(tmp_path / "src", clash=True)
    out = tmp_path / "input" / "mine"
    msg = prepare_folder(ClassFolders(src, "good_0", "bad_1"), out)
    train, sol = pd.read_csv(out / "train.csv"), pd.read_csv(out / "solution.csv")
    assert len(train) + len(sol) == 20 and len(sol) == 5 and "held out" in msg
    assert train.id.str.startswith(("good_0_", "bad_1_")).all()  # same file names in both classes
    assert set(train.target) == {0, 1}
    assert (train.target == train.source.str.startswith("bad_1").astype(int)).all()
    for i in train.id:
        assert (out / "train" / f"{i}.jpg").exists()
    assert "nothing to do" in prepare_folder(ClassFolders(src, "good_0", "bad_1"), out)
    comp = Competition(name="mine", image_ext=".jpg", data_dir=str(out))
    assert len(load_train_table(comp, Layout("/"))) == 15


def test_folder_import_with_unlabelled_test_folder_nexperia_shape(tmp_path):
    src = _class_folders(tmp_path / "src", test=6)
    out = tmp_path / "input" / "nexperia"
    prepare_folder(ClassFolders(src, "good_0", "bad_1", test="all_tests"), out, sub_cols=("id", "label"))
    sub = pd.read_csv(out / "sample_submission.csv")
    assert list(sub.columns) == ["id", "label"] and len(sub) == 6
    assert not (out / "solution.csv").exists()
    assert len(pd.read_csv(out / "train.csv")) == 20


def test_folder_cli_writes_competition_yaml(tmp_path):
    src = _class_folders(tmp_path / "src", test=4)
    assert prepare_main(["--workdir", str(tmp_path), "folder", str(src), "--good", "good_0", "--defect", "bad_1",
                         "--test", "all_tests",
                         "--name", "nex", "--submission-columns", "id,label"]) == 0
    from defectkit.core.config import load_config
    cfg = load_config(tmp_path / "configs" / "nex.yaml")
    assert cfg.competition.submission_columns == ["id", "label"] and cfg.competition.image_ext == ".jpg"
    assert cfg.competition.source["test"] == "all_tests"
    assert (tmp_path / "input/nex/test").is_dir()
    assert prepare_main(["--workdir", str(tmp_path), "folder", str(src), "--good", "good_0", "--defect", "nope",
                         "--name", "x"]) == 2  # a clear error, exit status 2


def test_folder_import_bad_inputs(tmp_path):
    src = _class_folders(tmp_path / "src")
    (src / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no images"):
        prepare_folder(ClassFolders(src, "good_0", "empty"), tmp_path / "o1")
    with pytest.raises(InputError, match="nope: folder not found"):
        prepare_folder(ClassFolders(src, "good_0", "nope"), tmp_path / "o2")
    (src / "bad_1" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="broken.jpg: cannot be decoded"):
        prepare_folder(ClassFolders(src, "good_0", "bad_1"), tmp_path / "o3")


class FakeKaggleApi:
    """Stands in for KaggleApi at the network boundary: writes the zip a download would."""

    def __init__(self):
        self.calls = []

    def competition_download_files(self, competition, path=None, quiet=False):
        self.calls.append((competition, path))
        with zipfile.ZipFile(Path(path) / f"{competition}.zip", "w") as z:
            z.writestr("train.csv", "id,target\na,0\nb,1\n")
            z.writestr("sample_submission.csv", "id,target\nc,0.5\n")
            z.writestr("train/a.png", b"x")


def test_kaggle_download_with_fake_api(tmp_path):
    api = FakeKaggleApi()
    out = tmp_path / "input" / "some-comp"
    msg = prepare_kaggle("some-comp", out, api=api)
    assert api.calls and api.calls[0][0] == "some-comp"
    assert (out / "train.csv").read_text().startswith("id,target") and (out / "train" / "a.png").exists()
    assert json.loads((out / MARKER).read_text())["args"]["slug"] == "some-comp"
    assert not (tmp_path / "input" / ".some-comp.download").exists() and "3 files" in msg
    assert "nothing to do" in prepare_kaggle("some-comp", out, api=api) and len(api.calls) == 1


def test_kaggle_without_credentials_is_a_one_line_error(tmp_path, monkeypatch):
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kcfg"))
    with pytest.raises(KaggleAuthError) as e:
        prepare_kaggle("some-comp", tmp_path / "input" / "x")
    assert "kaggle.json" in str(e.value) and "\n" not in str(e.value)
