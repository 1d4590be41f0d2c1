"""What `preset: auto` buys with a time budget: a whole run as a new user makes it (prepare, then the
printed command), with the planner (`--mode auto`) or with the recipe the earlier `auto` gave
(`--mode before`: cpu-fast at 160 px of area, the images' aspect ratio), on made-up hairline
scratches or on ELPV. Writes the plan, its estimate, the actual wall time, the held-out AUC and
accuracy to bench/results/plan_<data>_<mode>[_<budget>].json.

    python bench/plan_budget.py --data scratch [--mode auto|before] [--budget 10] [--workdir /tmp/plan_scratch]
    python bench/plan_budget.py --data elpv --budget 60
    python bench/plan_budget.py --data elpv --member anomaly     # the anomaly member alone, planned

--member anomaly plans the anomaly member alone (learnt from the good training images; the defects are
its OOF and held-out rows), as preset auto does when defects are too few for classifiers.

--data scratch: 300 images of 1,200 x 480 px, 15 % with hairline scratches 1-2 px wide on a
textured surface (defectkit.testing.make_scratch_folder), prepared with prepare.py folder.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchlib import save_result  # first: puts src/ on the path

from defectkit.cli.prepare import main as prepare_main
from defectkit.core.config import load_config
from defectkit.pipeline.grid import run_grid
from defectkit.testing import make_scratch_folder

BEFORE = {"preset": "cpu-fast", "resize": "squash"}  # + the images' aspect ratio, as prepare.py wrote it


def prepare(data: str, work: Path, n: int) -> Path:
    """The competition's config, as a new user gets it (prepare.py)."""
    if data == "elpv":
        return Path(__file__).resolve().parent.parent / "configs/elpv_cpu.yaml"
    src = work / "src"
    if not (src / "good").exists():
        make_scratch_folder(src, n=n)
    assert prepare_main(["folder", str(src), "--good", "good", "--defect", "defect", "--name", "scratch",
                         "--workdir", str(work)]) == 0
    return work / "configs/scratch.yaml"


def overrides(data: str, mode: str, budget: float, member: str | None) -> dict:
    if mode == "auto":
        return {"preset": "auto", "time_budget": budget, **({"member": member} if member else {})}
    over = dict(BEFORE)
    if data == "scratch":
        over["aspect_ratio"] = 2.5  # 1,200 / 480
    return over


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("scratch", "elpv"), default="scratch")
    p.add_argument("--mode", choices=("auto", "before"), default="auto")
    p.add_argument("--budget", type=float, default=10.0, help="minutes (auto)")
    p.add_argument("--n", type=int, default=300, help="scratch images")
    p.add_argument("--member", choices=("anomaly",), help="plan this member kind alone (auto)")
    p.add_argument("--workdir", help="default: /tmp/plan_<data>")
    p.add_argument("--out")
    args = p.parse_args(argv)
    work = Path(args.workdir or f"/tmp/plan_{args.data}")
    cfg_path = prepare(args.data, work, args.n)
    cfg = load_config(cfg_path, overrides(args.data, args.mode, args.budget, args.member))
    t0 = time.time()
    summary = run_grid(cfg, work, progress=False)
    wall = time.time() - t0
    blend = summary["table"][-1]
    plan = summary.get("plan") or {}
    result = {"data": args.data, "mode": args.mode, "budget_min": args.budget if args.mode == "auto" else None,
              "plan": {k: plan.get(k) for k in ("hw", "archs", "epochs", "tta", "pool", "notes", "member", "refit",
                                                "draws", "bank")} if plan else None,
              "estimate_min": round(plan["total_s"] / 60, 2) if plan else None, "wall_min": round(wall / 60, 2),
              "estimate_error": round(plan["total_s"] / wall - 1, 3) if plan else None,
              "held_out_auc": blend.get("test_auc"), "held_out_acc": blend.get("test_acc"),
              "oof_auc": blend.get("oof_auc"), "table": summary["table"]}
    tag = (f"_{args.budget:g}" if args.mode == "auto" and args.budget != 10 else "") + \
        (f"_{args.member}" if args.member else "")
    save_result(result, f"{args.data} ({args.mode}{tag}): held-out AUC {result['held_out_auc']}, "
                f"{result['wall_min']} min (estimate {result['estimate_min']})", args.out,
                f"plan_{args.data}_{args.mode}{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
