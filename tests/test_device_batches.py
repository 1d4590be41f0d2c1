"""The device data path (data/device_batches.py) on the CPU device: its symmetries are exactly the CPU
preset's, drawn as often; its strong preset draws from the CPU preset's distributions; its batches come
in the DataLoader path's order; and a fold trained on it learns as well as one trained through the loader."""
import numpy as np
import pandas as pd
import pytest
import torch

from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.core.members import QUIET
from defectkit.core.records import FoldRecord
from defectkit.data.augment import StrongAug
from defectkit.data.datasets import ImageDataset, make_loader
from defectkit.data.device_batches import D4_TORCH, BatchAug, DeviceBatches
from defectkit.data.folds import make_folds
from defectkit.runtime.imaging import D4_NUMPY
from defectkit.testing import learnt, make_toy_competition, write_toy_config
from defectkit.train.fold import train_fold


def _image(h: int, w: int) -> np.ndarray:
    """A CHW uint8 image with a different texture along each axis and in each channel."""
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.clip(60 + 2.5 * xx + 40 * np.sin(yy / 3.0), 0, 255).astype(np.uint8)
    return np.stack([g, g[::-1], 255 - g], 0)


def test_the_torch_symmetries_are_the_numpy_ones():
    x = np.random.default_rng(0).integers(0, 255, (2, 3, 6, 6), dtype=np.uint8)
    for v in range(8):
        assert np.array_equal(D4_TORCH[v](torch.from_numpy(x)).numpy(), D4_NUMPY[v](x))


@pytest.mark.parametrize("hw,n", [((12, 12), 8), ((8, 12), 4)])
def test_light_draws_each_symmetry_of_the_shape_uniformly(hw, n):
    img, count = _image(*hw), 4000
    g = torch.Generator()
    g.manual_seed(1)
    out = BatchAug("light", n)(torch.from_numpy(np.repeat(img[None], count, 0)), g).numpy()
    views = [D4_NUMPY[v](img) for v in range(n)]
    seen = [next(v for v in range(n) if np.array_equal(o, views[v])) for o in out]  # every output is one exactly
    freq = np.bincount(seen, minlength=n)
    sd = np.sqrt(count * (1 / n) * (1 - 1 / n))
    assert np.abs(freq - count / n).max() < 4 * sd, freq


def test_strong_draws_from_the_cpu_presets_distributions():
    """Statistics of 1,500 draws of each preset from one image. Measured (3,000 draws, 48 px): the mean
    intensity 125.0 (CPU, albumentations) vs 125.3, its spread across draws 22.9 vs 22.4, the pixels' spread
    44.9 vs 45.1, the share of black pixels (the holes) 0.0085 vs 0.0090, the mean horizontal difference
    (blur, noise, holes, transposes) 6.2 vs 6.9; each part alone agrees within 5 %."""
    img, count = _image(48, 48), 1500
    cpu = StrongAug(8)
    a = np.stack([cpu(img, np.random.default_rng(i)) for i in range(count)]).astype(np.float64)
    g = torch.Generator()
    g.manual_seed(0)
    b = BatchAug("strong", 8)(torch.from_numpy(np.repeat(img[None], count, 0)), g).numpy().astype(np.float64)

    def stats(x):
        m = x.mean((1, 2, 3))
        return {"mean": m.mean(), "spread of the mean": m.std(), "pixel spread": x.std((1, 2, 3)).mean(),
                "black share": (x == 0).mean(), "roughness": np.abs(np.diff(x, axis=3)).mean()}
    sa, sb = stats(a), stats(b)
    bands = {"mean": 0.03, "spread of the mean": 0.1, "pixel spread": 0.05, "black share": 0.3, "roughness": 0.2}
    off = {k: round(sb[k] / sa[k] - 1, 3) for k in sa if abs(sb[k] / sa[k] - 1) > bands[k]}
    assert not off, (off, sa, sb)
    g.manual_seed(0)
    again = BatchAug("strong", 8)(torch.from_numpy(np.repeat(img[None], count, 0)), g).numpy()
    assert np.array_equal(again, b.astype(np.uint8))  # one seed, one batch


def test_device_batches_come_in_the_loaders_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (50, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 2, 50).astype(np.float32)
    idx = np.arange(3, 47)
    dev = DeviceBatches([(images, y, idx)], 8, torch.device("cpu"), train=True, seed=3)
    ref = make_loader(ImageDataset(images, y, None, idx), 8, True, "cpu", 0, seed=3)
    for loader in (dev, ref):
        loader.sampler.set_epoch(2)
    got, want = list(dev), list(ref)
    assert len(dev) == len(ref) == len(got) == len(want) == 5  # 44 rows, the last partial batch dropped
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1].float()) for a, b in zip(got, want))
    ordered = DeviceBatches([(images, y, idx)], 16, torch.device("cpu"), train=False)
    assert torch.equal(torch.cat([x for x, _ in ordered]), torch.from_numpy(images[idx]).permute(0, 3, 1, 2))


@pytest.mark.slow
def test_a_fold_on_the_device_path_learns_as_the_loaders_does(tmp_path):
    """The same fold trained both ways (strong augmentation: albumentations per image, or tensor ops per batch)."""
    make_toy_competition(tmp_path)
    aucs = {}
    for path in ("loader", "device"):
        cfg = load_config(write_toy_config(tmp_path, archs=["resnet10t"], epochs=4, aug="strong", data_path=path),
                          {"name": f"{{arch}}_{path}"})
        make_folds(cfg.competition, cfg.recipe.n_folds, cfg.recipe.seed, base=tmp_path)
        meta = train_fold(cfg, "resnet10t", 0, tmp_path, QUIET)
        aucs[path] = meta.oof_auc
        assert meta.data_path == path  # the record says which path ran (the GPU kit packs jobs by it)
        assert FoldRecord.read(Layout(tmp_path).fold(f"resnet10t_{path}", 0).meta).data_path == path
        oof = pd.read_csv(Layout(tmp_path).fold(f"resnet10t_{path}", 0).oof)
        assert oof.pred.between(0, 1).all()
    learnt("device path: toy OOF AUC", aucs["device"], 0.8)
    assert abs(aucs["device"] - aucs["loader"]) < 0.1, aucs
