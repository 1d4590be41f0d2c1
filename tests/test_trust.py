"""Nothing trusted that was not checked: the cases a careless or hostile user found (issue 25). Each
ends in one line on stderr naming the file, flag or key (exit 2; 1 for the disk), no traceback,
and leaves every complete result and the user's own files as they were; or it is now a correct
result. Numbered as in the issue; the flag and config family is in test_faults.py's CASES."""
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from defectkit.cli.explain import main as explain_main
from defectkit.cli.export import main as export_main
from defectkit.cli.predict import main as predict_main
from defectkit.cli.prepare import main as prepare_main
from defectkit.cli.submit import main as submit_main
from defectkit.cli.train import main as train_main
from defectkit.core.checks import InputError, describe_os_error
from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.data.masks import read_boxes
from defectkit.data.sources import prepare_from_config
from defectkit.data.sources.common import MARKER
from defectkit.data.sources.yolo import read_yolo_boxes
from defectkit.ensemble.report import BlendOptions, run_blend
from defectkit.runtime.runner import main as runner_main
from defectkit.testing import make_blend_workdir, sigmoid, toy_blob, toy_image, write_experiment
from defectkit.train.ray_executor import check_reachable


def _hashes(*folders):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(Path(f).rglob("*"))
            if p.is_file() and not p.is_symlink() and not p.name.endswith(".lock")}


def _one_line(capsys, rc, code=2):
    err = capsys.readouterr().err.strip()
    assert rc == code and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, (rc, err)
    return err


def _classes(root: Path, n_good=30, n_bad=12, size=48, masks=None):
    rng = np.random.default_rng(0)
    for cls, n in (("ok", n_good), ("ng", n_bad)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = toy_blob(rng, cls == "ng", size)
            cv2.imwrite(str(root / cls / f"{cls}{i}.png"), img)
            if masks is not None and mask is not None:
                masks.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(masks / f"{cls}{i}.png"), mask.astype(np.uint8) * 255)
    return root


# --- 1. a user's edit is never overwritten; 2. a failed import is never marked done; 3. masks fit ----

def test_1_a_column_added_by_hand_survives_run_and_a_reprepare_refuses_to_rewrite_it(tmp_path, capsys):
    src = _classes(tmp_path / "src", masks=tmp_path / "masks")
    argv = ["folder", str(src), "--good", "ok", "--defect", "ng", "--masks", str(tmp_path / "masks"), "--name", "m",
            "--workdir", str(tmp_path)]
    assert prepare_main(argv) == 0
    train_csv = tmp_path / "input/m/train.csv"
    df = pd.read_csv(train_csv, dtype={"id": str})
    df["lot"] = "A"
    df.to_csv(train_csv, index=False)
    edited = train_csv.read_bytes()
    cfg = load_config(tmp_path / "configs/m.yaml")  # the config prepare wrote keeps the masks
    assert cfg.competition.source["masks"] == str((tmp_path / "masks").resolve())
    assert "nothing to do" in prepare_from_config(cfg.competition, base=tmp_path)  # what run.py does
    capsys.readouterr()
    rc = prepare_main([*argv, "--test-size", "0.3"])  # other arguments: would rebuild the tables
    assert "train.csv: changed since prepare.py wrote it" in _one_line(capsys, rc)
    assert train_csv.read_bytes() == edited
    assert prepare_main([*argv, "--test-size", "0.3", "--force"]) == 0 and "lot" not in train_csv.read_text()


