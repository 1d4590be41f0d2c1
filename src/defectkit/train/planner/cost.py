"""The pure part of the planner: what a plan is (`Plan`), what the images and the backbones cost
(`Survey`, `ArchCost`), the estimate of a run, and the search for the plan that fills a budget. No
I/O and no timing: every figure comes in as an argument, so the search is tested with made-up costs."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from defectkit.core.checks import InputError
from defectkit.core.presets import LITES

PLAN_FORMAT = 4
ANOMALY_BANK = 4096  # the anomaly member's bank (recipe anomaly_bank's default), the patches the plan costs


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


CORESET_S = 5.3e-8  # seconds per (pool patch x bank patch) of the greedy k-centre loop, 2-core EPYC: the largest of
#   bench/results/coreset_speed_cpu.json's pools of 65,536 and more (smaller pools stay in cache: 2-4e-8)


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
    refit: str = "none"  # recipe refit: "only" ships each anomaly member's full-data refit, one model, not its folds
    draws: int = 1  # recipe anomaly_draws: banks drawn with different seeds per anomaly model, their scores averaged
    bank: int = ANOMALY_BANK  # recipe anomaly_bank: the patches of one drawn bank

    @property
    def total_s(self) -> float:
        return float(sum(self.estimate.values()))

    @property
    def bank_rows(self) -> int:
        """Bank patches an anomaly model searches for each image patch: its draws' banks together."""
        return self.bank * self.draws

    @property
    def models(self) -> int:
        """Models per member in the bundle: the fold models, the full-data refit alone, or both."""
        return {"none": self.folds, "only": 1, "both": self.folds + 1}[self.refit]

    def fields(self) -> dict:
        h, w = self.hw
        tag = f"{h}" if h == w else f"{h}x{w}"
        size = {"img_size": [h, w] if h != w else h, "archs": list(self.archs), "tta": self.tta}
        if self.member == "anomaly":
            return {**size, "member": "anomaly", "refit": self.refit, "anomaly_draws": self.draws,
                    "anomaly_bank": self.bank, "name": f"{{arch}}_anomaly{tag}"}
        return {**size, "epochs": self.epochs, "pool": self.pool, "batch_size": self.batch,
                "with_anomaly": self.anomaly, "name": f"{{arch}}_auto{tag}e{self.epochs}b{self.batch}"}

    def line(self, native: tuple[int, int]) -> str:
        h, w = self.hw
        share = f"{h * w / (native[0] * native[1]):.0%} of the images' pixels" if (h, w) != tuple(native) \
            else "the images' own size"
        names = " + ".join(a.replace("tf_efficientnet_", "") for a in self.archs)
        budget = f"about {self.total_s / 60:.1f} min of {self.budget_s / 60:.0f}"
        if self.member == "anomaly":
            refit = {"only": " + a full-data refit each (the bundle's model)", "both": " + a full-data refit each"}
            banks = (f", a bank of {self.bank:,} patches" if self.bank != ANOMALY_BANK else "") + \
                (f", {self.draws} bank draws averaged" if self.draws > 1 else "")
            why = "as set" if self.kept.get("member") == "anomaly" else "too few defects for classifiers"
            return (f"plan: the anomaly member alone ({why}), {w} x {h} px ({share}), "
                    f"{names}, {self.folds} folds{refit.get(self.refit, '')}{banks}: {budget}")
        extra = f" + the anomaly member ({' x '.join(map(str, anomaly_hw(self.hw)[::-1]))} px)" if self.anomaly else ""
        return (f"plan: {w} x {h} px ({share}), {names}, {self.folds} folds x {self.epochs} epochs, TTA x{self.tta}, "
                f"{self.pool} pooling{extra}: {budget}")


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
        out["anomaly member"] = anomaly_s(s, costs[plan.archs[0]], anomaly_hw(plan.hw), plan.folds, plan.bank)
    return out


