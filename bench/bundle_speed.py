"""The exported bundle's speed: the blended ensemble through ONNX Runtime against the same
ensemble through torch eager (same fold models, TTA, batch, images), and one lite0 model's
single-image latency at 224 px.

    python src/export.py --competition elpv          # after make demo: submissions/bundle
    python bench/bundle_speed.py --competition elpv [--n 256] [--batch-size 32]

Both sides score the same images already decoded and resized (decoding is the same code in
both); each fold model is loaded before the clock starts. Writes
bench/results/bundle_speed_cpu_batch<B>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import save_result  # first: puts src/ on the path

from defectkit.core.config import load_config, resolve_config_path
from defectkit.core.layout import Layout
from defectkit.ensemble.members import load_ensemble
from defectkit.runtime import runner
from defectkit.runtime.combine import blend_scores
from defectkit.runtime.cpus import usable_cpus
from defectkit.runtime.imaging import read_image
from defectkit.ship.export import ExportNet
from defectkit.ship.exporters import OnnxExporter
from defectkit.ship.predict import fold_probs, load_member
from defectkit.train import runtime
from defectkit.train.models import create_model


def time_it(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ensemble_speeds(layout: Layout, bundle: Path, images: list[np.ndarray], batch: int, threads: int,
                    repeats: int) -> dict:
    ens = load_ensemble(layout)
    spec = runner.load_bundle(bundle)
    loaded = {e: [load_member(m) for m in folds] for e, folds in ens.members.items()}
    fitted = {}
    for folds in loaded.values():
        for _, ck in folds:
            pre = ck.preprocess.geometry
            fitted.setdefault(pre, np.stack([pre.fit(img) for img in images]))
    refs = {e: [m.ref for m in folds] for e, folds in ens.members.items()}
    weights = [ens.weights[e] for e in ens.members]
    dev = torch.device("cpu")

    def torch_side():
        members = [([fold_probs(m, ck, fitted[ck.preprocess.geometry], dev, batch) for m, ck in loaded[e]], refs[e])
                   for e in ens.members]
        return blend_scores(ens.space, ens.link, weights, members, ens.intercept)

    sessions = {e.name: [(runner.session(bundle / f.model, threads, spec.runtime, alone=False),
                          e.preprocess)
                         for f in e.folds] for e in spec.experiments}

    def ort_side():
        members = [([runner.run_model(s, fitted[key], batch) for s, key in sessions[e]], refs[e])
                   for e in ens.members]
        return blend_scores(ens.space, ens.link, weights, members, ens.intercept)

    diff = float(np.abs(torch_side() - ort_side()).max())
    t_torch, t_ort = time_it(torch_side, repeats), time_it(ort_side, repeats)
    n_models = sum(len(v) for v in loaded.values())
    return {"images": len(images), "fold_models": n_models, "batch_size": batch, "threads": threads,
            "torch_eager_img_s": round(len(images) / t_torch, 1), "onnxruntime_img_s": round(len(images) / t_ort, 1),
            "speedup": round(t_torch / t_ort, 2), "target_speedup": 2.0, "max_abs_diff": diff,
            "model_mb": {f.model: f.mb for e in spec.experiments for f in e.folds}}


def single_image_latency(arch: str, size: int, threads: int, repeats: int, tmp: Path) -> dict:
    model, info = create_model(arch, pretrained="auto")
    net = ExportNet(model.eval(), 1, info.mean, info.std).eval()
    x = torch.zeros((1, size, size, 3), dtype=torch.uint8)
    path = tmp / f"{arch}_{size}.onnx"
    OnnxExporter().export(net, x, path)
    sess = runner.session(path, threads)
    xn = x.numpy()
    ms_ort = time_it(lambda: sess.run(None, {"images": xn}), repeats) * 1000
    with torch.inference_mode():
        ms_torch = time_it(lambda: net(x), repeats) * 1000
    return {"arch": arch, "img_size": size, "tta": 1, "onnxruntime_ms": round(ms_ort, 2),
            "torch_eager_ms": round(ms_torch, 2), "target_ms": 20, "onnx_mb": round(path.stat().st_size / 2**20, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--competition", default="elpv")
    p.add_argument("--workdir", default=str(Path(__file__).resolve().parent.parent))
    p.add_argument("--bundle", help="default: submissions/bundle")
    p.add_argument("--n", type=int, default=64, help="test images scored")
    p.add_argument("--batch-size", type=int, default=1, help="images per run, on both sides (the runner's: 1)")
    p.add_argument("--threads", type=int, default=usable_cpus())
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args(argv)
    runtime.configure(torch.device("cpu"), args.threads)
    cfg = load_config(resolve_config_path(args.competition, None, args.workdir))
    layout = Layout(args.workdir)
    files = sorted(layout.test_dir(cfg.competition).glob(f"*{cfg.competition.image_ext}"))[:args.n]
    images = [read_image(f) for f in files]
    bundle = Path(args.bundle) if args.bundle else layout.bundle
    ens = ensemble_speeds(layout, bundle, images, args.batch_size, args.threads, args.repeats)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        lat = single_image_latency("tf_efficientnet_lite0", 224, args.threads, 30, Path(tmp))
    result = {"competition": cfg.competition.name, "ensemble": ens, "latency": lat, "torch": torch.__version__}
    save_result(result, f"{ens['fold_models']} fold models, {ens['images']} images: onnxruntime "
                f"{ens['onnxruntime_img_s']} img/s vs torch eager {ens['torch_eager_img_s']} img/s (x{ens['speedup']}, "
                f"target x2); lite0 224 px single image {lat['onnxruntime_ms']} ms (torch {lat['torch_eager_ms']} ms, "
                "target 20 ms)", args.out, f"bundle_speed_cpu_batch{args.batch_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
