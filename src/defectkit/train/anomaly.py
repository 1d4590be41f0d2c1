"""The anomaly member (recipe `member: anomaly`): a PatchCore-style detector learnt from a fold's good
training images alone, written like any experiment's fold so that blend.py, predict.py, export.py
and the bundle treat it as one more member.

A memory bank of mid-level patch features (the backbone's feature levels `anomaly_layers`, each
averaged over its 3 x 3 neighbourhood, the coarser ones resized to the finest and concatenated)
of the good training images, cut to `anomaly_bank` patches by greedy k-centre coreset selection
(on a random projection, as PatchCore does); a new image's patch scores are the distances to their
nearest bank patch, its score the largest. A tenth of the good training images (at least one) is
kept out of the bank: the median of their scores is the `scale` that turns a distance d into the
probability-like d / (d + scale), 0.5 for a typical good image, so that the member's predictions
live on the classifiers' scale. The net's output is the logit log(d / scale), which every path
(TTA, predict.py, ExportNet, ONNX) turns into that probability with its sigmoid. The distances are
a matrix product (|a|^2 - 2ab + |b|^2) and a minimum: ONNX exports them (cdist does not).

Built here on timm's `forward_intermediates` rather than anomalib's PatchCore: anomalib loads its
backbones from the hub (no offline path for the lite weights), and its `cdist` does not export to
ONNX; the neighbour search is a matrix product in torch, small enough at the default bank.
"""
from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.core.config import Config, config_hash
from defectkit.core.fileio import write_csv_atomic
from defectkit.core.layout import Layout
from defectkit.core.members import FitOptions, MemberKind, register_member
from defectkit.core.records import FoldRecord
from defectkit.data.synthetic import synthetic_set
from defectkit.train import runtime
from defectkit.train.checkpoint import Checkpoint
from defectkit.train.engine import image_batches, make_setup, predict, to_input
from defectkit.train.fold import FoldFacts, prepare_outputs, write_fold_outputs
from defectkit.train.fold_data import load_fold_data
from defectkit.train.models import ModelInfo, create_model

PROJECTION_DIM = 128  # coreset selection's random projection (PatchCore)
POOL_PER_BANK = 16  # patches drawn for the coreset: at most this many times the bank (64 x on ELPV: no better
#   held-out AUC, 1.7 x the minutes: bench/results/anomaly_ceiling_lite0_224_pool64.json)
MAX_DISTANCES = 2**25  # entries of one batch's patch-to-bank distance matrix (128 MiB of float32)
BANK_BATCH = 16  # images a forward pass of the bank's good images


def backbone(arch: str, layers: list[int], pretrained: str = "auto") -> tuple[nn.Module, ModelInfo]:
    """The backbone up to its deepest tapped level (the rest pruned), in eval mode, and where its
    weights came from with the normalisation they expect (create_model's)."""
    model, info = create_model(arch, pretrained=pretrained)
    n = len(getattr(model, "feature_info", []) or [])
    if not hasattr(model, "forward_intermediates") or not n:
        raise InputError(f"member anomaly: {arch} has no feature levels to tap (timm's forward_intermediates); "
                         "choose a convolutional backbone such as tf_efficientnet_lite0 or resnet18")
    bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < n]
    if bad or not layers:
        raise InputError(f"anomaly_layers {layers!r}: {arch} has feature levels 0 to {n - 1}")
    model.prune_intermediate_layers(sorted(layers), prune_head=True)
    return model.eval(), info


class NearestDistance(nn.Module):
    """Each row's squared distance to its nearest row of each of the bank's `draws` equal blocks, (|a|^2 -
    2ab + |b|^2).min: (rows, draws). A difference of large terms that int8 would wipe out, so an int8 export
    keeps it in fp32 (`keep_fp32`)."""

    keep_fp32 = True

    def __init__(self, draws: int = 1):
        super().__init__()
        self.draws = draws

    def forward(self, flat: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor) -> torch.Tensor:
        d = (flat ** 2).sum(1, keepdim=True) - 2 * flat @ bank.t() + bank_sq[None]
        return d.view(d.shape[0], self.draws, -1).min(2).values


