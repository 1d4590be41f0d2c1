"""Made-up competitions for the tests and benchmarks: toy images a model can learn in seconds
(grey noise cells, the defective ones crossed by a bright scratch), and OOF/test prediction files
in train.py's formats."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import yaml

from defectkit.core.config import Competition, load_config
from defectkit.core.fileio import file_hash
from defectkit.core.layout import Layout
from defectkit.core.members import MemberKind
from defectkit.core.metrics import auc
from defectkit.core.records import FoldRecord
from defectkit.data.folds import make_folds
from defectkit.data.sources import Source
from defectkit.data.sources.common import build_labelled, is_prepared
from defectkit.ensemble.methods import BlendMethod
from defectkit.train.checkpoint import Checkpoint
from defectkit.train.engine import image_batches, make_setup, predict, to_input
from defectkit.train.fold import FoldFacts, write_fold_outputs
from defectkit.train.fold_data import load_fold_data

# Another CPU, imitated on this one: oneDNN (convolutions) held to SSE4.1, ATen's own vector kernels to
# their portable build, MKL (matrix products) to its compatible code path. Each moves float results the
# way another machine's instruction set does (measured: every one changes a conv/linear output here).
# `make test-other-cpu` and CI run the numeric tests under it; bench/cpu_profiles.py measures the demo.
OTHER_CPU = {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def cpu_profile() -> str:
    """'other-cpu' when this process runs under OTHER_CPU, else 'native'."""
    return "other-cpu" if all(os.environ.get(k) == v for k, v in OTHER_CPU.items()) else "native"


def seed_offset() -> int:
    """DEFECTKIT_TEST_SEED (default 0), added to the toy data's and toy recipes' seeds: bench/test_margins.py
    re-runs the learning tests with other seeds to measure how far their figures move."""
    return int(os.environ.get("DEFECTKIT_TEST_SEED", "0"))


def learnt(name: str, value: float, floor: float, below: bool = False) -> None:
    """A figure a toy model must reach (an AUC, a correlation; with `below`, a drift it must stay under),
    asserted against its floor. The floors are set well beyond the worst figure seen over several seeds and
    two instruction sets (bench/test_margins.py, bench/results/test_margins.json), so a test passes on any
    CPU and fails when the model stops learning. With DEFECTKIT_FIGURES set, the figure is first appended
    to that file (one JSON line) for that benchmark."""
    value = float(value)
    if os.environ.get("DEFECTKIT_FIGURES"):
        with open(os.environ["DEFECTKIT_FIGURES"], "a") as f:
            f.write(json.dumps({"name": name, "value": value, "floor": floor, "below": below,
                                "seed": seed_offset(), "profile": cpu_profile()}) + "\n")
    if below:
        assert value < floor, f"{name} = {value:.4f}, expected < {floor} (bench/results/test_margins.json)"
    else:
        assert value > floor, f"{name} = {value:.4f}, expected > {floor} (bench/results/test_margins.json)"


TOY_RECIPE = {"archs": ["test_efficientnet"], "n_folds": 2, "img_size": 32, "epochs": 4, "batch_size": 16,
              "lr": 3e-3, "backbone_lr_factor": 1.0, "warmup_epochs": 0.5, "pretrained": "none", "tta": 2,
              "aug": "light", "num_workers": 0, "drop_rate": 0.0}


def toy_image(rng: np.random.Generator, defect: bool, size: int = 40) -> np.ndarray:
    img = rng.normal(90, 18, (size, size)).clip(0, 255).astype(np.uint8)
    if defect:
        x0, y0 = rng.integers(4, size - 4, 2)
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * size * 0.35, np.sin(angle) * size * 0.35
        cv2.line(img, (int(x0 - dx), int(y0 - dy)), (int(x0 + dx), int(y0 + dy)), 230, 2)
    return img


def toy_blob(rng: np.random.Generator, defect: bool, size: int = 96) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey noise; a defect is a bright disk (its mask: the disk, about 2-3 % of the image)."""
    img = rng.normal(90, 18, (size, size)).clip(0, 255).astype(np.uint8)
    if not defect:
        return img, None
    mask = np.zeros((size, size), np.uint8)
    r = int(rng.integers(size // 16, size // 10))
    cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
    cv2.circle(img, (cx, cy), r, 190, -1)
    cv2.circle(mask, (cx, cy), r, 255, -1)
    return img, mask


def make_toy_competition(out: Path, n_train: int = 96, n_test: int = 32, seed: int = 0, kind: str = "scratch",
                         size: int = 40) -> Path:
    """input/toy/ in Kaggle's shape (columns id, target), with solution.csv; half of the images are
    defects: scratches (kind scratch), or disks (kind blob) whose masks go to input/toy/masks/<id>.png
    and whose boxes to defect_boxes.csv."""
    rng = np.random.default_rng(seed + seed_offset())
    sub_cols = ("id", "target")
    root = Layout(out).raw_input("toy")
    for sub in ("train", "test") + (("masks",) if kind == "blob" else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    y = rng.permutation(np.arange(n_train + n_test) % 2)
    ids = [f"img{i:04d}" for i in range(n_train + n_test)]
    boxes = []
    for i, (id_, t) in enumerate(zip(ids, y)):
        img, mask = toy_blob(rng, bool(t), size) if kind == "blob" else (toy_image(rng, bool(t), size), None)
        cv2.imwrite(str(root / ("train" if i < n_train else "test") / f"{id_}.png"), img)
        if mask is not None:
            cv2.imwrite(str(root / "masks" / f"{id_}.png"), mask)
            ys, xs = np.nonzero(mask)
            boxes.append((id_, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    if kind == "blob":
        pd.DataFrame(boxes, columns=["id", "x_1", "y_1", "x_2", "y_2"]).to_csv(root / "defect_boxes.csv", index=False)
    pd.DataFrame({"id": ids[:n_train], "target": y[:n_train]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({sub_cols[0]: ids[n_train:], sub_cols[1]: 0.5}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids[n_train:], "target": y[n_train:], "Usage": "Public"}).to_csv(root / "solution.csv",
                                                                                          index=False)
    return root


def make_class_folder(root: Path, n_good: int, n_defect: int = 0, size: int = 96, seed: int = 0) -> Path:
    """root/ok/ (and root/ng/ when n_defect) of toy_blob images, for prepare.py folder."""
    rng = np.random.default_rng(seed + seed_offset())
    good, defect = "ok", "ng"
    for cls, n in ((good, n_good), (defect, n_defect)):
        for i in range(n):
            (root / cls).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / cls / f"{cls}{seed}_{i:03d}.png"), toy_blob(rng, cls == defect, size)[0])
    return root


def write_toy_config(base: Path, name: str = "toy", **recipe) -> Path:
    path = base / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = {"seed": 42 + seed_offset()} if seed_offset() else {}  # 42: the recipe's default
    path.write_text(yaml.safe_dump({"competition": {"name": name, "source": {"type": "toy"}},
                                    "recipe": {**TOY_RECIPE, **seed, **recipe}}))
    return path


def copy_toy_workdir(src: Path, dst: Path) -> Path:
    """A copy of a toy workdir's input/, configs/ and folds/ (what training reads)."""
    import shutil
    for d in ("input", "configs", "folds"):
        shutil.copytree(Path(src) / d, Path(dst) / d)
    return Path(dst)


def make_toy_workdir(base: Path) -> Path:
    make_toy_competition(base)
    cfg = load_config(write_toy_config(base))
    make_folds(cfg.competition, cfg.recipe.n_folds, cfg.recipe.seed, base=base)
    return base




def make_blend_workdir(base: Path, n: int = 400, n_test: int = 100, n_folds: int = 4, seed: int = 0,
                       comp: Competition = Competition(name="syn")) -> dict:
    """input/<name>/ tables (no images needed by blend), folds/<name>.csv, configs/<name>.yaml of the
    competition `comp` (its name and submission columns) and a hidden latent `signal` per row (train and
    test) to build predictions from."""
    rng = np.random.default_rng(seed)
    name, sub_cols = comp.name, comp.submission_columns
    y = (rng.random(n + n_test) < 0.35).astype(int)
    ids = [f"r{i:05d}" for i in range(n + n_test)]
    root = Layout(base).raw_input(name)
    (root / "test").mkdir(parents=True, exist_ok=True)
    for i in ids[n:]:
        (root / "test" / f"{i}.png").write_bytes(b"")  # blend checks existence, never decodes
    pd.DataFrame({"id": ids[:n], "target": y[:n]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({sub_cols[0]: ids[n:], sub_cols[1]: 0.5}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids[n:], "target": y[n:], "Usage": np.where(np.arange(n_test) % 2, "Public", "Private")}
                 ).to_csv(root / "solution.csv", index=False)
    fold = np.zeros(n, int)
    for c in (0, 1):
        idx = np.flatnonzero(y[:n] == c)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % n_folds
    folds_file = Layout(base).folds_file(Competition(name=name))
    folds_file.parent.mkdir(exist_ok=True)
    pd.DataFrame({"id": ids[:n], "target": y[:n], "fold": fold}).to_csv(folds_file, index=False)
    (base / "configs").mkdir(exist_ok=True)
    (base / "configs" / f"{name}.yaml").write_text(
        f"competition: {{name: {name}, submission_columns: [{sub_cols[0]}, {sub_cols[1]}]}}\nrecipe: {{}}\n")
    return {"y": y, "ids": ids, "n": n, "fold": fold, "rng": rng, "name": name}


def write_experiment(base: Path, exp: str, w: dict, pred: np.ndarray, skip_folds=(), on_trial: bool = False) -> None:
    """oof/<exp>/fold<k>.csv, test_fold<k>.csv and fold<k>.json from predictions over all rows
    (train rows first, then test rows) of `w` (make_blend_workdir's); `on_trial`: a member kind's that
    is blended only if the cross-check says it helps (the anomaly member)."""
    n, fold, y, ids, name = w["n"], w["fold"], w["y"], w["ids"], w["name"]
    d = Layout(base).fold(exp, 0).oof_dir
    d.mkdir(parents=True, exist_ok=True)
    fh = file_hash(Layout(base).folds_file(Competition(name=name)))
    for k in sorted(set(fold)):
        if k in skip_folds:
            continue
        m = np.flatnonzero(fold == k)
        pd.DataFrame({"id": [ids[i] for i in m], "target": y[m], "fold": k, "pred": pred[m]}).to_csv(
            d / f"fold{k}.csv", index=False)
        noise = np.random.default_rng(k).normal(0, 0.01, len(ids) - n)
        pd.DataFrame({"id": ids[n:], "pred": np.clip(pred[n:] + noise, 0, 1)}).to_csv(d / f"test_fold{k}.csv",
                                                                                    index=False)
        FoldRecord(competition=name, exp=exp, arch=exp, fold=int(k), n_folds=len(set(fold)), folds_file="",
                   folds_hash=fh, config_hash="synthetic", weights="", run_id=f"{exp}{k}", best_epoch=1, epochs_run=1,
                   val_auc=None, tta=1, oof_auc=None, n_val=len(m), n_test=len(ids) - n, n_train=n - len(m),
                   n_pseudo=0, device="cpu", secs=0.0, created="",
                   config={}, on_trial=on_trial).write(d / f"fold{k}.json")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def no_torch_env(tmp_path: Path) -> dict:
    """Environment for a subprocess on whose Python path importing torch, timm or torchvision fails:
    what the bundle's runner must never need."""
    block = Path(tmp_path) / "block"
    for name in ("torch", "timm", "torchvision"):
        (block / name).mkdir(parents=True, exist_ok=True)
        (block / name / "__init__.py").write_text(f"raise ImportError('{name} is not allowed in the bundle runner')\n")
    return {"PYTHONPATH": str(block), "PATH": "/usr/bin:/bin"}


def run_bundle(bundle_dir: Path, args: list[str], env: dict):
    """predict_bundle.py of an exported bundle, run as a user would, in `env`."""
    import subprocess
    import sys
    return subprocess.run([sys.executable, str(Path(bundle_dir) / "predict_bundle.py"), *args], capture_output=True,
                          text=True, env=env, cwd=Path(bundle_dir).parent)


def scratch_image(rng: np.random.Generator, defect: bool, hw: tuple[int, int] = (480, 1200)) -> np.ndarray:
    """A grey inspection-like image: a textured surface (slow shading, a faint machining pattern,
    grain) and, on a defect, one or two hairline scratches 1-2 px wide, of low contrast."""
    import cv2
    h, w = hw
    shade = cv2.GaussianBlur(rng.normal(0, 1, (h // 16 + 1, w // 16 + 1)), (0, 0), 2)
    shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_CUBIC) * 12
    yy, xx = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, np.pi)
    pattern = 4 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / rng.uniform(3, 7))
    img = 128 + shade + pattern + rng.normal(0, 5, (h, w))
    if defect:
        for _ in range(rng.integers(1, 3)):
            x0, y0 = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
            length, a = rng.uniform(0.06, 0.2) * w, rng.uniform(0, np.pi)
            x1, y1 = x0 + length * np.cos(a), y0 + length * np.sin(a)
            layer = np.zeros((h, w), np.float32)
            cv2.line(layer, (int(x0), int(y0)), (int(x1), int(y1)), 1.0, int(rng.integers(1, 3)), cv2.LINE_AA)
            img += layer * rng.choice([-1, 1]) * rng.uniform(18, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_scratch_folder(root: Path, n: int = 300, defect_rate: float = 0.15, hw: tuple[int, int] = (480, 1200),
                        seed: int = 0) -> Path:
    """A folder per class (good/, defect/) of `n` scratch_image JPEGs (quality 95): what a new user
    brings to prepare.py folder. The benchmark and tests of `preset: auto` draw it."""
    import cv2
    rng = np.random.default_rng(seed + seed_offset())
    root = Path(root)
    n_defect = int(round(n * defect_rate))
    for cls, count in (("good", n - n_defect), ("defect", n_defect)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / cls / f"{cls}{i:04d}.jpg"), scratch_image(rng, cls == "defect", hw),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root


# --- kinds from outside the package, for the tests of extending it (registered by the tests, or by a plugin) ---

class ListingSource(Source):
    """A CSV of image paths and labels (path,label), anywhere on disk."""

    writes_config = True

    def add_arguments(self, p):
        p.add_argument("listing")
        p.add_argument("--name", required=True)

    def from_args(self, args):
        return {"type": "listing", "path": str(Path(args.listing).resolve())}

    def prepare(self, out, source, sub_cols, force, base):
        rows = pd.read_csv(source["path"])
        rows = pd.DataFrame({"id": [Path(p).stem for p in rows.path], "target": rows.label, "path": rows.path})
        args = {"source": "listing", **source, "submission_columns": list(sub_cols)}
        if is_prepared(out, args) and not force:
            return f"{out} is already prepared; nothing to do"
        train, test_ids, _, _ = build_labelled(out, rows, args, force)
        return f"wrote {out}: {len(train)} train, {len(test_ids)} test"


class BrightnessNet(torch.nn.Module):
    """Normalised images -> logit of how far the image's mean lies above the good images' mean."""

    def __init__(self, mu: float = 0.0, sd: float = 1.0):
        super().__init__()
        self.register_buffer("mu", torch.tensor(float(mu)))
        self.register_buffer("sd", torch.tensor(float(sd)))

    def forward(self, x):
        return ((x.float().mean((1, 2, 3)) - self.mu) / self.sd - 2.0)[:, None]


def fit_brightness_fold(cfg, arch, fold, layout):
    """Learns the good training images' mean brightness: a member kind in 20 lines."""
    t0, rec, d = time.time(), cfg.recipe, load_fold_data(cfg, layout, fold, progress=False)
    setup = make_setup(torch.device("cpu"), (0.5,) * 3, (0.25,) * 3, amp=False, channels_last=False)
    good = d.tr_idx[d.y[d.tr_idx] == 0]
    m = torch.cat([to_input(x, setup).mean((1, 2, 3)) for x, _ in image_batches(d.train_images[good], 16)])
    net, paths = BrightnessNet(m.mean(), m.std()), layout.fold(cfg.exp_name(arch), fold)
    Checkpoint(arch=arch, model=net.state_dict(), hw=rec.hw, resize=rec.resize, border_crop=rec.border_crop,
               mean=(0.5,) * 3, std=(0.25,) * 3, tta=1, run_id=f"b{fold}", config=cfg.to_dict()).save(paths.best)
    preds = [predict(net, image_batches(x, 16), setup, 1) for x in (d.train_images[d.val_idx], d.test_images)]
    return write_fold_outputs(cfg, arch, d, paths, tuple(preds), FoldFacts(
        weights="none", run_id=f"b{fold}", best_epoch=1, epochs_run=1, val_auc=None, n_train=len(good), device="cpu",
        secs=round(time.time() - t0, 1)))


class BestSingle(BlendMethod):
    """A blend method in a few lines: all the weight on the experiment with the best OOF AUC (in rank space)."""

    def fit(self, O, y, M=None):
        self.weights_ = np.eye(O.shape[1])[int(np.argmax([auc(y, O[:, j]) for j in range(O.shape[1])]))]
        return self


class Brightness(MemberKind):
    """A member kind in a few lines: the good training images' mean brightness (fit_brightness_fold)."""

    needs_defects, on_trial = False, True

    def fit(self, cfg, arch, fold, layout, opts):
        return fit_brightness_fold(cfg, arch, fold, layout)

    def build(self, ck):
        net = BrightnessNet()
        net.load_state_dict(ck.model)
        return net.eval()
