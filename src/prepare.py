"""Build input/<competition>/ in Kaggle's shape from a known source.

    python src/prepare.py elpv                                   # the embedded default competition
    python src/prepare.py folder PATH --good NAME --defect NAME [--test NAME] --name COMP
    python src/prepare.py kaggle --competition SLUG [--name COMP]
    python src/prepare.py --config configs/nexperia.yaml          # the source named in a YAML

A competition folder holds train.csv (id, target, ...), train/<id><ext>, test/<id><ext>,
sample_submission.csv and, when the test labels are known (a held-out split), the answers
solution.csv (id, target, Usage) that only local scoring reads. A marker file records the
arguments: a second run with the same arguments does nothing; an interrupted run is repaired.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

from checks import InputError, check_train_table, cli_main
from config import ROOT, Competition, load_config
from fileio import atomic_path, write_csv_atomic, write_json_atomic, write_text_atomic

MARKER = ".prepared.json"
SPLIT_SEED = 2019  # fixed: every user gets the same held-out test split
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


# --- shared pieces ---------------------------------------------------------------------------

def is_prepared(out: Path, args: dict) -> bool:
    """Marker matches these arguments and every file it lists is still there."""
    marker = out / MARKER
    if not marker.exists():
        return False
    info = json.loads(marker.read_text())
    return info.get("args") == args and all((out / f).exists() for f in info.get("files", []))


def write_marker(out: Path, args: dict, files: list[str], **extra) -> None:
    write_json_atomic(out / MARKER, {"args": args, "files": files, **extra})


def held_out_split(strata: np.ndarray, test_size: float, seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask of test rows: a stratified, seeded split."""
    idx = np.arange(len(strata))
    _, test_idx = train_test_split(idx, test_size=test_size, stratify=strata, random_state=seed)
    mask = np.zeros(len(strata), dtype=bool)
    mask[test_idx] = True
    return mask


def write_competition(out: Path, train: pd.DataFrame, test_ids: list[str], sub_cols: list[str],
                      solution: pd.DataFrame | None) -> list[str]:
    """The tables of a competition folder, each written atomically. Returns their names."""
    write_csv_atomic(train, out / "train.csv")
    write_csv_atomic(pd.DataFrame({sub_cols[0]: test_ids, sub_cols[1]: 0.5}), out / "sample_submission.csv")
    names = ["train.csv", "sample_submission.csv"]
    if solution is not None:
        write_csv_atomic(solution, out / "solution.csv")
        names.append("solution.csv")
    return names


def write_image(path: Path, img: np.ndarray) -> None:
    """Encode an image atomically: an interrupted run never leaves a truncated file."""
    if path.exists():
        return
    ok, buf = cv2.imencode(path.suffix, img)
    if not ok:
        raise InputError(f"{path}: could not encode image")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def solution_table(ids, target, id_col: str, target_col: str, seed: int = SPLIT_SEED) -> pd.DataFrame:
    """Answers for local scoring; Usage splits them like a Kaggle public/private leaderboard."""
    rng = np.random.default_rng(seed)
    usage = np.where(rng.random(len(ids)) < 0.5, "Public", "Private")
    return pd.DataFrame({id_col: list(ids), target_col: np.asarray(target, int), "Usage": usage})


# --- ELPV -------------------------------------------------------------------------------------

def load_elpv():
    """(ids, images uint8 (N, 300, 300), defect probabilities, cell types) from the elpv-dataset package.
    Ids are the package's own file names (cell0001 ...), so a row can be traced to its image."""
    try:
        import elpv_dataset.utils as elpv
    except ImportError as e:
        raise InputError("the ELPV data comes from the `elpv-dataset` package: pip install elpv-dataset") from e
    labels = Path(elpv.__file__).parent / "data" / "labels.csv"
    names = np.genfromtxt(labels, dtype=["|S19", "<f8", "|S4"], names=["path", "probability", "type"])["path"]
    ids = np.array([Path(n).stem for n in np.char.decode(names)])
    images, probs, types = elpv.load_dataset(str(labels))
    return ids, np.asarray(images), np.asarray(probs, dtype=float), np.asarray(types).astype(str)


