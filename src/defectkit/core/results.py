"""The blend's result files (submission.csv, blend.json, roc.png, run_summary.json) are one
result: they are replaced all together or not at all.

Each result set is written into a staging folder, then renamed to submissions/runs/<stamp>/;
the link submissions/current is switched to it in one rename, and submissions/<file> are
fixed links through current/. A reader therefore always sees one whole set, the old or the
new, whenever the writer is killed. The last KEEP sets stay under runs/ (a history of what
was submitted).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from defectkit.core.layout import Layout

KEEP = 5


class ResultSet:
    """`rs = ResultSet(layout)`; write files at `rs.path(name)`; `rs.commit()` publishes them."""

    def __init__(self, layout: Layout):
        self.root = layout.submissions
        self.runs = self.root / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self._clean_staging()
        self.staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.runs))

    def _clean_staging(self, older_than_s: float = 3600) -> None:
        """Staging folders of killed writers (old enough not to belong to a live one)."""
        for d in self.runs.glob(".staging-*"):
            with contextlib.suppress(OSError):
                if time.time() - d.stat().st_mtime > older_than_s:
                    shutil.rmtree(d)

    def path(self, name: str) -> Path:
        return self.staging / name

    def final_path(self, name: str) -> Path:
        """Where `name` is read once committed (through the fixed link)."""
        return self.root / name

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def commit(self) -> Path:
        os.chmod(self.staging, 0o755)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        final = self.runs / stamp
        n = 1
        while final.exists():
            final, n = self.runs / f"{stamp}-{n}", n + 1
        os.rename(self.staging, final)
        for name in Layout.RESULT_FILES:
            _link(self.root / name, Path("current") / name)
        _link(self.root / "current", Path("runs") / final.name)  # the switch: one rename
        self._prune(final)
        return final

    def _prune(self, keep_dir: Path) -> None:
        done = sorted((d for d in self.runs.iterdir() if d.is_dir() and not d.name.startswith(".")),
                      key=lambda d: d.stat().st_mtime)
        for d in done[:-KEEP]:
            if d != keep_dir:
                shutil.rmtree(d, ignore_errors=True)


def _link(path: Path, target: Path) -> None:
    """Make `path` a symbolic link to `target` atomically (replacing a file or link there)."""
    if path.is_symlink() and os.readlink(path) == str(target):
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)
