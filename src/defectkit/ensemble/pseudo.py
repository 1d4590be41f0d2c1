"""Pseudo-labels: the test rows the current blend is sure of (thresholds chosen on OOF predictions at a
false-positive rate), as a table that a second round of experiments trains on."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from defectkit.core.checks import InputError
from defectkit.core.config import Competition
from defectkit.core.fileio import write_csv_atomic
from defectkit.core.layout import Layout
from defectkit.core.metrics import threshold_for_recall
from defectkit.ensemble.experiments import load_inputs
from defectkit.ensemble.methods import compute_blend


def threshold_for_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> float:
    """The lowest threshold t such that at most a share `fpr` of the negatives score above t."""
    neg = np.sort(s[y == 0])[::-1]
    return float(neg[min(int(np.floor(fpr * len(neg))), len(neg) - 1)])


@dataclass(frozen=True)
class PseudoRule:
    """Which test rows become pseudo-labels: a defect above the OOF threshold at false-positive rate
    `defect_fpr`, a good image below the one that keeps OOF defect recall `good_recall`."""
    defect_fpr: float = 0.01
    good_recall: float = 0.99


def make_pseudo(comp: Competition, base: Path, method: str = "hill", rule: PseudoRule = PseudoRule(),
                out: Path | None = None, say=print) -> pd.DataFrame:
    """input/<comp>/pseudo.csv (id, target, score) from the blend of every complete experiment."""
    defect_fpr, good_recall = rule.defect_fpr, rule.good_recall
    if not (0 < defect_fpr < 1 and 0 < good_recall < 1):
        raise InputError("--defect-fpr and --good-recall: expected fractions between 0 and 1")
    layout = Layout(base)
    inp = load_inputs(comp, layout, names=_plain(layout) or None)
    b = compute_blend(inp, method, "accuracy")
    hi = threshold_for_fpr(inp.y, b["oof"], defect_fpr)
    lo = threshold_for_recall(inp.y, b["oof"], good_recall)
    test = np.asarray(b["test"])
    defect, good = test > hi, (test < lo) & ~(test > hi)
    df = pd.DataFrame({"id": np.asarray(inp.test_ids)[defect | good], "target": defect[defect | good].astype(int),
                       "score": test[defect | good]})
    path = out or layout.data_dir(comp) / "pseudo.csv"
    write_csv_atomic(df, path)
    say(f"wrote {path}: {int(defect.sum())} pseudo-defects (score > {hi:.4f}: OOF FPR {defect_fpr:g}) and "
        f"{int(good.sum())} pseudo-good (score < {lo:.4f}: OOF recall {good_recall:g}) of {len(test)} test rows; "
        f"blend {b['method']} of {', '.join(e.name for e in inp.exps)}")
    return df


def _plain(layout: Layout) -> list[str]:
    """Experiments that were not themselves trained on pseudo-labels (a second round is not fed back)."""
    return [d.name for d in layout.experiment_dirs() if not d.name.endswith("_pl")]