def prepare_elpv(out: Path, test_size: float = 0.25, force: bool = False, loader=load_elpv) -> str:
    args = {"source": "elpv", "test_size": test_size, "seed": SPLIT_SEED}
    if is_prepared(out, args) and not force:
        return f"{out} is already prepared ({args}); nothing to do"
    ids, images, probs, types = loader()
    n = len(images)
    target = (probs >= 0.5).astype(int)
    test = held_out_split(np.char.add(target.astype(str), types), test_size)
    for sub in ("train", "test"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm
    for i in tqdm(range(n), desc="elpv images", unit="img", leave=False):
        write_image(out / ("test" if test[i] else "train") / f"{ids[i]}.png", images[i])
    train = pd.DataFrame({"id": ids[~test], "target": target[~test],
                          "defect_probability": probs[~test].round(4), "cell_type": types[~test]})
    sol = solution_table(ids[test], target[test], "id", "target")
    files = write_competition(out, train, list(ids[test]), ["id", "target"], sol)
    files += [f"{'test' if t else 'train'}/{i}.png" for i, t in zip(ids, test)]
    write_marker(out, args, files)
    return (f"wrote {out}: {len(train)} train ({int(train.target.sum())} defect), "
            f"{int(test.sum())} test ({int(target[test].sum())} defect, answers in solution.csv)")


# --- folder per class ---------------------------------------------------------------------------

def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this class folder")
    return files


def _read_any(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: cannot be decoded as an image")
    return img


def _copy_image(src: Path, dst: Path) -> None:
    """Copy (same format) or re-encode (other format) an image, checking it decodes."""
    if dst.exists():
        return
    img = _read_any(src)
    if src.suffix.lower() == dst.suffix.lower():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    else:
        write_image(dst, img)


def prepare_folder(src: Path, out: Path, good: str, defect: str, test: str | None = None,
                   test_size: float = 0.25, sub_cols=("id", "target"), force: bool = False) -> str:
    src = Path(src)
    args = {"source": "folder", "path": str(src.resolve()), "good": good, "defect": defect,
            "test": test, "test_size": test_size, "submission_columns": list(sub_cols)}
    if is_prepared(out, args) and not force:
        return f"{out} is already prepared; nothing to do"
    classes = {0: _list_images(src / good), 1: _list_images(src / defect)}
    test_files = _list_images(src / test) if test else []
    all_files = classes[0] + classes[1] + test_files
    exts = {p.suffix.lower() for p in all_files}
    ext = exts.pop() if len(exts) == 1 else ".png"  # mixed formats are re-encoded as PNG
    rows = [(p, t, name) for t, name in ((0, good), (1, defect)) for p in classes[t]]
    stems = [p.stem for p, _, _ in rows]
    clash = len(set(stems)) < len(stems)  # same file name in both classes: prefix the class
    ids = [f"{name}_{p.stem}" if clash else p.stem for p, _, name in rows]
    if len(set(ids)) < len(ids):
        raise InputError(f"{src}: two files share the name stem {pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]!r}"
                         " within one class folder; ids must be unique")
    target = np.array([t for _, t, _ in rows])
    frame = pd.DataFrame({"id": ids, "target": target, "source": [str(p.relative_to(src)) for p, _, _ in rows]})
    if test:
        is_test = np.zeros(len(rows), dtype=bool)
        test_ids = [p.stem for p in test_files]
        if len(set(test_ids)) < len(test_ids):
            raise InputError(f"{src / test}: two test files share a name stem; ids must be unique")
    else:
        is_test = held_out_split(target, test_size)
        test_ids = list(np.array(ids)[is_test])
    from tqdm import tqdm
    jobs = [(p, out / "test" if s else out / "train", i) for (p, _, _), i, s in zip(rows, ids, is_test)]
    jobs += [(p, out / "test", p.stem) for p in test_files]
    for sub in ("train", "test"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for p, folder, i in tqdm(jobs, desc="images", unit="img", leave=False):
        _copy_image(p, folder / f"{i}{ext}")
    train = frame[~is_test].reset_index(drop=True)
    check_train_table(train, "id", "target", out / "train.csv")
    sol = None if test else solution_table(frame.id[is_test], frame.target[is_test], sub_cols[0], sub_cols[1])
    files = write_competition(out, train, test_ids, list(sub_cols), sol)
    files += [f"{folder.name}/{i}{ext}" for _, folder, i in jobs]
    write_marker(out, args, files, image_ext=ext)
    return (f"wrote {out}: {len(train)} train ({int(train.target.sum())} defect), {len(test_ids)} test"
            + ("" if test else " (held out from the labelled images; answers in solution.csv)")
            + f", images as {ext}")


def competition_yaml(name: str, source: dict, ext: str, sub_cols) -> str:
    return yaml.safe_dump({
        "competition": {"name": name, "source": source, "id_col": "id", "target_col": "target",
                        "image_ext": ext, "submission_columns": list(sub_cols), "metric": "roc_auc"},
        "recipe": {"archs": ["tf_efficientnet_lite0"], "img_size": 224, "epochs": 10, "n_folds": 5},
    }, sort_keys=False)


# --- Kaggle -------------------------------------------------------------------------------------

class KaggleAuthError(InputError):
    pass


CREDENTIALS_HELP = ("Kaggle credentials not found: set KAGGLE_API_TOKEN or put access_token in ~/.kaggle/, "
                    "or the legacy kaggle.json in ~/.kaggle/ (or $KAGGLE_CONFIG_DIR); "
                    "see https://www.kaggle.com/settings -> API")


def kaggle_api():
    """An authenticated KaggleApi, or a one-line KaggleAuthError (authenticate() exits the process)."""
    import contextlib
    import io
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # import prints a help text without credentials
            from kaggle.api.kaggle_api_extended import KaggleApi
        api = KaggleApi()
        api.authenticate()
    except SystemExit as e:
        raise KaggleAuthError(CREDENTIALS_HELP) from e
    except OSError as e:
        raise KaggleAuthError(f"{CREDENTIALS_HELP} ({e})") from e
    return api


def prepare_kaggle(slug: str, out: Path, api=None, force: bool = False) -> str:
    args = {"source": "kaggle", "slug": slug}
    if is_prepared(out, args) and not force:
        return f"{out} is already prepared; nothing to do"
    api = api or kaggle_api()
    download = out.parent / f".{out.name}.download"
    download.mkdir(parents=True, exist_ok=True)
    api.competition_download_files(slug, path=str(download), quiet=False)
    zips = sorted(download.glob("*.zip"))
    if not zips:
        raise InputError(f"{download}: the Kaggle download of {slug!r} produced no zip file")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            zf.extractall(out)
            files += [n for n in zf.namelist() if not n.endswith("/")]
    write_marker(out, args, files)
    shutil.rmtree(download)
    return f"downloaded {slug} into {out} ({len(files)} files); next: describe it in configs/{out.name}.yaml"


# --- command line -------------------------------------------------------------------------------

def prepare_from_config(comp: Competition, force: bool = False, base: Path = ROOT) -> str:
    src = dict(comp.source or {})
    kind = src.pop("type", None)
    out = comp.root(base)
    if kind == "elpv":
        return prepare_elpv(out, src.get("test_size", 0.25), force)
    if kind == "folder":
        path = Path(src["path"]) if Path(src["path"]).is_absolute() else Path(base) / src["path"]
        return prepare_folder(path, out, src["good"], src["defect"], src.get("test"),
                              src.get("test_size", 0.25), comp.submission_columns, force)
    if kind == "kaggle":
        return prepare_kaggle(src["slug"], out, force=force)
    raise InputError(f"competition {comp.name!r}: source.type must be elpv, folder or kaggle, got {kind!r}")


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="prepare the source named in this competition YAML")
    p.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    p.add_argument("--workdir", default=str(ROOT), help="folder holding input/ and configs/ (default: the repository)")
    sub = p.add_subparsers(dest="source")
    e = sub.add_parser("elpv", help="ELPV solar cells from the elpv-dataset package")
    e.add_argument("--test-size", type=float, default=0.25)
    f = sub.add_parser("folder", help="a folder per class (good/defect), optional unlabelled test folder")
    f.add_argument("path")
    f.add_argument("--good", required=True, help="sub-folder of good images")
    f.add_argument("--defect", required=True, help="sub-folder of defect images")
    f.add_argument("--test", help="sub-folder of unlabelled test images (default: hold out --test-size)")
    f.add_argument("--test-size", type=float, default=0.25)
    f.add_argument("--name", required=True, help="competition name: input/NAME, configs/NAME.yaml")
    f.add_argument("--submission-columns", default="id,target", help="e.g. id,label")
    k = sub.add_parser("kaggle", help="download a competition with the Kaggle API")
    k.add_argument("--competition", required=True, help="competition slug")
    k.add_argument("--name", help="local name (default: the slug)")
    args = p.parse_args(argv)
    base = Path(args.workdir)
    if args.config:
        print(prepare_from_config(load_config(args.config).competition, args.force, base))
    elif args.source == "elpv":
        print(prepare_elpv(base / "input" / "elpv", args.test_size, args.force))
    elif args.source == "folder":
        cols = [c.strip() for c in args.submission_columns.split(",")]
        if len(cols) != 2:
            raise InputError(f"--submission-columns {args.submission_columns!r}: expected two names, e.g. id,label")
        print(prepare_folder(Path(args.path), base / "input" / args.name, args.good, args.defect,
                             args.test, args.test_size, cols, args.force))
        cfg_path = base / "configs" / f"{args.name}.yaml"
        if not cfg_path.exists():
            ext = json.loads((base / "input" / args.name / MARKER).read_text())["image_ext"]
            source = {"type": "folder", "path": str(Path(args.path).resolve()), "good": args.good,
                      "defect": args.defect, **({"test": args.test} if args.test else {})}
            write_text_atomic(cfg_path, competition_yaml(args.name, source, ext, cols))
            print(f"wrote {cfg_path}: edit its recipe, then run "
                  f"python src/make_folds.py --competition {args.name}")
    elif args.source == "kaggle":
        print(prepare_kaggle(args.competition, base / "input" / (args.name or args.competition), force=args.force))
    else:
        p.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
