"""The results tables of the README and the docs, written from bench/results/*.json and never typed.

Each table sits in a page between `<!-- table:NAME -->` and `<!-- /table -->`; this script rewrites what
is between them from the result files (each records its command, machine, date and, since 2026-12-05,
its commit). tests/test_docs.py fails when a page's table differs from what this script writes, or names
a result file that is not there.

    python bench/tables.py            # rewrite every table in README.md and docs/*.md
    python bench/tables.py --check    # exit 1, naming the tables, if any is out of date
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def machine(r: dict) -> str:
    """Where a result was measured: the GPU, else the CPU's model (or, for older files, its core count)."""
    if str(r.get("device", "")).startswith("NVIDIA"):
        return r["device"]
    caps = r.get("isa_caps") or {}
    cores = str(r.get("cpu", r.get("device", ""))).replace("CPU (", "").rstrip(")")
    # files from before 2026-12-05 name no CPU model: their platform string tells the machines apart
    model = r.get("cpu_model") or f"x86_64 ({r.get('platform', '?').split('-x86_64')[0]})"
    return f"{model}, {cores}" + (" (other-CPU profile)" if caps else "")


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{v:.0f}"
    return str(v)


def table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out) + "\n"


def src(name: str) -> str:
    return f"`{name}`"


# --- the tables -------------------------------------------------------------------------------------------

def results() -> str:
    """ELPV and the made-up scratch set: what each command scores on held-out images, where and how fast."""
    rows = []
    prof = RESULTS / "cpu_profiles_elpv_cpu.json"
    if prof.exists():
        r = load(prof.name)
        n = r["runs"]["native"]
        rows.append(["ELPV", "`make demo` (configs/elpv_cpu.yaml: 2 backbones x 5 folds, 160 px)", fmt(n["oof_auc"]),
                     fmt(n["held_out_auc"]), f"{fmt(n['wall_min'], 1)} min", machine(r), r["date"], src(prof.name)])
    for name, what in (("plan_elpv_auto.json", "`preset: auto`, 10-minute budget"),
                       ("plan_elpv_auto_60.json", "`preset: auto`, 60-minute budget"),
                       ("plan_elpv_auto_anomaly.json", "`preset: auto` with `member: anomaly` (learnt from the "
                        "good cells alone), 10-minute budget"),
                       ("plan_elpv_auto_15_anomaly.json", "`preset: auto` with `member: anomaly`, 15-minute budget")):
        r = load(name)
        plan = r.get("plan") or {}
        if plan.get("member") == "anomaly":  # which backbone the budget bought
            what += (f": {' + '.join(a.replace('tf_efficientnet_', '') for a in plan['archs'])}, "
                     f"{plan['hw'][1]} x {plan['hw'][0]} px" + (f", bank {plan['bank']:,}" if plan.get("bank") else ""))
        rows.append(["ELPV", what, fmt(r["oof_auc"]), fmt(r["held_out_auc"]), f"{fmt(r['wall_min'], 1)} min",
                     machine(r), r["date"], src(name)])
    g, e = load("elpv_grid_cuda.json"), load("env_cuda.json")
    rows.append(["ELPV", "configs/elpv.yaml (`gpu` preset: 3 backbones x 5 folds, 300 px)", fmt(g["blend_oof_auc"]),
                 fmt(g["held_out_auc"]), "-", e["gpu"], "2026-11-30", src("elpv_grid_cuda.json")])
    r = load("plan_scratch_auto.json")
    rows.append(["scratches (made up, 300 images, 15 % defects)", "`preset: auto`, 10-minute budget",
                 fmt(r["oof_auc"]), fmt(r["held_out_auc"]), f"{fmt(r['wall_min'], 1)} min", machine(r), r["date"],
                 src("plan_scratch_auto.json")])
    r = load("few_defects_scratch.json")
    rows.append(["scratches, 5 defects in 100 images", "`preset: auto` (the anomaly member alone); "
                 "100 + 100 fresh images", fmt(r["oof_auc"]), f"{fmt(r['fresh_auc'])} (fresh)",
                 f"{fmt(r['wall_min'], 1)} min", machine(r), r["date"], src("few_defects_scratch.json")])
    return table(["data", "command", "OOF AUC", "held-out AUC", "wall time", "machine", "date", "result file"], rows)


