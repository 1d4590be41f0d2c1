"""`preset: auto` plans from the images, the machine and a time budget: every plan fits its
budget by its own cost model, never exceeds the images' size, keeps what the user set, says what
it gave up; a budget too small is one line; a planned run, run again, trains nothing new.
Learnt figures are asserted with defectkit.testing.learnt against floors set well below the worst seen over
two seeds of the toy data and two instruction sets (bench/test_margins.py -> bench/results/test_margins.json)."""
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.testing import learnt
from defectkit.train import planner
from defectkit.train.planner import FILL, ArchCost, Curve, Survey, cache_gb, estimate, ladder, search

ROOT = Path(__file__).resolve().parents[1]


def line(a, b):
    """A curve through two probe points of a + b x pixels."""
    return Curve([(x, a + b * x) for x in (16384.0, 50176.0)])


# Per-image seconds of the three lites, of the shape the probe measures on a 2-core CPU
CPU = {a: ArchCost(line(2e-4, 1.3e-7 * k), line(4e-4, 1.4e-7 * k), line(1e-4, 0.45e-7 * k), 112, 16)
       for a, k in zip(planner.LITES, (1.0, 1.45, 1.9))}
GPU = {a: ArchCost(line(0, 0), line(1.2e-4, 0.8e-9 * k), line(0.3e-4, 0.25e-9 * k), 0, 1)
       for a, k in zip(planner.LITES, (1.0, 1.4, 1.8))}


def test_a_curve_goes_through_its_points_and_beyond_along_the_nearest_two():
    c = Curve([(100.0, 1.0), (200.0, 3.0)])
    assert c(100) == 1.0 and c(150) == 2.0 and c(300) == 5.0
    c.add(300, 4.0)
    assert c(300) == 4.0 and c(400) == 5.0 and c(250) == 3.5


def _survey(n, hw, n_test=None, aspect=None):
    a = hw[1] / hw[0] if aspect is None else aspect
    return Survey(n, n_test if n_test is not None else n // 4, hw, a * 0.95, a * 1.05, 0.002 * hw[0] * hw[1] / 9e4)


SURVEYS = {"tiny": _survey(200, (64, 64)), "elpv-like": _survey(1968, (300, 300), 656),
           "hairline strips": _survey(300, (824, 2532)), "100 images": _survey(100, (480, 640)),
           "10,000 images": _survey(10_000, (512, 512), 2000)}


@pytest.mark.parametrize("name", list(SURVEYS))
@pytest.mark.parametrize("device,budget", [("cpu", 10), ("cuda", 30)])
def test_a_plan_fits_its_budget_and_never_exceeds_the_images_size(name, device, budget):
    s = SURVEYS[name]
    costs = CPU if device == "cpu" else GPU
    plan = search(s, costs, device, budget * 60, {})
    assert plan.total_s <= FILL * budget * 60 and sum(estimate(s, costs, plan).values()) == pytest.approx(plan.total_s)
    assert plan.hw[0] <= max(s.hw[0], 64) and plan.hw[1] <= max(s.hw[1], 64) and cache_gb(s, costs, plan) <= 8
    assert plan.hw[0] % 32 == 0 and plan.hw[1] % 32 == 0 and len(plan.archs) >= 1
    assert plan.epochs >= planner.EPOCHS[device][0]
    if name == "tiny":  # cheap images: the whole budget's worth of backbones and epochs, at their own size
        assert plan.hw == (64, 64) and len(plan.archs) == 3
    if name == "hairline strips" and device == "cpu":  # the images' 2,532 x 824 do not fit 10 CPU minutes
        assert plan.hw[0] < 824 and 2.8 < plan.hw[1] / plan.hw[0] < 3.4  # smaller, with their aspect ratio


def test_more_budget_buys_resolution_first_then_backbones_and_epochs():
    s = SURVEYS["hairline strips"]
    plans = [search(s, CPU, "cpu", m * 60, {}) for m in (10, 30, 120)]
    px = [p.hw[0] * p.hw[1] for p in plans]
    assert px[0] < px[1] <= px[2] and plans[2].hw == ladder(s)[0]  # at last the images' own size
    assert len(plans[2].archs) >= len(plans[0].archs)


def test_what_the_user_set_is_kept_and_the_rest_planned_around_it():
    s = SURVEYS["elpv-like"]
    plan = search(s, CPU, "cpu", 30 * 60, {"hw": (224, 224), "archs": ["tf_efficientnet_lite1"]})
    assert plan.hw == (224, 224) and plan.archs == ["tf_efficientnet_lite1"] and plan.total_s <= FILL * 1800


def test_a_budget_too_small_for_the_smallest_plan_says_the_least_it_needs():
    with pytest.raises(InputError, match=r"time_budget 0.2 min: too small for even the smallest plan .* needs about "
                                         r"[\d.]+ min; give --time-budget \d+ or more"):
        search(SURVEYS["10,000 images"], CPU, "cpu", 0.2 * 60, {})


def test_the_ladder_keeps_one_orientations_aspect_ratio_and_squares_a_mix():
    strips = _survey(300, (40, 132))
    assert all(2.7 <= w / h <= 3.7 for h, w in ladder(strips)[:3])
    mixed = Survey(300, 75, (60, 60), 0.33, 3.0, 0.001)
    assert all(h == w for h, w in ladder(mixed))


def test_the_plan_names_its_experiments_by_what_it_chose():
    s = SURVEYS["elpv-like"]
    a, b = search(s, CPU, "cpu", 10 * 60, {}), search(s, CPU, "cpu", 40 * 60, {})
    fa, fb = a.fields(), b.fields()
    assert fa["name"] != fb["name"] and "{arch}" in fa["name"]


@pytest.mark.slow
def test_a_planned_run_run_again_reuses_its_plan_and_trains_nothing_new(tmp_path, monkeypatch):
    from defectkit.pipeline.grid import run_grid
    from defectkit.testing import make_toy_competition
    monkeypatch.setattr(planner.plans, "LITES", ["tf_efficientnet_lite0"])  # one backbone to probe: a quick test
    make_toy_competition(tmp_path)
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "configs/toy.yaml").write_text(yaml.safe_dump({
        "competition": {"name": "toy", "source": {"type": "toy"}},
        "recipe": {"preset": "auto", "n_folds": 2, "epochs": 1, "time_budget": 5, "num_workers": 0}}))
    cfg = load_config(tmp_path / "configs/toy.yaml")
    assert cfg.auto and "epochs" in cfg.explicit
    lines = []
    run_grid(cfg, tmp_path, progress=False, say=lambda *a: lines.append(" ".join(map(str, a))))
    plan_line = next(line for line in lines if line.startswith("plan: "))
    assert any(line.startswith("probe: ") for line in lines) and "kept as set: epochs" in plan_line
    assert "2 folds x 1 epochs" in plan_line
    again = []
    run_grid(load_config(tmp_path / "configs/toy.yaml"), tmp_path, progress=False,
             say=lambda *a: again.append(" ".join(map(str, a))))
    assert not any(line.startswith("probe: ") for line in again)  # the saved plan, not a new one
    assert any("complete, 0 to run" in line for line in again) and plan_line in again


