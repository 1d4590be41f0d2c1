"""Whether a SimpleNet-style discriminator on the anomaly member's patch features beats, or adds to, its
nearest-neighbour distance on ELPV (issue 33, item 2: "a feature adaptor trained on the good images with
noise in feature space").

    python bench/anomaly_discriminator.py [--img-size 224] [--sigmas 0.1 0.25 0.5] [--epochs 4] [--workdir DIR]
                                          [--real-defects 1 2 4] [--defect-draws 3]

The member's own patch features (PatchCoreNet.patches: lite0, levels 2 + 3, each averaged over 3 x 3) of
ELPV's good training images, less a tenth held out for the synthetic yardstick (data/synthetic.py on them),
standardised per channel. The discriminator (SimpleNet, Liu et al. 2023): a linear adaptor (identity at
the start) and an MLP (D -> 1024 -> BN -> LeakyReLU -> 1) trained to score adapted good patches >= +0.5 and
the same patches plus Gaussian noise of `sigma` (in standard deviations) <= -0.5 (truncated L1), AdamW
2e-4, batches of 2,048 of 300,000 patches drawn at random. An image scores its largest patch score.
Beside it: the member's bank (one draw of 4,096 coreset patches of the same features), and the rank
sum of the two. Each figure: held-out AUC on ELPV's test split (656 cells) and AUC on the synthetic
defects against the held-out good cells. Writes bench/results/anomaly_discriminator_lite0_<size>.json.

Item 3 (a handful of real defects teach the discriminator, SuperSimpleNet's supervised mode): with
`--real-defects K`, K defective training cells drawn at random (`--defect-draws` draws of them, seeds
0..) give their `DEFECT_PATCHES` patches farthest from the bank (ELPV has no masks: where the bank puts
the defect) as a third term of the loss, pushed <= -0.5 like the noisy patches, at the middle noise
level; the held-out figures are on the test split, which none of them is in. Beside each: the bank
searched with the same cells' patches as a second bank (a patch's log distance to the good bank less
a quarter of its log distance to the defect patches), the simplest way to use them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from benchlib import save_result  # first: puts src/ on the path

from defectkit.core.metrics import auc
from defectkit.data.sources.elpv import prepare_elpv
from defectkit.data.synthetic import synthetic_set
from defectkit.runtime.imaging import Preprocess
from defectkit.train import runtime
from defectkit.train.anomaly import NearestDistance, PatchCoreNet, backbone, coreset
from defectkit.train.engine import image_batches, make_setup, to_input

ARCH, LAYERS, BANK = "tf_efficientnet_lite0", [2, 3], 4096
DEFECT_PATCHES = 16  # patches of a real defect image taken as anomalous: its farthest from the bank


def features(net: PatchCoreNet, setup, images: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([net.patches(to_input(x, setup)).half() for x, _ in image_batches(images, 32)])


def flat(t: torch.Tensor) -> torch.Tensor:
    return t.float().permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def nearest(f: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Each row of `f`'s distance to its nearest row of `b` (the member's NearestDistance, one draw)."""
    return NearestDistance()(f, b, (b ** 2).sum(1) if b_sq is None else b_sq)[:, 0].clamp_min(0).sqrt()


def image_scores(patch_score, feats: torch.Tensor) -> np.ndarray:
    per_image = feats.shape[2] * feats.shape[3]
    return torch.cat([patch_score(flat(feats[i:i + 32])).view(-1, per_image).max(1).values
                      for i in range(0, len(feats), 32)]).numpy()