def speed() -> str:
    """How fast each part runs, against its target."""
    rows = []
    for name, what in (("train_throughput_cpu.json", "training loop / bare loop, lite0 160 px"),
                       ("train_throughput_cpu_300px_strong.json", "training loop / bare loop, 300 px, strong aug"),
                       ("train_throughput_cuda_lite0_300.json", "training loop / bare AMP loop, lite0 300 px"),
                       ("train_throughput_cuda_lite0_300_device.json",
                        "the same on the GPU-resident data path (`data_path: device`)"),
                       ("train_throughput_cuda_resnet50_224.json", "training loop / bare AMP loop, resnet50 224 px")):
        if not (RESULTS / name).exists():  # measured by the GPU kit once a GPU is lent
            continue
        r = load(name)
        rows.append([what, f"{fmt(r['train_loop_img_s'], 1)} / {fmt(r['bare_img_s'], 1)} img/s "
                     f"(ratio {fmt(r['ratio'], 3)})", ">= 0.90", r["device"], r.get("date", "2026-11-30"), src(name)])
    r = load("blend_speed.json")
    rows.append([f"hill blend + cross-check of {r['experiments']} experiments x {r['rows']:,} OOF rows",
                 f"{fmt(r['blend_secs'], 2)} s", f"< {fmt(r['target_secs'], 0)} s", machine(r), r["date"],
                 src("blend_speed.json")])
    r = load("ray_overhead_cpu.json")
    rows.append(["the toy grid on Ray / locally (start-up apart)", f"{r['ray_wall_s']} / {r['local_wall_s']} s "
                 f"(ratio {fmt(r['ratio'], 2)})", "<= 1.3", machine(r), r["date"], src("ray_overhead_cpu.json")])
    r = load("bundle_speed_cpu_batch1.json")
    rows.append([f"the ELPV bundle ({r['ensemble']['fold_models']} models), onnxruntime / torch eager, 1 image",
                 f"{r['ensemble']['onnxruntime_img_s']} / {r['ensemble']['torch_eager_img_s']} img/s",
                 f">= {fmt(r['ensemble']['target_speedup'], 0)}x", machine(r), r["date"],
                 src("bundle_speed_cpu_batch1.json")])
    rows.append([f"one lite0 model, {r['latency']['img_size']} px, 1 image, onnxruntime / torch eager",
                 f"{r['latency']['onnxruntime_ms']} / {r['latency']['torch_eager_ms']} ms",
                 f"<= {r['latency']['target_ms']} ms", machine(r), r["date"], src("bundle_speed_cpu_batch1.json")])
    r = load("line_speed_cpu.json")
    v = r["variants"]
    for k in ("ensemble onnx fp32", "student onnx int8", "student openvino int8"):
        rows.append([f"line speed, {k}: 1 image per call, held-out AUC {fmt(v[k]['held_out_auc'])}, "
                     f"{fmt(v[k]['model_mb'], 1)} MB", f"{v[k]['img_s_batch1']} img/s (p50 {v[k]['p50_ms']} ms)",
                     ">= 100 img/s (student)", machine(r), r["date"], src("line_speed_cpu.json")])
    r = load("anomaly_speed_cpu.json")
    for row in r["rows"][:3]:
        rows.append([f"anomaly member, {row['arch'].replace('tf_efficientnet_', '')} {row['img_size'][0]} px, "
                     f"bank {row['bank']:,}, 1 image", f"{row['ms_p50']} ms (p50)", f"<= {r['target_ms']} ms",
                     machine(r), r["date"], src("anomaly_speed_cpu.json")])
    return table(["what", "figure", "target", "machine", "date", "result file"], rows)