def test_a_small_set_gets_smaller_batches_and_enough_epochs_for_its_steps():
    small, large = _survey(240, (320, 800)), SURVEYS["elpv-like"]
    p = search(small, CPU, "cpu", 30 * 60, {})
    steps = int(240 * 4 / 5) // p.batch
    assert p.batch < 64 and steps >= 4 and p.epochs * steps >= planner.MIN_STEPS
    q = search(large, CPU, "cpu", 10 * 60, {})
    assert q.batch == 64 and q.epochs >= planner.EPOCHS["cpu"][0]


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["max", "avgmax"])
def test_another_pooling_is_a_recipe_field_that_trains_and_predicts_the_thin_scratch_toy(tmp_path, pool):
    """pool: the global pooling the plan keeps at avg (bench/pooling.py measured no better one);
    any other trains, and its checkpoint rebuilds the same model for predict.py and the export."""
    import numpy as np

    from defectkit.cli.prepare import main as prepare_main
    from defectkit.core.layout import Layout
    from defectkit.core.members import QUIET
    from defectkit.data.folds import make_folds
    from defectkit.testing import make_scratch_folder
    from defectkit.train.fold import train_fold
    from defectkit.train.models import load_fold_model
    make_scratch_folder(tmp_path / "src", n=80, defect_rate=0.4, hw=(96, 240), seed=2)
    assert prepare_main(["folder", str(tmp_path / "src"), "--good", "good", "--defect", "defect", "--name", "thin",
                         "--workdir", str(tmp_path)]) == 0
    cfg = load_config(tmp_path / "configs/thin.yaml", {
        "preset": "cpu-fast", "archs": ["tf_efficientnet_lite0"], "img_size": [96, 240], "pool": pool, "epochs": 12,
        "batch_size": 16, "n_folds": 2, "tta": 1, "num_workers": 0})
    make_folds(cfg.competition, 2, 0, base=tmp_path)
    meta = train_fold(cfg, "tf_efficientnet_lite0", 0, tmp_path, QUIET)
    learnt("planner: thin scratches OOF AUC", meta.oof_auc, 0.7)
    model, ck = load_fold_model(Layout(tmp_path).fold(cfg.exp_name("tf_efficientnet_lite0"), 0).best, 0)
    assert model.global_pool.pool_type == pool and ck.recipe["pool"] == pool
    assert np.isfinite(model(__import__("torch").zeros(1, 3, 96, 240)).detach().numpy()).all()


