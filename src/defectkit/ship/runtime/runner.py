"""Score images with an exported bundle: needs only numpy, OpenCV and onnxruntime (no torch, no
timm, no repository). export.py copies this package (defectkit/ship/runtime/) into the bundle as
defect_runtime/, with entry.py as predict_bundle.py, beside bundle.json, refs.npz and models/*.onnx.

    python bundle/predict_bundle.py IMAGES_OR_FOLDERS_OR_CSV... --out preds.csv
           [--operating-point chosen|recall_95|recall_99 | --threshold T] [--skip-bad] [--threads N]
           [--meta CSV]   (id + metadata columns, for a stacker fitted with them)

Every file the bundle lists is checked against its sha256 first: an edited bundle is refused.
Output: id, prob, defect (prob: the blend's score as blend.py computes it; defect: prob >= the
threshold chosen on OOF predictions at the operating point).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .combine import blend_scores, meta_columns, stack_intercept
from .errors import cli_main
from .files import atomic_path
from .image_inputs import list_inputs, read_all, read_meta
from .imaging import fit_image
from .spec import BundleError, BundleSpec

# In a bundle this package is <bundle>/defect_runtime/, beside bundle.json and predict_bundle.py.
HERE = Path(__file__).resolve().parent.parent

BATCH = 1  # images per run: on 2 CPU cores ONNX Runtime is fastest one image (x TTA views) at a time


@dataclass
class ScoreOptions:
    """How new images are read and labelled, for predict.py and the bundle's runner alike: the
    operating point (or a threshold of one's own), unreadable images left out or an error, where a
    CSV's ids are and its id column, a CSV of the stacker's metadata, CPU threads (0 = all)."""

    point: str = "chosen"
    threshold: float | None = None
    skip_bad: bool = False
    image_dir: str | None = None
    id_col: str = "id"
    meta_csv: str | None = None
    threads: int = 0

    def check(self, points) -> None:
        if self.threshold is None and self.point not in points:
            raise BundleError(f"--operating-point {self.point!r}: expected one of {', '.join(points)}")
        if self.threshold is not None and (isinstance(self.threshold, bool) or not isinstance(
                self.threshold, (int, float)) or not math.isfinite(self.threshold)):
            raise BundleError(f"--threshold {self.threshold!r}: expected a finite number")


def onnx_session(path: Path, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# bundle.json's `runtime` -> how a model file becomes a session with .get_inputs() and .run()
RUNTIMES = {"onnxruntime": onnx_session}


def session(path: Path, threads: int, runtime: str = "onnxruntime"):
    if runtime not in RUNTIMES:
        raise BundleError(f"bundle runtime {runtime!r}: this runner knows {', '.join(RUNTIMES)}")
    return RUNTIMES[runtime](path, threads)


def load_bundle(folder: Path) -> BundleSpec:
    """bundle.json, after checking its own digest and every file it lists against its sha256."""
    return BundleSpec.read(folder)


def run_model(sess, images: np.ndarray, batch_size: int) -> np.ndarray:
    name = sess.get_inputs()[0].name
    out = [sess.run(None, {name: images[s:s + batch_size]})[0] for s in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float64)


def score(folder: Path, spec: BundleSpec, images: list[np.ndarray], threads: int = 0, batch_size: int = BATCH,
          meta: dict | None = None) -> np.ndarray:
    """The blend's score for decoded uint8 RGB images, exactly as blend.py combines its members;
    `meta` (column -> values) for a stacker fitted with metadata."""
    threads = threads or os.cpu_count() or 1
    refs = np.load(folder / "refs.npz")
    members, weights = [], []

    def run(m):
        return run_model(session(folder / m.model, threads, spec.runtime), fitted, batch_size)
    for exp in spec.experiments:
        fitted = np.stack([fit_image(img, exp.hw, exp.resize, exp.border_crop) for img in images])
        preds = [run(f) for f in exp.folds]
        r = exp.refit  # a full-data refit: "only" (no fold models) or "both"
        refit = (run(r), refs[r.ref], r.use) if r else None
        members.append((preds, [refs[f.ref] for f in exp.folds], refit))
        weights.append(exp.weight)
    return blend_scores(spec.space, spec.link, weights, members,
                        stack_intercept(spec.intercept, spec.stack_meta, meta))


def check_out(out: Path) -> None:
    """--out must name a file we may replace: not a folder, not a symbolic link (submissions/<file>
    are links into the blend's result set)."""
    out = Path(out)
    if out.is_dir():
        raise BundleError(f"--out {out}: is a folder; give a file name (e.g. {out / 'predictions.csv'})")
    if out.is_symlink():
        raise BundleError(f"--out {out}: is a symbolic link (submissions/<file> are the blend's result set); give "
                          "another file")


def write_csv(path: Path, ids, prob, defect) -> None:
    """id, prob, defect, written whole or not at all (an OSError names `path`)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prob", "defect"])
        w.writerows((i, repr(float(p)), int(d)) for i, p, d in zip(ids, prob, defect))


def predict(folder: Path, inputs: list[str], out: Path, opts: ScoreOptions | None = None,
            say=print) -> tuple[list[str], np.ndarray]:
    o = opts or ScoreOptions()
    check_out(out)
    spec = load_bundle(folder)
    o.check(spec.operating_points)
    t = float(spec.operating_points[o.point] if o.threshold is None else o.threshold)
    cols = meta_columns(spec.stack_meta)
    if cols and not o.meta_csv:
        raise BundleError(f"the stacker also uses metadata ({', '.join(cols)}); give a CSV of {o.id_col} + those "
                          "columns with --meta")
    ids, images = read_all(list_inputs(inputs, Path(o.image_dir or "."), spec.image_ext, o.id_col), o.skip_bad, say)
    meta = read_meta(Path(o.meta_csv), ids, cols, o.id_col) if cols else None
    prob = score(folder, spec, images, o.threads, meta=meta)
    write_csv(out, ids, prob, prob >= t)
    say(f"wrote {out}: {len(ids)} images, {int((prob >= t).sum())} defects at threshold {t:.4f}")
    return ids, prob


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="folders, image files, or a CSV with an id column")
    p.add_argument("--out", default="predictions.csv")
    p.add_argument("--operating-point", default="chosen", help="chosen, recall_95 or recall_99")
    p.add_argument("--threshold", type=float)
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--image-dir", default=".", help="where a CSV's ids are")
    p.add_argument("--id-col", default="id")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--meta", help="a CSV of id + the metadata columns the stacker uses (bundle.json stack_meta)")
    p.add_argument("--bundle", default=str(HERE), help="the bundle's folder (default: this file's)")
    args = p.parse_args(argv)
    predict(Path(args.bundle), args.inputs, Path(args.out),
            ScoreOptions(args.operating_point, args.threshold, args.skip_bad, args.image_dir, args.id_col,
                         args.meta, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