def anomaly_hw(hw: tuple[int, int]) -> tuple[int, int]:
    """The anomaly member's input beside classifiers at `hw`: the same, its longer side cut to
    ANOMALY_MAX_SIDE (aspect kept, multiples of 32)."""
    if max(hw) <= ANOMALY_MAX_SIDE:
        return tuple(hw)
    f = ANOMALY_MAX_SIDE / max(hw)
    return tuple(max(32, int(x * f) // 32 * 32) for x in hw)


def anomaly_s(s: Survey, c: ArchCost, hw: tuple[int, int], folds: int, bank: int = ANOMALY_BANK,
              draws: int = 1) -> float:
    """Seconds of the anomaly member's folds (on the CPU). A fold passes each image through the backbone
    once: its good training images (bank and scale), its held-out rows, a synthetic defect per held-out good
    image, the test images; then each drawn bank's coreset loop, the search of the drawn banks for every
    scored image's patches (scale, held-out, synthetic, test), a fold's fixed cost."""
    px = hw[0] * hw[1]
    good_tr = s.n_good * (folds - 1) / folds
    scored = good_tr * 0.1 + (s.n_train + s.n_good) / folds + s.n_test
    forward = (good_tr * 0.9 + scored) * (c.prefix(px) + c.infer(px))
    per_image = math.ceil(hw[0] / ANOMALY_STRIDE) * math.ceil(hw[1] / ANOMALY_STRIDE)
    pool = min(per_image * good_tr * 0.9, 16 * bank)
    search = scored * per_image * bank * draws * NN_S
    return folds * (forward + draws * pool * min(bank, pool) * CORESET_S + search + FOLD_S)


def member_estimate(s: Survey, c: ArchCost, arch: str, plan: Plan) -> dict:
    """Seconds of one anomaly member of `plan`: its folds, and its full-data refit (one more fold's work:
    every image, its banks) when the plan ships one."""
    fold_s = anomaly_s(s, c, plan.hw, plan.folds, plan.bank, plan.draws)
    return {f"{arch} anomaly folds": fold_s, **({f"{arch} anomaly refit": fold_s / plan.folds}
                                                if plan.refit != "none" else {})}


def anomaly_sizes(s: Survey, fixed: dict) -> list[tuple[int, int]]:
    """The anomaly member's inputs, largest first: the images' size down, at most ANOMALY_MAX_SIDE a side."""
    if "hw" in fixed:
        return [tuple(fixed["hw"])]
    return [hw for hw in ladder(s) if max(hw) <= ANOMALY_MAX_SIDE] or [ladder(s)[-1]]


def search_anomaly(s: Survey, costs: dict[str, ArchCost], device: str, budget_s: float, fixed: dict) -> Plan:
    """The anomaly member alone: the largest input up to the images' size (its longer side at most
    ANOMALY_MAX_SIDE) whose run fits the budget and whose bundle scores an image within LINE_MS
    (`anomaly_plan`: the fold models, or the full-data refit alone when they would be slower; the
    smallest input when none is that fast)."""
    arch = (fixed.get("archs") or [a for a in LITES if a in costs] or list(costs))[0]
    sizes = anomaly_sizes(s, fixed)
    for hw in sizes:
        plan = anomaly_plan(s, costs, arch, hw, fixed)
        plan.device, plan.budget_s = device, budget_s
        fast = anomaly_image_ms(costs, plan.archs, hw, plan.models, plan.bank_rows) <= LINE_MS or hw == sizes[-1]
        if plan.total_s <= FILL * budget_s and fast:
            return plan
    raise InputError(f"time_budget {budget_s / 60:g} min: too small for the anomaly member at {sizes[-1][1]} x "
                     f"{sizes[-1][0]} px, which needs about {plan.total_s / 60 / FILL:.1f} min; give --time-budget "
                     f"{math.ceil(plan.total_s / 60 / FILL)} or more")


def anomaly_plan(s: Survey, costs: dict[str, ArchCost], arch: str, hw: tuple[int, int], fixed: dict) -> Plan:
    """The member at `hw`: its folds (the OOF scores and thresholds) and, when one image through their
    models would take over LINE_MS (each fold's bank is as good as the others': the refit only averages
    less), a full-data refit that the bundle ships alone; a refit the user set is kept."""
    folds = fixed.get("folds", FOLDS)
    plan = Plan("cpu", 0.0, hw, [arch], 1, 1, folds=folds, cached=False, member="anomaly",
                draws=fixed.get("anomaly_draws", 1), bank=fixed.get("anomaly_bank", ANOMALY_BANK))
    slow = anomaly_image_ms(costs, [arch], hw, folds, plan.bank_rows) > LINE_MS
    plan.refit = fixed.get("refit") or ("only" if slow else "none")
    plan.estimate = {"start and blend": START_S, "images": (s.n_train + s.n_test) * s.decode_s,
                     **member_estimate(s, costs[arch], arch, plan)}
    return plan


NN_S = 2.3e-9  # seconds per (image patch x bank patch) of one image's nearest-neighbour search, 2 threads: the
#   (p50 - forward) / (patches x bank) of bench/results/anomaly_speed_sizes_cpu.json's rows, 2.2-2.5 ns from
#   400 to 2,304 patches and banks of 4,096-16,384 (one row 3.3)


LITE0_FORWARD_MS = ((160 * 160, 4.91), (224 * 224, 5.45), (304 * 304, 14.73), (384 * 384, 24.27))
#   lite0's forward (pruned after level 3) by input pixels, one image per call, 2 threads, ONNX: the p50 with a
#   bank of 16 patches, bench/results/anomaly_speed_sizes_cpu.json (2-core EPYC). Not a line through the
#   origin: from 224 to 304 px the activations leave the cache and the cost per pixel rises by half.


def lite0_forward_s(px: float) -> float:
    """Seconds of lite0's forward at `px` input pixels (LITE0_FORWARD_MS, linear between its points, the
    last segment's slope beyond them, in proportion below the first)."""
    pts = LITE0_FORWARD_MS
    if px <= pts[0][0]:
        return pts[0][1] * px / pts[0][0] / 1000
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if px <= x1 or (x1, y1) == pts[-1]:
            return (y0 + (y1 - y0) * (px - x0) / (x1 - x0)) / 1000
    raise AssertionError("unreachable")


IMAGE_MS = 50.0  # what one image through the anomaly members' bundle may take on 2 cores (every fold model)
LINE_FILL = 0.85  # share of IMAGE_MS a plan may fill (the rest: the file's decode and resize, outside the model,
#   and the runs' spread: the scratches bundle, 480 x 192 px with 2 x 4,096 bank patches, is 42 ms by the model
#   and measured 40.8 to 54 ms p50 in runs of bench/few_defects.py, stops 41-43, on this shared 2-core machine)
LINE_MS = LINE_FILL * IMAGE_MS


LITE_CALL_RATIO = {LITES[1]: 1.6, LITES[2]: 1.6}  # one image's whole call (forward and the search of a bank of
#   4,096) against lite0's at the same input, ONNX Runtime, 2 threads: 0.96-1.60 (lite1) and 0.99-1.59 (lite2) over
#   224-352 px in bench/results/anomaly_speed_lites_cpu.json and anomaly_speed_lites_304_cpu.json (lite2 at 320 px:
#   1.52 with 2,048 patches, 1.20 with 4,096, anomaly_speed_lites_320_cpu.json), the largest
#   taken (one call's spread on a shared 2-core machine is that wide). Not their forward's ratio alone (the probe's
#   1.3 and 1.5): their calls measured above lite0's forward plus lite0's search, the planner's model before,
#   and the scratches bundle of lite2 it had put at 35 ms measured 58 ms (a trial run of bench/few_defects.py).


def anomaly_image_ms(costs: dict[str, ArchCost], archs: list[str], hw: tuple[int, int], folds: int,
                     bank: int = ANOMALY_BANK) -> float:
    """Milliseconds one image takes through the bundle of anomaly members `archs` on the 2-core reference
    CPU (each fold's model: the backbone's forward and the search of its bank): lite0's measured forward at
    that size (lite0_forward_s) and its bank's search; lite1 and lite2 that whole call times their measured
    ratio to lite0's (LITE_CALL_RATIO); another backbone lite0's forward scaled by the probe's ratio of its
    forward to lite0's (a ratio holds across machines and loads where the probe's own seconds do not; without a
    probe of lite0, to the first backbone's, taken as lite0's), and the search."""
    px = hw[0] * hw[1]
    patches = math.ceil(hw[0] / ANOMALY_STRIDE) * math.ceil(hw[1] / ANOMALY_STRIDE)
    ref = costs[LITES[0] if LITES[0] in costs else archs[0]]
    base = ref.prefix(px) + ref.infer(px)
    search = patches * bank * NN_S

    def call(a: str) -> float:
        if a in LITE_CALL_RATIO:
            return (lite0_forward_s(px) + search) * LITE_CALL_RATIO[a]
        own = costs[a].prefix(px) + costs[a].infer(px)
        return lite0_forward_s(px) * (own / base if base > 0 and own > 0 else 1.0) + search
    return 1000 * folds * sum(call(a) for a in archs)


ANOMALY_UPGRADES = (LITES[2], LITES[1])  # the member's backbone instead of lite0 at the largest input, the first
#   that fits: on ELPV at 288 px (bench/results/anomaly_ceiling_lite{0,1,2}_288.json, 3 coreset seeds each) the
#   held-out AUC of one bank is 0.864-0.873 (lite0), 0.877-0.889 (lite1), 0.888-0.889 (lite2), and on the cells
#   the annotators were sure of 0.928, 0.935, 0.942: PatchCore's finding that a stronger ImageNet backbone's
#   patches tell defects better, which holds for any material


MIN_UPGRADE_BANK = 2048  # the smallest bank the upgrade takes for a larger backbone: on ELPV at 288 px one bank of
#   lite2 with 2,048 patches scores 0.873-0.887 held-out (mean 0.880; bench/results/anomaly_ceiling_lite2_288_b2048
#   .json), lite2 with 4,096 0.888-0.889, lite0 with 4,096 0.864-0.873 (mean 0.870): half the bank loses less
#   than the larger backbone gains


MAX_DRAWS = 5  # bank draws per anomaly model the plan buys (bench/results/anomaly_ceiling_lite0_224.json: 5)


def upgrade_banks(plan: Plan, fixed: dict) -> list[int]:
    """The banks the upgrade tries, largest first: the plan's, then half of it (at least MIN_UPGRADE_BANK)
    unless the recipe sets anomaly_bank."""
    half = plan.bank // 2
    return [plan.bank] + ([half] if "anomaly_bank" not in fixed and half >= MIN_UPGRADE_BANK else [])


def may_fit_line(costs: dict[str, ArchCost], arch: str, plan: Plan, fixed: dict) -> bool:
    """Whether `arch` alone, with the fewest models (a full-data refit, unless the recipe sets refit) and the
    smallest bank the plan would give it, could score an image within LINE_MS: for lite1 and lite2 known from
    lite0's probe alone (LITE_CALL_RATIO), so that their probe (several seconds at a large input) is skipped
    when neither the upgrade nor another member could use them; another backbone needs its probe to tell."""
    if arch not in LITE_CALL_RATIO:
        return True
    models = dataclasses.replace(plan, refit=fixed.get("refit") or "only").models
    return anomaly_image_ms(costs, [arch], plan.hw, models, min(upgrade_banks(plan, fixed)) * plan.draws) <= LINE_MS


def upgrade_anomaly(s: Survey, costs: dict[str, ArchCost], plan: Plan, fixed: dict) -> Plan:
    """At the largest input, the member's backbone swapped for the first of ANOMALY_UPGRADES (probed, in
    `costs`) whose run still fits the budget and whose bundle scores an image within LINE_MS, with the plan's
    bank or, when only that fits the line, half of it down to MIN_UPGRADE_BANK: a larger ImageNet backbone's
    patches tell a defect from the good images better, by more than the smaller bank loses. Bought before
    bank draws, which only average one backbone's coreset luck. A backbone or a bank set in the recipe is kept."""
    if fixed.get("archs") or plan.archs != [LITES[0]]:
        return plan
    for arch in [a for a in ANOMALY_UPGRADES if a in costs]:
        for bank in upgrade_banks(plan, fixed):
            trial = anomaly_plan(s, costs, arch, plan.hw, {**fixed, "anomaly_bank": bank})
            trial.device, trial.budget_s = plan.device, plan.budget_s
            if (trial.total_s <= FILL * plan.budget_s
                    and anomaly_image_ms(costs, [arch], plan.hw, trial.models, trial.bank_rows) <= LINE_MS):
                return trial
    return plan


def draw_anomaly(s: Survey, costs: dict[str, ArchCost], plan: Plan, fixed: dict) -> Plan:
    """With time and line speed left, more bank draws per model, up to MAX_DRAWS: each coreset is one
    random draw whose luck moves the AUC (on ELPV 0.881-0.892 over 5 draws, their mean 0.894), and
    averaging draws costs the search of one more bank an image, not another forward pass. Bought before
    other backbones; a recipe's anomaly_draws is kept."""
    if "anomaly_draws" in fixed:
        return plan
    one = plan
    for draws in range(2, MAX_DRAWS + 1):
        trial = dataclasses.replace(one, draws=draws, estimate=dict(one.estimate))
        for arch in trial.archs:
            trial.estimate.update(member_estimate(s, costs[arch], arch, trial))
        ms = anomaly_image_ms(costs, trial.archs, trial.hw, trial.models, trial.bank_rows)
        if trial.total_s > FILL * trial.budget_s or ms > LINE_MS:
            break
        plan = trial
    return plan


def grow_anomaly(s: Survey, costs: dict[str, ArchCost], plan: Plan, max_image_ms: float = LINE_MS) -> Plan:
    """With the input at its largest (the images' size, or ANOMALY_MAX_SIDE a side) and budget left,
    another backbone as another member, in `costs`' order, while the whole run fits and one image
    through the bundle stays within `max_image_ms` (the line's speed is the user's budget too): each
    learns the same good images with other features, and the blend keeps it only if the synthetic
    yardstick says it helps (ensemble.methods.choose_by_yardstick)."""
    for arch in [a for a in costs if a not in plan.archs]:
        extra = member_estimate(s, costs[arch], arch, plan)
        if (plan.total_s + sum(extra.values()) > FILL * plan.budget_s
                or anomaly_image_ms(costs, [*plan.archs, arch], plan.hw, plan.models, plan.bank_rows) > max_image_ms):
            break
        plan.archs = [*plan.archs, arch]
        plan.estimate = {**plan.estimate, **extra}
    return plan


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
                    fixed.get("cached", device == "cpu"), bank=fixed.get("anomaly_bank", ANOMALY_BANK))
        if fits(s, costs, plan):
            return grow(s, costs, plan, fixed, cands, max(hi_e, epochs))
    least = Plan(device, budget_s, sizes[-1], list(archs0), epochs, tta0, folds=folds, batch=batch,
                 cached=fixed.get("cached", device == "cpu"), bank=fixed.get("anomaly_bank", ANOMALY_BANK))
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


PACK_MEMORY_SHARE = 0.8  # of the device's free memory that packed jobs may hold (allocator caches, cuDNN workspaces)


MAX_JOBS_PER_DEVICE = 8


@dataclass(frozen=True)
class JobFootprint:
    """What one training job holds and uses, measured on the device it runs on: its peak memory, the
    CPU cores it keeps busy (the main process, plus loader workers), and `busy`: the share of the
    device's training throughput one job alone reaches (its end-to-end images/s over the bare AMP
    loop's: what the GPU idles between steps is what another job can use)."""

    mem_gib: float
    cpus: float
    busy: float


def pack_jobs(job: JobFootprint, free_gib: float, cpus: int, max_jobs: int = MAX_JOBS_PER_DEVICE) -> tuple[int, str]:
    """(Jobs to run at a time on one device, why that many): as many as its free memory holds (with a
    margin), its CPU cores feed, and its idle share can use (beyond ceil(1 / busy) jobs the device is
    saturated and another job only adds memory and contention), at least one, at most `max_jobs`."""
    if not (job.mem_gib > 0 and job.cpus > 0 and 0 < job.busy <= 1.5):
        raise InputError(f"job footprint {job}: expected memory > 0 GiB, CPUs > 0 and a busy share in (0, 1.5]")
    limits = {"memory": math.floor(free_gib * PACK_MEMORY_SHARE / job.mem_gib),
              "CPU cores": math.floor(cpus / job.cpus),
              "device saturation": math.ceil(1 / min(job.busy, 1.0) - 1e-9),
              "the cap": max_jobs}
    binding = min(limits, key=limits.get)
    n = max(1, limits[binding])
    why = (f"{n} at a time, limited by {binding}: one job holds {job.mem_gib:.2f} GiB of {free_gib:.1f} free, uses "
           f"{job.cpus:g} of {cpus} cores and reaches {job.busy:.0%} of the bare loop's throughput (" +
           ", ".join(f"{k} {v}" for k, v in limits.items()) + ")")
    return n, why