def _with_defects(s, n_defect):
    import dataclasses
    return dataclasses.replace(s, n_defect=n_defect)


@pytest.mark.parametrize("name", ["tiny", "hairline strips", "100 images"])
def test_too_few_defects_plan_the_anomaly_member_alone_at_most_512_px_a_side(name):
    s = _with_defects(SURVEYS[name], 3)
    plan = planner.search_anomaly(s, CPU, "cpu", 10 * 60, {})
    assert plan.member == "anomaly" and plan.archs == ["tf_efficientnet_lite0"] and plan.tta == 1
    assert max(plan.hw) <= planner.ANOMALY_MAX_SIDE and plan.total_s <= FILL * 600
    sizes = [hw for hw in ladder(s) if max(hw) <= planner.ANOMALY_MAX_SIDE]
    ms, lite0 = planner.anomaly_image_ms, "tf_efficientnet_lite0"
    fit = [hw for hw in sizes if ms(CPU, [lite0], hw, 1) <= planner.LINE_MS] or sizes[-1:]
    assert plan.hw == fit[0]  # the largest whose run fits the budget and one model an image the line
    f = plan.fields()
    assert f["member"] == "anomaly" and f["name"].startswith("{arch}_anomaly") and "epochs" not in f
    assert "anomaly member alone (too few defects for classifiers)" in plan.line(s.hw)
    assert "anomaly member alone (as set)" in dataclasses.replace(plan, kept={"member": "anomaly"}).line(s.hw)


def test_the_anomaly_member_joins_the_classifiers_when_the_budget_allows_and_only_then():
    s = _with_defects(SURVEYS["tiny"], 50)
    plan = search(s, CPU, "cpu", 30 * 60, {"anomaly_beside": True})
    assert plan.anomaly and "anomaly member" in plan.estimate and plan.fields()["with_anomaly"] is True
    assert plan.total_s <= FILL * 1800 and "+ the anomaly member" in plan.line(s.hw)
    assert not search(s, CPU, "cpu", 30 * 60, {}).anomaly  # with_anomaly set, or a GPU plan (add_member): not here
    big = _with_defects(SURVEYS["10,000 images"], 2000)
    tight = search(big, CPU, "cpu", 40 * 60, {"anomaly_beside": True})
    assert tight.total_s <= FILL * 2400 and (not tight.anomaly or "anomaly member" in tight.estimate)
    assert planner.anomaly_hw((824, 2532)) == (160, 512) and planner.anomaly_hw((288, 288)) == (288, 288)


def test_a_gpu_plan_adds_the_member_timed_on_the_cpu_when_the_rest_of_the_budget_holds_it():
    """The member runs on the CPU on every machine: a GPU plan adds it after its search, at the CPU's cost."""
    s = _with_defects(SURVEYS["elpv-like"], 500)
    plan = search(s, GPU, "cuda", 30 * 60, {})
    assert not plan.anomaly  # the search itself never adds it on a GPU: the GPU's costs would be the wrong ones
    lite0 = CPU["tf_efficientnet_lite0"]
    roomy = planner.add_member(s, search(s, GPU, "cuda", 30 * 60, {}), lite0, 30 * 60)
    member_s = planner.anomaly_s(s, lite0, planner.anomaly_hw(roomy.hw), roomy.folds)
    assert roomy.anomaly and roomy.estimate["anomaly member (cpu)"] == pytest.approx(member_s) and member_s > 60
    assert roomy.total_s <= FILL * 1800 and roomy.fields()["with_anomaly"] is True
    tight = planner.add_member(s, search(s, GPU, "cuda", 30 * 60, {}), lite0, (plan.total_s + member_s / 2) / FILL)
    assert not tight.anomaly and "anomaly member (cpu)" not in tight.estimate