@pytest.mark.parametrize("how", ["empty folder", "a mask that is not an image", "a mask of another size"])
def test_2_3_a_bad_masks_folder_marks_nothing_done_and_the_fixed_one_is_imported(tmp_path, capsys, how):
    src = _classes(tmp_path / "src")
    masks = tmp_path / "masks"
    masks.mkdir()
    if how == "a mask that is not an image":
        (masks / "ng0.png").write_bytes(b"\x89PNG\r\n\x1a\n not a mask IEND")
    elif how == "a mask of another size":
        cv2.imwrite(str(masks / "ng0.png"), np.full((20, 30), 255, np.uint8))
    argv = ["folder", str(src), "--good", "ok", "--defect", "ng", "--masks", str(masks), "--name", "m",
            "--workdir", str(tmp_path)]
    err = _one_line(capsys, prepare_main(argv))
    want = {"empty folder": "masks folder", "a mask that is not an image": "ng0.png: cannot be decoded",
            "a mask of another size": "ng0.png: mask of 30 x 20 px for an image of 48 x 48 px"}[how]
    assert want in err, err
    assert not (tmp_path / "input/m" / MARKER).exists()
    shutil.rmtree(masks)
    _classes(tmp_path / "again", masks=masks)  # the right masks, same names
    out = capsys.readouterr() and prepare_main(argv)
    assert out == 0 and "12 of 12 defect masks kept" in capsys.readouterr().out


# --- 4. a refit of another recipe; 7. NaN weights; 8. blanked OOF references; 9. edited bundle.json ---

@pytest.fixture(scope="module")
def bundled(blended, tmp_path_factory):
    from defectkit.ensemble.members import load_ensemble
    from defectkit.ship.export import export
    base, cfg = blended
    out = tmp_path_factory.mktemp("trust") / "bundle"
    export(load_ensemble(Layout(base)), out, cfg.competition.image_ext, say=lambda *a: None)
    return base, cfg, out


def _copy_workdir(base: Path, dst: Path) -> Path:
    for d in ("input", "oof", "models", "folds", "configs", "submissions"):
        shutil.copytree(base / d, dst / d, symlinks=True)
    return dst


@pytest.mark.slow
def test_4_a_refit_of_another_recipe_is_refused_by_train_and_never_blended(blended, tmp_path, capsys):
    base, cfg = blended
    work = _copy_workdir(base, tmp_path / "w")
    argv = ["--config", str(work / "configs/toy.yaml"), "--workdir", str(work), "--fold", "all", "--arch",
            "resnet10t", "--quiet"]
    before = _hashes(work / "oof", work / "models")
    err = _one_line(capsys, train_main([*argv, "--lr", "0.5", "--drop-rate", "0.9", "--img-size", "48"]))
    assert "the folds of resnet10t were made by another recipe" in err and _hashes(work / "oof",
                                                                                    work / "models") == before
    assert train_main([*argv, "--lr", "0.5", "--img-size", "48", "--force"]) == 0  # forced: trained, not used
    with pytest.raises(InputError, match=r"resnet10t: no full-data refit to use \(.*foldall.json was made by "
                                         r"another recipe"):
        run_blend(cfg.competition, work, BlendOptions("rank", names=["resnet10t"], refit="both"), verbose=False)
    report = json.loads((work / "submissions/blend.json").read_text())
    (work / "submissions/blend.json").unlink()
    (work / "submissions/blend.json").write_text(json.dumps({**report, "refit": "both"}))  # hand-made
    err = _one_line(capsys, predict_main(["--config", str(work / "configs/toy.yaml"), "--workdir", str(work),
                                          str(work / "input/toy/test"), "--out", str(tmp_path / "p.csv")]))
    assert "foldall.json: the refit of resnet10t was made by another recipe" in err


@pytest.mark.slow
@pytest.mark.parametrize("edit,want", [
    (lambda r: r["weights"].update({k: float("nan") for k in r["weights"]}), r"weights\.\S+ = nan; expected a finite"),
    (lambda r: r["operating_points"].pop("chosen"), r"operating_points\.chosen\.threshold = None"),
    (lambda r: r["operating_points"]["chosen"].update(threshold="high"), r"chosen\.threshold = 'high'"),
])
def test_7_a_hand_edited_blend_json_is_refused_by_predict(blended, tmp_path, capsys, edit, want):
    import re
    base, cfg = blended
    work = _copy_workdir(base, tmp_path / "w")
    path = work / "submissions/blend.json"
    report = json.loads(path.read_text())
    edit(report)
    path.unlink()
    path.write_text(json.dumps(report))
    err = _one_line(capsys, predict_main(["--config", str(work / "configs/toy.yaml"), "--workdir", str(work),
                                          str(work / "input/toy/test"), "--out", str(tmp_path / "p.csv")]))
    assert re.search(want, err) and "blend.json" in err and not (tmp_path / "p.csv").exists(), err