def cpu_profiles() -> str:
    """`make demo` on this CPU's own kernels and under the other-CPU profile."""
    name = "cpu_profiles_elpv_cpu.json"
    if not (RESULTS / name).exists():
        return "(not measured yet: `python bench/cpu_profiles.py`)\n"
    r = load(name)
    rows = [[p, fmt(x["oof_auc"], 5), fmt(x["held_out_auc"], 5), f"{fmt(x['wall_min'], 1)} min"]
            for p, x in r["runs"].items()]
    if r.get("largest_prediction_difference") is not None:
        rows.append(["spread", fmt(r["oof_auc_spread"], 5), fmt(r["held_out_auc_spread"], 5),
                     f"largest prediction difference {r['largest_prediction_difference']:.1e}"])
    return (table(["kernels", "OOF AUC", "held-out AUC", "wall time"], rows)
            + f"\n{machine(r)}, {r['date']}, commit {r.get('commit', '-')}: {src(name)}\n")


def test_margins() -> str:
    """Each learnt figure's floor against the worst seen over seeds and kernels."""
    name = "test_margins.json"
    if not (RESULTS / name).exists():
        return "(not measured yet: `python bench/test_margins.py`)\n"
    r = load(name)
    rows = [[k, ("< " if f["below"] else "> ") + fmt(f["floor"]), fmt(f["worst"]),
             fmt(f["best"]), fmt(f["margin"]), f["n"]] for k, f in r["figures"].items()]
    return (table(["figure", "floor", "worst seen", "best seen", "margin", "runs"], rows)
            + f"\nseeds {r['seeds']}, kernels {', '.join(r['profiles'])}; {machine(r)}, {r['date']}, runs made at "
              f"commit {r.get('measured_at') or r.get('commit', '-')}: {src(name)}\n")


def demo() -> str:
    """The table `make demo` prints at its end, from its run in bench/results/cpu_profiles_elpv_cpu.json."""
    name = "cpu_profiles_elpv_cpu.json"
    if not (RESULTS / name).exists():
        return "(not measured yet: `python bench/cpu_profiles.py`)\n"
    r = load(name)
    run = r["runs"]["native"]
    cols = ["experiment", "oof_auc", "test_auc", "train_min"]
    rows = [[str(t.get(c)) if not isinstance(t.get(c), float) else fmt(t[c], 5 if "auc" in c else 1)
             for c in cols] for t in run["table"]]
    width = [max(len(c), *(len(x[i]) for x in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, width))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, width)) for row in rows]
    extra = (f"; the largest process {fmt(run['peak_rss_gib'], 1)} GiB, the work folder "
             f"{fmt(run['workdir_gib'], 1)} GiB" if run.get("peak_rss_gib") else "")
    return ("```\n" + "\n".join(lines) + f"\nwall time {fmt(run['wall_min'], 1)} min; submission: "
            "submissions/submission.csv\n```\n\n" + f"({machine(r)}, {r['date']}, from an empty `input/`{extra}; "
            f"{src(name)}" + (f"; {r['note']}" if r.get("note") else "") + ")\n")


def variant_rows(name: str, only=None) -> list[list]:
    r, rows = load(name), []
    for k, v in r["variants"].items():
        if only and k not in only:
            continue
        if "refused" in v:
            rows.append([k, "-", "-", "refused at export", "-", "-", "-", "-", machine(r), r["date"], src(name)])
            continue
        rows.append([k, f"{v['models']}, x{v['tta']}", fmt(v["model_mb"], 1), v["img_s_batch1"],
                     f"{v['p50_ms']} / {v['p99_ms']}", v.get("img_s_batch8", "-"), fmt(v["held_out_auc"]),
                     fmt(v["held_out_acc"]), machine(r), r["date"], src(name)])
    return rows


LINE_SPEED = (("line_speed_cpu.json", None), ("line_speed_ensemble_int8_cpu.json", ("ensemble onnx int8",)))


