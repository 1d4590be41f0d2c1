"""How well the synthetic-defect yardstick ranks recipes of the anomaly member as real defects rank them.

    python bench/synthetic_yardstick.py [--config configs/elpv_cpu.yaml] [--workdir DIR] [--quick]

Each recipe variant (input size, backbone, tapped levels, bank size) trains the anomaly member alone on the
competition: every fold learns from its good training images, and its held-out rows keep their real
defects. Per recipe, from its fold records and files: the AUC on synthetic defects made on the held-out
good images (FoldRecord.synthetic_auc, mean over folds: what a user without defects would see), the OOF
AUC on the real defects (mean over folds), and the held-out test split's AUC of the folds' mean prediction
(solution.csv). The rank correlations of the synthetic figure with the real ones across recipes say what
the yardstick is worth for choosing among members. Writes bench/results/synthetic_yardstick_<competition>.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchlib import save_result  # first: puts src/ on the path

from defectkit.core.config import load_config
from defectkit.core.layout import Layout
from defectkit.core.metrics import auc
from defectkit.core.records import FoldRecord
from defectkit.pipeline.grid import run_grid

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = [  # (arch, img_size, tapped levels, bank patches)
    ("tf_efficientnet_lite0", 160, [2, 3], 4096),
    ("tf_efficientnet_lite0", 224, [2, 3], 4096),
    ("tf_efficientnet_lite0", 300, [2, 3], 4096),
    ("tf_efficientnet_lite0", 224, [1, 2], 4096),
    ("tf_efficientnet_lite0", 224, [3, 4], 4096),
    ("tf_efficientnet_lite0", 224, [2, 3], 256),
    ("tf_efficientnet_lite1", 224, [2, 3], 4096),
]


def held_out_auc(layout: Layout, comp, exp: str) -> float:
    """The held-out split's AUC of the mean of the folds' test predictions."""
    preds = [pd.read_csv(p, dtype={"id": str}).set_index("id")["pred"]
             for p in sorted((layout.oof_root / exp).glob("test_fold[0-9]*.csv"))]
    mean = pd.concat(preds, axis=1).mean(axis=1)
    sol = pd.read_csv(layout.data_dir(comp) / "solution.csv", dtype={"id": str}).set_index("id")
    return float(auc(sol.loc[mean.index, "target"].to_numpy(), mean.to_numpy()))


def run_variant(config: Path, base: Path, i: int, variant: tuple) -> dict:
    arch, size, levels, bank = variant
    name = f"yard{i}_{arch.split('_')[-1]}_{size}_l{''.join(map(str, levels))}_b{bank}"
    cfg = load_config(config, {"preset": "cpu-fast", "member": "anomaly", "archs": [arch], "img_size": size,
                               "anomaly_layers": levels, "anomaly_bank": bank, "tta": 1, "name": name,
                               "with_anomaly": False})
    t0 = time.time()
    run_grid(cfg, base, progress=False, say=lambda *a: None)
    layout = Layout(base)
    recs = [FoldRecord.read(p) for p in layout.fold_metas(name)]
    # a variant resumed in an earlier --workdir: the folds' own training time, not this call's
    minutes = sum(r.secs for r in recs) / 60 if time.time() - t0 < 30 else (time.time() - t0) / 60
    row = {"recipe": name, "arch": arch, "img_size": size, "levels": levels, "bank": bank,
           "synthetic_auc": round(float(np.mean([r.synthetic_auc for r in recs])), 4),
           "oof_auc": round(float(np.mean([r.oof_auc for r in recs])), 4),
           "held_out_auc": round(held_out_auc(layout, cfg.competition, name), 4),
           "minutes": round(minutes, 1)}
    print(row, flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs/elpv_cpu.yaml"), help="relative to the repository root")
    p.add_argument("--workdir", help="default: a temporary folder; a given one keeps finished folds (a rerun resumes)")
    p.add_argument("--quick", action="store_true", help="the first three variants only")
    p.add_argument("--out")
    args = p.parse_args(argv)
    variants = VARIANTS[:3] if args.quick else VARIANTS
    config = Path(args.config) if Path(args.config).is_absolute() else ROOT / args.config
    with tempfile.TemporaryDirectory() as tmp:
        base, rows = Path(args.workdir or tmp), []
        for i, v in enumerate(variants):  # the JSON is rewritten after every variant: a cut-off run keeps its rows
            rows.append(run_variant(config, base, i, v))
            if len(rows) >= 2:
                write(rows, config, args.out, complete=len(rows) == len(variants))
    return 0


def write(rows: list[dict], config: Path, out: str | None, complete: bool) -> None:
    from scipy.stats import kendalltau, spearmanr
    table = pd.DataFrame(rows)
    corr = {f"{kind} vs {real}": round(float(fn(table.synthetic_auc, table[real])[0]), 3)
            for real in ("oof_auc", "held_out_auc") for kind, fn in (("spearman", spearmanr), ("kendall", kendalltau))}
    best_syn, best_real = table.loc[table.synthetic_auc.idxmax()], table.loc[table.held_out_auc.idxmax()]
    competition = load_config(config).competition.name
    save_result({"competition": competition, "complete": complete, "variants": rows, "rank_correlation": corr,
                 "chosen_by_synthetic": best_syn.recipe, "its_held_out_auc": best_syn.held_out_auc,
                 "best_held_out": best_real.recipe, "best_held_out_auc": best_real.held_out_auc},
                f"{competition}: {len(rows)} recipes of the anomaly member; synthetic vs real rank correlation "
                f"{corr}; the synthetic yardstick picks {best_syn.recipe} (held-out {best_syn.held_out_auc}), the "
                f"best is {best_real.recipe} ({best_real.held_out_auc})", out,
                f"synthetic_yardstick_{competition}")


if __name__ == "__main__":
    sys.exit(main())