class PatchCoreNet(nn.Module):
    """Normalised images (B, 3, H, W) -> (B, 1) logits log(d / scale), d the largest patch distance; with
    `draws` banks (the rows of `bank` in equal blocks, each drawn with its own seed), the mean over them of
    log(d / scale): one draw's luck averaged out (bench/anomaly_ceiling.py)."""

    def __init__(self, model: nn.Module, layers: list[int], bank: torch.Tensor, scale: float = 1.0, draws: int = 1):
        super().__init__()
        if len(bank) % draws:
            raise ValueError(f"a bank of {len(bank)} rows does not split into {draws} draws")
        self.model, self.layers = model, sorted(layers)
        self.register_buffer("bank", bank.float())
        self.register_buffer("bank_sq", (bank.float() ** 2).sum(1))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.nearest = NearestDistance(draws)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) patch features at the finest tapped level."""
        feats = self.model.forward_intermediates(x, indices=self.layers, intermediates_only=True, stop_early=True)
        hw = feats[0].shape[-2:]
        out = [F.avg_pool2d(f.float(), 3, 1, 1) for f in feats]
        return torch.cat([o if o.shape[-2:] == hw else F.interpolate(o, size=hw, mode="bilinear",
                                                                     align_corners=False) for o in out], 1)

    def draw_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, draws, h, w): each patch's distance to its nearest patch of each drawn bank."""
        p = self.patches(x)
        b, d, h, w = p.shape
        flat = p.permute(0, 2, 3, 1).reshape(b * h * w, d)
        dist = self.nearest(flat, self.bank, self.bank_sq).clamp_min(0).sqrt()
        return dist.view(b, h, w, -1).permute(0, 3, 1, 2)

    def patch_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w): each patch's distance to its nearest bank patch, the mean over draws (the anomaly map)."""
        return self.draw_scores(x).mean(1)

    def batch_for(self, hw: tuple[int, int], batch: int) -> int:
        """The batch that keeps one batch's patch-to-bank distances within MAX_DISTANCES (at 288 px and
        the default bank, 6 images: 128 images took 2.7 GB and ran memory-bound). Every path that
        scores with this net (training's OOF and test scores, predict.py, explain.py) batches by it."""
        info = getattr(self.model, "feature_info", None)
        stride = int(info[self.layers[0]]["reduction"]) if info else 8
        patches = math.ceil(hw[0] / stride) * math.ceil(hw[1] / stride)
        return max(1, min(batch, MAX_DISTANCES // max(1, patches * len(self.bank))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            dist = self.draw_scores(x.float()).flatten(2).max(2).values
        return torch.log(dist.clamp_min(1e-6) / self.scale).mean(1, keepdim=True)


def coreset(feats: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Indices of `k` rows chosen by greedy k-centre selection on a random projection. Each step's
    distances are a matrix-vector product (|a|^2 - 2ab + |b|^2) updated in place: the loop reads the
    projection once per step, which bounds its time (pool x k x 512 bytes of memory traffic)."""
    if k >= len(feats):
        return torch.arange(len(feats))
    g = torch.Generator().manual_seed(seed)
    proj = feats @ torch.randn(feats.shape[1], PROJECTION_DIM, generator=g) / math.sqrt(PROJECTION_DIM)
    sq = (proj * proj).sum(1)
    chosen = [int(torch.randint(len(feats), (1,), generator=g))]
    dist = sq - 2 * (proj @ proj[chosen[0]]) + sq[chosen[0]]
    for _ in range(k - 1):
        i = int(dist.argmax())
        chosen.append(i)
        torch.minimum(dist, sq - 2 * (proj @ proj[i]) + sq[i], out=dist)
    return torch.tensor(chosen)


def check_bank_memory(k: int, dim: int, pool: int) -> None:
    """The bank and the patches it is chosen from must fit in a quarter of the free memory."""
    need = (pool + k) * dim * 4 + pool * PROJECTION_DIM * 4
    free = runtime.free_memory_bytes()
    if free and need > free / 4:
        raise InputError(f"anomaly_bank {k}: choosing it takes {need / 2**30:.1f} GiB of the {free / 2**30:.1f} GiB "
                         "free; lower anomaly_bank or the input size")


@torch.inference_mode()
def build_bank(net: PatchCoreNet, images: np.ndarray, k: int, setup, seeds: tuple[int, ...] = (0,),
               pool_per_bank: int = POOL_PER_BANK) -> torch.Tensor:
    """`k` coreset patches of the good `images` (uint8 NHWC) per seed, drawn from at most `pool_per_bank` x k,
    the draws' banks one after the other (PatchCoreNet's `draws`). A seed draws its pool and its coreset's
    first patch (bench/anomaly_ceiling.py: how far the AUC moves with it, and with a larger pool); the images
    pass once for all."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    x0 = net.patches(to_input(image_batches(images[:1], 1)[0][0], setup))
    per_image = x0.shape[2] * x0.shape[3]
    keep = max(1, min(per_image, pool_per_bank * k // len(images)))
    check_bank_memory(k * len(seeds), x0.shape[1], keep * len(images) * len(seeds))
    pools = [[] for _ in seeds]
    for x, _ in image_batches(images, BANK_BATCH):
        p = net.patches(to_input(x, setup))
        flat = p.permute(0, 2, 3, 1).reshape(len(p), per_image, -1)
        for f in flat:
            for pool, g in zip(pools, gens):
                pool.append(f[torch.randperm(per_image, generator=g)[:keep]])
    banks = []
    for pool, seed in zip(pools, seeds):
        pool = torch.cat(pool)
        banks.append(pool[coreset(pool, min(k, len(pool)), seed)])
    return torch.cat(banks)


def score(net: nn.Module, images: np.ndarray, setup, tta: int, batch: int) -> np.ndarray:
    """d / (d + scale) of uint8 NHWC images, averaged over the first `tta` symmetries, in the
    batches predict.py uses (so that its scores agree to the last bits)."""
    return predict(net, image_batches(images, net.batch_for(images.shape[1:3], batch)), setup, tta).astype(np.float64)


def split_good(y: np.ndarray, tr_idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The good training rows, split into the bank's and the scale's (a tenth, at least one)."""
    good = tr_idx[y[tr_idx] == 0]
    if len(good) < 2:
        raise InputError(f"member anomaly: the fold has {len(good)} good training image(s); it needs at least 2")
    good = good[np.random.default_rng(seed).permutation(len(good))]
    n_scale = max(1, len(good) // 10)
    return good[n_scale:], good[:n_scale]


def fit_anomaly_fold(cfg: Config, arch: str, fold, layout: Layout, progress: bool = True) -> FoldRecord:
    """One fold of the anomaly member: bank, scale, OOF and test predictions, checkpoint, record."""
    t0, rec = time.time(), cfg.recipe
    device = torch.device("cpu")  # the bank's neighbour search is a matrix product: the CPU does it well
    runtime.configure(device, rec.threads)
    d = load_fold_data(cfg, layout, fold, progress)
    model, info = backbone(arch, list(rec.anomaly_layers), rec.pretrained)
    setup = make_setup(device, info.mean, info.std, amp=False, channels_last=rec.channels_last)
    bank_rows, scale_rows = split_good(d.y, d.tr_idx, rec.seed)
    net = PatchCoreNet(model, list(rec.anomaly_layers), torch.zeros(1, 1)).to(memory_format=torch.channels_last)
    bank = build_bank(net, d.train_images[np.sort(bank_rows)], rec.anomaly_bank, setup,
                      seeds=tuple(range(rec.anomaly_draws)))
    net = PatchCoreNet(model, list(rec.anomaly_layers), bank, draws=rec.anomaly_draws)
    p = score(net, d.train_images[np.sort(scale_rows)], setup, 1, 2 * rec.batch_size)  # d / (d + 1)
    scale = float(np.median(p / np.clip(1 - p, 1e-12, None)))
    net.scale.fill_(max(scale, 1e-6))
    return write_fold(cfg, arch, fold, layout, (d, net, (info, setup), t0))


def write_fold(cfg: Config, arch: str, fold, layout: Layout, parts: tuple) -> FoldRecord:
    """The fold's checkpoint (bank and scale inside), then its predictions and record through the
    writer every member kind shares (train.fold.write_fold_outputs)."""
    d, net, (info, setup), t0 = parts
    rec, paths = cfg.recipe, layout.fold(cfg.exp_name(arch), fold)
    p_val = score(net, d.train_images[d.val_idx], setup, rec.tta_views, 2 * rec.batch_size)
    p_test = score(net, d.test_images, setup, rec.tta_views, 2 * rec.batch_size)
    val_auc = metrics.defined_auc(d.y_val, p_val)  # for the checkpoint, written before the fold's files
    run_id = uuid.uuid4().hex[:12]
    Checkpoint(arch=arch, model=net.state_dict(), hw=rec.hw, resize=rec.resize, border_crop=rec.border_crop,
               mean=info.mean, std=info.std, tta=rec.tta_views, epoch=1, val_auc=val_auc, run_id=run_id,
               config_hash=config_hash(cfg), config=cfg.to_dict()).save(paths.best)
    synthetic, table = synthetic_scores(net, d, p_val, (setup, rec, fold)) or (None, None)
    if table is not None:  # before the record, which marks the fold complete
        write_csv_atomic(table, paths.synthetic, index=False)
    else:
        paths.synthetic.unlink(missing_ok=True)
    meta = write_fold_outputs(cfg, arch, d, paths, (p_val, p_test), FoldFacts(
        weights=info.source, run_id=run_id, best_epoch=1, epochs_run=1, val_auc=val_auc, n_train=len(net.bank),
        device="cpu", secs=round(time.time() - t0, 1), synthetic_auc=synthetic))
    draws = f" ({net.nearest.draws} draws)" if net.nearest.draws > 1 else ""
    oof = f", OOF AUC with TTA x{rec.tta_views} {meta.oof_auc:.4f}" if meta.oof_auc is not None else ""
    syn = f", AUC on synthetic defects {synthetic:.4f} (a yardstick, not a result)" if synthetic is not None else ""
    print(f"[{meta.exp} fold {fold}] anomaly bank {len(net.bank)} patches x {net.bank.shape[1]} of the good training "
          f"images{draws}, scale {float(net.scale):.4f}{oof}{syn} -> {paths.oof.parent}")
    return meta


def synthetic_scores(net: nn.Module, d, p_val: np.ndarray, how: tuple) -> tuple[float, pd.DataFrame] | None:
    """The fold's held-out good images against synthetic defects made on them (data/synthetic.py: every kind
    and size in turn, seeded by the recipe's seed and the fold): how well the member tells a defect it has
    never seen, when no real one is held out. (AUC, the defects' table: id, source id, kind, size, pred), the
    table read by the blend for the recall it estimates at its operating points; None without two held-out
    good images (a refit). Members with one seed and folds file make the same defects: they blend."""
    setup, rec, fold = how
    good = np.flatnonzero(d.y_val == 0)
    if len(good) < 2:
        return None
    seed = rec.seed * 1000 + (fold if isinstance(fold, int) else 999)
    defects, _, table = synthetic_set(d.train_images[d.val_idx[good]], seed)
    p_syn = score(net, defects, setup, rec.tta_views, 2 * rec.batch_size)
    auc = round(float(metrics.auc(np.r_[np.zeros(len(good)), np.ones(len(p_syn))], np.r_[p_val[good], p_syn])), 5)
    table.insert(0, "id", [f"synthetic-{fold}-{i}" for i in range(len(table))])
    table["source"] = np.asarray(d.ids)[d.val_idx[good]][table["source"].to_numpy()]
    return auc, table.assign(pred=p_syn)


def load_anomaly_net(ck: Checkpoint) -> PatchCoreNet:
    """The fold's PatchCoreNet from its checkpoint (the bank's shape from the state dict)."""
    layers = list(ck.recipe.get("anomaly_layers", [2, 3]))
    net = PatchCoreNet(backbone(ck.arch, layers, pretrained="none")[0], layers, torch.zeros(ck.model["bank"].shape),
                       draws=int(ck.recipe.get("anomaly_draws", 1)))
    net.load_state_dict(ck.model)
    return net.eval()


def anomaly_map(net: PatchCoreNet, images: np.ndarray, mean, std) -> np.ndarray:
    """(N, h, w) patch distances of uint8 NHWC images: where each image is unlike the good ones."""
    setup = make_setup(torch.device("cpu"), mean, std, amp=False, channels_last=False)
    with torch.inference_mode():
        batches = image_batches(images, net.batch_for(images.shape[1:3], 16))
        return torch.cat([net.patch_scores(to_input(x, setup)) for x, _ in batches]).numpy()



@register_member("anomaly")
class Anomaly(MemberKind):
    """A memory bank of the good training images' patch features (this module): no epochs. Learns from
    good images alone, so its folds need no defects; the blend keeps it only if the cross-check says so."""

    needs_defects = False
    on_trial = True

    def fit(self, cfg, arch, fold, layout, opts: FitOptions):
        prepare_outputs(layout.fold(cfg.exp_name(arch), fold))
        return fit_anomaly_fold(cfg, arch, fold, layout, opts.progress)

    def build(self, ck):
        return load_anomaly_net(ck)

    def patch_scores(self, model, images: np.ndarray, mean, std) -> np.ndarray:
        """Where each image is unlike the good ones (explain.py's map for this kind)."""
        return anomaly_map(model, images, mean, std) if len(images) else np.zeros((0, 1, 1))