def test_make_plan_on_a_gpu_times_the_member_on_the_cpu(tmp_path, monkeypatch):
    """make_plan's GPU path end to end, the probes stubbed (no GPU here): the member's cost comes from a
    probe on the CPU of the plan's first backbone."""
    calls = []

    def probe(arch, device, sizes=planner.PROBE_SIZES, cost=None, how=planner.Probe()):
        calls.append((arch, device))
        return (GPU if device == "cuda" else CPU)[arch]
    monkeypatch.setattr(planner.plans, "probe_arch", probe)
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump({
        "competition": {"name": "toy", "source": {"type": "toy"}}, "recipe": {"preset": "auto", "time_budget": 30}}))
    plan = planner.make_plan(load_config(tmp_path / "toy.yaml"), _with_defects(SURVEYS["elpv-like"], 500), "cuda",
                             say=lambda *a: None)
    assert plan.anomaly and "anomaly member (cpu)" in plan.estimate and plan.total_s <= FILL * 1800
    assert calls[-1] == (plan.archs[0], "cpu") and all(d == "cuda" for _, d in calls[:-1])


def test_the_anomaly_plan_probes_every_lite_at_the_members_largest_input(tmp_path, monkeypatch):
    """make_plan's anomaly path, the probes stubbed: lite0 first, then (the input at its largest) the other lites
    for the larger backbone and more members, each at the member's own largest input (512 px a side at most),
    never at the images' full size."""
    calls = []

    def probe(arch, device, sizes=planner.PROBE_SIZES, cost=None, how=planner.Probe()):
        calls.append((arch, device, tuple(map(tuple, sizes))))
        return CPU[arch]
    monkeypatch.setattr(planner.plans, "probe_arch", probe)
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump({
        "competition": {"name": "toy", "source": {"type": "toy"}}, "recipe": {"preset": "auto", "time_budget": 10}}))
    for name in ("hairline strips", "tiny"):
        calls.clear()
        s = _with_defects(SURVEYS[name], 0)
        plan = planner.make_plan(load_config(tmp_path / "toy.yaml"), s, "cpu", say=lambda *a: None)
        top = planner.anomaly_sizes(s, {})[0]
        assert plan.member == "anomaly" and plan.hw == top and max(top) <= planner.ANOMALY_MAX_SIDE
        assert [c[0] for c in calls] == planner.LITES and all(c[1] == "cpu" for c in calls)
        assert all(c[2] == (planner.PROBE_SIZES[0], top) for c in calls)
        assert plan.archs[0] in planner.ANOMALY_UPGRADES or plan.archs[0] == planner.LITES[0]
    # at 352 px lite0 fits the line (~38 ms) and lite1/lite2 cannot, even refit alone with 2,048 patches (~47 ms):
    # known from lite0's probe (LITE_CALL_RATIO), so theirs is skipped
    calls.clear()
    s = _with_defects(_survey(300, (352, 352)), 0)
    plan = planner.make_plan(load_config(tmp_path / "toy.yaml"), s, "cpu", say=lambda *a: None)
    assert plan.hw == (352, 352) and plan.archs[0] == planner.LITES[0] and [c[0] for c in calls] == planner.LITES[:1]
    assert not any(planner.may_fit_line(CPU, a, plan, {}) for a in planner.LITE_CALL_RATIO)
    assert planner.may_fit_line(CPU, "resnet18", plan, {})  # no ratio known: its probe tells


def test_a_budget_too_small_for_the_anomaly_member_says_what_it_needs():
    with pytest.raises(InputError, match=r"too small for the anomaly member at .* needs about [\d.]+ min; give "
                                         r"--time-budget \d+ or more"):
        planner.search_anomaly(_with_defects(SURVEYS["10,000 images"], 0), CPU, "cpu", 0.2 * 60, {})


def test_folds_are_packed_on_a_device_as_memory_cores_and_its_idle_share_allow():
    """The H200 run's fold (2.35 GiB, ~310 img/s end to end of 2,507 bare: 12 % busy) packs by its idle share
    up to the cores and the cap; a fold that keeps the GPU busy runs about alone; memory binds a big one."""
    from defectkit.train.planner import JobFootprint, pack_jobs
    n, why = pack_jobs(JobFootprint(mem_gib=2.35, cpus=2, busy=310 / 2507), free_gib=135, cpus=16)
    assert n == 8 and "limited by" in why and "device saturation 9" in why and "CPU cores 8" in why
    assert pack_jobs(JobFootprint(2.35, 1, 0.9), free_gib=135, cpus=16)[0] == 2  # 90 % busy: one more fills it
    assert pack_jobs(JobFootprint(2.35, 1, 1.0), free_gib=135, cpus=16)[0] == 1
    n, why = pack_jobs(JobFootprint(30, 1, 0.2), free_gib=78, cpus=16)
    assert n == 2 and "limited by memory" in why  # 0.8 x 78 / 30
    n, why = pack_jobs(JobFootprint(90, 1, 0.2), free_gib=78, cpus=16)
    assert n == 1 and "memory 0" in why  # never none: one job runs (and fails on its own if it cannot)
    assert pack_jobs(JobFootprint(1, 9, 0.1), free_gib=78, cpus=16)[0] == 1  # 9 loader cores of 16
    with pytest.raises(InputError, match="busy share"):
        pack_jobs(JobFootprint(1, 1, 0), free_gib=78, cpus=16)


