"""What a careless or hostile user meets: every fault ends in one clear line, and nothing of a
complete result is lost, half-written or silently wrong."""
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from defectkit.cli.make_folds import main as make_folds_main
from defectkit.cli.prepare import main as prepare_main
from defectkit.cli.run import main as run_main
from defectkit.cli.train import main as train_main
from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.core.fileio import FileLock, LockedError, write_csv_atomic
from defectkit.core.layout import Layout
from defectkit.core.members import QUIET
from defectkit.data.folds import make_folds
from defectkit.data.sources.folder import ClassFolders, prepare_folder
from defectkit.ensemble.report import BlendOptions, run_blend
from defectkit.pipeline.grid import job_state
from defectkit.testing import (
    copy_toy_workdir,
    make_blend_workdir,
    sigmoid,
    toy_image,
    write_experiment,
    write_toy_config,
)
from defectkit.train import fold as fold_module
from defectkit.train.fold import train_fold

ROOT = Path(__file__).resolve().parent.parent


def _cfg(work, **over):
    return load_config(work / "configs/toy.yaml", {"archs": ["resnet10t"], "epochs": 1, **over})


def _hashes(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def _one_line_error(capsys, rc):
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --- 1. no validation rows / no best checkpoint of this run -------------------------------------

def test_fold_without_validation_rows_is_refused_before_training(work):
    folds = pd.read_csv(work / "folds/toy.csv")
    folds.assign(fold=np.where(folds.fold == 1, 2, folds.fold)).to_csv(work / "folds/toy.csv", index=False)
    with pytest.raises(InputError, match="fold 1 has no validation rows"):
        train_fold(_cfg(work), "resnet10t", 1, work, QUIET)
    assert not Layout(work).fold("resnet10t", 1).best.exists()


@pytest.mark.slow
def test_a_fold_never_predicts_with_a_checkpoint_another_run_left(work, monkeypatch):
    train_fold(_cfg(work), "resnet10t", 0, work, QUIET)
    p = Layout(work).fold("resnet10t", 0)
    old = p.best.read_bytes()
    for f in (p.oof, p.test, p.meta):
        f.unlink()
    monkeypatch.setattr(metrics, "auc", lambda y, s: float("nan"))  # no epoch yields a validation AUC
    with pytest.raises(InputError, match="no epoch of this run produced a best checkpoint"):
        train_fold(_cfg(work), "resnet10t", 0, work, QUIET)
    assert p.best.read_bytes() == old and not p.oof.exists() and not p.test.exists() and not p.meta.exists()


# --- 2. the blend's result set: all or nothing ---------------------------------------------------

@pytest.fixture
def blended(tmp_path):
    w = make_blend_workdir(tmp_path)
    y, rng = w["y"], w["rng"]
    for j in range(3):
        write_experiment(tmp_path, f"m{j}", w, sigmoid(y * 1.2 + rng.normal(0, 1, len(y))))
    comp = load_config(tmp_path / "configs/syn.yaml").competition
    run_blend(comp, tmp_path, verbose=False)
    return tmp_path, comp, w


def _result_set(base):
    sub = base / "submissions"
    report = json.loads((sub / "blend.json").read_text())
    for name in ("submission.csv", "roc.png"):
        assert hashlib.sha256((sub / name).read_bytes()).hexdigest()[:16] == report["files"][name], name
    return report["files"]["submission.csv"]


def test_a_failed_blend_replaces_nothing(blended):
    base, comp, _ = blended
    before = _hashes(base / "submissions")
    sol = pd.read_csv(base / "input/syn/solution.csv")
    sol.iloc[1:].to_csv(base / "input/syn/solution.csv", index=False)
    with pytest.raises(InputError, match="solution.csv: no answer for 1 submission ids"):
        run_blend(comp, base, "rank", verbose=False)
    assert _hashes(base / "submissions") == before


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_killing_the_blend_leaves_the_old_set_or_the_new_one_whole(blended, seed):
    base, _, _ = blended
    old = _result_set(base)
    rng = np.random.default_rng(seed)
    cmd = [sys.executable, str(ROOT / "src/blend.py"), "--competition", "syn", "--workdir", str(base),
           "--blend-method", "rank"]
    t0 = time.time()
    subprocess.run(cmd, capture_output=True, check=True)  # how long a whole blend takes here
    full = time.time() - t0
    seen = set()
    for delay in rng.uniform(0.3 * full, 1.0 * full, 3):
        proc = subprocess.Popen(cmd + ["--blend-method", str(rng.choice(["mean", "hill"]))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.add(_result_set(base))  # whole: every file of the set belongs to the same blend
    assert seen and old


# --- 3, 4, 5. one recipe per experiment, one writer per fold, completion marked last -----------

@pytest.mark.slow
def test_another_recipe_cannot_overwrite_a_complete_fold_and_blend_refuses_a_mix(work, capsys):
    for k in (0, 1):
        train_fold(_cfg(work), "resnet10t", k, work, QUIET)
    args = ["--competition", "toy", "--workdir", str(work), "--quiet", "--arch", "resnet10t", "--fold", "0",
            "--epochs", "1"]
    before = _hashes(work / "oof")
    err = _one_line_error(capsys, train_main(args + ["--lr", "0.01"]))
    assert __import__("re").search(r"fold\d.json was made by another recipe", err) and "--force" in err
    assert _hashes(work / "oof") == before
    assert train_main(args + ["--lr", "0.01", "--force"]) == 0
    comp = load_config(work / "configs/toy.yaml").competition
    with pytest.raises(InputError, match="folds were made by different recipes"):
        run_blend(comp, work, BlendOptions(strict=True), verbose=False)


def test_a_fold_being_trained_is_locked_with_its_holder_named(work):
    with FileLock(Layout(work).fold("resnet10t", 0).lock, "fold 0"):
        with pytest.raises(LockedError, match=r"fold 0 of resnet10t is being written by pid \d+ on"):
            train_fold(_cfg(work), "resnet10t", 0, work, QUIET)


@pytest.mark.slow
def test_a_write_failure_leaves_the_fold_incomplete_not_stale_complete(work, monkeypatch, capsys):
    cfg = _cfg(work)
    train_fold(cfg, "resnet10t", 0, work, QUIET)
    p = Layout(work).fold("resnet10t", 0)
    real = write_csv_atomic

    def readonly_oof(df, path, **kw):
        if path == p.oof:
            raise PermissionError(13, "Permission denied", str(path))
        return real(df, path, **kw)

    monkeypatch.setattr(fold_module, "write_csv_atomic", readonly_oof)
    rc = train_main(["--competition", "toy", "--workdir", str(work), "--quiet", "--arch", "resnet10t", "--fold", "0",
                     "--epochs", "1", "--lr", "0.01", "--force"])
    err = _one_line_error(capsys, rc)
    assert "fold0.csv: Permission denied (no permission" in err
    assert not p.meta.exists()  # the old completion is gone: run.py will retrain, not skip
    assert job_state(cfg, "resnet10t", 0, work, "x") == "todo"


# --- 6, 7, 8. stale images, contradicting targets, a bad solution ------------------------------------

def test_prepare_force_rebuilds_an_image_whose_source_changed(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for cls, n in (("ok", 10), ("ng", 10)):
        (src / cls).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(src / cls / f"{cls}{i}.png"), toy_image(rng, cls == "ng"))
    out = tmp_path / "input/c"
    prepare_folder(ClassFolders(src, "ok", "ng"), out)
    changed = src / "ok/ok3.png"
    cv2.imwrite(str(changed), np.full((40, 40), 7, np.uint8))
    prepare_folder(ClassFolders(src, "ok", "ng"), out, force=True)
    copied = next(out.glob("*/ok3.png"))
    assert copied.read_bytes() == changed.read_bytes()


def test_oof_targets_that_contradict_the_folds_file_are_an_error(blended):
    base, comp, _ = blended
    p = base / "oof/m1/fold2.csv"
    df = pd.read_csv(p)
    df.loc[3, "target"] = 1 - df.loc[3, "target"]
    df.to_csv(p, index=False)
    with pytest.raises(InputError, match=r"m1/fold2.csv: row 5: target of id .* but the folds file says"):
        run_blend(comp, base, verbose=False)


@pytest.mark.parametrize("value, match", [("", r"row 3: 'target' = empty"), ("2", r"row 3: 'target' = 2")])
def test_a_bad_solution_file_is_an_error_not_a_score(blended, value, match):
    base, comp, _ = blended
    path = base / "input/syn/solution.csv"
    sol = pd.read_csv(path, dtype=str, keep_default_na=False)
    sol.loc[1, "target"] = value
    sol.to_csv(path, index=False)
    before = _hashes(base / "submissions")
    with pytest.raises(InputError, match=f"solution.csv: {match}"):
        run_blend(comp, base, verbose=False)
    assert _hashes(base / "submissions") == before


# --- the unclear and unsafe inputs, each one line ------------------------------------------------

def _class_tree(root, n_good=12, n_bad=12, nested=False):
    rng = np.random.default_rng(1)
    for cls, n in (("ok", n_good), ("ng", n_bad)):
        for i in range(n):
            d = root / cls / ("lot_a" if nested and i % 2 else "")
            d.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(d / f"{cls}{i}.png"), toy_image(rng, cls == "ng"))
    return root


def _empty_good(root):
    (_class_tree(root, 0, 30) / "ok").mkdir()
    return root


def _binary(work):
    (work / "configs/bin.yaml").write_bytes(bytes(range(256)) * 4)
    return ["--config", str(work / "configs/bin.yaml")]


def _yaml(work, text):
    (work / "configs/bad.yaml").write_text(text)
    return ["--config", str(work / "configs/bad.yaml")]


CASES = {
    "absolute id": (make_folds_main, lambda w: _edit_ids(w, "/tmp/outside/secret") + ["--competition", "toy"],
                    "row 2: 'id' '/tmp/outside/secret': must be a plain name"),
    "dotdot id": (make_folds_main, lambda w: _edit_ids(w, "../x") + ["--competition", "toy"],
                  "'../x': must be a plain"),
    "name escapes": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--name", "../../escape"],
                     r"experiment name \(recipe name '\.\./\.\./escape'\)"),
    "tab in yaml": (train_main, lambda w: _yaml(w, "recipe:\n\tepochs: 3\n") + ["--fold", "0"],
                    "bad.yaml: line 2, column 1: not valid YAML"),
    "config is a folder": (train_main, lambda w: ["--config", str(w / "configs"), "--fold", "0"],
                           "configs: is a folder; expected a config YAML file"),
    "archs empty": (run_main, lambda w: _yaml(w, "recipe: {archs: []}\n"), "recipe.archs: empty"),
    "batch size 0": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--batch-size", "0"],
                     "--batch-size: 0 is out of range; expected a value >= 2"),
    "batch size 1": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--batch-size", "1"],
                     "--batch-size: 1 is out of range; expected a value >= 2"),
    "lr nan": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--lr", "nan"],
               "--lr: nan; expected a finite number"),
    "warmup nan": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--warmup-epochs", "nan"],
                   "--warmup-epochs: nan; expected a finite number"),
    "aspect inf": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--aspect-ratio", "inf"],
                   "--aspect-ratio: inf; expected a finite number"),
    "yaml nan": (train_main, lambda w: _yaml(w, "recipe: {ema: .nan}\n") + ["--fold", "0"],
                 r"bad.yaml: recipe.ema: nan; expected a finite number"),
    "device mps": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--device", "mps"],
                   "device 'mps': Apple's Metal GPU asked for but not available here"),
    "device typo": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--device", "gpu"],
                    "device 'gpu': expected auto, cpu, cuda, cuda:N or mps"),
    "name unknown field": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--name", "{x}"],
                           r"recipe name '\{x\}': not a valid template \(KeyError"),
    "name open brace": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--name", "a{"],
                        r"recipe name 'a\{': not a valid template"),
    "name newline": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--name", "a\nb"],
                     r"experiment name .*must be a plain name"),
    "base a list": (train_main, lambda w: _yaml(w, "base: [toy.yaml]\nrecipe: {}\n") + ["--fold", "0"],
                    r"bad.yaml: base: \['toy.yaml'\]; expected the file name of one config"),
    "config binary": (train_main, lambda w: _binary(w) + ["--fold", "0"],
                      r"bin.yaml: not a text file \(a binary file\?\); expected a config YAML"),
    "img size 0": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--img-size", "0"],
                   "--img-size: 0 is out of range"),
    "negative lr": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--lr", "-1"],
                    "--lr: -1.0 is out of range; expected a value > 0"),
    "epochs 0": (train_main, lambda w: ["--competition", "toy", "--fold", "0", "--epochs", "0"], "--epochs: 0"),
    "test size 0": (prepare_main, lambda w: ["folder", str(_class_tree(w / "src")), "--good", "ok", "--defect", "ng",
                                             "--name", "t0", "--test-size", "0"],
                    "--test-size 0.0: expected a fraction"),
    "test size 1.5": (prepare_main, lambda w: ["folder", str(_class_tree(w / "src")), "--good", "ok", "--defect", "ng",
                                               "--name", "t1", "--test-size", "1.5"], "--test-size 1.5"),
    "same column twice": (prepare_main, lambda w: ["folder", str(_class_tree(w / "src")), "--good", "ok", "--defect",
                                                   "ng", "--name", "t2", "--submission-columns", "id,id"],
                          "--submission-columns 'id,id': expected two different names"),
    "same folder twice": (prepare_main, lambda w: ["folder", str(_class_tree(w / "src")), "--good", "ok", "--defect",
                                                   "ok", "--name", "t3"], "--good .* and --defect .* overlap"),
    "test inside a class": (prepare_main, lambda w: ["folder", str(_class_tree(w / "src", nested=True)), "--good",
                                                     "ok", "--defect", "ng", "--test", "ng/lot_a", "--name", "t4"],
                            "--defect .* and --test .* overlap"),
    "six good images": (prepare_main, lambda w: ["folder", str(_class_tree(w / "src", 6, 30)), "--good", "ok",
                                                 "--defect", "ng", "--name", "t5"],
                        "too few images: 6 good; .* need at least 7 good images"),
    "empty good folder": (prepare_main, lambda w: ["folder", str(_empty_good(w / "src")), "--good", "ok",
                                                   "--name", "t6"], "ok: no images .* in this good folder"),
}


