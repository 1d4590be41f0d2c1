"""Score new images with the blended ensemble that blend.py chose (submissions/blend.json).

    python src/predict.py --competition elpv input/elpv/test/ --out preds.csv
    python src/predict.py --competition elpv a.png b.png --operating-point recall_99
    python src/predict.py --competition elpv ids.csv --image-dir /data/today --threshold 0.5 --skip-bad
    python src/predict.py --competition elpv input/elpv/test/ --meta input/elpv/test.csv   # stack + --stack-meta

Input: a folder (every image in it), image files, or a CSV with an `id` column (--id-col) whose
images are <image-dir>/<id><image_ext> (default: the competition's test folder). Every fold
model of every blended experiment scores each image with its recipe's size, resize mode, border
crop and TTA (as train.py predicted the test set, the frozen-feature cache's float16 rounding
included), and the experiments are combined exactly as blend.py does (in rank space, a new
prediction is ranked against that fold model's own OOF predictions; a full-data refit's, when the
blend used refits, against all the experiment's OOF predictions). Output: a CSV with
`id, prob, defect` (prob: the blend's score, on blend.py's scale; defect: prob >= the threshold of
--operating-point, chosen on OOF predictions, or --threshold). Unreadable images are one error
listing them, or with --skip-bad are reported and left out. Nothing is written unless all is well.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import engine
import runtime
from checks import InputError, cli_main
from config import Competition, add_config_flags, config_from_args
from ensemble import OPERATING_POINTS, Ensemble, Member, load_ensemble
from features import CACHE_BATCH, as_cached, frozen_views
from fileio import write_csv_atomic
from image_inputs import InputsError, list_inputs, read_all, read_meta
from imaging import fit_image
from layout import Layout
from models import CachedPrefixNet, load_fold_model, shape_key


# --- one fold model -------------------------------------------------------------------------------

def fold_probs(model: torch.nn.Module, ck: dict, images: np.ndarray, device: torch.device,
               batch_size: int | None = None) -> np.ndarray:
    """Probabilities of one fold model for uint8 (N, h, w, 3) images, as train.py predicted its
    test rows: TTA over the recipe's views, through the float16 feature cache when it had one,
    in batches of the same sizes (the cache's, then the test loader's), so that even the last
    bits agree (a percentile in rank space moves with the smallest difference)."""
    rec = ck["config"]["recipe"]
    batch_size = batch_size or 2 * int(rec.get("batch_size", 64))  # train.py's test loader
    setup = engine.make_setup(device, ck["mean"], ck["std"], rec.get("amp", True), rec.get("channels_last", True))
    model.to(device)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    tta = ck["tta"]
    if ck.get("cache_frozen"):
        fs = ck["freeze_stages"]
        model.eval()
        feats = torch.cat([as_cached(frozen_views(model, fs, images[s:s + CACHE_BATCH], setup, max(tta, 2)))
                           for s in range(0, len(images), CACHE_BATCH)])
        batches = [(feats[s:s + batch_size], None) for s in range(0, len(feats), batch_size)]
        return engine.predict(CachedPrefixNet(model, fs), batches, setup, tta)
    batches = [(torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size].transpose(0, 3, 1, 2))), None)
               for s in range(0, len(images), batch_size)]
    return engine.predict(model, batches, setup, tta)


def load_member(m: Member) -> tuple[torch.nn.Module, dict]:
    model, ck = load_fold_model(m.checkpoint, m.fold)
    if m.run_id and ck.get("run_id") != m.run_id:
        raise InputError(f"{m.checkpoint}: this checkpoint is not the one that made {m.paths.meta} (run ids differ); "
                         "train the fold again")
    return model, ck


# --- the ensemble ---------------------------------------------------------------------------------

def predict_images(ens: Ensemble, images: list[np.ndarray], device: torch.device, batch_size: int | None = None,
                   progress: bool = True, meta: dict[str, list] | None = None) -> np.ndarray:
    """The blend's score for decoded images (uint8 RGB, any size); `meta`: their metadata
    (column -> values) when the blend is a stacker fitted with metadata."""
    fitted: dict[tuple, np.ndarray] = {}
    preds: dict[tuple, np.ndarray] = {}
    scoring = [m for exp in ens.members for m in ens.scored_members(exp)]
    for m in tqdm(scoring, desc="models", unit="model", disable=not progress):
        model, ck = load_member(m)
        key = shape_key(ck)
        if key not in fitted:
            fitted[key] = np.stack([fit_image(img, *key) for img in images])
        preds[m.exp, m.fold] = fold_probs(model, ck, fitted[key], device, batch_size)
    return ens.combine(preds, meta)


def predict(comp: Competition, base: Path, inputs: list[str], out: Path, point: str = "chosen",
            threshold: float | None = None, image_dir: str | None = None, id_col: str = "id",
            skip_bad: bool = False, device: str = "auto", blend: str | None = None, progress: bool = True,
            say=print, meta_csv: str | None = None) -> pd.DataFrame:
    layout = Layout(base)
    ens = load_ensemble(layout, blend)
    t = ens.threshold(point) if threshold is None else float(threshold)
    if ens.meta_columns and not meta_csv:
        raise InputError(f"{ens.source}: the stacker also uses metadata ({', '.join(ens.meta_columns)}); give a CSV "
                         f"of {id_col} + those columns with --meta")
    try:
        items = list_inputs(inputs, Path(image_dir) if image_dir else layout.test_dir(comp), comp.image_ext, id_col)
        ids, images = read_all(items, skip_bad, say)
        meta = read_meta(Path(meta_csv), ids, ens.meta_columns, id_col) if ens.meta_columns else None
    except InputsError as e:
        raise InputError(str(e)) from None
    dev = runtime.pick_device(device)
    runtime.configure(dev)
    score = predict_images(ens, images, dev, progress=progress, meta=meta)
    df = pd.DataFrame({"id": ids, "prob": score, "defect": (score >= t).astype(int)})
    write_csv_atomic(df, out)
    say(f"wrote {out}: {len(df)} images, {int(df.defect.sum())} defects at threshold {t:.4f} "
        f"({'--threshold' if threshold is not None else point}); blend {ens.method} of {', '.join(ens.weights)}")
    return df


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    p.add_argument("inputs", nargs="+", help="a folder, image files, or a CSV with an id column")
    p.add_argument("--out", default="predictions.csv", help="output CSV (id, prob, defect)")
    p.add_argument("--operating-point", choices=OPERATING_POINTS, default="chosen",
                   help="the OOF threshold for `defect` (chosen = blend.py's --threshold-by rule)")
    p.add_argument("--threshold", type=float, help="a threshold of your own, on the blend's scale")
    p.add_argument("--image-dir", help="where a CSV's ids are (default: the competition's test folder)")
    p.add_argument("--id-col", default="id")
    p.add_argument("--skip-bad", action="store_true", help="leave unreadable images out (reported)")
    p.add_argument("--device", default="auto")
    p.add_argument("--blend", help="a blend.json (default: submissions/blend.json)")
    p.add_argument("--meta", help="a CSV of id + the metadata columns a stacker fitted with --stack-meta needs")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    predict(cfg.competition, Path(args.workdir), args.inputs, Path(args.out), args.operating_point, args.threshold,
            args.image_dir, args.id_col, args.skip_bad, args.device, args.blend, progress=not args.quiet,
            meta_csv=args.meta)


if __name__ == "__main__":
    sys.exit(main())
