"""The thesis case: about 100 images and a handful of defects (default 5 in 100), as a new user brings
them: prepare.py folder; the supervised path (preset cpu-fast: its one-line message); the printed
command (preset auto: the anomaly member alone); then predict.py on a fresh set drawn the same way
(`--fresh` good and `--fresh` defect images): the held-out AUC (the split keeps 1 of the 5 defects),
the fresh AUC, and the flags at the chosen operating point (at most 1 % false alarms among the good
OOF scores); then the blend's bundle (ONNX fp32), loaded as a line keeps it, times one fresh image per call
on 2 threads (the plan keeps it within 50 ms: its models, p50 and p99). Writes
bench/results/few_defects_<data>[_<img>].json.

    python bench/few_defects.py [--data scratch|blob] [--n 100] [--defects 5] [--fresh 100] [--img-size H W]

--data scratch: 1,200 x 480 px hairline scratches on a textured surface (testing.scratch_image);
blob: 96 px grey noise with bright disks (testing.toy_blob). --img-size overrides the plan's input.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from line_speed import export_variant, measure

from benchlib import save_result  # first: puts src/ on the path

from defectkit.cli.predict import main as predict_main
from defectkit.cli.prepare import main as prepare_main
from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.core.metrics import auc
from defectkit.core.records import FoldRecord
from defectkit.pipeline.grid import run_grid
from defectkit.testing import scratch_image, toy_blob


def draw(root: Path, data: str, n_good: int, n_defect: int, seed: int) -> Path:
    """root/good, root/defect of made-up images (JPEG 95 for scratches, PNG for blobs)."""
    rng = np.random.default_rng(seed)
    for cls, count in (("good", n_good), ("defect", n_defect)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            if data == "scratch":
                cv2.imwrite(str(root / cls / f"{cls}{seed}_{i:04d}.jpg"), scratch_image(rng, cls == "defect"),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
            else:
                cv2.imwrite(str(root / cls / f"{cls}{seed}_{i:04d}.png"), toy_blob(rng, cls == "defect")[0])
    return root


def supervised_message(cfg_path: Path, work: Path) -> str:
    try:
        run_grid(load_config(cfg_path, {"preset": "cpu-fast"}), work, progress=False, say=lambda *a: None)
    except InputError as e:
        return str(e)
    return "(the supervised path ran)"


def fresh_scores(cfg_path: Path, work: Path, fresh: Path) -> dict:
    out = work / "fresh.csv"
    assert predict_main(["--config", str(cfg_path), "--workdir", str(work), str(fresh / "good"), str(fresh / "defect"),
                         "--out", str(out), "--quiet"]) == 0
    p = pd.read_csv(out)
    y = p["id"].str.startswith("defect").to_numpy(int)
    return {"fresh_auc": round(auc(y, p["prob"].to_numpy()), 4), "fresh_good": int((y == 0).sum()),
            "fresh_defect": int(y.sum()), "fresh_false_alarms": round(float(p["defect"][y == 0].mean()), 4),
            "fresh_recall": round(float(p["defect"][y == 1].mean()), 4)}


def bundle_speed(cfg_path: Path, work: Path, fresh: Path, n: int = 48) -> dict:
    """The blend's bundle (ONNX fp32): its models, and one fresh image per call on 2 threads (p50, p99 ms)."""
    from defectkit.core.layout import Layout
    from defectkit.runtime.imaging import read_image
    comp = load_config(cfg_path).competition
    images = [read_image(q) for d in ("good", "defect") for q in sorted((fresh / d).glob("*"))[:n // 2]]
    export_variant(Layout(work), comp, ("ensemble", "onnx", "fp32"), work / "bundle")
    row = measure(work / "bundle", images, None, n, 2)
    return {k: row[k] for k in ("models", "model_mb", "p50_ms", "p99_ms", "img_s_batch1")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("scratch", "blob"), default="scratch")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--defects", type=int, default=5)
    p.add_argument("--fresh", type=int, default=100, help="fresh images of each class scored by predict.py")
    p.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), help="the member's input instead of the plan's")
    p.add_argument("--workdir", help="default: /tmp/few_<data>")
    p.add_argument("--out")
    args = p.parse_args(argv)
    work = Path(args.workdir or f"/tmp/few_{args.data}")
    shutil.rmtree(work, ignore_errors=True)
    draw(work / "src", args.data, args.n - args.defects, args.defects, seed=0)
    fresh = draw(work / "fresh", args.data, args.fresh, args.fresh, seed=1)
    assert prepare_main(["folder", str(work / "src"), "--good", "good", "--defect", "defect", "--name", "thesis",
                         "--workdir", str(work)]) == 0
    cfg_path = work / "configs/thesis.yaml"
    message = supervised_message(cfg_path, work)
    over = {"img_size": list(args.img_size)} if args.img_size else {}
    t0 = time.time()
    summary = run_grid(load_config(cfg_path, over), work, progress=False)
    wall = time.time() - t0
    exp = summary["table"][0]["experiment"]
    recs = [FoldRecord.read(q) for q in sorted((work / "oof" / exp).glob("fold[0-9].json"))]
    result = {"data": args.data, "images": args.n, "defects": args.defects, "supervised_message": message,
              "experiment": exp,
              "plan": {k: (summary.get("plan") or {}).get(k) for k in ("hw", "archs", "member", "refit", "draws")},
              "wall_min": round(wall / 60, 2), "fold_secs": [r.secs for r in recs], "bank_patches": recs[0].n_train,
              "refit_secs": [FoldRecord.read(q).secs for q in sorted((work / "oof").glob("*/foldall.json"))],
              "oof_auc": summary["table"][0]["oof_auc"], "held_out_auc": summary["table"][-1]["test_auc"],
              "operating_points": summary["blend"]["operating_points"], **fresh_scores(cfg_path, work, fresh)}
    plan = summary.get("plan") or {}
    if plan.get("total_s"):  # how the plan spent the budget, and how close its estimate came to the wall time
        result.update(plan_min=round(plan["total_s"] / 60, 2), budget_min=round(plan["budget_s"] / 60, 2),
                      budget_used=round(wall / plan["budget_s"], 3),
                      estimate_error=round(plan["total_s"] / wall - 1, 3))
    result.update(blend_weights=summary["blend"]["weights"],
                  yardstick=(summary["blend"]["cross_check"] or {}).get("synthetic"),
                  bundle=bundle_speed(cfg_path, work, fresh))
    tag = f"_{args.img_size[0]}x{args.img_size[1]}" if args.img_size else ""
    save_result(result, f"{args.data} {args.defects} defects in {args.n}: {exp}, held-out AUC "
                f"{result['held_out_auc']}, fresh AUC {result['fresh_auc']} (false alarms "
                f"{result['fresh_false_alarms']}, recall {result['fresh_recall']}), {result['wall_min']} min; the "
                f"bundle: {result['bundle']['models']} model(s), {result['bundle']['p50_ms']} ms an image (p50)",
                args.out, f"few_defects_{args.data}{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
