"""Does the pooling of the last feature map matter for defects that cover under 1 % of the image?
The same recipe (lite0, the CPU scheme: frozen stages cached, the rest trained) with each global
pooling, on made-up hairline scratches (defectkit.testing.scratch_image) and on ELPV; OOF AUC over
all folds and held-out AUC. Writes bench/results/pooling.json.

    python bench/pooling.py [--n 240] [--hw 320 800] [--epochs 6] [--elpv] [--pools avg max avgmax]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchlib import save_result  # first: puts src/ on the path

from defectkit.cli.prepare import main as prepare_main
from defectkit.core.config import load_config
from defectkit.pipeline.grid import run_grid
from defectkit.testing import make_scratch_folder

ROOT = Path(__file__).resolve().parent.parent


def scratch_config(work: Path, n: int, hw: tuple[int, int]) -> Path:
    if not (work / "src/good").exists():
        make_scratch_folder(work / "src", n=n, hw=hw, seed=1)
    assert prepare_main(["folder", str(work / "src"), "--good", "good", "--defect", "defect", "--name", "thin",
                         "--workdir", str(work)]) == 0
    return work / "configs/thin.yaml"


def one(cfg_path: Path, work: Path, pool: str, over: dict) -> dict:
    cfg = load_config(cfg_path, {"preset": "cpu-fast", "archs": ["tf_efficientnet_lite0"], "pool": pool,
                                 "name": f"{{arch}}_{pool}_{{img_size}}", **over})
    row = run_grid(cfg, work, progress=False, say=lambda *a: None)["table"][0]
    return {"pool": pool, "oof_auc": row["oof_auc"], "held_out_auc": row["test_auc"], "train_min": row["train_min"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=240)
    p.add_argument("--hw", type=int, nargs=2, default=(320, 800))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--pools", nargs="+", default=["avg", "max", "avgmax"])
    p.add_argument("--elpv", action="store_true", help="also ELPV at 160 px (the demo's size)")
    p.add_argument("--workdir", default="/tmp/pooling")
    p.add_argument("--out")
    args = p.parse_args(argv)
    work = Path(args.workdir)
    h, w = args.hw
    thin = scratch_config(work, args.n, (h, w))
    rows = [{"data": f"scratches {w} x {h}", **one(thin, work, pool, {"img_size": [h, w], "epochs": args.epochs})}
            for pool in args.pools]
    if args.elpv:
        rows += [{"data": "elpv 160 px", **one(ROOT / "configs/elpv_cpu.yaml", ROOT, pool, {})} for pool in args.pools]
    for r in rows:
        print(r)
    best = {d: max((r for r in rows if r["data"] == d), key=lambda r: r["oof_auc"])["pool"]
            for d in dict.fromkeys(r["data"] for r in rows)}
    save_result({"rows": rows, "best_by_oof": best}, f"pooling, best by OOF AUC: {best}", args.out, "pooling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
