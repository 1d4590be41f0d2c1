"""Recipes that fit the hardware, a config that checks itself, non-square images and
detection-format data: what a new user with their own images meets first.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import dataclasses
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from defectkit.cli.prepare import main as prepare_main
from defectkit.cli.run import main as run_main
from defectkit.core.checks import InputError
from defectkit.core.config import config_hash, load_config
from defectkit.core.members import QUIET
from defectkit.core.presets import PRESETS
from defectkit.testing import learnt, seed_offset, toy_image
from defectkit.train.fold import train_fold


def _write(path, data):
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("text, match", [
    ('recipe: {epochs: "5"}', r"c.yaml: recipe.epochs: expected a whole number, got '5' \(remove the quotes\)"),
    ("recipe: {img_size: abc}", r"c.yaml: recipe.img_size: expected a whole number, got 'abc'"),
    ("recipe: {lrr: 0.1}", r"c.yaml: recipe.lrr: unknown key; did you mean lr\?"),
    ("recipe: {archs: tf_efficientnet_lite0}", r"c.yaml: recipe.archs: expected a list"),
    ("recipe: {preset: fast}", r"c.yaml: recipe.preset: no preset 'fast'.*presets: auto, cpu-fast"),
    ("recipe: {tta: 3}", r"recipe.tta: 3 is not one of 1, 2, 4, 8"),
    ("recipe: {lr: abc}", r"recipe.lr: expected a number, got 'abc'"),
    ("competition: {submission_columns: [id]}", r"competition.submission_columns: \['id'\]; expected two"),
    ("recipes: {}", "unknown section"),
])
def test_bad_config_values_are_one_line_naming_file_and_key(tmp_path, text, match):
    with pytest.raises(InputError, match=match) as e:
        load_config(_write(tmp_path / "c.yaml", text))
    assert "\n" not in str(e.value)


def test_values_are_converted_by_type_and_presets_resolve_in_order(tmp_path):
    cfg = load_config(_write(tmp_path / "c.yaml", "recipe: {preset: auto, lr: 1e-3, img_size: [96, 288]}\n"),
                      {"epochs": 2})
    rec = cfg.recipe
    assert rec.lr == 0.001 and isinstance(rec.lr, float)  # YAML 1.1 reads 1e-3 as a string
    assert rec.preset == "cpu-fast" and rec.cache_frozen and rec.archs == PRESETS["cpu-fast"]["archs"]  # no GPU
    assert rec.epochs == 2 and rec.hw == (96, 288) and rec.tta_views == 4  # flag > YAML > preset
    named = load_config(_write(tmp_path / "d.yaml", "recipe: {preset: cpu-fast, lr: 0.001, img_size: [96, 288]}\n"),
                        {"epochs": 2})
    assert config_hash(cfg) == config_hash(named)  # hashed by the resolved fields, not the preset's name
    assert config_hash(dataclasses.replace(cfg, recipe=dataclasses.replace(rec, aspect_ratio=2.0))) != config_hash(cfg)
    assert load_config(_write(tmp_path / "e.yaml", "recipe: {preset: auto, device: cuda}\n")).recipe.preset == "gpu"


def _mixed_folder(root, n=100, seed=0):
    """Good and defect images of mixed sizes and aspect ratios (1:3 to 3:1)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        cls = "ng" if i % 3 == 0 else "ok"
        h, w = [(40, 120), (120, 40), (60, 60), (50, 90)][i % 4]
        img = cv2.resize(toy_image(rng, cls == "ng", 48), (w, h))
        (root / cls).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / cls / f"{cls}_{i:03d}.png"), img)
    return root


@pytest.mark.slow
def test_a_new_users_folder_gets_the_cpu_preset_and_the_printed_command_ends_in_a_submission(tmp_path, capsys):
    src = _mixed_folder(tmp_path / "src")
    work = tmp_path / "w"
    assert prepare_main(["folder", str(src), "--good", "ok", "--defect", "ng", "--name", "parts",
                         "--workdir", str(work)]) == 0
    out = capsys.readouterr().out
    assert "100 images of 40-120 x 40-120 px" in out and "aspect ratios (w/h) 0.33-3.00" in out
    written = yaml.safe_load((work / "configs/parts.yaml").read_text())
    assert written["recipe"] == {"preset": "auto"}  # the run plans the rest from the images
    command = out.strip().splitlines()[-1]
    assert command.startswith("next: python src/run.py --config ")
    argv = command.split("python src/run.py ")[1].split()
    # the printed command as is, made lighter for a test: one backbone, 2 epochs (still 5 folds), kept by the plan
    assert run_main(argv + ["--quiet", "--archs", "tf_efficientnet_lite0", "--epochs", "2"]) == 0
    assert "kept as set: archs, epochs" in capsys.readouterr().out
    saved = yaml.safe_load(next(work.glob("models/*/fold0_config.yaml")).read_text())
    assert saved["recipe"]["preset"] == "cpu-fast"
    sub = pd.read_csv(work / "submissions/submission.csv")
    summary = json.loads((work / "submissions/run_summary.json").read_text())
    assert len(sub) == 25
    learnt("presets: cpu-fast blend local leaderboard AUC", summary["blend"]["local_leaderboard"]["blend"], 0.6)


