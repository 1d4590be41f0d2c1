import numpy as np
import torch

from defectkit.data.augment import build_transform
from defectkit.data.datasets import FeatureDataset, ImageDataset, SeededSampler, make_loader
from defectkit.train import engine
from defectkit.train.features import FrozenViews, extract_frozen_features
from defectkit.train.models import CachedPrefixNet, create_model


def _setup():
    return engine.make_setup(torch.device("cpu"), (0.5,) * 3, (0.5,) * 3, amp=False, channels_last=True)


def _images(n=6, size=24, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def test_d4_is_the_eight_distinct_symmetries():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    outs = [t(x) for t in engine.D4]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    for o in outs:  # each is a permutation of the same pixels
        assert sorted(o.flatten().tolist()) == list(range(16))


def test_tta8_equals_mean_of_eight_transformed_single_passes():
    torch.manual_seed(0)
    model, _ = create_model("resnet10t", pretrained="none")
    setup = _setup()
    imgs = _images()
    loader = make_loader(ImageDataset(imgs), 4, False, "cpu", 0)
    got = engine.predict(model, loader, setup, tta=8)
    x = engine.to_input(torch.from_numpy(imgs).permute(0, 3, 1, 2), setup)
    with torch.no_grad():
        model.eval()
        want = torch.stack([torch.sigmoid(model(t(x)).squeeze(1)) for t in engine.D4]).mean(0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, engine.predict(model, loader, setup, tta=1))  # TTA changes something


def test_cached_frozen_features_predict_like_the_full_model(tmp_path):
    """Training on cached frozen-stage output must see exactly what the full model sees."""
    torch.manual_seed(0)
    model, _ = create_model("tf_efficientnet_lite0", pretrained="none")
    setup = _setup()
    imgs = _images(5, 32)
    views = FrozenViews(model, 4)
    feats = extract_frozen_features(views, imgs, setup, tmp_path / "f.npy", batch_size=2, progress=False)
    assert feats.shape[:2] == (5, 8) and feats.dtype == np.float16
    net = CachedPrefixNet(model, 4)
    via_cache = engine.predict(net, make_loader(FeatureDataset(feats, np.zeros(5), np.arange(5), False), 2, False,
                                                "cpu", 0), setup, tta=8)
    via_images = engine.predict(model, make_loader(ImageDataset(imgs), 2, False, "cpu", 0), setup, tta=8)
    np.testing.assert_allclose(via_cache, via_images, atol=2e-3)  # float16 cache


def test_sampler_and_augmentation_are_reproducible_per_epoch():
    ds = ImageDataset(_images(8), np.arange(8) % 2, build_transform("strong"))
    s = SeededSampler(8, True, seed=3)
    s.set_epoch(2)
    a = [ds[k][0] for k in s]
    s.set_epoch(2)
    b = [ds[k][0] for k in s]
    s.set_epoch(3)
    c = [ds[k][0] for k in s]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_warmup_cosine_schedule():
    f = engine.warmup_cosine(100, 10, 0.01)
    assert f(0) == 0.1 and f(9) == 1.0 and abs(f(100) - 0.01) < 1e-9
    assert all(f(i) >= f(i + 1) for i in range(10, 99))


def test_ema_with_a_long_horizon_still_follows_a_short_run():
    """EMA decay 0.999 (the full recipe's) averages over ~1,000 optimizer steps, about all of an ELPV
    fold. The EMA copy is what gets evaluated and saved: with a constant decay it would stay ~97 %
    the initial weights after these 30 steps; with the decay warming up it follows the training."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 1))
    x = torch.randn(240, 8)
    y = (x[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    init = flat(model)
    ema = engine.make_ema(model, 0.999)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    engine.train_one_epoch(model, loader, engine.Optim(opt, ema=ema), _setup(), engine.Epoch(first_step=0))
    moved, ema_w = flat(model), flat(ema.module)
    assert (ema_w - moved).norm() < 0.5 * (ema_w - init).norm()
    # a later epoch (first_step > 0, as after --resume) continues the warmed-up schedule
    assert ema.get_decay(30 + 1) > ema.get_decay(1) and ema.get_decay(10**6) == 0.999


def test_augmentation_draws_the_tta_symmetries_uniformly():
    """TTA averages the symmetries of the input's shape with equal weight; training must show
    them equally often, or the model is worse on the rarer ones and TTA averages in its worse
    views: all 8 for a square input, the 4 flips that keep its shape for a rectangle."""
    for h, w, n_sym in ((4, 4, 8), (4, 6, 4)):
        chw = np.arange(h * w, dtype=np.uint8).reshape(1, h, w).repeat(3, 0)
        tta_views = {t(torch.from_numpy(chw[None].copy()))[0, 0].numpy().tobytes() for t in engine.D4[:n_sym]}
        for aug in ("light", "strong"):
            t = build_transform(aug, n_sym)
            geometry = t.sym if aug == "strong" else t  # the rest of strong moves or recolours pixels
            rng = np.random.default_rng(0)
            counts: dict[bytes, int] = {}
            n = 4000
            for _ in range(n):
                key = np.ascontiguousarray(geometry(chw, rng)[0]).tobytes()
                counts[key] = counts.get(key, 0) + 1
            assert set(counts) == tta_views, (aug, h, w)
            assert all(abs(c / n - 1 / n_sym) < 0.03 for c in counts.values()), (aug, sorted(counts.values()))


def test_mixup_mixes_images_and_targets_with_the_same_weight():
    torch.manual_seed(0)
    x = torch.eye(6).view(6, 1, 1, 6).expand(6, 3, 1, 6).contiguous()  # row i marks image i
    y = torch.tensor([0.0, 1, 0, 1, 0, 1])
    mx, my = engine.mixup(x, y, alpha=0.4)
    lam = mx[:, 0, 0].max(1).values  # the weight of each image's own row (>= 0.5 after mixing)
    own = torch.stack([mx[i, 0, 0, i] for i in range(6)])
    assert torch.all((mx >= 0) & (mx <= 1)) and not torch.equal(mx, x)
    for i in range(6):
        j = int(torch.argmax(mx[i, 0, 0] * (torch.arange(6) != i))) if own[i] < 1 else i
        expect = own[i] * y[i] + (1 - own[i]) * y[j] if j != i else y[i]
        assert abs(float(my[i] - expect)) < 1e-6
    assert float(lam.min()) > 0


class CountingSGD(torch.optim.SGD):
    steps = 0

    def step(self, closure=None):
        CountingSGD.steps += 1
        return super().step(closure)


def test_gradient_accumulation_steps_once_per_k_batches_and_on_the_last():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 1))
    x, y = torch.randn(40, 8), (torch.rand(40) > 0.5).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)  # 5 batches
    CountingSGD.steps = 0
    opt = CountingSGD(model.parameters(), lr=0.1)
    engine.train_one_epoch(model, loader, engine.Optim(opt, accum_steps=2), _setup())
    assert CountingSGD.steps == 3  # after batches 2, 4 and the last (5)


def test_border_crop_and_resize_modes_fit_the_image():
    from defectkit.runtime.imaging import fit_image
    img = np.full((40, 80, 3), 200, np.uint8)
    img[:4] = img[-4:] = img[:, :8] = img[:, -8:] = 0  # a dark frame, 10 % of each side
    assert fit_image(img, (20, 20), "squash", border_crop=0.1).min() == 200  # the frame is cut off
    assert fit_image(img, (20, 20), "squash").min() == 0
    padded = fit_image(np.full((40, 80, 3), 200, np.uint8), (32, 32), "pad")
    assert padded.shape == (32, 32, 3) and (padded[:8] == 0).all() and (padded[8:24] == 200).all()
    cropped = fit_image(np.arange(80, dtype=np.uint8)[None, :, None].repeat(40, 0).repeat(3, 2), (20, 20), "crop")
    assert cropped.shape == (20, 20, 3) and 18 <= cropped.min() and cropped.max() <= 62  # the centre 40 columns


def test_tta4_on_a_rectangular_input_equals_the_mean_of_the_four_shape_keeping_passes():
    torch.manual_seed(0)
    model, _ = create_model("resnet10t", pretrained="none")
    setup = _setup()
    imgs = np.random.default_rng(0).integers(0, 255, (5, 24, 40, 3), dtype=np.uint8)
    got = engine.predict(model, make_loader(ImageDataset(imgs), 2, False, "cpu", 0), setup, tta=4)
    x = engine.to_input(torch.from_numpy(imgs).permute(0, 3, 1, 2), setup)
    with torch.no_grad():
        model.eval()
        views = [t(x) for t in engine.D4[:4]]
        assert all(v.shape == x.shape for v in views)
        want = torch.stack([torch.sigmoid(model(v).squeeze(1)) for v in views]).mean(0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
