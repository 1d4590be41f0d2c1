"""Score images with an exported bundle: needs only numpy, OpenCV and onnxruntime (no torch, no
timm, no repository). export.py copies this package (defectkit/runtime/) into the bundle as
defect_runtime/, with entry.py as predict_bundle.py, beside bundle.json, refs.npz and models/*.onnx.

    python bundle/predict_bundle.py IMAGES_OR_FOLDERS_OR_CSV... --out preds.csv
           [--operating-point chosen|recall_95|recall_99|false_alarm_1pct|false_alarm_0.1pct | --threshold T]
           [--skip-bad] [--threads N]
           [--meta CSV]   (id + metadata columns, for a stacker fitted with them)

Every file the bundle lists is checked against its sha256 first: an edited bundle is refused.
Output: id, prob, defect (prob: the blend's score as blend.py computes it; defect: prob >= the
threshold chosen on OOF predictions at the operating point).
"""
from __future__ import annotations

import argparse
import csv
import importlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .combine import blend_scores, meta_columns, stack_intercept
from .cpus import usable_cpus
from .errors import cli_main
from .files import atomic_path
from .image_inputs import list_inputs, read_all, read_meta
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

    def threshold_in(self, points: dict) -> float:
        """The threshold these options ask for, of a blend's operating points ({name: threshold}):
        --threshold when given, else the point's; one line when the blend lacks the point."""
        if self.threshold is not None:
            if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not math.isfinite(
                    self.threshold):
                raise BundleError(f"--threshold {self.threshold!r}: expected a finite number")
            return float(self.threshold)
        if self.point not in points:
            raise BundleError(f"--operating-point {self.point!r}: expected one of {', '.join(points)} (the points "
                              "this blend has: the recall points need defects among its OOF rows)")
        return float(points[self.point])


def onnx_session(path: Path, threads: int, alone: bool = True):
    """An onnxruntime session on `threads` cores. Its threads spin for a while after each call,
    waiting for the next: that helps a model run alone (6.3 against 8.1 ms an image, the anomaly
    member at 160 px on 2 cores) and starves the next model of a bundle of several, which runs while
    the previous one's threads still spin (an ELPV bundle of 10 models: 448 against 217 ms an image):
    spinning only when the model runs `alone`."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if alone else "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def openvino_session(path: Path, threads: int, alone: bool = True):
    """An OpenVINO compiled model, answering like an onnxruntime session (get_inputs, run). Float
    layers run in fp32: on a CPU with bf16 or AMX units OpenVINO would otherwise run them in bf16 and
    move the scores off the thresholds chosen at export. The precision the compiled model reports is
    checked: a runtime that would compute in another one is refused in one line. (onnxruntime's CPU
    provider computes fp32 layers in fp32 on every x86 CPU; int8 models are checked by their drift.)"""
    import openvino as ov
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    got = compiled.get_property("INFERENCE_PRECISION_HINT")
    if got != ov.Type.f32:
        raise BundleError(f"{path}: OpenVINO on this CPU would compute its float layers in {got.get_type_name()}, "
                          "not the fp32 the bundle was checked at; use an onnx bundle (export.py --target onnx)")

    class Session:
        def get_inputs(self):
            return [type("Input", (), {"name": compiled.inputs[0].get_any_name()})()]

        def run(self, _, feeds):
            return [compiled(next(iter(feeds.values())))[0]]
    return Session()


# bundle.json's `runtime` -> how a model file becomes a session with .get_inputs() and .run(). An outside
# exporter's runtime is registered with it (ship/exporters.py register_exporter) and travels in the bundle
# as runtime_<name>.py beside this file, whose `session(path, threads, alone)` the runner then imports.
RUNTIMES = {"onnxruntime": onnx_session, "openvino": openvino_session}


def session(path: Path, threads: int, runtime: str = "onnxruntime", alone: bool = True):
    """`alone`: the only model scored per call (its runtime may then keep its threads busy between calls)."""
    if runtime not in RUNTIMES and runtime.isidentifier() and __package__:
        try:
            RUNTIMES[runtime] = importlib.import_module(f"{__package__}.runtime_{runtime}").session
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.runtime_{runtime}":
                raise BundleError(f"bundle runtime {runtime!r}: needs the package {e.name!r}; install it") from None
    if runtime not in RUNTIMES:
        raise BundleError(f"bundle runtime {runtime!r}: this runner knows {', '.join(RUNTIMES)}")
    return RUNTIMES[runtime](path, threads, alone)


def load_bundle(folder: Path) -> BundleSpec:
    """bundle.json, after checking its own digest and every file it lists against its sha256."""
    return BundleSpec.read(folder)


def run_model(sess, images: np.ndarray, batch_size: int, what: str = "the model") -> np.ndarray:
    """One score an image, in batches; a runtime that returns another count (OpenVINO's int8 kernels under
    an older instruction set returned none) is a one-line BundleError naming `what`, not a broadcast error."""
    name = sess.get_inputs()[0].name
    out = []
    for s in range(0, len(images), batch_size):
        batch = images[s:s + batch_size]
        got = np.asarray(sess.run(None, {name: batch})[0])
        if got.ndim != 1 or len(got) != len(batch):
            raise BundleError(f"{what} returned {got.size} score(s) for {len(batch)} image(s), not one each: its "
                              "runtime computes it wrongly on this CPU; export it with --precision fp32, or with "
                              "another --target")
        out.append(got)
    return np.concatenate(out).astype(np.float64)


class Scorer:
    """A bundle loaded once, as a line keeps it: its models' sessions open (a quantised one checked
    against its drift bound first), then `scorer(images)` -> the blend's scores for decoded uint8
    RGB images, exactly as blend.py combines its members; `meta` (column -> values) for a stacker
    fitted with metadata. `threshold(point)` is an operating point's threshold."""

    def __init__(self, folder: Path, threads: int = 0, batch_size: int = BATCH, spec: BundleSpec | None = None):
        self.folder, self.batch_size = Path(folder), batch_size
        self.spec = spec or load_bundle(self.folder)
        threads = threads or usable_cpus()
        with np.load(self.folder / "refs.npz") as refs:
            self.refs = {k: refs[k] for k in refs.files}

        alone = sum(len(e.folds) + bool(e.refit) for e in self.spec.experiments) == 1

        def open_(m):
            return checked_session(self.folder, m, threads, self.spec.runtime, self.refs, alone) if m else None
        self.sessions = [([open_(f) for f in e.folds], open_(e.refit)) for e in self.spec.experiments]

    def threshold(self, point: str = "chosen") -> float:
        return float(self.spec.operating_points[point])

    def __call__(self, images: list[np.ndarray], meta: dict | None = None) -> np.ndarray:
        members, weights = [], []
        for exp, (folds, refit) in zip(self.spec.experiments, self.sessions):
            fitted = np.stack([exp.preprocess.fit(img) for img in images])
            preds = [run_model(s, fitted, self.batch_size) for s in folds]
            r = exp.refit  # a full-data refit: "only" (no fold models) or "both"
            full = (run_model(refit, fitted, self.batch_size), self.refs[r.ref], r.use) if r else None
            members.append((preds, [self.refs[f.ref] for f in exp.folds], full))
            weights.append(exp.weight)
        return blend_scores(self.spec.space, self.spec.link, weights, members,
                            stack_intercept(self.spec.intercept, self.spec.stack_meta, meta))