def line_speed(names=LINE_SPEED):
    """The ensemble's bundle against its student, one image per call (bench/line_speed.py)."""
    rows = [row for name, only in names for row in variant_rows(name, only)]
    return table(["bundle", "models, TTA", "MB", "img/s, 1 per call", "p50 / p99 ms", "img/s, batches of 8",
                  "held-out AUC", "accuracy at the chosen point", "machine", "date", "result file"], rows)


def bundle_speed() -> str:
    """The ELPV ensemble's bundle against torch eager, by images per run (bench/bundle_speed.py)."""
    rows = []
    for b in (1, 4, 32):
        name = f"bundle_speed_cpu_batch{b}.json"
        r = load(name)
        e = r["ensemble"]
        rows.append([b, f"{e['onnxruntime_img_s']} img/s", f"{e['torch_eager_img_s']} img/s", f"{e['speedup']}x",
                     f"{r['latency']['onnxruntime_ms']} / {r['latency']['torch_eager_ms']} ms", machine(r), r["date"],
                     src(name)])
    return table(["images per run", "onnxruntime", "torch eager", "ratio", "one lite0 at 224 px, 1 image",
                  "machine", "date", "result file"], rows)


def localise() -> str:
    """Where Grad-CAM and its kin look on toy disks with masks, by CAM method and layer (bench/localise_toy.py)."""
    r = load("localise_toy.json")
    got = {(x["cam"], x["layer"]): x for x in r["results"]}
    layers = sorted({x["layer"] for x in r["results"]}, reverse=True)
    rows = [[cam, *(f"{fmt(got[cam, lv]['energy_in'], 3)} / {fmt(got[cam, lv]['pointing_game'], 3)}"
                    if (cam, lv) in got else "-" for lv in layers)]
            for cam in dict.fromkeys(x["cam"] for x in r["results"])]
    return (table(["CAM", *(f"layer {lv}: energy inside / pointing game" for lv in layers)], rows)
            + f"\n({r['toy']}; {machine(r)}, {r['date']}: {src('localise_toy.json')})\n")


def plans() -> str:
    """What preset auto planned and scored, against the fixed recipe before it (bench/plan_budget.py)."""
    rows = []
    for name in ("plan_scratch_before.json", "plan_scratch_auto.json", "plan_elpv_auto.json", "plan_elpv_auto_60.json"):
        r = load(name)
        plan = r.get("plan") or {}
        what = (f"{' x '.join(map(str, plan['hw'][::-1]))} px, "
                f"{' + '.join(a.replace('tf_efficientnet_', '') for a in plan['archs'])}"
                + (f", {plan['epochs']} epochs" if plan.get("epochs") else "") if plan else "cpu-fast")
        rows.append([r["data"], f"auto, {fmt(r['budget_min'], 0)} min" if r["mode"] == "auto" else "before", what,
                     f"{fmt(r['estimate_min'], 1)} min" if r["estimate_min"] else "-", f"{fmt(r['wall_min'], 1)} min",
                     fmt(r["oof_auc"]), fmt(r["held_out_auc"]), machine(r), r["date"], src(name)])
    return table(["data", "recipe", "plan", "estimate", "wall", "OOF AUC", "held-out AUC", "machine", "date",
                  "result file"], rows)


def anomaly_bundle() -> str:
    """The anomaly member's bundle alone (its 5 fold models) on the held-out ELPV cells."""
    return line_speed((("line_speed_anomaly_cpu.json", None),))


def anomaly_speed() -> str:
    """One image through the member's ONNX model, by backbone, feature levels and bank size."""
    r = load("anomaly_speed_cpu.json")
    banks = sorted({x["bank"] for x in r["rows"]})
    keys = list(dict.fromkeys((x["arch"], tuple(x["layers"]), x["dim"]) for x in r["rows"]))
    ms = {(x["arch"], tuple(x["layers"]), x["bank"]): x["ms_p50"] for x in r["rows"]}
    rows = [[f"{a.replace('tf_efficientnet_', '')}, levels {list(lv)} ({d} per patch)",
             *(f"{ms[a, lv, b]} ms" if (a, lv, b) in ms else "-" for b in banks)] for a, lv, d in keys]
    px = r["rows"][0]["img_size"][0]
    return (table(["backbone, levels", *(f"bank {b:,}" for b in banks)], rows)
            + f"\n(p50, one image per call, {px} px, {r['threads']} threads; {machine(r)}, {r['date']}: "
              f"{src('anomaly_speed_cpu.json')})\n")


