"""What every source shares in building input/<competition>/ in Kaggle's shape (train.csv, train/,
test/, sample_submission.csv, solution.csv): the marker that makes a second run a no-op, the seeded
held-out split, the tables, the checked import of image files, and the config prepare.py writes."""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from defectkit.core.checks import InputError, check_train_table
from defectkit.core.config import ROOT
from defectkit.core.fileio import atomic_path, file_hash, write_csv_atomic, write_json_atomic, write_text_atomic
from defectkit.core.layout import Layout
from defectkit.runtime.cpus import usable_cpus
from defectkit.runtime.imaging import IMAGE_EXTS, ImageError, read_image

MARKER = ".prepared.json"

SPLIT_SEED = 2019  # fixed: every user gets the same held-out test split

MIN_FOLDS = 5  # a held-out split must leave this many of each class for stratified folds


def is_prepared(out: Path, args: dict) -> bool:
    """Marker matches these arguments and every file it lists is still there."""
    marker = out / MARKER
    if not marker.exists():
        return False
    info = json.loads(marker.read_text())
    return info.get("args") == args and all((out / f).exists() for f in info.get("files", []))


def write_marker(out: Path, args: dict, files: list[str], **extra) -> None:
    """Written last, once the import is whole: its arguments, its files, and the sha256 of the
    tables it wrote (so that a later run can tell a table the user changed)."""
    tables = {f: file_hash(out / f, 64) for f in files if f.endswith(".csv") and (out / f).exists()}
    write_json_atomic(out / MARKER, {"args": args, "files": files, "tables": tables, **extra})


def check_user_edits(out: Path, force: bool) -> None:
    """Before a re-prepare rewrites the tables: refuse if the user changed one since it was written
    (a column added by hand, rows removed), unless --force."""
    marker = out / MARKER
    if force or not marker.exists():
        return
    for name, digest in (json.loads(marker.read_text()).get("tables") or {}).items():
        if (out / name).exists() and file_hash(out / name, 64) != digest:
            raise InputError(f"{out / name}: changed since prepare.py wrote it, and preparing again (other "
                             "arguments) would rewrite it; keep a copy of your changes and pass --force to rebuild, "
                             "or prepare with the arguments it was made with")


def classifier_need(test_size: float) -> int:
    """Defect images a held-out split of `test_size` and MIN_FOLDS stratified folds need."""
    return MIN_FOLDS + max(1, int(np.ceil(MIN_FOLDS * test_size / (1 - test_size))))


