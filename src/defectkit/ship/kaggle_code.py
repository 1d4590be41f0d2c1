"""A Kaggle code competition's submission: the exported bundle as a Kaggle dataset, and a
notebook (kernel) that runs it offline on the competition's test images and writes
/kaggle/working/submission.csv in the shape of sample_submission.csv.

`stage` writes both folders (dataset-metadata.json beside a copy of the bundle;
kernel-metadata.json beside notebook.ipynb) and checks them; `push` sends them with the
`kaggle` package's own API (a new dataset or a new version of it, then the kernel).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from defectkit.core.checks import InputError
from defectkit.core.config import Competition
from defectkit.runtime.spec import BundleError, BundleSpec

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,48}/[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$")

SETUP = '''import csv, os, sys
from pathlib import Path

INPUT = Path(os.environ.get("KAGGLE_INPUT", "/kaggle/input"))
WORKING = Path(os.environ.get("KAGGLE_WORKING", "/kaggle/working"))
COMPETITION, TEST_DIR, SAMPLE, TEST_CSV = {competition!r}, {test_dir!r}, {sample!r}, {test_csv!r}
ID_COL, PRED_COL = {id_col!r}, {pred_col!r}

bundle = next(p.parent for p in sorted(INPUT.rglob("bundle.json")))
comp = INPUT / COMPETITION if (INPUT / COMPETITION / SAMPLE).exists() else next(
    p.parent for p in sorted(INPUT.rglob(SAMPLE)))
print("bundle:", bundle, "| competition files:", comp)
sys.path.insert(0, str(bundle))
import predict_bundle  # numpy, OpenCV and onnxruntime only'''

PREDICT = '''with open(comp / SAMPLE, newline="") as f:
    sample = list(csv.DictReader(f))
WORKING.mkdir(parents=True, exist_ok=True)
with open(WORKING / "ids.csv", "w", newline="") as f:
    csv.writer(f).writerows([[ID_COL]] + [[r[ID_COL]] for r in sample])
meta = comp / TEST_CSV  # the test rows' metadata, for a stacker fitted with --stack-meta
opts = predict_bundle.ScoreOptions(image_dir=str(comp / TEST_DIR), id_col=ID_COL,
                                   meta_csv=str(meta) if meta.exists() else None)
ids, prob = predict_bundle.predict(bundle, [str(WORKING / "ids.csv")], WORKING / "predictions.csv", opts)'''

WRITE = '''score = dict(zip(ids, prob))
with open(WORKING / "submission.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(list(sample[0].keys()))
    for r in sample:
        r[PRED_COL] = repr(float(score[r[ID_COL]]))
        w.writerow(list(r.values()))
print(len(sample), "rows ->", WORKING / "submission.csv")'''


def notebook(comp: Competition, competition_slug: str):
    import nbformat
    v = {"competition": competition_slug, "test_dir": comp.test_dir, "sample": comp.sample_submission,
         "test_csv": comp.test_csv,
         "id_col": comp.submission_columns[0], "pred_col": comp.submission_columns[1]}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {comp.name}: the blended ensemble, offline\n\nThe ONNX bundle "
                                              "exported by `src/export.py` scores the test images; no internet."),
                nbformat.v4.new_code_cell(SETUP.format(**v)), nbformat.v4.new_code_cell(PREDICT),
                nbformat.v4.new_code_cell(WRITE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.validate(nb)
    return nb


def check_slug(slug: str, what: str) -> str:
    if not SLUG.match(slug or ""):
        raise InputError(f"{what} {slug!r}: expected OWNER/NAME, NAME of 3-50 lowercase letters, digits and "
                         "hyphens (Kaggle's slug rule)")
    return slug


def stage(bundle: Path, out: Path, comp: Competition, competition_slug: str, dataset: str, kernel: str) -> dict:
    """Write out/dataset/ (the bundle + dataset-metadata.json) and out/kernel/ (notebook.ipynb
    + kernel-metadata.json), both checked. Returns {"dataset": path, "kernel": path}."""
    import nbformat
    if not (bundle / "bundle.json").exists():
        raise InputError(f"{bundle}: no bundle.json; run python src/export.py first")
    check_slug(dataset, "--dataset")
    check_slug(kernel, "--kernel")
    if not competition_slug:
        raise InputError(f"competition {comp.name!r} has no Kaggle slug: pass --slug, or set kaggle_slug in its YAML")
    b, o = Path(bundle).resolve(), Path(out).resolve()
    if b == o or o in b.parents or b in o.parents:
        raise InputError(f"--bundle {bundle}: inside the staging folder {out} (or holding it), which is rebuilt "
                         "first; give the exported bundle (submissions/bundle)")
    try:
        BundleSpec.read(bundle)  # its files and description as export.py wrote them, before anything is uploaded
    except BundleError as e:
        raise InputError(str(e)) from None
    ds, kd = out / "dataset", out / "kernel"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(bundle, ds)
    title = f"{comp.name} ensemble bundle"[:50]
    (ds / "dataset-metadata.json").write_text(json.dumps(
        {"title": title if len(title) >= 6 else f"{title} bundle", "id": dataset,
         "licenses": [{"name": "CC0-1.0"}]}, indent=1))
    kd.mkdir(parents=True)
    nbformat.write(notebook(comp, competition_slug), kd / "notebook.ipynb")
    (kd / "kernel-metadata.json").write_text(json.dumps(
        {"id": kernel, "title": kernel.split("/")[1], "code_file": "notebook.ipynb", "language": "python",
         "kernel_type": "notebook", "is_private": True, "enable_gpu": False, "enable_internet": False,
         "dataset_sources": [dataset], "competition_sources": [competition_slug], "kernel_sources": []}, indent=1))
    return {"dataset": ds, "kernel": kd}


def push(api, staged: dict, dataset: str, notes: str, say=print) -> str:
    """A new version of the dataset when it exists (else a new private dataset), then the kernel."""
    try:
        api.dataset_status(dataset)
        exists = True
    except Exception:  # noqa: BLE001 - the API raises several types for a dataset it cannot find
        exists = False
    if exists:
        api.dataset_create_version(str(staged["dataset"]), notes, dir_mode="zip")
        say(f"uploaded a new version of dataset {dataset}")
    else:
        api.dataset_create_new(str(staged["dataset"]), public=False, dir_mode="zip")
        say(f"created dataset {dataset}")
    res = api.kernels_push(str(staged["kernel"]))
    url = getattr(res, "url", "") or ""
    return f"pushed kernel {json.loads((staged['kernel'] / 'kernel-metadata.json').read_text())['id']} {url}".strip()
