"""The anomaly member's cost on a line: one image per call through ONNX Runtime, as the bundle scores
it (uint8 image in, normalisation and the bank's nearest-neighbour search inside the graph), per
backbone, tapped feature levels and bank size; and the bank's memory.

    python bench/anomaly_speed.py [--img-size 160] [--archs tf_efficientnet_lite0 ...] [--banks 1024 4096 16384]
    python bench/anomaly_speed.py --img-size 160 224 304 384 --archs tf_efficientnet_lite0 --layers 2,3 \
        --banks 16 4096 8192 16384 --out bench/results/anomaly_speed_sizes_cpu.json   # the planner's latency model

A bank of 16 patches times the forward pass alone (the search of 16 is ~0.1 ms).

The bank's contents do not change the speed (a matrix product and a minimum): it is filled with
random patches. Writes bench/results/anomaly_speed_cpu.json.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import save_result  # first: puts src/ on the path

from defectkit.runtime.runner import onnx_session, run_model
from defectkit.ship.export import ExportNet
from defectkit.ship.exporters import onnx_fp32
from defectkit.train.anomaly import PatchCoreNet, backbone


def one(arch: str, layers: list[int], bank: int, hw: tuple[int, int], n: int, threads: int) -> dict:
    model, info = backbone(arch, layers, "none")
    probe = PatchCoreNet(model, layers, torch.zeros(1, 1))
    with torch.no_grad():
        dim = probe.patches(torch.zeros(1, 3, *hw)).shape[1]
    net = PatchCoreNet(model, layers, torch.randn(bank, dim), scale=1.0)
    wrapped = ExportNet(net, 1, info.mean, info.std)
    images = np.random.default_rng(0).integers(0, 255, (n, *hw, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx_fp32(wrapped.eval(), torch.zeros((2, *hw, 3), dtype=torch.uint8), path)
        mb = path.stat().st_size / 2**20
        sess = onnx_session(path, threads)
        run_model(sess, images[:3], 1)  # warm-up
        secs = []
        for img in images:
            t0 = time.perf_counter()
            run_model(sess, img[None], 1)
            secs.append(time.perf_counter() - t0)
    return {"arch": arch, "layers": layers, "bank": bank, "dim": dim, "img_size": list(hw),
            "ms_p50": round(1000 * statistics.median(secs), 2),
            "ms_p99": round(1000 * float(np.percentile(secs, 99)), 2),
            "img_s": round(len(secs) / sum(secs), 1), "bank_mb": round(bank * dim * 4 / 2**20, 2),
            "onnx_mb": round(mb, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--img-size", type=int, nargs="+", default=[160], help="square input sides")
    p.add_argument("--archs", nargs="+", default=["tf_efficientnet_lite0", "tf_efficientnet_lite1"])
    p.add_argument("--layers", nargs="+", default=["2,3", "1,2"], help="tapped feature levels, comma-separated")
    p.add_argument("--banks", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--n", type=int, default=64, help="images timed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    for side in args.img_size:
        for arch in args.archs:
            for layers in args.layers:
                for bank in args.banks:
                    levels = [int(x) for x in layers.split(",")]
                    rows.append(one(arch, levels, bank, (side, side), args.n, args.threads))
                    print(rows[-1], flush=True)
    default = next((r for r in rows if r["arch"] == "tf_efficientnet_lite0" and r["layers"] == [2, 3]
                    and r["bank"] == 4096), rows[0])
    save_result({"threads": args.threads, "rows": rows, "target_ms": 50},
                f"anomaly member, one image per call: {default['arch']} levels {default['layers']} bank "
                f"{default['bank']} at {default['img_size'][0]} px: {default['ms_p50']} ms (target <= 50)",
                args.out, "anomaly_speed_cpu")


if __name__ == "__main__":
    main()