@pytest.mark.slow
def test_7_a_threshold_that_is_not_a_number_is_refused_by_predict_and_the_runner(bundled, tmp_path, capsys):
    base, cfg, bundle = bundled
    test = str(base / "input/toy/test")
    err = _one_line(capsys, predict_main(["--config", str(base / "configs/toy.yaml"), "--workdir", str(base), test,
                                          "--out", str(tmp_path / "p.csv"), "--threshold", "nan"]))
    assert "--threshold nan: expected a finite number" in err
    err = _one_line(capsys, runner_main([test, "--bundle", str(bundle), "--out", str(tmp_path / "b.csv"),
                                         "--threshold", "inf"]))
    assert "--threshold inf: expected a finite number" in err and not list(tmp_path.glob("*.csv"))


@pytest.mark.slow
def test_8_blanked_oof_references_are_refused_by_predict_and_export(blended, tmp_path, capsys):
    base, cfg = blended
    work = _copy_workdir(base, tmp_path / "w")
    oof = work / "oof/resnet10t/fold1.csv"
    df = pd.read_csv(oof, dtype={"id": str})
    df.loc[:6, "pred"] = np.nan
    df.to_csv(oof, index=False)
    common = ["--config", str(work / "configs/toy.yaml"), "--workdir", str(work)]
    err = _one_line(capsys, predict_main([*common, str(work / "input/toy/test"), "--out", str(tmp_path / "p.csv")]))
    assert "fold1.csv" in err and "nan" in err
    err = _one_line(capsys, export_main([*common, "--out", str(tmp_path / "bundle")]))
    assert "fold1.csv" in err and not (tmp_path / "bundle").exists()


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["swap models", "resize", "border crop", "not json"])
def test_9_a_hand_edited_bundle_json_is_refused(bundled, tmp_path, capsys, edit):
    base, _, bundle = bundled
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    spec = json.loads((copy / "bundle.json").read_text())
    e = spec["experiments"][0]
    if edit == "swap models":
        e["folds"][0]["model"], e["folds"][1]["model"] = e["folds"][1]["model"], e["folds"][0]["model"]
    elif edit == "resize":
        e["preprocess"]["resize"] = "crop"
    elif edit == "border crop":
        e["preprocess"]["border_crop"] = 0.3
    (copy / "bundle.json").write_text("{ not json" if edit == "not json" else json.dumps(spec))
    err = _one_line(capsys, runner_main([str(base / "input/toy/test"), "--bundle", str(copy), "--out",
                                         str(tmp_path / "p.csv")]))
    assert "bundle.json" in err and ("edited" in err or "not valid JSON" in err) and not (tmp_path / "p.csv").exists()


@pytest.mark.slow
def test_10_a_damaged_bundle_is_never_uploaded_and_the_staging_folder_is_never_the_source(bundled, tmp_path,
                                                                                         capsys):
    base, _, bundle = bundled
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    model = next((copy / "models").glob("*.onnx"))
    model.write_bytes(model.read_bytes()[:-10])
    argv = ["--config", str(base / "configs/toy.yaml"), "--workdir", str(tmp_path), "--code", "--dry-run",
            "--dataset", "me/toy-bundle", "--kernel", "me/toy-sub", "--slug", "toy-comp"]
    err = _one_line(capsys, submit_main([*argv, "--bundle", str(copy)]))
    assert f"{model.name}: edited or damaged" in err and not (tmp_path / "submissions/kaggle_code").exists()
    staging = tmp_path / "submissions/kaggle_code"
    shutil.copytree(bundle, staging / "dataset")
    err = _one_line(capsys, submit_main([*argv, "--bundle", str(staging / "dataset")]))
    assert "inside the staging folder" in err and (staging / "dataset/bundle.json").exists()


# --- 6. Ray: an address where nothing answers is one line at once ---------------------------------------

