"""A Kaggle competition's files, downloaded with the Kaggle API: `prepare.py kaggle --slug SLUG`."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from defectkit.core.checks import InputError, check_name
from defectkit.data.kaggle_client import kaggle_api
from defectkit.data.sources.base import Source, register_source
from defectkit.data.sources.common import (
    is_prepared,
    write_marker,
)


def prepare_kaggle(slug: str, out: Path, api=None, force: bool = False) -> str:
    args = {"source": "kaggle", "slug": slug}
    if is_prepared(out, args) and not force:
        return f"{out} is already prepared; nothing to do"
    if api is None:
        api = kaggle_api()
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
            for n in zf.namelist():
                if Path(n).is_absolute() or ".." in Path(n).parts:
                    raise InputError(f"{z}: member {n!r} would be written outside {out}")
            zf.extractall(out)
            files += [n for n in zf.namelist() if not n.endswith("/")]
    write_marker(out, args, files)
    shutil.rmtree(download)
    return (f"downloaded {slug} into {out} ({len(files)} files); next: describe it in configs/{out.name}.yaml "
            "(recipe: {preset: auto}), or run python src/prepare.py folder on it if it holds class folders")


@register_source("kaggle")
class KaggleSource(Source):
    help = "download a competition with the Kaggle API"

    def add_arguments(self, p):
        p.add_argument("--slug", required=True, help="the Kaggle competition's slug (from its URL)")
        p.add_argument("--name", help="local name (default: the slug)")

    def from_args(self, args):
        return {"type": "kaggle", "slug": args.slug}

    def competition(self, args):
        return check_name(args.name or args.slug, "--name")

    def prepare(self, out, source, sub_cols, force, base):
        return prepare_kaggle(source["slug"], out, force=force)