def checked_session(folder: Path, m, threads: int, runtime: str, refs, alone: bool = True):
    """The model's session; a quantised one first scores the check images it was exported with, and
    is refused when it drifts from the fp32 model's scores by more than the bound recorded then
    (another CPU's int8 kernels can round otherwise). `alone`: the bundle's only model."""
    sess = session(folder / m.model, threads, runtime, alone)
    if m.precision != "fp32" and m.bound > 0:
        images, want = refs[f"{m.ref}/check_images"], refs[f"{m.ref}/check_scores"]
        drift = float(np.abs(run_model(sess, images, 1, f"{folder / m.model}: the {m.precision} model") - want).max())
        if drift > m.bound:
            raise BundleError(f"{folder / m.model}: the {m.precision} model's scores drift by {drift:.4f} from the "
                              f"fp32 model's on its {len(images)} check images, over the bound {m.bound:.4f} recorded "
                              "at export; export it again on this machine, or use an fp32 bundle")
    return sess


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
    t = o.threshold_in(spec.operating_points)
    cols = meta_columns(spec.stack_meta)
    if cols and not o.meta_csv:
        raise BundleError(f"the stacker also uses metadata ({', '.join(cols)}); give a CSV of {o.id_col} + those "
                          "columns with --meta")
    ids, images = read_all(list_inputs(inputs, Path(o.image_dir or "."), spec.image_ext, o.id_col), o.skip_bad, say)
    meta = read_meta(Path(o.meta_csv), ids, cols, o.id_col) if cols else None
    prob = Scorer(folder, o.threads, spec=spec)(images, meta)
    write_csv(out, ids, prob, prob >= t)
    say(f"wrote {out}: {len(ids)} images, {int((prob >= t).sum())} defects at threshold {t:.4f}")
    return ids, prob


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="folders, image files, or a CSV with an id column")
    p.add_argument("--out", default="predictions.csv")
    p.add_argument("--operating-point", default="chosen",
                   help="chosen, recall_95, recall_99, false_alarm_1pct or false_alarm_0.1pct (in bundle.json)")
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