def held_out_split(target: np.ndarray, test_size: float, strata: np.ndarray | None = None,
                   seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask of test rows: a stratified, seeded split that leaves at least one of each
    class in the test split and MIN_FOLDS of each in the training rows. With fewer defects than
    that (or none), each class is split alone (`few_defect_split`): the anomaly member's case.
    Too few good images is a clear error."""
    from sklearn.model_selection import train_test_split
    if not 0 < test_size < 1:
        raise InputError(f"--test-size {test_size}: expected a fraction between 0 and 1 (e.g. 0.25)")
    need = classifier_need(test_size)
    n_good, n_defect = int((target == 0).sum()), int((target == 1).sum())
    if n_good < need:
        raise InputError(f"too few images: {n_good} good; a held-out test split of {test_size:g} and {MIN_FOLDS} "
                         f"folds need at least {need} good images (add images, or give an unlabelled --test folder)")
    if n_defect < need:
        return few_defect_split(target, test_size, seed)
    idx = np.arange(len(target))
    strata = target if strata is None else strata
    try:
        _, test_idx = train_test_split(idx, test_size=test_size, stratify=strata, random_state=seed)
    except ValueError:  # a stratum too small: fall back to the label alone
        _, test_idx = train_test_split(idx, test_size=test_size, stratify=target, random_state=seed)
    mask = np.zeros(len(target), dtype=bool)
    mask[test_idx] = True
    return mask


def few_defect_split(target: np.ndarray, test_size: float, seed: int = SPLIT_SEED) -> np.ndarray:
    """Each class held out alone by the same share, seeded: one defect at least in the test split
    when there are two or more (so that the held-out AUC exists), none when there is one."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(target), dtype=bool)
    for c in (0, 1):
        idx = np.flatnonzero(target == c)
        n = len(idx)
        k = 0 if n < 2 else min(n - 1, max(1, int(round(test_size * n))))
        mask[rng.permutation(idx)[:k]] = True
    return mask


def few_defects_note(n_defect: int, test_size: float) -> str:
    """What prepare says when the defects are too few for classifiers; empty when they are not."""
    need = classifier_need(test_size)
    if n_defect >= need:
        return ""
    return (f"; {n_defect} defect image(s): fewer than the {need} that classifiers need ({MIN_FOLDS} folds and a "
            "held-out share), so preset: auto trains the anomaly member, learnt from the good images alone")


def write_competition(out: Path, train: pd.DataFrame, test_ids: list[str], sub_cols: list[str],
                      solution: pd.DataFrame | None) -> list[str]:
    """The tables of a competition folder, each written atomically. Returns their names."""
    write_csv_atomic(train, out / "train.csv")
    write_csv_atomic(pd.DataFrame({sub_cols[0]: test_ids, sub_cols[1]: 0.5}), out / "sample_submission.csv")
    names = ["train.csv", "sample_submission.csv"]
    if solution is not None:
        write_csv_atomic(solution, out / "solution.csv")
        names.append("solution.csv")
    elif (out / "solution.csv").exists():
        (out / "solution.csv").unlink()
    return names


def write_image(path: Path, img: np.ndarray, force: bool = False) -> None:
    """Encode an image atomically: an interrupted run never leaves a truncated file."""
    if path.exists() and not force:
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


def list_images(folder: Path, what: str = "class folder") -> list[Path]:
    """Every image below `folder`, sub-folders included (hidden files and folders left out)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_EXTS)}) in this {what}")
    return files


def image_ids(files: list[Path], roots: list[Path], prefixes: list[str]) -> list[str]:
    """Ids from file names: the name stem when unique, else prefixed by the class and the
    sub-folder path (joined with '_'): ids are names, never paths."""
    stems = [p.stem for p in files]
    if len(set(stems)) == len(stems):
        return stems
    ids = [f"{pre}_{'_'.join(p.relative_to(root).with_suffix('').parts)}"
           for p, root, pre in zip(files, roots, prefixes)]
    dup = pd.Series(ids)[pd.Series(ids).duplicated()]
    if len(dup):
        raise InputError(f"two files give the same id {dup.iloc[0]!r} (same name, same class); rename one")
    return ids


def _same_image(src: Path, dst: Path) -> bool:
    """dst was made from src as it is now (copies keep size and time, re-encodes keep time)."""
    if not dst.exists():
        return False
    s, d = src.stat(), dst.stat()
    same_format = src.suffix.lower() == dst.suffix.lower()
    return d.st_mtime_ns == s.st_mtime_ns and (not same_format or d.st_size == s.st_size)


def import_image(src: Path, dst: Path) -> tuple[int, int]:
    """Check that `src` decodes (named error otherwise), then copy it (same format) or re-encode
    it (as dst's format); skipped when dst already holds it. Returns (height, width)."""
    try:
        img = read_image(src)
    except ImageError as e:
        raise InputError(str(e)) from None
    if not _same_image(src, dst):
        if src.suffix.lower() == dst.suffix.lower():
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        else:
            write_image(dst, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), force=True)
        st = src.stat()
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    return img.shape[0], img.shape[1]


def import_images(jobs: list[tuple[Path, Path]]) -> list[tuple[int, int]]:
    from tqdm import tqdm
    with ThreadPoolExecutor(min(8, usable_cpus())) as pool:
        return list(tqdm(pool.map(lambda j: import_image(*j), jobs), total=len(jobs), desc="images", unit="img",
                         leave=False))


def build_labelled(out: Path, rows: pd.DataFrame, args: dict, force: bool,
                   test_files: list[Path] = ()) -> tuple[pd.DataFrame, list[str], list[tuple[int, int]], bool]:
    """input/<name>/ from labelled rows (id, target, path) and optional unlabelled test files:
    a held-out split of `args["test_size"]` (default 0.25) when there is no test folder, the
    submission's columns `args["submission_columns"]` (default id, target). `args`: what the import is
    made from, kept in the marker (another value makes the next run import again). Returns (train, test
    ids, image sizes, held out?)."""
    test_files = list(test_files)
    test_size = float(args.get("test_size", 0.25))
    sub_cols = tuple(args.get("submission_columns") or ("id", "target"))
    check_user_edits(out, force)
    exts = {Path(p).suffix.lower() for p in list(rows.path) + test_files}
    ext = exts.pop() if len(exts) == 1 else ".png"  # mixed formats are re-encoded as PNG
    target = rows.target.to_numpy()
    if test_files:
        is_test = np.zeros(len(rows), dtype=bool)
        test_ids = [p.stem for p in test_files]
        if len(set(test_ids)) < len(test_ids):
            raise InputError(f"{test_files[0].parent}: two test files share a name stem; ids must be unique")
    else:
        is_test = held_out_split(target, test_size)
        test_ids = list(rows.id[is_test])
    jobs = [(Path(p), out / ("test" if t else "train") / f"{i}{ext}") for p, i, t in zip(rows.path, rows.id, is_test)]
    jobs += [(p, out / "test" / f"{p.stem}{ext}") for p in test_files]
    for sub in ("train", "test"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sizes = import_images(jobs)
    train = rows[~is_test].drop(columns="path").reset_index(drop=True)
    check_train_table(train, "id", "target", out / "train.csv")
    sol = None if test_files else solution_table(rows.id[is_test], target[is_test], sub_cols[0], sub_cols[1])
    files = write_competition(out, train, test_ids, list(sub_cols), sol)
    files += [str(dst.relative_to(out)) for _, dst in jobs]
    write_marker(out, args, files, image_ext=ext, sizes=[list(s) for s in sizes])
    return train, test_ids, sizes, not test_files


def describe_sizes(sizes: list[tuple[int, int]]) -> str:
    """The images' sizes and aspect ratios in one line (what preset auto plans the input from)."""
    if not sizes:
        return "sizes not recorded (prepare again with --force to survey them)"
    hw = np.array(sizes, dtype=float)
    a = hw[:, 1] / hw[:, 0]
    return (f"{len(hw)} images of {int(hw[:, 1].min())}-{int(hw[:, 1].max())} x {int(hw[:, 0].min())}-"
            f"{int(hw[:, 0].max())} px (w x h), median {int(np.median(hw[:, 1]))} x {int(np.median(hw[:, 0]))}, "
            f"aspect ratios (w/h) {a.min():.2f}-{a.max():.2f}")


def competition_yaml(name: str, source: dict, ext: str, sub_cols, why: str, boxes: bool = False) -> str:
    comp = {"name": name, "source": source, "id_col": "id", "target_col": "target", "image_ext": ext,
            "submission_columns": list(sub_cols), "metric": "roc_auc"}
    head = (f"# {name}: written by src/prepare.py. Images: {why}.\n"
            "# preset: auto plans the input size, backbones and epochs from the images, this machine and the time\n"
            "# budget (time_budget: minutes; 0 = 10 on a CPU, 30 on a GPU). A field set here is kept as set.\n")
    if boxes:
        head += "# input/<name>/defect_boxes.csv holds the defect boxes (for explain.py).\n"
    return head + yaml.safe_dump({"competition": comp, "recipe": {"preset": "auto"}}, sort_keys=False)


def write_config_and_say_next(base: Path, name: str, source: dict, sub_cols, boxes: bool = False) -> str:
    out = Layout(base).raw_input(name)
    info = json.loads((out / MARKER).read_text())
    why = describe_sizes([tuple(x) for x in info.get("sizes") or []])
    cfg_path = base / "configs" / f"{name}.yaml"
    lines = [f"images: {why}"]
    if not cfg_path.exists():
        write_text_atomic(cfg_path, competition_yaml(name, source, info["image_ext"], sub_cols, why, boxes))
        lines.append(f"wrote {cfg_path} (preset: auto: the run plans its recipe from the images and a time budget)")
    else:
        lines.append(f"kept {cfg_path} as it is")
    where = "" if Path(base).resolve() == ROOT.resolve() else f" --workdir {base}"
    config = cfg_path if where else cfg_path.relative_to(base)
    lines.append(f"next: python src/run.py --config {config}{where}")
    return "\n".join(lines)