def few_defects() -> str:
    """5 defects in 100 made-up scratch images: the plan, and fresh images (bench/few_defects.py)."""
    r = load("few_defects_scratch.json")
    ch = r["operating_points"]["chosen"]
    archs = ", ".join(a.replace("tf_efficientnet_", "") for a in r["plan"]["archs"])
    h, w = r["plan"]["hw"]
    refit = ", 5 folds + a full-data refit (the bundle's model)" if r["plan"].get("refit") == "only" else ""
    draws = r["plan"].get("draws") or 1
    bank = f"{draws} bank draws of {r['bank_patches'] // draws:,} patches" if draws > 1 else \
        f"bank {r['bank_patches']:,} patches"
    rows = [["plan", f"the anomaly member alone, {archs}, {w} x {h} px{refit}; wall {fmt(r['wall_min'], 1)} min "
                     f"({fmt(100 * r['budget_used'], 0)} % of {fmt(r['budget_min'], 0)}, estimated "
                     f"{fmt(r['plan_min'], 1)}), {bank}"],
            [f"OOF ({ch['tn'] + ch['fp']} good, {ch['tp'] + ch['fn']} defects)", f"AUC {fmt(r['oof_auc'])}"],
            ["held-out split", f"AUC {fmt(r['held_out_auc'])}"],
            [f"fresh {r['fresh_good']} good + {r['fresh_defect']} defects",
             f"AUC {fmt(r['fresh_auc'])}; at the chosen point {fmt(100 * r['fresh_false_alarms'], 1)} % false alarms, "
             f"{fmt(100 * r['fresh_recall'], 1)} % recall"]]
    if r.get("bundle"):
        b = r["bundle"]
        rows.append(["the bundle (ONNX fp32, 2 threads, one image per call)",
                     f"{b['models']} model(s), {fmt(b['model_mb'], 1)} MB: p50 {fmt(b['p50_ms'], 1)} ms, "
                     f"p99 {fmt(b['p99_ms'], 1)} ms"])
    return table(["what", "figure"], rows) + f"\n({machine(r)}, {r['date']}: {src('few_defects_scratch.json')})\n"


def yardstick() -> str:
    """Recipes of the anomaly member on ELPV's good images: synthetic vs real AUC (bench/synthetic_yardstick.py)."""
    r = load("synthetic_yardstick_elpv.json")
    rows = [[f"{v['arch'].replace('tf_efficientnet_', '')}, {v['img_size']} px, levels "
             f"{'+'.join(map(str, v['levels']))}, bank {v['bank']:,}", fmt(v["synthetic_auc"]), fmt(v["oof_auc"]),
             fmt(v["held_out_auc"]), fmt(v["minutes"], 1)] for v in r["variants"]]
    corr = r["rank_correlation"]
    return (table(["recipe", "synthetic AUC", "OOF AUC (real)", "held-out AUC (real)", "minutes"], rows)
            + f"\nRank correlation of the synthetic AUC with the held-out AUC: Spearman "
              f"{fmt(corr['spearman vs held_out_auc'], 3)}, Kendall {fmt(corr['kendall vs held_out_auc'], 3)}; with "
              f"the OOF AUC: Spearman {fmt(corr['spearman vs oof_auc'], 3)}"
            + ("" if r.get("complete", True) else f" ({len(rows)} of the bench's recipes: the run was cut short)")
            + f".\n({machine(r)}, {r['date']}: {src('synthetic_yardstick_elpv.json')})\n")


