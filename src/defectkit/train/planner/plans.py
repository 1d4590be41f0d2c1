"""Making, keeping and applying a plan: the inputs it is made from, the probe then the search
(`make_plan`), the plan file (plans/<competition>.json: the same inputs find it again) and the
recipe it gives (`resolve_auto`)."""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from defectkit.core.config import Config
from defectkit.core.fileio import write_json_atomic
from defectkit.core.layout import Layout
from defectkit.core.presets import LITES
from defectkit.train.planner.cost import (
    DEFAULT_BUDGET,
    FILL,
    IMAGE_MS,
    LINE_MS,
    PLAN_FORMAT,
    ArchCost,
    Plan,
    Survey,
    anomaly_hw,
    anomaly_image_ms,
    anomaly_s,
    anomaly_sizes,
    batch_for,
    draw_anomaly,
    estimate,
    grow_anomaly,
    may_fit_line,
    notes,
    search,
    search_anomaly,
    upgrade_anomaly,
)
from defectkit.train.planner.inputs import survey
from defectkit.train.planner.probes import MEMBER_PROBE, PROBE_SIZES, Probe, probe_arch
from defectkit.train.runtime import pick_device


def device_kind(cfg: Config) -> str:
    return pick_device(cfg.recipe.device).type


def fixed_fields(cfg: Config) -> dict:
    """The planned fields the user set (YAML or flags): the plan keeps them."""
    rec, ex = cfg.recipe, cfg.explicit
    out = {k: getattr(rec, k) for k in ("archs", "epochs", "tta", "pool", "member", "with_anomaly", "refit",
                                           "anomaly_draws", "anomaly_bank") if k in ex}
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
    member_s = anomaly_s(s, cpu, anomaly_hw(plan.hw), plan.folds, plan.bank)
    if plan.total_s + member_s <= FILL * budget_s:
        plan.anomaly = True
        plan.estimate = {**plan.estimate, "anomaly member (cpu)": member_s}
    return plan


def plan_anomaly(s: Survey, inputs: dict, fixed: dict, say=print) -> Plan:
    """The anomaly member alone: lite0 probed on the CPU (where the member runs), then the largest input
    that fits (`search_anomaly`). At the images' own size (or ANOMALY_MAX_SIDE) the other lites are probed
    too, and the room left buys, in turn, a larger backbone in lite0's place (`upgrade_anomaly`), more bank
    draws (`draw_anomaly`), other backbones as more members (`grow_anomaly`)."""
    t0, budget = time.perf_counter(), inputs["budget_min"] * 60
    arch = (fixed.get("archs") or LITES)[0]
    hw0 = anomaly_sizes(s, fixed)[0]  # its largest input (a tuple's min would take a 480 x 1200 one, 4x the pixels)
    costs = {arch: probe_arch(arch, "cpu", [PROBE_SIZES[0], hw0], how=MEMBER_PROBE)}
    plan = search_anomaly(s, costs, "cpu", budget - (time.perf_counter() - t0), fixed)
    if tuple(plan.hw) == hw0:  # resolution first, then a larger backbone, draws, backbones
        others = [a for a in LITES if a != arch and not fixed.get("archs") and may_fit_line(costs, a, plan, fixed)]
        costs.update({a: probe_arch(a, "cpu", [PROBE_SIZES[0], hw0], how=MEMBER_PROBE) for a in others})
        plan.budget_s = budget - (time.perf_counter() - t0)
        plan = grow_anomaly(s, costs, draw_anomaly(s, costs, upgrade_anomaly(s, costs, plan, fixed), fixed))
    spent = time.perf_counter() - t0
    why = ("member: anomaly, as set" if fixed.get("member") == "anomaly" else
           f"{s.n_defect} defect image(s): fewer than the {plan.folds} a classifier's folds need")
    say(f"probe: {', '.join(costs)} timed for the anomaly member on the cpu in {spent:.0f} s ({why})")
    names = " + ".join(a.replace("tf_efficientnet_", "") for a in plan.archs)
    models = {"only": f"a full-data refit of {names}, as {plan.folds} fold models would take "
                      f"{anomaly_image_ms(costs, plan.archs, plan.hw, plan.folds, plan.bank_rows):.0f} ms"}.get(
        plan.refit, f"{plan.models} models of {names}")
    draws = f", {plan.draws} bank draws each" if plan.draws > 1 else ""
    ms = anomaly_image_ms(costs, plan.archs, plan.hw, plan.models, plan.bank_rows)
    say(f"the members' bundle: about {ms:.0f} ms an image on 2 cores ({models}{draws}; bank draws and backbones are "
        f"bought only within {LINE_MS:.0f} ms, the {IMAGE_MS:.0f} ms target less the estimate's margin)")
    plan.budget_s, plan.estimate = budget, {"plan (probe)": spent, **plan.estimate}
    plan.costs = {a: {k: getattr(c, k).points for k in ("prefix", "train", "infer")} for a, c in costs.items()}
    plan.kept = dict(inputs["fixed"])
    return plan


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
                    anomaly=p["anomaly"], refit=p["refit"], draws=p["draws"], bank=p["bank"])
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