@pytest.mark.parametrize("name", ["tiny", "300 images of 224 px"])  # fold models; a refit (5 would be too slow)
def test_with_the_input_at_its_largest_the_anomaly_plan_buys_more_backbones_while_run_and_line_allow(name):
    s = _with_defects(SURVEYS.get(name) or _survey(300, (224, 224)), 0)
    alone = planner.search_anomaly(s, CPU, "cpu", 10 * 60, {})
    assert alone.hw == planner.anomaly_sizes(s, {})[0] and alone.total_s < 0.5 * 600  # room left at the top size
    assert alone.refit == ("none" if name == "tiny" else "only")
    ms = planner.anomaly_image_ms

    def member_s(arch, plan):  # a member's folds, and its refit when the bundle ships that alone
        return sum(planner.member_estimate(s, CPU[arch], arch, plan).values())
    for limit in (planner.LINE_MS, float("inf")):  # the line's speed, or none
        grown = planner.grow_anomaly(s, CPU, dataclasses.replace(alone, archs=list(alone.archs)), limit)
        assert grown.archs[0] == alone.archs[0] and grown.total_s <= FILL * 600
        assert len(grown.archs) == 1 or ms(CPU, grown.archs, grown.hw, grown.models) <= limit
        for arch in grown.archs[1:]:
            want = planner.anomaly_s(s, CPU[arch], grown.hw, 5)
            assert grown.estimate[f"{arch} anomaly folds"] == pytest.approx(want)
            assert grown.estimate.get(f"{arch} anomaly refit", 0) == pytest.approx(want / 5 * (alone.refit == "only"))
        left_out = [a for a in CPU if a not in grown.archs]
        assert not left_out or (grown.total_s + member_s(left_out[0], grown) > FILL * 600
                                or ms(CPU, [*grown.archs, left_out[0]], grown.hw, grown.models) > limit)
    names = " + ".join(a.replace("tf_efficientnet_", "") for a in grown.archs)
    assert len(grown.archs) >= 2 and names in grown.line(s.hw)  # no limit: the budget alone (checked above)
    assert grown.fields()["archs"] == grown.archs
    tight = planner.search_anomaly(s, CPU, "cpu", alone.total_s / FILL * 1.01, {})
    assert planner.grow_anomaly(s, CPU, tight, float("inf")).archs == alone.archs  # no room: the member alone


