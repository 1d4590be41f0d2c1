"""`preset: auto` plans the run from the images, this machine and a time budget.

    survey   the training images' count and median size, the test images' count (a sample of up to 48
             images decoded: their sizes and the seconds one decode and resize takes)
    probe    seconds per image of each candidate backbone at two input sizes, on the device the run
             uses: the frozen stages' forward, the trainable rest's training step and forward (the CPU
             scheme), or the whole network's (the GPU scheme); a line a + b x pixels through the two
    plan     the largest input (up to the images' own size) at which one backbone fits the budget with
             5 epochs, then, while the estimate stays inside the budget, a second backbone, more
             epochs, a third backbone, TTA x8 for a square input; fields set in the YAML or on the
             command line are kept and the rest is planned around them

The plan is saved (plans/<competition>.json) with its inputs: the same command again finds it and
trains the same recipe (complete folds are skipped); another budget, device or image set is a new
plan, and its experiments get new names (the input size and epochs are in the name).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defectkit.core.checks import InputError
from defectkit.core.config import Config
from defectkit.core.fileio import write_json_atomic
from defectkit.core.layout import Layout
from defectkit.core.presets import LITES
from defectkit.data.augment import build_transform
from defectkit.data.tables import load_test_ids, load_train_table
from defectkit.runtime.imaging import fit_image, read_image
from defectkit.train import runtime
from defectkit.train.models import CachedPrefixNet, create_model, run_prefix
from defectkit.train.runtime import default_num_workers, pick_device

PLAN_FORMAT = 2
DEFAULT_BUDGET = {"cpu": 10.0, "cuda": 30.0}  # minutes, when time_budget is 0
FILL = 0.9  # share of the budget a plan may fill (the rest: the estimate's error)
FOLDS = 5
EPOCHS = {"cpu": (5, 10), "cuda": (10, 20)}  # the fewest a plan trains, and the most it adds
MIN_SIDE, MAX_CACHE_GB = 64, 8.0
# Fixed costs on a 2-core CPU (seconds; calibrated against runs, README "How auto spends the budget"):
START_S, FOLD_S, EPOCH_S = 20.0, 3.0, 0.6
GPU_FOLD_S, GPU_EPOCH_S = 30.0, 1.5  # cudnn autotuning and loader start; validation, checkpoint, plot (H200)
PLANNED = ("img_size", "aspect_ratio", "archs", "epochs", "tta", "name", "pool", "batch_size", "member",
           "with_anomaly")
ANOMALY_MAX_SIDE = 512  # the anomaly member's input: its patches (and the bank's choice) grow with the pixels
ANOMALY_STRIDE = 8  # of its finest tapped level (level 2 of the lites and most timm CNNs)
CORESET_S = 8.4e-8  # seconds per (pool patch x bank patch) of the greedy k-centre loop (2-core EPYC, memory bound)
MIN_STEPS = 60  # optimizer steps a fold takes at least: a small set gets smaller batches and more epochs


def batch_for(n_train: int, folds: int, batch: int) -> int:
    """The recipe's batch, or for a small set a smaller power of two (at least 4 steps an epoch)."""
    n_tr = n_train * (folds - 1) / folds
    b = batch
    while b > 8 and n_tr / b < 4:
        b //= 2
    return b