@pytest.mark.slow
def test_one_orientation_keeps_its_aspect_ratio_and_pad_learns_non_square_inputs(tmp_path):
    rng = np.random.default_rng(2 + seed_offset())
    src = tmp_path / "src"
    for i in range(64):
        cls = "ng" if i % 2 else "ok"
        (src / cls).mkdir(parents=True, exist_ok=True)
        img = cv2.resize(toy_image(rng, cls == "ng", 48), (120 + (i % 5) * 6, 40))
        cv2.imwrite(str(src / cls / f"{i:03d}.png"), img)
    work = tmp_path / "w"
    assert prepare_main(["folder", str(src), "--good", "ok", "--defect", "ng", "--name", "strip",
                         "--workdir", str(work)]) == 0
    from defectkit.data.folds import make_folds
    from defectkit.train.planner import ladder, survey
    s = survey(load_config(work / "configs/strip.yaml"), work)
    assert s.one_orientation and all(2.8 <= w / h <= 3.8 for h, w in ladder(s)[:2])  # the plan keeps the strip
    over = {"preset": "", "archs": ["resnet10t"], "pretrained": "none", "img_size": [32, 64], "resize": "pad",
            "epochs": 5, "batch_size": 16, "lr": 3e-3, "backbone_lr_factor": 1.0, "tta": 8, "n_folds": 2,
            "drop_rate": 0.0, "num_workers": 0}
    cfg = load_config(work / "configs/strip.yaml", over)
    make_folds(cfg.competition, 2, 0, base=work)
    meta = train_fold(cfg, "resnet10t", 0, work, QUIET)
    assert meta.tta == 4  # a 32 x 64 input: the 4 flips that keep it
    learnt("presets: padded strip OOF AUC", meta.oof_auc, 0.75)


@pytest.mark.slow
def test_yolo_labels_become_good_defect_with_pixel_boxes(tmp_path, capsys):
    rng = np.random.default_rng(3)
    src = tmp_path / "yolo"
    rows = []
    for split in ("train", "val"):
        (src / "images" / split).mkdir(parents=True)
        (src / "labels" / split).mkdir(parents=True)
        for i in range(16):
            img = rng.normal(90, 10, (40, 80)).clip(0, 255).astype(np.uint8)
            name = f"{split}{i:02d}"
            if i % 2:
                x0, y0 = int(rng.integers(5, 60)), int(rng.integers(5, 25))
                cv2.rectangle(img, (x0, y0), (x0 + 10, y0 + 8), 250, -1)
                (src / "labels" / split / f"{name}.txt").write_text(
                    f"0 {(x0 + 5) / 80:.6f} {(y0 + 4) / 40:.6f} {10 / 80:.6f} {8 / 40:.6f}\n")
                rows.append((name, x0, y0))
            elif i % 4 == 0:
                (src / "labels" / split / f"{name}.txt").write_text("")  # an empty label file: good
            cv2.imwrite(str(src / "images" / split / f"{name}.png"), img)
    work = tmp_path / "w"
    assert prepare_main(["yolo", str(src), "--name", "seal", "--workdir", str(work)]) == 0
    assert "16 boxes in defect_boxes.csv" in capsys.readouterr().out
    train_df = pd.read_csv(work / "input/seal/train.csv")
    sol = pd.read_csv(work / "input/seal/solution.csv")
    labels = pd.concat([train_df[["id", "target"]], sol[["id", "target"]]]).set_index("id").target
    assert len(labels) == 32 and labels.sum() == 16 and all(labels[n] == 1 for n, _, _ in rows)
    boxes = pd.read_csv(work / "input/seal/defect_boxes.csv").set_index("id")
    for name, x0, y0 in rows:
        want = [x0, y0, x0 + 10, y0 + 8]
        assert boxes.loc[name, ["x_1", "y_1", "x_2", "y_2"]].tolist() == pytest.approx(want, abs=0.1)
    cfg = yaml.safe_load((work / "configs/seal.yaml").read_text())
    assert cfg["competition"]["source"]["type"] == "yolo" and cfg["recipe"] == {"preset": "auto"}
    assert run_main(["--config", str(work / "configs/seal.yaml"), "--workdir", str(work), "--quiet", "--preset",
                     "cpu-fast", "--archs", "resnet10t", "--pretrained", "none", "--cache-frozen", "--freeze-stages",
                     "1", "--img-size", "32", "--n-folds", "2", "--epochs", "2", "--batch-size", "8"]) == 0
    assert len(pd.read_csv(work / "submissions/submission.csv")) == 8