def test_at_the_largest_input_the_anomaly_member_takes_a_larger_backbone_when_run_and_line_allow(monkeypatch):
    """lite0 sets the input (the largest that fits); there the first of ANOMALY_UPGRADES (lite2, then lite1)
    whose run fits the budget and whose bundle scores an image within LINE_MS replaces it, with the plan's bank
    or half of it (at least MIN_UPGRADE_BANK), its call costed as lite0's times its measured ratio
    (LITE_CALL_RATIO; another backbone: lite0's forward times the probe's ratio, plus the search); else, or
    with a backbone set, lite0 stays; a bank set in the recipe is not halved."""
    lite0, lite1, lite2 = planner.LITES
    assert planner.ANOMALY_UPGRADES == (lite2, lite1) and planner.MIN_UPGRADE_BANK == 2048
    ms = planner.anomaly_image_ms

    def upgraded(side, fixed=None):
        s = _with_defects(_survey(300, (side, side)), 0)
        alone = planner.search_anomaly(s, CPU, "cpu", 10 * 60, dict(fixed or {}))
        assert alone.archs == [lite0] and alone.hw == planner.anomaly_sizes(s, {})[0] == (side, side)
        up = planner.upgrade_anomaly(s, CPU, alone, dict(fixed or {}))
        assert len(up.archs) == 1 and up.hw == alone.hw and up.total_s <= FILL * 600
        assert ms(CPU, up.archs, up.hw, up.models, up.bank_rows) <= planner.LINE_MS
        if up.archs != [lite0]:
            assert f"{up.archs[0]} anomaly folds" in up.estimate and f"{lite0} anomaly folds" not in up.estimate
            assert up.fields()["anomaly_bank"] == up.bank
            assert (f"a bank of {up.bank:,} patches" in up.line(s.hw)) == (up.bank != 4096)
        return up.archs[0], up.bank
    # 320 px: lite0's call x 1.6 is over the line with 4,096 patches, within it with 2,048; 352 px: neither
    assert [upgraded(side) for side in (224, 320, 352)] == [(lite2, 4096), (lite2, 2048), (lite0, 4096)]
    assert upgraded(320, {"anomaly_bank": 4096}) == (lite0, 4096)  # a bank set in the recipe: not halved
    monkeypatch.setattr(planner.cost, "LITE_CALL_RATIO", {lite1: 1.2, lite2: 3.0})
    assert [upgraded(side) for side in (224, 288, 352)] == [(lite2, 4096), (lite1, 4096), (lite1, 2048)]
    monkeypatch.undo()
    px, nn = 320 * 320, 40 * 40 * 4096 * planner.NN_S
    assert ms(CPU, [lite1], (320, 320), 1) == pytest.approx(
        1000 * (planner.lite0_forward_s(px) + nn) * planner.LITE_CALL_RATIO[lite1])
    other = {lite0: CPU[lite0], "other": CPU[lite2]}  # a backbone without a measured ratio: the probe's
    ratio = (CPU[lite2].prefix(px) + CPU[lite2].infer(px)) / (CPU[lite0].prefix(px) + CPU[lite0].infer(px))
    assert ms(other, ["other"], (320, 320), 1) == pytest.approx(1000 * (planner.lite0_forward_s(px) * ratio + nn))
    assert ms(CPU, [lite1, lite0], (320, 320), 1) == pytest.approx(ms(CPU, [lite0, lite1], (320, 320), 1))
    s = _with_defects(_survey(300, (224, 224)), 0)
    alone = planner.search_anomaly(s, CPU, "cpu", 10 * 60, {})
    assert planner.upgrade_anomaly(s, CPU, alone, {"archs": [lite0]}).archs == [lite0]  # set in the recipe: kept
    tight = planner.search_anomaly(s, CPU, "cpu", alone.total_s / FILL * 1.01, {})
    cheap = planner.upgrade_anomaly(s, CPU, tight, {})  # no time for lite2 with 4,096; with 2,048 (less coreset) fits
    assert cheap.total_s <= FILL * tight.budget_s and (cheap.archs, cheap.bank) in (([lite0], 4096), ([lite2], 2048))
    assert planner.upgrade_anomaly(s, CPU, tight, {"anomaly_bank": 4096}).archs == [lite0]  # no time for a larger one


def test_the_anomaly_plan_keeps_one_image_within_the_line_budget_by_shipping_a_full_data_refit():
    """Large images: five fold models would take over LINE_MS an image, so the bundle ships a full-data refit
    alone (its time in the estimate); small images keep the fold models; a refit the user set is kept, and
    with fold models fixed the input goes down until an image fits (or the smallest)."""
    ms, big = planner.anomaly_image_ms, _with_defects(SURVEYS["100 images"], 0)
    plan = planner.search_anomaly(big, CPU, "cpu", 10 * 60, {})
    lite0 = "tf_efficientnet_lite0"
    assert ms(CPU, [lite0], plan.hw, 5) > planner.LINE_MS >= ms(CPU, [lite0], plan.hw, plan.models)
    assert (plan.refit, plan.models, plan.fields()["refit"]) == ("only", 1, "only")
    assert plan.estimate[f"{lite0} anomaly refit"] == pytest.approx(plan.estimate[f"{lite0} anomaly folds"] / 5)
    assert "5 folds + a full-data refit each (the bundle's model)" in plan.line(big.hw)
    small = planner.search_anomaly(_with_defects(SURVEYS["tiny"], 0), CPU, "cpu", 10 * 60, {})
    assert (small.refit, small.models) == ("none", 5) and ms(CPU, [lite0], small.hw, 5) <= planner.LINE_MS
    folds = planner.search_anomaly(big, CPU, "cpu", 10 * 60, {"refit": "none"})
    sizes = planner.anomaly_sizes(big, {})
    assert folds.refit == "none" and ms(CPU, [lite0], folds.hw, 5) <= planner.LINE_MS or folds.hw == sizes[-1]
    assert sizes.index(folds.hw) > sizes.index(plan.hw)  # smaller than with the refit
    assert all(ms(CPU, [lite0], hw, 5) > planner.LINE_MS for hw in sizes[:sizes.index(folds.hw)])