def test_6_an_unreachable_ray_address_is_one_line_within_seconds():
    import time
    t0 = time.time()
    with pytest.raises(InputError, match=r"--ray-address 127.0.0.1:1: nothing answers at 127.0.0.1:1"):
        check_reachable("127.0.0.1:1", timeout=2)
    assert time.time() - t0 < 30  # not minutes of retries (a bound, not a speed target)
    with pytest.raises(InputError, match="expected auto, HOST:PORT"):
        check_reachable("nowhere")
    check_reachable("auto")


# --- the bundle runner and predict.py: outputs, images and CSVs -------------------------------------------

@pytest.mark.slow
def test_outputs_that_are_folders_links_or_read_only_are_one_line_and_nothing_is_replaced(bundled, tmp_path, capsys):
    base, _, bundle = bundled
    test = str(base / "input/toy/test")
    (tmp_path / "folder").mkdir()
    err = _one_line(capsys, runner_main([test, "--bundle", str(bundle), "--out", str(tmp_path / "folder")]))
    assert "--out" in err and "is a folder" in err
    link = base / "submissions/submission.csv"
    target = link.resolve()
    before = target.read_bytes()
    err = _one_line(capsys, predict_main(["--config", str(base / "configs/toy.yaml"), "--workdir", str(base), test,
                                          "--out", str(link)]))
    assert "is a symbolic link" in err and link.is_symlink() and target.read_bytes() == before
    from defectkit.runtime import files, runner
    for code, what in ((errno.EACCES, "no permission"), (errno.ENOSPC, "the disk is full")):
        def fails(*a, code=code, **k):
            raise OSError(code, os.strerror(code))
        with pytest.MonkeyPatch.context() as mp:  # a read-only folder (root ignores modes) or a full disk
            mp.setattr(files.tempfile, "mkstemp", fails) if code == errno.EACCES else mp.setattr(runner.csv, "writer",
                                                                                                   fails)
            err = _one_line(capsys, runner_main([test, "--bundle", str(bundle), "--out", str(tmp_path / "p.csv")]),
                            code=1)
        assert err.startswith(f"error: {tmp_path / 'p.csv'}: ") and what in err and not list(tmp_path.glob("*p.csv*"))