def ceiling() -> str:
    """The anomaly member on ELPV: one run's noise over coreset draws, and the AUC by annotation grade
    (bench/anomaly_ceiling.py)."""
    r = load("anomaly_ceiling_lite0_224.json")
    per_seed = ", ".join(fmt(x["held_out_auc"]) for x in r["per_seed"])
    rows = [[f"held-out AUC, {len(r['per_seed'])} coreset draws", f"{per_seed} (sd {fmt(r['spread']['sd'])})"],
            ["held-out AUC of their mean", fmt(r["mean_of_seeds_auc"])],
            ["held-out AUC, certain cells alone (probability 0 against 1)", fmt(r["certain_cells_auc"])],
            *[[f"mean rank of the cells graded {g} ({v['cells']})", fmt(v["mean_rank_pct"], 3)]
              for g, v in r["by_grade"].items()]]
    return (table(["lite0, 224 px, levels 2+3, bank 4,096, every good training image", "figure"], rows)
            + f"\n({machine(r)}, {r['date']}: {src('anomaly_ceiling_lite0_224.json')})\n")


def draws_summary(r: dict) -> list[str]:
    """An anomaly_ceiling result's coreset draws: the range of one draw's held-out AUC, their mean, and the AUC
    of the mean of their scores."""
    aucs = [x["held_out_auc"] for x in r["per_seed"]]
    return [f"{fmt(min(aucs))}-{fmt(max(aucs))}", fmt(sum(aucs) / len(aucs)), fmt(r["mean_of_seeds_auc"])]


def backbones() -> str:
    """The member's backbone and bank at the plan's 288 px on ELPV, coreset draws each (bench/anomaly_ceiling.py):
    why the planner takes the largest lite that fits, with half the bank if need be (planner.upgrade_anomaly)."""
    names = [*(f"anomaly_ceiling_{a}_288.json" for a in ("lite0", "lite1", "lite2")),
             "anomaly_ceiling_lite2_288_b2048.json"]
    rows = [[r["arch"].replace("tf_efficientnet_", ""), f"{r['bank']:,}", *draws_summary(r),
             fmt(r["certain_cells_auc"])] for r in map(load, names)]
    r = load(names[0])
    return (table([f"backbone ({r['img_size']} px, levels 2+3, {len(r['per_seed'])} draws)", "bank",
                   "held-out AUC, one draw", "mean", "held-out AUC of the draws' mean", "certain cells alone"],
                  rows)
            + f"\n({machine(r)}, {r['date']}: " + ", ".join(src(n) for n in names) + ")\n")


def pool() -> str:
    """The coreset's pool, the one training-only purchase (bench/anomaly_ceiling.py --pool): why the plan does not
    spend a small set's leftover budget on it."""
    names = ["anomaly_ceiling_lite0_224.json", "anomaly_ceiling_lite0_224_pool64.json"]
    runs = [load(n) for n in names]
    rows = []
    for r in runs:
        x, draws = r.get("pool_per_bank", 16), len(r["per_seed"])
        rows.append([f"{x} x the bank ({x * r['bank']:,} patches)", str(draws), *draws_summary(r),
                     f"{fmt(r['minutes'] / draws, 1)} min"])
    r = runs[0]
    return (table([f"coreset pool (ELPV, {r['arch'].replace('tf_efficientnet_', '')}, {r['img_size']} px, bank "
                   f"{r['bank']:,})", "draws", "held-out AUC, one draw", "mean", "held-out AUC of the draws' mean",
                   "a draw's bank and scores"], rows)
            + f"\n({machine(r)}: " + ", ".join(f"{src(n)} {x['date']}" for n, x in zip(names, runs)) + ")\n")