def test_the_anomaly_plan_averages_bank_draws_while_time_and_line_allow_and_keeps_a_set_count():
    """More draws per model while the run fits and an image stays within LINE_MS (IMAGE_MS less a margin; each
    draw: one more bank's search an image and one more coreset a fold); at most MAX_DRAWS; a set count is kept."""
    ms, lite0, got = planner.anomaly_image_ms, "tf_efficientnet_lite0", {}
    for name in ("tiny", "100 images"):
        s = _with_defects(SURVEYS[name], 0)
        one = planner.search_anomaly(s, CPU, "cpu", 10 * 60, {})
        drawn = planner.draw_anomaly(s, CPU, one, {})
        assert 1 <= drawn.draws <= planner.MAX_DRAWS and drawn.total_s <= FILL * 600
        assert ms(CPU, [lite0], drawn.hw, drawn.models, 4096 * drawn.draws) <= planner.LINE_MS
        assert drawn.estimate[f"{lite0} anomaly folds"] == pytest.approx(
            planner.anomaly_s(s, CPU[lite0], drawn.hw, 5, draws=drawn.draws))
        more = drawn.draws + 1
        assert more > planner.MAX_DRAWS or ms(CPU, [lite0], drawn.hw, drawn.models, 4096 * more) > planner.LINE_MS \
            or sum(planner.member_estimate(s, CPU[lite0], lite0, dataclasses.replace(drawn, draws=more)).values()) \
            + drawn.estimate["start and blend"] + drawn.estimate["images"] > FILL * 600
        assert drawn.fields()["anomaly_draws"] == drawn.draws
        assert (drawn.draws > 1) == (f"{drawn.draws} bank draws averaged" in drawn.line(s.hw))
        got[name] = drawn.draws
    assert got == {"tiny": planner.MAX_DRAWS, "100 images": 1}  # 384 x 512 px: one draw of one model takes ~48 ms
    tight = planner.search_anomaly(s, CPU, "cpu", one.total_s / FILL * 1.01, {})
    assert planner.draw_anomaly(s, CPU, tight, {}).draws == 1  # no time left
    assert planner.draw_anomaly(s, CPU, one, {"anomaly_draws": 1}).draws == 1  # set in the recipe: kept
    assert planner.anomaly_s(s, CPU[lite0], one.hw, 5, draws=3) > planner.anomaly_s(s, CPU[lite0], one.hw, 5)


def test_the_anomaly_plan_costs_a_bank_set_in_the_recipe():
    """anomaly_bank set in the YAML: the plan keeps it and costs it (the search and coreset of that many patches,
    the bundle's latency), so a smaller bank buys a larger input or more draws, a larger one less."""
    s, lite0 = _with_defects(SURVEYS["100 images"], 0), "tf_efficientnet_lite0"
    base = planner.search_anomaly(s, CPU, "cpu", 10 * 60, {})
    small = planner.search_anomaly(s, CPU, "cpu", 10 * 60, {"anomaly_bank": 1024})
    big = planner.search_anomaly(s, CPU, "cpu", 10 * 60, {"anomaly_bank": 16384})
    assert (base.bank, small.bank, big.bank) == (4096, 1024, 16384)
    assert small.bank_rows == 1024 * small.draws
    same = {"anomaly_bank": 1024, "hw": base.hw, "refit": base.refit}
    cheap = planner.search_anomaly(s, CPU, "cpu", 10 * 60, same)
    assert cheap.estimate[f"{lite0} anomaly folds"] < base.estimate[f"{lite0} anomaly folds"]
    assert planner.anomaly_image_ms(CPU, [lite0], base.hw, 1, cheap.bank_rows) < planner.anomaly_image_ms(
        CPU, [lite0], base.hw, 1, base.bank_rows)
    sizes = planner.anomaly_sizes(s, {})
    assert sizes.index(big.hw) >= sizes.index(base.hw) >= sizes.index(small.hw)
    assert sizes.index(big.hw) > sizes.index(small.hw)  # 16x the search: a smaller input within the line
    assert planner.draw_anomaly(s, CPU, small, {"anomaly_bank": 1024}).bank == 1024


