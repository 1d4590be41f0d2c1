"""Files written whole or not at all, and locks between processes.

Every file goes to a temporary sibling first and is renamed into place, so an interrupted run
never leaves a half-written CSV, JSON, checkpoint or image behind. `FileLock` keeps two
processes (two runs, or two Ray tasks) from writing the same fold or cache at once.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path

from defectkit.core.checks import InputError
from defectkit.runtime.files import atomic_path, tmp_pattern  # noqa: F401 (the one atomic writer)

_UMASK = os.umask(0)
os.umask(_UMASK)


def remove_stale_tmps(folder: Path, prefix: str = "") -> int:
    """Delete the temporary files that killed writers left in `folder` (only call this while
    holding the lock of whatever writes there). Returns how many were removed."""
    n = 0
    for p in Path(folder).glob(f".{prefix}*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            n += 1
    return n


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def strict_json(obj):
    """`obj` with every NaN or infinite float as None: files stay strict JSON (an AUC of one class
    is undefined, written null rather than NaN, which other readers refuse)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(strict_json(obj), indent=2, sort_keys=False, default=str) + "\n")


def write_csv_atomic(df, path: str | Path, **kw) -> None:
    kw.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kw)


def save_figure_atomic(fig, path: str | Path, **kw) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), **kw)


def file_hash(path: str | Path, n: int = 16) -> str:
    """sha256 of a file's bytes, first `n` hex digits: recorded by each stage to refuse mixing."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


class LockedError(InputError):
    """Another process holds the lock."""


class FileLock:
    """An exclusive lock between processes (fcntl.flock on `path`), released when the holder
    exits, however it exits. The file records who holds it, for the message others get.

        with FileLock(path, "fold 0 of lite0"):            # error at once if held
        with FileLock(path, "cache", wait=True):           # wait for the holder instead
    """

    def __init__(self, path: str | Path, what: str, wait: bool = False):
        self.path, self.what, self.wait, self.fd = Path(path), what, wait, None

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = Path(self.path).read_text().strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise LockedError(f"{self.what} is being written by {holder} (lock {self.path}); wait for it "
                              "to finish, or stop that process") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def check_free_space(path: Path, need: int) -> None:
    """An OSError naming `path` unless its folder has room for `need` bytes (and 64 MiB to spare)."""
    free = shutil.disk_usage(Path(path).parent).free
    if free < need + 64 * 2**20:
        raise OSError(errno.ENOSPC, f"needs {need / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free", str(path))


def build_npy_cache(path: str | Path, n: int, chunks, desc: str = "", progress: bool = True):
    """A .npy file of `n` rows filled from `chunks` (an iterator of (start, array) pairs; the
    first one fixes the row shape and dtype), written atomically and memory-mapped after.

    Built once under a lock: a second process asking for the same file waits for the first
    and then reads its result; temporaries left by a killed build are removed first."""
    import numpy as np
    from tqdm import tqdm
    path = Path(path)
    if path.exists():
        return np.load(path, mmap_mode="r")
    with FileLock(path.with_name(path.name + ".lock"), f"cache {path.name}", wait=True):
        if path.exists():  # built by the process we waited for
            return np.load(path, mmap_mode="r")
        for p in path.parent.glob(tmp_pattern(path)):
            p.unlink()
        with atomic_path(path) as tmp:
            out = None
            for start, arr in tqdm(chunks, desc=desc or path.stem[:40], unit="batch", leave=False,
                                   disable=not progress):
                if out is None:
                    need = n * int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
                    check_free_space(path, need)  # a memory map on a full disk dies by SIGBUS, with no message
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=arr.dtype, shape=(n, *arr.shape[1:]))
                out[start:start + len(arr)] = arr
            if out is None:
                raise InputError(f"{path}: nothing to cache (no rows)")
            out.flush()
            del out
    return np.load(path, mmap_mode="r")