def _edit_ids(work, bad):
    path = work / "input/toy/train.csv"
    df = pd.read_csv(path, dtype={"id": str})
    df.loc[0, "id"] = bad
    df.to_csv(path, index=False)
    return []


@pytest.fixture(scope="module")
def trained(toy_base, tmp_path_factory):
    """A workdir with one complete fold, trained once for every case below."""
    base = copy_toy_workdir(toy_base, tmp_path_factory.mktemp("trained"))
    train_fold(_cfg(base, epochs=1), "resnet10t", 0, base, QUIET)
    return base


@pytest.mark.parametrize("case", list(CASES))
def test_unclear_input_is_one_line_and_changes_no_complete_result(case, trained, tmp_path, capsys):
    work = tmp_path / "w"
    shutil.copytree(trained, work)
    before = _hashes(work / "oof") | _hashes(work / "models")
    main, argv, match = CASES[case]
    import re
    args = argv(work)
    rc = main(["--workdir", str(work), *args] if main is not prepare_main else [*args, "--workdir", str(work)])
    err = _one_line_error(capsys, rc)
    assert re.search(match, err), err
    assert (_hashes(work / "oof") | _hashes(work / "models")) == before


def test_truncated_and_tiny_images_are_named(tmp_path):
    from defectkit.runtime.imaging import ImageError, read_image
    ok, buf = cv2.imencode(".jpg", toy_image(np.random.default_rng(0), True, 64))
    (tmp_path / "cut.jpg").write_bytes(buf.tobytes()[:-2])  # the end marker lost
    with pytest.raises(ImageError, match="cut.jpg: image file is truncated"):
        read_image(tmp_path / "cut.jpg")
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1), np.uint8))
    with pytest.raises(ImageError, match=r"dot.png: image is 1x1 pixels; at least 8x8 expected"):
        read_image(tmp_path / "dot.png")


