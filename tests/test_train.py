"""One fold of train.py: a toy model learns (AUC well above 0.5), writes the documented files, resumes,
freezes, mixes, fits soft targets, and its CLI runs as a script.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from defectkit.cli.train import main as train_main
from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.core.members import QUIET, FitOptions
from defectkit.testing import learnt
from defectkit.train import engine
from defectkit.train.fold import train_fold

pytestmark = pytest.mark.slow  # trains models: make test-fast leaves it out

ROOT = Path(__file__).resolve().parent.parent


def _cfg(work, **over):
    return load_config(work / "configs/toy.yaml", {"archs": ["resnet10t"], **over})


def test_small_model_learns_toy_task_and_writes_documented_files(work):
    cfg = _cfg(work)
    meta = train_fold(cfg, "resnet10t", 1, work, QUIET)
    p = Layout(work).fold("resnet10t", 1)
    learnt("train: resnet10t best-epoch validation AUC", meta.val_auc, 0.85)
    learnt("train: resnet10t fold OOF AUC", meta.oof_auc, 0.85)
    oof, test = pd.read_csv(p.oof, dtype={"id": str}), pd.read_csv(p.test, dtype={"id": str})
    folds = pd.read_csv(work / "folds/toy.csv", dtype={"id": str})
    val = folds[folds.fold == 1]
    assert list(oof.columns) == ["id", "target", "fold", "pred"] and list(test.columns) == ["id", "pred"]
    assert sorted(oof.id) == sorted(val.id) and oof.id.is_unique  # every validation id once
    assert (oof.set_index("id").target == val.set_index("id").target).all() and (oof.fold == 1).all()
    sample = pd.read_csv(work / "input/toy/sample_submission.csv", dtype={"id": str})
    assert list(test.id) == list(sample.id) and test.pred.between(0, 1).all()
    info = json.loads(p.meta.read_text())
    assert info["folds_hash"] and info["n_folds"] == 2 and info["tta"] == 2
    log = pd.read_csv(p.log)
    assert list(log.epoch) == [1, 2, 3, 4] and {"val_auc", "train_loss", "lr", "img_s"} <= set(log.columns)
    assert p.curves.stat().st_size > 1000 and p.best.exists() and p.config.exists()
    assert not p.last.exists()  # the fold is complete: its resume state is removed
    # nothing to resume: kept as it is
    again = train_fold(cfg, "resnet10t", 1, work, FitOptions(progress=False, resume=True))
    assert again.run_id == meta.run_id and json.loads(p.meta.read_text())["run_id"] == meta.run_id


def test_cache_frozen_run_learns(work):
    cfg = _cfg(work, archs=["tf_efficientnet_lite0"], pretrained="auto", freeze_stages=4, cache_frozen=True,
               epochs=3, name="lite_cached")
    meta = train_fold(cfg, "tf_efficientnet_lite0", 0, work, QUIET)
    learnt("train: cached lite0 OOF AUC", meta.oof_auc, 0.7)
    assert list(work.glob("input/toy/.cache/feats_tf_efficientnet_lite0_*")), "frozen features cached on disk"


def test_frozen_feature_cache_is_keyed_by_the_weights_not_their_file_name(work):
    """Overwriting a --weights file must not reuse features computed with the old weights."""
    import timm
    wfile = work / "w.pt"
    feats = lambda: set(work.glob("input/toy/.cache/feats_resnet10t_*.npy"))
    cfg = _cfg(work, weights=str(wfile), freeze_stages=2, cache_frozen=True, epochs=1, name="wfile")
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet10t", num_classes=1).state_dict(), wfile)
    train_fold(cfg, "resnet10t", 0, work, QUIET)
    first = feats()
    assert len(first) == 2  # train and test images
    train_fold(cfg, "resnet10t", 1, work, QUIET)
    assert feats() == first, "same weights, other fold: the cache is shared"
    torch.manual_seed(1)
    torch.save(timm.create_model("resnet10t", num_classes=1).state_dict(), wfile)
    train_fold(cfg, "resnet10t", 0, work, QUIET)
    new = feats() - first
    assert len(new) == 2, "new weights at the same path build a new feature cache"
    # sorted by name, the train and test caches pair up (same image-cache suffix after the key)
    old_x, new_x = (np.load(sorted(f)[0], mmap_mode="r") for f in (first, new))
    assert old_x.shape == new_x.shape and not np.allclose(old_x, new_x)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(work, monkeypatch):
    cfg = _cfg(work, epochs=3, name="nan")
    real = engine.F.binary_cross_entropy_with_logits
    calls = {"n": 0}

    def flaky(logits, y):
        calls["n"] += 1
        return real(logits, y) * (float("nan") if calls["n"] > 4 else 1.0)  # 3 batches per epoch

    monkeypatch.setattr(engine.F, "binary_cross_entropy_with_logits", flaky)
    with pytest.raises(engine.NonFiniteLossError, match="loss is nan"):
        train_fold(cfg, "resnet10t", 0, work, QUIET)
    assert torch.load(Layout(work).fold("nan", 0).last, weights_only=False)["state"]["epochs_done"] == 1


@pytest.mark.parametrize("args, match", [
    (["--fold", "7"], "--fold 7: .* has folds 0..1"),
    (["--fold", "0", "--arch", "resnet5O"], "unknown arch 'resnet5O'; did you mean"),
    (["--fold", "0", "--device", "cuda"], "CUDA asked for but not available"),
])
def test_cli_bad_input_is_a_clear_error(work, args, match, capsys):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    rc = train_main(["--competition", "toy", "--workdir", str(work), "--quiet", "--arch", "resnet10t", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(match, err), err


def test_cli_runs_as_a_script(work):
    out = subprocess.run([sys.executable, str(ROOT / "src/train.py"), "--competition", "toy", "--workdir", str(work),
                          "--fold", "0", "--arch", "resnet10t", "--epochs", "2", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "epoch  2/2" in out.stdout + out.stderr and "OOF AUC" in out.stdout
    assert Layout(work).fold("resnet10t", 0).meta.exists()


def test_tta_symmetry_bench_reproduces_the_folds_own_scores(work):
    """bench/tta_symmetries.py re-predicts a fold under each symmetry: identity alone must give
    the checkpoint's validation AUC, and the mean of the first --tta views the fold's OOF AUC."""
    import importlib.util
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("tta_symmetries", ROOT / "bench/tta_symmetries.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = _cfg(work, name="sym", pretrained="none")
    meta = train_fold(cfg, "resnet10t", 0, work, QUIET)
    r = bench.symmetry_aucs(cfg.competition, work, "sym", 0, device="cpu")
    assert len(r["symmetry_auc"]) == 8 and r["n_val"] == meta.n_val
    assert abs(r["symmetry_auc"][0] - meta.val_auc) < 1e-4
    assert abs(r["tta_auc"][cfg.recipe.tta] - meta.oof_auc) < 1e-4


def test_patience_stops_early_when_validation_auc_stalls(work, monkeypatch):
    from defectkit.core import metrics
    monkeypatch.setattr(metrics, "auc", lambda y, s: 0.7)  # never improves after the first epoch
    meta = train_fold(_cfg(work, epochs=6, patience=2, name="pat"), "resnet10t", 0, work, QUIET)
    assert meta.epochs_run == 3 and meta.best_epoch == 1


def test_freeze_epochs_train_only_the_head_and_mixup_still_learns(work):
    from defectkit.train.models import create_model
    cfg = _cfg(work, epochs=1, freeze_epochs=1, name="frz")
    torch.manual_seed(cfg.recipe.seed)  # the recipe's seed: the same initial weights as the fold's
    init = create_model("resnet10t", "none", None, 1, 0.0)[0].state_dict()
    train_fold(cfg, "resnet10t", 0, work, QUIET)
    ck = torch.load(Layout(work).fold("frz", 0).best, weights_only=False)["model"]
    assert torch.equal(ck["conv1.0.weight"], init["conv1.0.weight"])  # backbone untouched
    assert not torch.equal(ck["fc.weight"], init["fc.weight"])  # head trained
    meta = train_fold(_cfg(work, epochs=4, mixup=1.0, name="mix"), "resnet10t", 0, work, QUIET)
    learnt("train: mixup OOF AUC", meta.oof_auc, 0.8)


def _add_soft_column(work, defect: float, good: float):
    path = work / "input/toy/train.csv"
    df = pd.read_csv(path, dtype={"id": str})
    df["soft"] = np.where(df.target == 1, defect, good)
    df.to_csv(path, index=False)
    return path, df


def test_a_soft_target_is_what_training_fits_and_the_oof_still_scores_the_target(work):
    """Soft targets of 0.6 / 0.4: the training loss cannot fall below their entropy (0.673: BCE =
    entropy + KL), where 0/1 targets let it fall near 0; the OOF file keeps the 0/1 target."""
    _add_soft_column(work, 0.6, 0.4)
    floor = -(0.6 * np.log(0.6) + 0.4 * np.log(0.4))
    lowest = {}
    for name, soft in (("hard", ""), ("soft", "soft")):
        meta = train_fold(_cfg(work, epochs=4, name=name, soft_target=soft), "resnet10t", 0, work, QUIET)
        oof = pd.read_csv(Layout(work).fold(name, 0).oof)
        learnt(f"train: {name} target OOF AUC", meta.oof_auc, 0.8)
        assert set(oof.target) == {0, 1}
        lowest[name] = pd.read_csv(Layout(work).fold(name, 0).log).train_loss.min()
    assert lowest["hard"] < 0.3 and lowest["soft"] > floor - 1e-3, lowest


@pytest.mark.parametrize("defect, good, match", [
    (1.5, 0.0, r"train.csv: row \d+: soft target 'soft' = 1.5; expected a defect probability in \[0, 1\]"),
    (0.3, 0.0, r"train.csv: row \d+: soft target 'soft' = 0.3 but 'target' = 1; .* >= 0.5 exactly for the defects"),
])
def test_a_bad_soft_target_is_a_one_line_error(work, capsys, defect, good, match):
    _add_soft_column(work, defect, good)
    rc = train_main(["--competition", "toy", "--workdir", str(work), "--quiet", "--arch", "resnet10t", "--fold", "0",
                     "--soft-target", "soft"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and __import__("re").search(match, err), err
    rc = train_main(["--competition", "toy", "--workdir", str(work), "--quiet", "--arch", "resnet10t", "--fold", "0",
                     "--soft-target", "grade"])
    assert rc == 2 and "missing column" in capsys.readouterr().err.lower()


def test_resumable_checkpoints_follow_checkpoint_s_and_the_curves_are_drawn_once(work):
    """checkpoint_s 0: a resumable checkpoint after every epoch; an hour: none within a short fold (its best
    model is kept all the same); the curves are drawn once, at the end."""
    seen = {}
    for every in (0.0, 3600.0):
        name = f"ck{int(every)}"
        p = Layout(work).fold(name, 0)

        def look(epoch, p=p, every=every):
            seen[every, epoch] = (p.last.exists(), p.best.exists(), p.curves.exists())
        train_fold(_cfg(work, epochs=2, checkpoint_s=every, name=name), "resnet10t", 0, work,
                   FitOptions(progress=False, on_epoch_end=look))
        assert p.curves.exists() and p.meta.exists() and not p.last.exists()  # complete: no resume state kept
    assert seen[0.0, 0] == (True, True, False) and seen[0.0, 1] == (True, True, False)
    assert seen[3600.0, 0] == (False, True, False) and seen[3600.0, 1] == (False, True, False)