def test_a_saved_anomaly_plan_reads_back_with_its_refit_and_draws(tmp_path):
    """run.py and predict.py read the saved plan again (same inputs: no new probe); the refit and the bank draws
    come back with it, and so do the recipe fields they set."""
    from defectkit.core.fileio import write_json_atomic
    from defectkit.testing import write_toy_config
    cfg = load_config(write_toy_config(tmp_path))
    s = _with_defects(_survey(300, (224, 224)), 0)
    plan = planner.draw_anomaly(s, CPU, planner.search_anomaly(s, CPU, "cpu", 10 * 60, {}), {})
    plan.bank = 2048  # as upgrade_anomaly halves it
    assert (plan.refit, plan.draws > 1) == ("only", True)
    inputs = {"budget_min": 10, "fixed": {}}
    write_json_atomic(planner.plan_path(cfg, tmp_path), {"format": planner.PLAN_FORMAT, "inputs": inputs,
                                                         "plan": dataclasses.asdict(plan)})
    back = planner.load_saved(cfg, tmp_path, inputs)
    assert (back.refit, back.draws, back.bank, back.hw, back.archs, back.member) == (
        plan.refit, plan.draws, plan.bank, plan.hw, plan.archs, "anomaly")
    rec = planner.apply(cfg, back).recipe
    assert (rec.refit, rec.anomaly_draws, rec.member, rec.anomaly_bank) == ("only", plan.draws, "anomaly", 2048)
    assert planner.load_saved(cfg, tmp_path, {**inputs, "budget_min": 20}) is None  # other inputs: planned again


def test_the_bundle_latency_of_anomaly_members_grows_with_pixels_backbones_and_folds():
    ms = planner.anomaly_image_ms
    one = ms(CPU, ["tf_efficientnet_lite0"], (160, 160), 5)
    assert ms(CPU, ["tf_efficientnet_lite0"], (320, 320), 5) > 3 * one
    assert ms(CPU, ["tf_efficientnet_lite0", "tf_efficientnet_lite1"], (160, 160), 5) > 2 * one
    assert ms(CPU, ["tf_efficientnet_lite0"], (160, 160), 1) == pytest.approx(one / 5)
    # one fold model of lite0 at 160 px: its measured forward and the search of 20 x 20 patches in 4,096
    zero = Curve([(1, 0), (2, 0)])
    assert ms({"z": planner.ArchCost(zero, zero, zero)}, ["z"], (160, 160), 1) == pytest.approx(
        1000 * planner.lite0_forward_s(160 * 160) + 1000 * 400 * 4096 * planner.NN_S)


def test_the_bundle_latency_model_follows_the_measured_one_image_calls():
    """Every row of bench/results/anomaly_speed_sizes_cpu.json (lite0, levels 2+3, 160-384 px, banks 16-16,384,
    the p50 of one image per call through ONNX Runtime on 2 cores) within 25 % of the planner's latency model (two
    small rows miss by 19 and 22 %: their search is a few ms), within 10 % from 304 px on, where the line budget
    binds; the forward table holds the bank-16 rows' figures; the model rises with the pixels."""
    rows = json.loads((ROOT / "bench" / "results" / "anomaly_speed_sizes_cpu.json").read_text())["rows"]
    lite0 = "tf_efficientnet_lite0"
    assert {(r["img_size"][0] ** 2, r["ms_p50"]) for r in rows if r["bank"] == 16} == set(planner.LITE0_FORWARD_MS)
    for r in rows:
        model = planner.anomaly_image_ms(CPU, [lite0], tuple(r["img_size"]), 1, r["bank"])
        assert model == pytest.approx(r["ms_p50"], rel=0.25 if r["img_size"][0] < 304 else 0.10), r
    fwd = [planner.lite0_forward_s(side * side) for side in (32, 160, 200, 288, 384, 512)]
    assert fwd == sorted(fwd) and fwd[0] > 0
    # lite1 and lite2: their whole call (banks of 2,048 and more) at most LITE_CALL_RATIO times lite0's with the same
    # bank in every measured pair, in every file of such runs
    names = sorted(p.name for p in (ROOT / "bench" / "results").glob("anomaly_speed_lites*_cpu.json"))
    assert len(names) >= 3, names
    for name in names:
        rows = json.loads((ROOT / "bench" / "results" / name).read_text())["rows"]
        ms = {(r["arch"], r["img_size"][0], r["bank"]): r["ms_p50"] for r in rows if r["bank"] >= 2048}
        pairs = [(a, ms[a, side, b] / ms[lite0, side, b]) for a, side, b in ms if a != lite0]
        assert len(pairs) >= 2 and all(ratio <= planner.LITE_CALL_RATIO[a] for a, ratio in pairs), (name, pairs)