def test_ids_that_look_like_missing_values_stay_ids_and_nested_folders_are_counted(tmp_path, capsys):
    src = _class_tree(tmp_path / "src", nested=True)
    cv2.imwrite(str(src / "ok/NA.png"), toy_image(np.random.default_rng(5), False))
    assert prepare_main(["folder", str(src), "--good", "ok", "--defect", "ng", "--name", "na",
                         "--workdir", str(tmp_path)]) == 0  # --workdir after the subcommand
    out = capsys.readouterr().out
    assert "12 image(s) from sub-folders included" in out and "next: python src/run.py --config" in out
    cfg = load_config(tmp_path / "configs/na.yaml")
    folds = make_folds(cfg.competition, 5, 0, base=tmp_path)
    train_ids = set(pd.read_csv(tmp_path / "input/na/train.csv", dtype=str, keep_default_na=False).id)
    sol_ids = set(pd.read_csv(tmp_path / "input/na/solution.csv", dtype=str, keep_default_na=False).id)
    assert "NA" in train_ids | sol_ids and len(train_ids | sol_ids) == 25 and len(folds) == len(train_ids)


@pytest.mark.slow
def test_a_partial_grid_is_trained_and_not_blended(work, capsys):
    write_toy_config(work, archs=["resnet10t"], epochs=1)
    assert run_main(["--competition", "toy", "--workdir", str(work), "--quiet", "--folds", "1"]) == 0
    out = capsys.readouterr().out
    assert "a blend needs every fold, so none is made" in out
    assert Layout(work).fold("resnet10t", 1).meta.exists() and not (work / "submissions/submission.csv").exists()


@pytest.mark.slow
def test_temporaries_of_a_killed_run_are_removed_and_a_full_disk_is_one_line(work, monkeypatch, capsys):
    p = Layout(work).fold("resnet10t", 0)
    p.model_dir.mkdir(parents=True)
    stale = p.model_dir / ".fold0_curves.x1y2.png.tmp"
    stale.write_bytes(b"")
    other = p.model_dir / ".fold1_curves.x1y2.png.tmp"  # another fold's: not ours to remove
    other.write_bytes(b"")
    train_fold(_cfg(work), "resnet10t", 0, work, QUIET)
    assert not stale.exists() and other.exists()

    def full_disk(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    rc = train_main(["--competition", "toy", "--workdir", str(work), "--quiet", "--arch", "resnet10t", "--fold", "1",
                     "--epochs", "1"])
    err = _one_line_error(capsys, rc)
    assert "fold1.pt: could not be written" in err and "disk is full" in err
    assert not list(p.model_dir.glob(".fold1.*.tmp"))