@pytest.mark.slow
def test_a_jpeg_cut_in_half_a_symlink_loop_and_a_bom_csv(bundled, tmp_path, capsys):
    base, cfg, bundle = bundled
    folder = tmp_path / "imgs"
    shutil.copytree(base / "input/toy/test", folder)
    ok, buf = cv2.imencode(".jpg", toy_image(np.random.default_rng(0), True, 40))
    (folder / "half.jpg").write_bytes(buf.tobytes()[:len(buf) // 2])
    (folder / "loop.png").symlink_to(folder / "loop.png")
    out = tmp_path / "p.csv"
    err = _one_line(capsys, runner_main([str(folder), "--bundle", str(bundle), "--out", str(out)]))
    assert "2 of 34 images cannot be used" in err and "half.jpg: image file is truncated" in err and "loop.png" in err
    assert runner_main([str(folder), "--bundle", str(bundle), "--out", str(out), "--skip-bad"]) == 0
    assert len(pd.read_csv(out)) == 32
    ids = pd.read_csv(base / "input/toy/sample_submission.csv", dtype={"id": str})[["id"]]
    ids.to_csv(tmp_path / "ids.csv", index=False, encoding="utf-8-sig")  # as Excel saves it
    common = ["--config", str(base / "configs/toy.yaml"), "--workdir", str(base)]
    assert predict_main([*common, str(tmp_path / "ids.csv"), "--out", str(tmp_path / "q.csv"), "--quiet"]) == 0
    assert runner_main([str(tmp_path / "ids.csv"), "--bundle", str(bundle), "--image-dir",
                        str(base / "input/toy/test"), "--out", str(tmp_path / "r.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "q.csv")) == len(pd.read_csv(tmp_path / "r.csv")) == 32


# --- explain.py --boxes / --masks, prepare.py yolo -------------------------------------------------------

@pytest.mark.parametrize("rows,want", [
    ("a,1,1,500,9", None),  # outside the image: caught when the image's size is known (below)
    ("a,x,1,5,9", r"row 2: .*expected four pixel coordinates"),
    ("a,5,1,2,9", r"row 2: box \(5, 1, 2, 9\); expected 0 <= x_1 < x_2"),
    ("a,-1,1,2,9", r"row 2: box \(-1, 1, 2, 9\)"),
])
def test_boxes_are_checked_row_by_row(tmp_path, rows, want):
    (tmp_path / "b.csv").write_text(f"id,x_1,y_1,x_2,y_2\n{rows}\nb,,,,\n")
    if want is None:
        from defectkit.data.masks import mask_from_boxes
        boxes = read_boxes(tmp_path / "b.csv")
        assert list(boxes.id) == ["a"]  # the empty row (a good image, as prepare.py yolo writes it) is skipped
        with pytest.raises(InputError, match=r"b.csv: row 2: box .* of 'a' reaches outside its 40 x 30 image"):
            mask_from_boxes(boxes, "a", (30, 40))
        return
    with pytest.raises(InputError, match=want):
        read_boxes(tmp_path / "b.csv")


@pytest.mark.parametrize("line", ["0 0.5 0.5 1.4 0.2", "0 nan 0.5 0.1 0.1", "0 0.5 0.5 0 0.1", "0 -0.1 0.5 0.1 0.1"])
def test_yolo_boxes_outside_the_image_or_nan_are_one_line(tmp_path, line):
    (tmp_path / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(InputError, match=r"a.txt: line 2: box .*expected a centre and size normalised"):
        read_yolo_boxes(tmp_path / "a.txt", None)


@pytest.mark.slow
def test_masks_for_an_experiment_that_does_not_exist_name_the_experiment(blended, tmp_path, capsys):
    base, _ = blended
    (tmp_path / "masks").mkdir()
    err = _one_line(capsys, explain_main(["--config", str(base / "configs/toy.yaml"), "--workdir", str(base),
                                          "--exp", "nope", "--masks", str(tmp_path / "masks")]))
    assert "experiment 'nope' has no complete fold" in err


# --- a full disk names the path; --stack-meta with a method that takes none -------------------------------

def test_a_cache_larger_than_the_free_space_is_one_line_naming_it_not_a_sigbus(tmp_path, monkeypatch):
    from defectkit.core import fileio
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 * 2**20})())
    chunks = iter([(0, np.zeros((4, 64, 64, 3), np.uint8))])
    with pytest.raises(OSError) as e:
        fileio.build_npy_cache(tmp_path / "cache.npy", 10_000, chunks, progress=False)
    msg = describe_os_error(e.value)
    assert str(tmp_path / "cache.npy") in msg and "MiB free" in msg and "the disk is full" in msg
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob(".*.tmp"))


def test_a_write_that_fails_names_the_file_not_a_temporary_one(tmp_path):
    from defectkit.core.fileio import atomic_path, write_text_atomic
    with pytest.raises(OSError) as e:
        with atomic_path(tmp_path / "x.csv") as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert describe_os_error(e.value).startswith(f"{tmp_path / 'x.csv'}: No space left on device (the disk is full")
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.iterdir())
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_text_atomic(tmp_path / "d", "x")


def test_stack_meta_with_a_method_that_uses_no_metadata_is_refused(tmp_path):
    w = make_blend_workdir(tmp_path)
    write_experiment(tmp_path, "m", w, sigmoid(2 * (w["y"] - 0.5) + np.random.default_rng(0).normal(0, 1, len(w["y"]))))
    pd.DataFrame({"id": w["ids"][w["n"]:], "g": "x"}).to_csv(tmp_path / "input/syn/test.csv", index=False)
    train = pd.read_csv(tmp_path / "input/syn/train.csv", dtype={"id": str})
    train["g"] = "x"
    train.to_csv(tmp_path / "input/syn/train.csv", index=False)
    comp = load_config(tmp_path / "configs/syn.yaml").competition
    with pytest.raises(InputError, match=r"--stack-meta g: blend method 'hill' uses no metadata; use one that does "
                                         r"\(stack\)"):
        run_blend(comp, tmp_path, BlendOptions("hill", stack_meta=["g"]), verbose=False)
    assert not (tmp_path / "submissions").exists()