def train_discriminator(good: torch.Tensor, sigma: float, epochs: int, seed: int = 0, n: int = 300_000,
                        real: torch.Tensor | None = None):
    """(patch score function, final loss): -D(A(z)) of standardised patches z; `real` (patches of real
    defects), when given, a third loss term pushing them to the anomalous side in every batch."""
    torch.manual_seed(seed)
    mu, sd = good.mean(0), good.std(0) + 1e-6
    dim = good.shape[1]
    adaptor = nn.Linear(dim, dim)
    with torch.no_grad():
        adaptor.weight.copy_(torch.eye(dim))
        adaptor.bias.zero_()
    disc = nn.Sequential(nn.Linear(dim, 1024), nn.BatchNorm1d(1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1))
    opt = torch.optim.AdamW([{"params": disc.parameters(), "lr": 2e-4},
                             {"params": adaptor.parameters(), "lr": 1e-4}], weight_decay=1e-5)
    x = (good[torch.randperm(len(good))[:n]] - mu) / sd
    r = None if real is None or not len(real) else (real - mu) / sd
    loss_sum, steps = 0.0, 0
    for _ in range(epochs):
        loss_sum, steps = 0.0, 0
        for idx in torch.randperm(len(x)).split(2048):
            a = adaptor(x[idx])
            s = disc(torch.cat([a, a + sigma * torch.randn_like(a)] + ([] if r is None else [adaptor(r)]))).squeeze(1)
            n2 = 2 * len(idx)
            loss = (0.5 - s[:len(idx)]).clamp_min(0).mean() + (0.5 + s[len(idx):n2]).clamp_min(0).mean()
            if r is not None:  # in the same batch: BatchNorm's statistics are the batch's, as at the start
                loss = loss + (0.5 + s[n2:]).clamp_min(0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum, steps = loss_sum + float(loss.detach()), steps + 1
    adaptor.eval()
    disc.eval()

    @torch.no_grad()
    def patch_score(f: torch.Tensor) -> torch.Tensor:
        return -disc(adaptor((f - mu) / sd)).squeeze(1)
    return patch_score, round(loss_sum / max(1, steps), 4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--workdir", help="where ELPV is prepared (default: a temporary folder)")
    p.add_argument("--real-defects", type=int, nargs="*", default=[1, 2, 4],
                   help="numbers of real defective training cells to learn from (item 3); none: skip")
    p.add_argument("--defect-draws", type=int, default=3, help="random draws of those cells per number")
    p.add_argument("--out")
    args = p.parse_args(argv)
    runtime.configure(torch.device("cpu"), 2)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.workdir or tmp) / "input" / "elpv"
        prepare_elpv(data)
        train = pd.read_csv(data / "train.csv", dtype={"id": str})
        sol = pd.read_csv(data / "solution.csv", dtype={"id": str})
        pre = Preprocess((args.img_size, args.img_size))
        good = np.stack([pre.load(data / "train" / f"{i}.png") for i in train.id[train.target == 0]])
        test = np.stack([pre.load(data / "test" / f"{i}.png") for i in sol.id])
        bad_ids = train.id[train.target == 1].to_numpy()
        draws = {(k, d): np.random.default_rng(d).choice(bad_ids, k, replace=False)
                 for k in args.real_defects for d in range(args.defect_draws)}
        bad = {key: np.stack([pre.load(data / "train" / f"{i}.png") for i in ids]) for key, ids in draws.items()}
    y = sol.target.to_numpy()
    perm = np.random.default_rng(0).permutation(len(good))
    hold, fit = perm[:len(good) // 10], np.sort(perm[len(good) // 10:])
    defects, _, _ = synthetic_set(good[hold], 7)
    model, info = backbone(ARCH, LAYERS)
    setup = make_setup(torch.device("cpu"), info.mean, info.std, amp=False, channels_last=False)
    net = PatchCoreNet(model, LAYERS, torch.zeros(1, 1))
    f_fit, f_test = features(net, setup, good[fit]), features(net, setup, test)
    f_hold, f_syn = features(net, setup, good[hold]), features(net, setup, defects)
    g = flat(f_fit)
    y_syn = np.r_[np.zeros(len(hold)), np.ones(len(defects))]

    def judge(fn) -> tuple[dict, np.ndarray]:
        pt = image_scores(fn, f_test)
        syn = auc(y_syn, np.r_[image_scores(fn, f_hold), image_scores(fn, f_syn)])
        return {"held_out_auc": round(float(auc(y, pt)), 4), "synthetic_auc": round(float(syn), 4)}, pt

    pool = g[torch.randperm(len(g), generator=torch.Generator().manual_seed(0))[:16 * BANK]]
    bank = pool[coreset(pool, BANK, 0)]
    bank_sq = (bank ** 2).sum(1)
    bank_row, p_bank = judge(lambda f: nearest(f, bank, bank_sq))
    print("bank", bank_row, flush=True)
    rows = []
    for sigma in args.sigmas:
        t1 = time.time()
        fn, loss = train_discriminator(g, sigma, args.epochs)
        row, p_disc = judge(fn)
        both = rankdata(p_bank) + rankdata(p_disc)
        rows.append({"sigma": sigma, **row, "final_loss": loss, "train_s": round(time.time() - t1, 1),
                     "rank_sum_with_bank_auc": round(float(auc(y, both)), 4),
                     "rank_corr_with_bank": round(float(np.corrcoef(rankdata(p_bank), rankdata(p_disc))[0, 1]), 3)})
        print(rows[-1], flush=True)
    sigma = sorted(args.sigmas)[len(args.sigmas) // 2]
    supervised = []
    for (k, d), imgs in bad.items():
        t1 = time.time()
        fb = features(net, setup, imgs)
        real = torch.cat([flat(fb[j:j + 1])[nearest(flat(fb[j:j + 1]), bank, bank_sq).topk(DEFECT_PATCHES).indices]
                          for j in range(len(fb))])
        fn, loss = train_discriminator(g, sigma, args.epochs, real=real)
        row, p_disc = judge(fn)
        both = rankdata(p_bank) + rankdata(p_disc)
        second, _ = judge(lambda f, real=real: torch.log(nearest(f, bank, bank_sq) + 1e-6)
                          - 0.25 * torch.log(nearest(f, real) + 1e-6))
        supervised.append({"real_defects": k, "draw": d, "sigma": sigma, **row, "final_loss": loss,
                           "train_s": round(time.time() - t1, 1),
                           "rank_sum_with_bank_auc": round(float(auc(y, both)), 4),
                           "defect_bank_held_out_auc": second["held_out_auc"]})
        print(supervised[-1], flush=True)
    best = max(rows, key=lambda r: r["held_out_auc"])
    result = {"arch": ARCH, "img_size": args.img_size, "layers": LAYERS, "epochs": args.epochs,
              "good_images": len(fit), "held_out_good": len(hold), "synthetic_defects": len(defects),
              "test_images": len(test), "bank": {"patches": BANK, **bank_row}, "discriminator": rows,
              "defect_patches": DEFECT_PATCHES, "supervised": supervised,
              "minutes": round((time.time() - t0) / 60, 1)}
    save_result(result, f"{ARCH} {args.img_size} px, ELPV held-out: the bank {bank_row['held_out_auc']}, the "
                f"discriminator {min(r['held_out_auc'] for r in rows)}-{best['held_out_auc']} (sigma "
                f"{best['sigma']}), bank + discriminator {max(r['rank_sum_with_bank_auc'] for r in rows)}",
                args.out, f"anomaly_discriminator_lite0_{args.img_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