def min_epochs(n_train: int, folds: int, batch: int, lo: int, hi: int) -> int:
    """At least `lo` epochs, and enough for MIN_STEPS optimizer steps (at most `hi`)."""
    steps = max(1, int(n_train * (folds - 1) / folds) // batch)
    return int(min(hi, max(lo, math.ceil(MIN_STEPS / steps))))


@dataclass
class Survey:
    n_train: int
    n_test: int
    hw: tuple[int, int]  # median (height, width) of the training images
    aspect_lo: float  # 5 % and 95 % quantiles of width / height
    aspect_hi: float
    decode_s: float  # seconds to decode and resize one image
    n_defect: int = -1  # defect rows of train.csv (-1: not counted, as many as a classifier needs)

    @property
    def n_good(self) -> int:
        return self.n_train - max(self.n_defect, 0)

    @property
    def square(self) -> bool:
        return 0.8 <= self.aspect_lo and self.aspect_hi <= 1.25

    @property
    def one_orientation(self) -> bool:
        return self.aspect_lo > 1.25 or self.aspect_hi < 0.8


@dataclass
class Curve:
    """Seconds per image (or view) at an input of `px` pixels: through the measured points, and
    along the nearest two beyond them (cost per pixel is not constant: caches, memory bandwidth)."""

    points: list[tuple[float, float]] = field(default_factory=list)  # (pixels, seconds), sorted

    def add(self, px: float, t: float) -> None:
        self.points = sorted({**dict(self.points), float(px): float(t)}.items())

    def __call__(self, px: float) -> float:
        p = self.points
        if len(p) == 1:
            return p[0][1] * px / p[0][0]
        i = min(max(1, next((k for k, (x, _) in enumerate(p) if x >= px), len(p) - 1)), len(p) - 1)
        (x0, t0), (x1, t1) = p[i - 1], p[i]
        return max(t0 + (t1 - t0) * (px - x0) / (x1 - x0), 0.0)


@dataclass
class ArchCost:
    prefix: Curve  # frozen stages' forward, per view (CPU scheme)
    train: Curve  # one training step per image: the rest (CPU) or the whole network (GPU)
    infer: Curve  # forward per view: the rest (CPU) or the whole network (GPU)
    channels: int = 0  # of the frozen stages' output (the feature cache's size)
    stride: int = 16


@dataclass
class Plan:
    device: str
    budget_s: float
    hw: tuple[int, int]
    archs: list[str]
    epochs: int
    tta: int
    pool: str = "avg"
    folds: int = FOLDS
    batch: int = 64
    cached: bool = True  # the CPU scheme: frozen stages cached, the rest trained (else the whole network)
    estimate: dict = field(default_factory=dict)  # seconds per part
    kept: dict = field(default_factory=dict)  # fields set explicitly, which the plan did not change
    notes: list[str] = field(default_factory=list)
    costs: dict = field(default_factory=dict, repr=False)  # the probe's points, kept with the plan
    member: str = "classifier"  # anomaly: the anomaly member alone (too few defects for classifiers)
    anomaly: bool = False  # the anomaly member beside the classifiers (recipe with_anomaly)

    @property
    def total_s(self) -> float:
        return float(sum(self.estimate.values()))

    def fields(self) -> dict:
        h, w = self.hw
        tag = f"{h}" if h == w else f"{h}x{w}"
        size = {"img_size": [h, w] if h != w else h, "archs": list(self.archs), "tta": self.tta}
        if self.member == "anomaly":
            return {**size, "member": "anomaly", "name": f"{{arch}}_anomaly{tag}"}
        return {**size, "epochs": self.epochs, "pool": self.pool, "batch_size": self.batch,
                "with_anomaly": self.anomaly, "name": f"{{arch}}_auto{tag}e{self.epochs}b{self.batch}"}

    def line(self, native: tuple[int, int]) -> str:
        h, w = self.hw
        share = f"{h * w / (native[0] * native[1]):.0%} of the images' pixels" if (h, w) != tuple(native) \
            else "the images' own size"
        names = " + ".join(a.replace("tf_efficientnet_", "") for a in self.archs)
        budget = f"about {self.total_s / 60:.1f} min of {self.budget_s / 60:.0f}"
        if self.member == "anomaly":
            return (f"plan: the anomaly member alone (too few defects for classifiers), {w} x {h} px ({share}), "
                    f"{names}, {self.folds} folds: {budget}")
        extra = f" + the anomaly member ({' x '.join(map(str, anomaly_hw(self.hw)[::-1]))} px)" if self.anomaly else ""
        return (f"plan: {w} x {h} px ({share}), {names}, {self.folds} folds x {self.epochs} epochs, TTA x{self.tta}, "
                f"{self.pool} pooling{extra}: {budget}")


# --- survey -------------------------------------------------------------------------------------------

def survey(cfg: Config, base: Path, n_sample: int = 48) -> Survey:
    """The images' count and shape, from the tables and a seeded sample of training images."""
    comp, layout = cfg.competition, Layout(base)
    train = load_train_table(comp, layout, check_images=False)
    ids = train[comp.id_col].astype(str).to_numpy()
    pick = np.random.default_rng(0).permutation(len(ids))[:n_sample]
    sizes, t0 = [], time.perf_counter()
    for i in ids[pick]:
        img = read_image(layout.train_dir(comp) / f"{i}{comp.image_ext}")
        sizes.append(img.shape[:2])
        fit_image(img, (224, 224))
    decode = (time.perf_counter() - t0) / max(len(pick), 1)
    hw = np.array(sizes, float)
    aspect = hw[:, 1] / hw[:, 0]
    lo, hi = np.quantile(aspect, [0.05, 0.95])
    return Survey(len(ids), len(load_test_ids(comp, layout)), (int(np.median(hw[:, 0])), int(np.median(hw[:, 1]))),
                  float(lo), float(hi), float(decode), int(train[comp.target_col].sum()))


# --- probe --------------------------------------------------------------------------------------------

PROBE_SIZES = ((128, 128), (224, 224))


def _timed(fn, reps: int = 2) -> float:
    fn()  # warm-up: allocator, kernels
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


@dataclass(frozen=True)
class Probe:
    """How a backbone is timed: the frozen stages its training caches (0: the whole network trains),
    the recipe's batch size, and runs averaged after a warm-up."""
    freeze_stages: int = 6
    batch: int = 64
    reps: int = 2


MEMBER_PROBE = Probe(freeze_stages=0, batch=8, reps=1)  # the anomaly member's backbone: a forward at batch 8


def probe_arch(arch: str, device: str, sizes=PROBE_SIZES, cost: ArchCost | None = None,
               how: Probe = Probe()) -> ArchCost:
    """Seconds per image of `arch` at input `sizes` on `device` and the recipe's batch size (added
    to `cost`'s points when given); random weights: the speed does not depend on them."""
    import torch
    freeze_stages, batch, reps = how.freeze_stages, how.batch, how.reps

    runtime.configure(torch.device(device))  # as training runs: threads, and glibc keeping freed blocks
    model = create_model(arch, pretrained="none")[0].to(torch.device(device), memory_format=torch.channels_last)
    full = freeze_stages == 0  # the whole network trains (no cache); as training runs: channels_last, bf16 on CUDA
    cost = cost or ArchCost(Curve(), Curve(), Curve())
    for hw in sizes:
        row = _probe_at(model, hw, freeze_stages, (batch, reps), full)
        for k in ("prefix", "train", "infer"):
            getattr(cost, k).add(hw[0] * hw[1], row[k])
        cost.channels, cost.stride = (0, 1) if full else (int(row["shape"][1]), hw[0] // int(row["shape"][-2]))
    return cost


def _probe_at(model, hw: tuple[int, int], freeze_stages: int, batch_reps: tuple[int, int], full: bool) -> dict:
    """Per-image seconds at one input size: the frozen stages' forward, and the trained part's
    training step and forward (the whole network when `full`), each the mean of `reps` runs."""
    batch, reps = batch_reps
    import torch

    dev = next(model.parameters()).device
    x = torch.randn(min(batch, 8), 3, *hw, device=dev).contiguous(memory_format=torch.channels_last)
    net = model if full else CachedPrefixNet(model, freeze_stages)
    with torch.no_grad():
        feats = x if full else run_prefix(model.eval(), freeze_stages, x)
    feats = feats.repeat(-(-batch // len(x)), 1, 1, 1)[:batch].contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        net.train()
        with amp:
            loss = net(feats).float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(dev)

    def infer():
        with torch.no_grad(), amp:
            net.eval()(feats)
        _sync(dev)

    def prefix():
        with torch.no_grad():
            run_prefix(model.eval(), freeze_stages, x)
        _sync(dev)
    train = _timed(step, reps) / batch
    if full:  # the GPU scheme's images are augmented on the CPU by the loader's workers: the slower one sets the pace
        train = max(train, loader_seconds(hw))
    return {"train": train, "infer": _timed(infer, reps) / batch,
            "prefix": 0.0 if full else _timed(prefix, reps) / len(x), "shape": tuple(feats.shape)}


def loader_seconds(hw: tuple[int, int], n: int = 8) -> float:
    """Seconds per image the data loader needs for the `strong` augmentation at `hw`, its workers together."""
    aug = build_transform("strong", 8 if hw[0] == hw[1] else 4)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (n, 3, *hw), dtype=np.uint8)
    t0 = time.perf_counter()
    for img in imgs:
        aug(img, rng)
    return (time.perf_counter() - t0) / n / max(1, default_num_workers("cuda"))


def _sync(dev) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# --- the cost model and the search ----------------------------------------------------------------------

def estimate(s: Survey, costs: dict[str, ArchCost], plan: Plan) -> dict:
    """Seconds per part of a run of `plan` on `s`: the image cache, each backbone's feature cache
    (CPU scheme) and its folds (training, the validation pass of every epoch, TTA on the held-out
    and test images), and the fixed costs."""
    h, w = plan.hw
    px, n_all = h * w, s.n_train + s.n_test
    n_val = s.n_train / plan.folds
    n_tr = s.n_train - n_val
    n_tr = n_tr // plan.batch * plan.batch if n_tr > plan.batch else n_tr  # the last partial batch is dropped
    gpu = plan.device == "cuda"
    fold_s, epoch_s = (GPU_FOLD_S, GPU_EPOCH_S) if gpu else (FOLD_S, EPOCH_S)
    out = {"start and blend": START_S, "images": n_all * s.decode_s * (1 + px / (s.hw[0] * s.hw[1]))}
    for a in plan.archs:
        c = costs[a]
        if plan.cached:
            out[f"{a} features"] = n_all * max(plan.tta, 2) * c.prefix(px)
        per_epoch = n_tr * c.train(px) + n_val * c.infer(px) + epoch_s
        predict = (n_val + s.n_test) * plan.tta * c.infer(px)
        out[f"{a} folds"] = plan.folds * (plan.epochs * per_epoch + predict + fold_s)
    if plan.anomaly:
        out["anomaly member"] = anomaly_s(s, costs[plan.archs[0]], anomaly_hw(plan.hw), plan.folds)
    return out


def anomaly_hw(hw: tuple[int, int]) -> tuple[int, int]:
    """The anomaly member's input beside classifiers at `hw`: the same, its longer side cut to
    ANOMALY_MAX_SIDE (aspect kept, multiples of 32)."""
    if max(hw) <= ANOMALY_MAX_SIDE:
        return tuple(hw)
    f = ANOMALY_MAX_SIDE / max(hw)
    return tuple(max(32, int(x * f) // 32 * 32) for x in hw)


def anomaly_s(s: Survey, c: ArchCost, hw: tuple[int, int], folds: int, bank: int = 4096) -> float:
    """Seconds of the anomaly member's folds (on the CPU): every image's forward once (bank, scale,
    validation and test images), the coreset's greedy loop, a fold's fixed cost."""
    px = hw[0] * hw[1]
    forward = (s.n_train + s.n_test) * (c.prefix(px) + c.infer(px))
    per_image = math.ceil(hw[0] / ANOMALY_STRIDE) * math.ceil(hw[1] / ANOMALY_STRIDE)
    pool = min(per_image * s.n_good * (folds - 1) / folds * 0.9, 16 * bank)
    return folds * (forward + pool * min(bank, pool) * CORESET_S + FOLD_S)


def search_anomaly(s: Survey, costs: dict[str, ArchCost], device: str, budget_s: float, fixed: dict) -> Plan:
    """The anomaly member alone: the largest input up to the images' size (its longer side at most
    ANOMALY_MAX_SIDE) whose run fits the budget."""
    arch = (fixed.get("archs") or [a for a in LITES if a in costs] or list(costs))[0]
    folds = fixed.get("folds", FOLDS)
    sizes = [fixed["hw"]] if "hw" in fixed else [hw for hw in ladder(s) if max(hw) <= ANOMALY_MAX_SIDE] or [
        ladder(s)[-1]]
    for hw in sizes:
        plan = Plan(device, budget_s, hw, [arch], 1, 1, folds=folds, cached=False, member="anomaly")
        plan.estimate = {"start and blend": START_S, "images": (s.n_train + s.n_test) * s.decode_s,
                         f"{arch} anomaly folds": anomaly_s(s, costs[arch], hw, folds)}
        if plan.total_s <= FILL * budget_s:
            return plan
    raise InputError(f"time_budget {budget_s / 60:g} min: too small for the anomaly member at {sizes[-1][1]} x "
                     f"{sizes[-1][0]} px, which needs about {plan.total_s / 60 / FILL:.1f} min; give --time-budget "
                     f"{math.ceil(plan.total_s / 60 / FILL)} or more")


def cache_gb(s: Survey, costs: dict[str, ArchCost], plan: Plan) -> float:
    """Disk the feature caches take (float16 output of the frozen stages, per view)."""
    if not plan.cached:
        return 0.0
    h, w = plan.hw
    n_all = s.n_train + s.n_test
    return sum(n_all * max(plan.tta, 2) * c.channels * math.ceil(h / c.stride) * math.ceil(w / c.stride) * 2
               for c in (costs[a] for a in plan.archs)) / 2**30


def ladder(s: Survey, aspect: float | None = None) -> list[tuple[int, int]]:
    """Input sizes from the images' own size down, 32 px of height at a time: (h, w) in multiples
    of 32, the median aspect ratio for images of one orientation, a square otherwise."""
    h0, w0 = s.hw
    if aspect is None:
        aspect = w0 / h0 if s.one_orientation else 1.0
    side = math.sqrt(h0 * w0 / aspect) if s.one_orientation else min(h0, w0)  # the height that keeps the area
    top = max(MIN_SIDE, int(side) // 32 * 32)
    out = []
    for h in range(top, MIN_SIDE - 1, -32):
        w = max(MIN_SIDE, int(h * aspect) // 32 * 32)
        if (h, w) not in out:
            out.append((h, w))
    return out or [(MIN_SIDE, MIN_SIDE)]


def search(s: Survey, costs: dict[str, ArchCost], device: str, budget_s: float, fixed: dict) -> Plan:
    """The plan (module docstring); `fixed`: fields set explicitly (hw, archs, epochs, tta, pool)."""
    lo_e, hi_e = EPOCHS[device]
    cands = [a for a in LITES if a in costs] or list(costs)
    archs0 = fixed.get("archs") or cands[:1]
    sizes = [fixed["hw"]] if "hw" in fixed else ladder(s)
    tta0 = fixed.get("tta", 4 if device == "cpu" else 8)
    folds = fixed.get("folds", FOLDS)
    batch = fixed["batch"] if "batch_size" in fixed.get("explicit", ()) else batch_for(
        s.n_train, folds, fixed.get("batch", 64 if device == "cpu" else 32))
    epochs = fixed.get("epochs", min_epochs(s.n_train, folds, batch, lo_e, max(hi_e, 20)))
    for hw in sizes:
        plan = Plan(device, budget_s, hw, list(archs0), epochs, tta0, fixed.get("pool", "avg"), folds, batch,
                    fixed.get("cached", device == "cpu"))
        if fits(s, costs, plan):
            return grow(s, costs, plan, fixed, cands, max(hi_e, epochs))
    least = Plan(device, budget_s, sizes[-1], list(archs0), epochs, tta0, folds=folds, batch=batch,
                 cached=fixed.get("cached", device == "cpu"))
    least.estimate = estimate(s, costs, least)
    raise InputError(f"time_budget {budget_s / 60:g} min: too small for even the smallest plan ({least.hw[1]} x "
                     f"{least.hw[0]} px, {len(least.archs)} backbone, {least.epochs} epochs), which needs about "
                     f"{least.total_s / 60 / FILL:.1f} min; give --time-budget {math.ceil(least.total_s / 60 / FILL)} "
                     "or more")


def fits(s: Survey, costs: dict[str, ArchCost], plan: Plan) -> bool:
    plan.estimate = estimate(s, costs, plan)
    return plan.total_s <= FILL * plan.budget_s and cache_gb(s, costs, plan) <= MAX_CACHE_GB


def grow(s: Survey, costs: dict[str, ArchCost], plan: Plan, fixed: dict, cands: list[str], hi_e: int) -> Plan:
    """Spend what the budget leaves: a second backbone, more epochs, a third, TTA x8 (square)."""
    steps = []
    if "archs" not in fixed:
        steps += [("archs", a) for a in cands[1:2]]
    if fixed.get("anomaly_beside"):
        steps.append(("anomaly", True))
    if "epochs" not in fixed:
        steps += [("epochs", e) for e in range(plan.epochs + 1, hi_e + 1)]
    if "archs" not in fixed:
        steps += [("archs", a) for a in cands[2:3]]
    if "tta" not in fixed and plan.hw[0] == plan.hw[1]:
        steps.append(("tta", 8))
    for key, value in steps:
        trial = dataclasses.replace(plan, archs=[*plan.archs, value] if key == "archs" else plan.archs,
                                    **({key: value} if key != "archs" else {}))
        if fits(s, costs, trial):
            plan = trial
    plan.estimate = estimate(s, costs, plan)
    return plan


# --- the plan of a run: made once, saved, applied ---------------------------------------------------------

def device_kind(cfg: Config) -> str:
    return pick_device(cfg.recipe.device).type


def fixed_fields(cfg: Config) -> dict:
    """The planned fields the user set (YAML or flags): the plan keeps them."""
    rec, ex = cfg.recipe, cfg.explicit
    out = {k: getattr(rec, k) for k in ("archs", "epochs", "tta", "pool", "member", "with_anomaly") if k in ex}
    if "img_size" in ex or "aspect_ratio" in ex:
        out["hw"] = rec.hw
    return out


def plan_inputs(cfg: Config, s: Survey, device: str) -> dict:
    budget = cfg.recipe.time_budget or DEFAULT_BUDGET[device]
    return {"budget_min": budget, "device": device, "n_train": s.n_train, "n_test": s.n_test, "hw": list(s.hw),
            "aspect": [round(s.aspect_lo, 2), round(s.aspect_hi, 2)],
            "folds": cfg.recipe.n_folds, "n_defect": s.n_defect,
            "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in fixed_fields(cfg).items()}}


def make_plan(cfg: Config, s: Survey, device: str, say=print) -> Plan:
    """Probe this machine, then search (the module docstring)."""
    inputs = plan_inputs(cfg, s, device)
    rec = cfg.recipe
    fixed = {**fixed_fields(cfg), "folds": rec.n_folds, "batch": rec.batch_size, "explicit": cfg.explicit,
             "cached": rec.cache_frozen and rec.freeze_stages > 0}
    member = fixed.get("member") or ("anomaly" if 0 <= s.n_defect < rec.n_folds else "classifier")
    if member == "anomaly":
        return plan_anomaly(s, inputs, fixed, say)
    # beside the classifiers when the budget allows (its cost: a CPU plan's probe; a GPU plan's, after the search)
    fixed["anomaly_beside"] = device == "cpu" and "with_anomaly" not in fixed
    freeze = rec.freeze_stages if fixed["cached"] else 0
    t0, budget = time.perf_counter(), inputs["budget_min"] * 60
    batch = batch_for(s.n_train, cfg.recipe.n_folds, cfg.recipe.batch_size)
    costs = {a: probe_arch(a, device, how=Probe(freeze, batch))
             for a in (rec.archs if "archs" in cfg.explicit else LITES)}
    plan = search(s, costs, device, budget - (time.perf_counter() - t0), fixed)
    for _ in range(2):  # timed again at the size planned (the plan's backbones), until the plan keeps its size
        px = plan.hw[0] * plan.hw[1]
        if any(abs(x / px - 1) < 0.25 for x, _ in costs[plan.archs[0]].train.points):
            break
        for a in plan.archs:
            costs[a] = probe_arch(a, device, [plan.hw], costs[a], Probe(freeze, plan.batch, reps=1))
        plan = search(s, costs, device, budget - (time.perf_counter() - t0), fixed)
    spent = time.perf_counter() - t0
    sizes = ", ".join(f"{x / 1e3:.0f}k" for x in sorted({x for x, _ in costs[plan.archs[0]].train.points}))
    say(f"probe: {len(costs)} backbones timed at inputs of {sizes} pixels on {device} in {spent:.0f} s")
    plan.budget_s, plan.estimate = budget, {"plan (probe)": spent, **plan.estimate}
    plan.costs = {a: {k: getattr(c, k).points for k in ("prefix", "train", "infer")} for a, c in costs.items()}
    plan.kept = {k: v for k, v in inputs["fixed"].items()}
    plan.notes = notes(s, costs, plan)
    if fixed.get("with_anomaly") and device == "cpu":  # asked for: kept, and estimated
        plan.anomaly = True
        plan.estimate = {"plan (probe)": spent, **estimate(s, costs, plan)}
    elif device != "cpu" and fixed.get("with_anomaly", True):  # the member runs on the CPU: its backbone timed there
        cpu = probe_arch(plan.archs[0], "cpu", [PROBE_SIZES[0], anomaly_hw(plan.hw)], how=MEMBER_PROBE)
        plan = add_member(s, plan, cpu, math.inf if fixed.get("with_anomaly") else budget)  # asked for: kept
    return plan


def add_member(s: Survey, plan: Plan, cpu: ArchCost, budget_s: float) -> Plan:
    """A GPU plan's anomaly member, beside its classifiers when the whole still fits `budget_s`: the
    member runs on the CPU (its neighbour search is a matrix product), timed there (`cpu`: the cost of
    the plan's first backbone on this machine's CPU)."""
    member_s = anomaly_s(s, cpu, anomaly_hw(plan.hw), plan.folds)
    if plan.total_s + member_s <= FILL * budget_s:
        plan.anomaly = True
        plan.estimate = {**plan.estimate, "anomaly member (cpu)": member_s}
    return plan


def plan_anomaly(s: Survey, inputs: dict, fixed: dict, say=print) -> Plan:
    """The anomaly member alone: its backbone probed on the CPU (where the member runs), then the
    largest input that fits (`search_anomaly`)."""
    t0, budget = time.perf_counter(), inputs["budget_min"] * 60
    arch = (fixed.get("archs") or LITES)[0]
    hw0 = fixed.get("hw") or min(ladder(s)[0], (ANOMALY_MAX_SIDE, ANOMALY_MAX_SIDE))
    costs = {arch: probe_arch(arch, "cpu", [PROBE_SIZES[0], hw0], how=MEMBER_PROBE)}
    plan = search_anomaly(s, costs, "cpu", budget - (time.perf_counter() - t0), fixed)
    spent = time.perf_counter() - t0
    say(f"probe: {arch} timed for the anomaly member on the cpu in {spent:.0f} s ({s.n_defect} defect image(s): "
        f"fewer than the {plan.folds} a classifier's folds need)")
    plan.budget_s, plan.estimate = budget, {"plan (probe)": spent, **plan.estimate}
    plan.costs = {a: {k: getattr(c, k).points for k in ("prefix", "train", "infer")} for a, c in costs.items()}
    plan.kept = dict(inputs["fixed"])
    return plan


def notes(s: Survey, costs: dict[str, ArchCost], plan: Plan) -> list[str]:
    """What the plan gave up, and what a larger budget would buy."""
    out = []
    if plan.hw[0] * plan.hw[1] < 0.9 * s.hw[0] * s.hw[1] and "hw" not in plan.kept:
        full = Plan(plan.device, plan.budget_s, ladder(s)[0], plan.archs[:1], EPOCHS[plan.device][0], plan.tta,
                    folds=plan.folds, batch=plan.batch, cached=plan.cached)
        need = sum(estimate(s, costs, full).values()) / FILL / 60
        out.append(f"trains at {plan.hw[1]} x {plan.hw[0]} px, {plan.hw[0] * plan.hw[1] / (s.hw[0] * s.hw[1]):.0%} "
                   f"of the images' {s.hw[1]} x {s.hw[0]}: a budget of about {math.ceil(need)} min (--time-budget) "
                   "trains at their own size" + ("; a GPU would too, in far less" if plan.device == "cpu" else ""))
    return out


def plan_path(cfg: Config, base: Path) -> Path:
    return Layout(base).base / "plans" / f"{cfg.competition.name}.json"


def load_saved(cfg: Config, base: Path, inputs: dict) -> Plan | None:
    path = plan_path(cfg, base)
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved.get("format") != PLAN_FORMAT or saved.get("inputs") != inputs:
            return None
        p = saved["plan"]
        return Plan(p["device"], p["budget_s"], tuple(p["hw"]), p["archs"], p["epochs"], p["tta"], p["pool"],
                    p["folds"], p["batch"], p["cached"], p["estimate"], p["kept"], p["notes"], member=p["member"],
                    anomaly=p["anomaly"])
    except (ValueError, KeyError, TypeError):
        return None  # another version's plan: planned again


def apply(cfg: Config, plan: Plan) -> Config:
    """The plan's fields, but for the ones set explicitly."""
    fields = {k: v for k, v in plan.fields().items() if k not in cfg.explicit}
    if "hw" in fixed_fields(cfg):
        fields.pop("img_size", None)
    recipe = dataclasses.replace(cfg.recipe, **fields, **({"aspect_ratio": 1.0} if "img_size" in fields else {}))
    return dataclasses.replace(cfg, recipe=recipe, plan={**dataclasses.asdict(plan), "total_s": plan.total_s})


def resolve_auto(cfg: Config, base: Path, say=print, probe: bool = True) -> Config:
    """`preset: auto`: the saved plan of these inputs, or (with `probe`) a new one, saved; the
    config unchanged when nothing is to plan, or no plan is saved and `probe` is off."""
    if not cfg.auto:
        return cfg
    device = device_kind(cfg)
    s = survey(cfg, base)
    inputs = plan_inputs(cfg, s, device)
    plan = load_saved(cfg, base, inputs)
    if plan is None:
        if not probe:
            return cfg
        plan = make_plan(cfg, s, device, say)
        write_json_atomic(plan_path(cfg, base), {"format": PLAN_FORMAT, "inputs": inputs,
                                                  "plan": dataclasses.asdict(plan)})
    say(plan.line(s.hw) + (f" (kept as set: {', '.join(plan.kept)})" if plan.kept else ""))
    for n in plan.notes:
        say(f"plan: {n}")
    return apply(cfg, plan)
