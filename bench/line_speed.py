"""Line speed: the blended ensemble's bundle against its distilled student's (fp32 and int8, through
onnxruntime and OpenVINO where installed), on one machine in one run.

    make demo                                                   # the ensemble (submissions/blend.json)
    python src/distill.py --config configs/elpv_cpu.yaml --cv    # its student (submissions/student.json)
    python bench/line_speed.py --config configs/elpv_cpu.yaml
    python bench/line_speed.py --blend B.json --variants "ensemble onnx fp32" "ensemble onnx int8" --out NAME

Each bundle is exported afresh into a temporary folder by the library export.py calls, then loaded
once as a line keeps it (runner.Scorer: sessions open, a quantised model checked against its bound)
and fed decoded test images: one image per call (images/s, p50/p99 latency of a call, which
includes fitting the image to the model's input) and batches of 8 (images/s). Held-out AUC and
accuracy at the bundle's chosen threshold come from the batch-of-8 scores of every test image
against solution.csv. Writes bench/results/line_speed_cpu.json.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import save_result  # first: puts src/ on the path

from defectkit.core import metrics
from defectkit.core.checks import InputError
from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.ensemble.members import load_ensemble
from defectkit.ensemble.report import read_solution
from defectkit.runtime.cpus import usable_cpus
from defectkit.runtime.imaging import read_image
from defectkit.runtime.runner import Scorer
from defectkit.ship.export import ExportOptions, calib_images, export, student_ensemble

VARIANTS = ["ensemble onnx fp32", "student onnx fp32", "student onnx int8", "student openvino fp32",
            "student openvino int8"]  # the default; also "ensemble onnx int8", "ensemble openvino fp32", ...


def per_image(scorer: Scorer, images: list[np.ndarray]) -> dict:
    for img in images[:3]:
        scorer([img])  # warm-up
    secs = []
    for img in images:
        t0 = time.perf_counter()
        scorer([img])
        secs.append(time.perf_counter() - t0)
    return {"img_s_batch1": round(len(secs) / sum(secs), 1), "p50_ms": round(1000 * float(np.percentile(secs, 50)), 2),
            "p99_ms": round(1000 * float(np.percentile(secs, 99)), 2)}


def batched(scorer: Scorer, images: list[np.ndarray], batch: int = 8) -> tuple[dict, np.ndarray]:
    scorer(images[:batch])  # warm-up
    t0, out = time.perf_counter(), []
    for s in range(0, len(images), batch):
        out.append(scorer(images[s:s + batch]))
    return {f"img_s_batch{batch}": round(len(images) / (time.perf_counter() - t0), 1)}, np.concatenate(out)


def measure(folder: Path, images: list[np.ndarray], y: np.ndarray | None, n_timed: int, threads: int) -> dict:
    scorer = Scorer(folder, threads)
    spec = scorer.spec
    models = [f for e in spec.experiments for f in e.folds + [e.refit] if f]
    row = {"models": len(models), "tta": max(f.tta for f in models), "model_mb": round(sum(f.mb for f in models), 2)}
    row.update(per_image(scorer, images[:n_timed]))
    speed, prob = batched(scorer, images)
    row.update(speed)
    if y is not None:
        t = scorer.threshold("chosen")
        row.update({"held_out_auc": round(metrics.auc(y, prob), 5), "threshold": round(t, 6),
                    "held_out_acc": metrics.confusion_metrics(y, prob, t)["accuracy"]})
    return row


def export_variant(layout: Layout, comp, variant: tuple, out: Path, blend: str | None = None) -> bool:
    which, target, precision = variant
    if target == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False
    ens = student_ensemble(layout) if which == "student" else load_ensemble(layout, blend)
    export(ens, out, comp.image_ext, say=lambda *a: None,
           opts=ExportOptions(target, precision, calib_images(layout, comp)))
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/elpv_cpu.yaml")
    p.add_argument("--workdir", default=".")
    p.add_argument("--n", type=int, default=128, help="images timed one per call")
    p.add_argument("--threads", type=int, default=0, help="0 = every core")
    p.add_argument("--blend", help="the ensemble's blend.json (default: submissions/blend.json)")
    p.add_argument("--variants", nargs="+", default=VARIANTS, help="'ensemble|student onnx|openvino fp32|int8' each")
    p.add_argument("--out")
    args = p.parse_args()
    comp, layout = load_config(args.config).competition, Layout(args.workdir)
    ids = sorted(p.stem for p in layout.test_dir(comp).glob(f"*{comp.image_ext}"))
    sol = read_solution(comp, layout, ids)
    y = None if sol is None else sol.loc[ids, comp.submission_columns[1]].astype(int).to_numpy()
    images = [read_image(layout.test_dir(comp) / f"{i}{comp.image_ext}") for i in ids]
    rows = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for variant in args.variants:
            folder = Path(tmp) / variant.replace(" ", "_")
            try:
                exported = export_variant(layout, comp, tuple(variant.split()), folder, args.blend)
            except InputError as e:  # export refuses it (an int8 model too far from fp32): say so
                rows[variant] = {"refused": str(e)}
                print(f"{variant}: refused: {e}", flush=True)
                continue
            if exported:
                rows[variant] = measure(folder, images, y, args.n, args.threads)
                print(f"{variant}: {rows[variant]}", flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    measured = [k for k, r in rows.items() if "refused" not in r]
    base_name, last = measured[0], measured[-1]
    base, best = rows[base_name], rows[last]
    for k in measured:
        rows[k]["speedup_batch1"] = round(rows[k]["img_s_batch1"] / base["img_s_batch1"], 1)
    save_result({"competition": comp.name, "blend": args.blend or "submissions/blend.json", "test_images": len(images),
                 "timed_batch1": min(args.n, len(images)), "threads": args.threads or usable_cpus(), "variants": rows},
                f"line speed: {base_name} {base['img_s_batch1']} img/s, {last} {best['img_s_batch1']} img/s "
                f"(x{best['speedup_batch1']}), held-out AUC {base.get('held_out_auc')} -> {best.get('held_out_auc')}",
                args.out, "line_speed_cpu")


if __name__ == "__main__":
    main()