def lite_speed() -> str:
    """One image through each lite the planner can buy for the member, by input and bank (bench/anomaly_speed.py)."""
    names = ["anomaly_speed_lites_cpu.json", "anomaly_speed_lites_304_cpu.json", "anomaly_speed_lites_320_cpu.json"]
    ms = {}
    for name in names:
        for x in load(name)["rows"]:
            ms[x["arch"], x["img_size"][0], x["bank"]] = x["ms_p50"]
    sides = sorted({k[1] for k in ms})
    rows = [[f"{a.replace('tf_efficientnet_', '')}, bank {b:,}",
             *(f"{ms[a, side, b]} ms" if (a, side, b) in ms else "-" for side in sides)]
            for a in dict.fromkeys(k[0] for k in ms) for b in sorted({k[2] for k in ms})
            if any((a, side, b) in ms for side in sides)]
    r = load(names[0])
    return (table(["backbone (levels 2+3), bank", *(f"{side} px" for side in sides)], rows)
            + f"\n(p50, one image per call, ONNX Runtime, {r['threads']} threads; {machine(r)}, {r['date']}: "
            + ", ".join(src(n) for n in names) + ")\n")


def discriminator() -> str:
    """The bank against a SimpleNet-style discriminator on the same features (bench/anomaly_discriminator.py)."""
    name = "anomaly_discriminator_lite0_224.json"
    r = load(name)
    b = r["bank"]
    rows = [[f"the member's bank ({b['patches']:,} patches, one draw)", fmt(b["held_out_auc"]),
             fmt(b["synthetic_auc"]), "", ""]]
    rows += [[f"discriminator, noise sigma {d['sigma']}", fmt(d["held_out_auc"]), fmt(d["synthetic_auc"]),
              fmt(d["rank_sum_with_bank_auc"]), fmt(d["rank_corr_with_bank"], 3)] for d in r["discriminator"]]
    out = (table(["lite0, 224 px, levels 2+3, ELPV", "held-out AUC", "synthetic AUC",
                  "rank sum with the bank: held-out AUC", "rank correlation with the bank"], rows)
           + f"\n({machine(r)}, {r['date']}: {src(name)})\n")
    sup = r.get("supervised", [])
    if not sup:
        return out

    def span(key: str, k: int) -> str:
        xs = [d[key] for d in sup if d["real_defects"] == k]
        return f"{fmt(min(xs))}-{fmt(max(xs))}"
    ks = sorted({d["real_defects"] for d in sup})
    draws = len(sup) // len(ks)
    rows = [[f"{k} real defect cell(s), {draws} draws", span("held_out_auc", k), span("rank_sum_with_bank_auc", k),
             span("defect_bank_held_out_auc", k)] for k in ks]
    return out + "\n" + table([f"the discriminator (sigma {sup[0]['sigma']}) also taught by", "held-out AUC",
                                "rank sum with the bank: held-out AUC",
                                f"the bank less 1/4 x log distance to their {r['defect_patches']} farthest patches"],
                               rows) + f"\n(the same run: {src(name)})\n"


TABLES = {"demo": demo, "discriminator": discriminator,
          "yardstick": yardstick, "ceiling": ceiling, "backbones": backbones, "lite-speed": lite_speed,
          "pool": pool,
          "results": results, "speed": speed,
          "line-speed": line_speed, "anomaly-bundle": anomaly_bundle, "anomaly-speed": anomaly_speed,
          "few-defects": few_defects,
          "plans": plans, "localise": localise, "bundle-speed": bundle_speed, "cpu-profiles": cpu_profiles,
          "test-margins": test_margins}


def render(text: str) -> str:
    def one(m):
        name = m.group("name")
        if name not in TABLES:
            raise SystemExit(f"table:{name}: no such table; known: {', '.join(TABLES)}")
        return m.group(1) + TABLES[name]() + m.group(4)
    return BLOCK.sub(one, text)


def stale(pages=PAGES) -> list[str]:
    out = []
    for page in pages:
        text = page.read_text()
        if render(text) != text:
            out.append(str(page.relative_to(ROOT)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.check:
        bad = stale()
        if bad:
            print(f"out of date (run python bench/tables.py): {', '.join(bad)}")
        return 1 if bad else 0
    for page in PAGES:
        text = page.read_text()
        new = render(text)
        if new != text:
            page.write_text(new)
            print(f"wrote the tables of {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
