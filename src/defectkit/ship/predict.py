"""Score new images with the blended ensemble that blend.py chose (submissions/blend.json), with torch:
the same scores as the submission and the bundle."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from defectkit.core.checks import InputError
from defectkit.core.config import Competition
from defectkit.core.fileio import write_csv_atomic
from defectkit.core.layout import Layout
from defectkit.ensemble.members import Ensemble, Member, load_ensemble
from defectkit.runtime.image_inputs import InputsError, list_inputs, read_all, read_meta
from defectkit.runtime.runner import ScoreOptions, check_out
from defectkit.runtime.spec import BundleError
from defectkit.train import engine, runtime
from defectkit.train.checkpoint import Checkpoint
from defectkit.train.features import as_cached, cache_batch, frozen_views
from defectkit.train.models import CachedPrefixNet, load_fold_model


def fold_probs(model: torch.nn.Module, ck: Checkpoint, images: np.ndarray, device: torch.device,
               batch_size: int | None = None) -> np.ndarray:
    """Probabilities of one fold model for uint8 (N, h, w, 3) images, as train.py predicted its
    test rows: TTA over the recipe's views, through the float16 feature cache when it had one,
    in batches of the same sizes (the cache's, then the test loader's), so that even the last
    bits agree (a percentile in rank space moves with the smallest difference)."""
    batch_size = batch_size or 2 * ck.batch_size  # train.py's test loader
    if hasattr(model, "batch_for"):  # a member whose batch is bounded by memory (the anomaly member's distances)
        batch_size = model.batch_for(images.shape[1:3], batch_size)
    setup = engine.make_setup(device, ck.mean, ck.std, ck.amp, ck.channels_last)
    model.to(device)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    tta = ck.tta
    if ck.cache_frozen:
        fs = ck.freeze_stages
        model.eval()
        step = cache_batch(images.shape[1:3])
        feats = torch.cat([as_cached(frozen_views(model, fs, images[s:s + step], setup, max(tta, 2)))
                           for s in range(0, len(images), step)])
        batches = [(feats[s:s + batch_size], None) for s in range(0, len(feats), batch_size)]
        return engine.predict(CachedPrefixNet(model, fs), batches, setup, tta)
    return engine.predict(model, engine.image_batches(images, batch_size), setup, tta)


def load_member(m: Member) -> tuple[torch.nn.Module, Checkpoint]:
    model, ck = load_fold_model(m.checkpoint, m.fold)
    if m.run_id and ck.run_id != m.run_id:
        raise InputError(f"{m.checkpoint}: this checkpoint is not the one that made {m.paths.meta} (run ids differ); "
                         "train the fold again")
    return model, ck


def predict_images(ens: Ensemble, images: list[np.ndarray], device: torch.device, batch_size: int | None = None,
                   progress: bool = True, meta: dict[str, list] | None = None) -> np.ndarray:
    """The blend's score for decoded images (uint8 RGB, any size); `meta`: their metadata
    (column -> values) when the blend is a stacker fitted with metadata."""
    fitted: dict = {}
    preds: dict[tuple, np.ndarray] = {}
    scoring = [m for exp in ens.members for m in ens.scored_members(exp)]
    for m in tqdm(scoring, desc="models", unit="model", disable=not progress):
        model, ck = load_member(m)
        key = ck.preprocess.geometry
        if key not in fitted:
            fitted[key] = np.stack([key.fit(img) for img in images])
        preds[m.exp, m.fold] = fold_probs(model, ck, fitted[key], device, batch_size)
    return ens.combine(preds, meta)


@dataclass(frozen=True)
class Scoring:
    """What scores the images: the blend (a blend.json; default submissions/blend.json), the torch
    device, progress bars."""
    blend: str | None = None
    device: str = "auto"
    progress: bool = True


def predict(comp: Competition, base: Path, inputs: list[str], out: Path, opts: ScoreOptions | None = None,
            scorer: Scoring = Scoring()) -> pd.DataFrame:
    """Score `inputs` (folders, image files, a CSV of ids) with `scorer`'s blend; write id, prob, defect
    to `out`."""
    o, say = opts or ScoreOptions(), print
    blend, device, progress = scorer.blend, scorer.device, scorer.progress
    try:
        check_out(out)
    except BundleError as e:
        raise InputError(str(e)) from None
    layout = Layout(base)
    ens = load_ensemble(layout, blend)
    try:
        t = o.threshold_in({k: v["threshold"] for k, v in ens.operating_points.items()})
    except BundleError as e:
        raise InputError(str(e)) from None
    if ens.meta_columns and not o.meta_csv:
        raise InputError(f"{ens.source}: the stacker also uses metadata ({', '.join(ens.meta_columns)}); give a CSV "
                         f"of {o.id_col} + those columns with --meta")
    try:
        folder = Path(o.image_dir) if o.image_dir else layout.test_dir(comp)
        ids, images = read_all(list_inputs(inputs, folder, comp.image_ext, o.id_col), o.skip_bad, say)
        meta = read_meta(Path(o.meta_csv), ids, ens.meta_columns, o.id_col) if ens.meta_columns else None
    except InputsError as e:
        raise InputError(str(e)) from None
    dev = runtime.pick_device(device)
    runtime.configure(dev)
    score = predict_images(ens, images, dev, progress=progress, meta=meta)
    df = pd.DataFrame({"id": ids, "prob": score, "defect": (score >= t).astype(int)})
    write_csv_atomic(df, out)
    say(f"wrote {out}: {len(df)} images, {int(df.defect.sum())} defects at threshold {t:.4f} "
        f"({'--threshold' if o.threshold is not None else o.point}); blend {ens.method} of {', '.join(ens.weights)}")
    return df
