"""The Grad-CAM localisation score: a model trained to find bright disks puts far more of its CAM
energy inside the disks than their share of the image, read from masks or from boxes alike."""
import json

import numpy as np
import pandas as pd
import pytest

from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.data.sources.folder import ClassFolders, prepare_folder
from defectkit.explain import localise
from defectkit.explain.gradcam import localisation
from defectkit.explain.localise import summary_line
from defectkit.pipeline.grid import run_grid
from defectkit.testing import make_toy_competition, write_toy_config

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out


def test_scores_by_hand():
    cams = np.zeros((2, 4, 4))
    cams[0, 0, 0], cams[0, 3, 3] = 3.0, 1.0  # 3/4 of the energy and the maximum in the top-left cell
    cams[1] = 1.0  # flat: energy in proportion to the area, maximum at the first pixel
    masks = np.zeros((2, 4, 4), bool)
    masks[:, 0, :2] = True
    s = localise.scores(cams, masks)
    np.testing.assert_allclose(s["energy_in"], [0.75, 2 / 16])
    np.testing.assert_allclose(s["area"], [2 / 16, 2 / 16])
    np.testing.assert_allclose(s["hit"], [1.0, 1.0])


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    base = tmp_path_factory.mktemp("blobs")
    make_toy_competition(base, n_train=128, kind="blob", size=96)
    cfg = load_config(write_toy_config(base, archs=["resnet10t"], img_size=96, epochs=5, tta=1))
    run_grid(cfg, base, progress=False, say=lambda *a: None)
    return base, cfg


def test_the_model_looks_at_the_disks_by_masks_and_by_boxes(blobs):
    base, cfg = blobs
    root = base / "input/toy"
    by_mask = localisation(cfg.competition, base, "resnet10t", truth=root / "masks")
    lines = [summary_line(by_mask, "gradcam", -1)]
    a = by_mask["all"]
    n_defects = int(pd.read_csv(root / "train.csv").target.sum())
    assert a["n"] == n_defects and sorted(by_mask["per_fold"]) == [0, 1]  # every OOF defect, both folds
    assert a["energy_in"] > 3 * a["area"] and a["pointing_game"] > 3 * a["area"]  # both well above chance
    assert "mean CAM energy inside the defect areas" in lines[0] and "pointing game" in lines[0]
    by_box = localisation(cfg.competition, base, "resnet10t", truth=root / "defect_boxes.csv")
    b = by_box["all"]
    assert b["n"] == n_defects and b["area"] > a["area"] and b["energy_in"] > 3 * b["area"]
    out = base / "models/resnet10t/gradcam"
    assert json.loads((out / "localisation_gradcam_l1.json").read_text())["all"] == b
    assert (out / "localisation_gradcam_l1_hist.png").stat().st_size > 5000
    assert (out / "localisation_gradcam_l1_worst.png").stat().st_size > 5000
    per = pd.read_csv(out / "localisation_gradcam_l1.csv")
    assert list(per.columns) == ["id", "fold", "energy_in", "area", "hit"] and len(per) == n_defects


def test_a_finer_layer_is_offered_and_bad_arguments_are_one_line(blobs):
    base, cfg = blobs
    root = base / "input/toy"
    fine = localisation(cfg.competition, base, "resnet10t", truth=root / "masks", layer=-2, cam="layercam")
    assert fine["all"]["energy_in"] > 2 * fine["all"]["area"]
    with pytest.raises(InputError, match="give one of --masks DIR or --boxes CSV"):
        localisation(cfg.competition, base, "resnet10t", None)
    with pytest.raises(InputError, match="--layer -9: ResNet has feature layers -1 .. -5"):
        localisation(cfg.competition, base, "resnet10t", truth=root / "masks", layer=-9)


def test_prepare_folder_keeps_the_defect_masks(tmp_path):
    """prepare.py folder --masks: each defect image's mask (same name stem, any format, any
    non-zero channel) kept as input/<name>/masks/<id>.png, 0 or 255."""
    import cv2

    rng = np.random.default_rng(0)
    for cls in ("ok", "ng"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for j in range(8):
            cv2.imwrite(str(tmp_path / "src" / cls / f"{cls}{j}.png"), rng.integers(0, 255, (16, 16), dtype=np.uint8))
    (tmp_path / "masks").mkdir()
    for j in range(7):  # one defect without a mask
        m = np.zeros((16, 16, 3), np.uint8)
        m[2:6, 3:9, j % 3] = 1  # a faint mask in one colour channel: still a defect area
        cv2.imwrite(str(tmp_path / "masks" / f"ng{j}.png"), m)
    out = tmp_path / "input/parts"
    msg = prepare_folder(ClassFolders(tmp_path / "src", "ok", "ng", masks=tmp_path / "masks"), out)
    assert "7 of 8 defect masks kept" in msg
    kept = sorted((out / "masks").glob("*.png"))
    assert len(kept) == 7
    for p in kept:
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(m)) == {0, 255} and (m == 255).sum() == 24
    with pytest.raises(InputError, match="--masks .*nowhere: folder not found"):
        prepare_folder(ClassFolders(tmp_path / "src", "ok", "ng", masks=tmp_path / "nowhere"), tmp_path / "input/p2")
