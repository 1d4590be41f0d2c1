"""The GPU kit's packing and unpacking, on CPU: bundles cut into pieces that fit a transfer, put
back together and checked there, one bundle usable before the others arrive."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("kit", ROOT / "bench/gpu/kit.py")
kit = importlib.util.module_from_spec(spec)
sys.modules["kit"] = kit
spec.loader.exec_module(kit)


def _folder(path: Path, files: dict) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


@pytest.fixture
def packed(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.bytes(10_000)  # larger than a piece: travels split
    sources = {"aug": {"a-1.0-py3-none-any.whl": rng.bytes(700)},
               "data": {"labels.csv": b"id,probability,type\n", "images/x.jpg": big}}
    out = tmp_path / "here"
    bundles = [kit.write_bundle(out, name, _folder(tmp_path / "src" / name, files), 4096)
               for name, files in sources.items()]
    manifest = kit.write_manifest(out, bundles, 4096)
    return out, manifest, sources


def _bring(src: Path, dst: Path, names) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        (dst / n).write_bytes((src / n).read_bytes())


def test_pieces_fit_a_transfer_and_unpack_to_the_same_files(packed, tmp_path):
    here, manifest, sources = packed
    pieces = {p["file"]: p["bytes"] for b in manifest["bundles"] for p in b["pieces"]}
    n_data = len([p for p in pieces if p.startswith("data")])
    data_bytes = next(b["bytes"] for b in manifest["bundles"] if b["name"] == "data")
    assert max(pieces.values()) <= 4096 and n_data == -(-data_bytes // 4096) > 2  # the 10 kB image travels split
    assert all(sum(pieces[f] for f in t) <= 4096 for t in manifest["transfers"])
    assert sorted(f for t in manifest["transfers"] for f in t) == sorted(pieces)

    there = tmp_path / "there"
    _bring(here, there, ["manifest.json"] + [p for p in pieces if p.startswith("aug")])
    states = kit.unpack(there, ["aug"], install=False, say=lambda *a: None)  # usable before data arrives
    assert states["aug"] == "unpacked" and states["data"].startswith(f"missing {n_data} of {n_data} pieces")
    with pytest.raises(kit.KitError, match=rf"bundle data: missing {n_data} of {n_data} pieces: data.tar.part00"):
        kit.unpack(there, ["data"], install=False)

    _bring(here, there, [p for p in pieces if p.startswith("data")])
    assert kit.unpack(there, ["aug", "data"], install=False, say=lambda *a: None) == {"aug": "unpacked",
                                                                                      "data": "unpacked"}
    for name, files in sources.items():
        for rel, data in files.items():
            assert (there / "unpacked" / name / rel).read_bytes() == data


def test_a_piece_damaged_in_transfer_is_named_and_nothing_is_unpacked(packed, tmp_path):
    here, manifest, _ = packed
    there = tmp_path / "there"
    _bring(here, there, ["manifest.json"] + [p["file"] for b in manifest["bundles"] for p in b["pieces"]])
    piece = there / "data.tar.part01"
    piece.write_bytes(piece.read_bytes()[:-1] + b"\0")
    with pytest.raises(kit.KitError, match=r"data.tar.part01: damaged in transfer"):
        kit.unpack(there, ["data"], install=False, say=lambda *a: None)
    assert not (there / "unpacked" / "data").exists()


def test_a_member_outside_the_bundle_is_refused(tmp_path):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(kit.KitError, match="not a plain file inside the bundle"):
        kit.extract(buf.getvalue(), tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists()


def test_the_compact_elpv_copy_prepares_like_the_package(tmp_path):
    """prepare.py elpv --from reads labels.csv + images/ (the kit's data bundle) into the same
    competition shape the package gives."""
    import cv2

    import prepare
    rng = np.random.default_rng(0)
    n = 60
    ids = [f"cell{i:04d}" for i in range(n)]
    probs = np.where(np.arange(n) % 3 == 0, 1.0, 0.0)
    (tmp_path / "copy/images").mkdir(parents=True)
    for i in ids:
        cv2.imwrite(str(tmp_path / "copy/images" / f"{i}.jpg"), rng.integers(0, 255, (24, 24), dtype=np.uint8))
    pd.DataFrame({"id": ids, "probability": probs, "type": np.where(np.arange(n) % 2, "mono", "poly")}).to_csv(
        tmp_path / "copy/labels.csv", index=False)
    assert prepare.main(["elpv", "--from", str(tmp_path / "copy"), "--workdir", str(tmp_path / "w")]) == 0
    train = pd.read_csv(tmp_path / "w/input/elpv/train.csv")
    sol = pd.read_csv(tmp_path / "w/input/elpv/solution.csv")
    assert len(train) + len(sol) == n and set(train.columns) >= {"id", "target", "cell_type"}
    assert train.target.sum() + sol.target.sum() == int((probs >= 0.5).sum())
    marker = json.loads((tmp_path / "w/input/elpv/.prepared.json").read_text())
    assert marker["args"]["source"] == "elpv"  # the package's own run finds it prepared


def test_the_kit_scripts_name_only_what_exists():
    run_sh = (ROOT / "bench/gpu/run.sh").read_text()
    for script in ("bench/train_throughput.py", "bench/grid_bench.py", "bench/gpu/kit.py", "src/prepare.py"):
        assert script in run_sh and (ROOT / script).exists()
    for bundle in ("aug", "ray", "weights", "data"):
        assert bundle in kit.BUNDLES


def test_the_kits_elpv_copy_reads_back_through_prepare(tmp_path):
    """The data bundle as pack writes it (numpy values from the package's loader) is what
    prepare.py elpv --from reads: same ids, labels and cell types."""
    import prepare
    rng = np.random.default_rng(1)
    n = 40
    fake = (np.array([f"cell{i:04d}" for i in range(n)]), rng.integers(0, 255, (n, 20, 20), dtype=np.uint8),
            np.where(np.arange(n) % 3 == 0, 1.0, np.where(np.arange(n) % 3 == 1, 0.3333333333333333, 0.0)),
            np.where(np.arange(n) % 2, "mono", "poly"))
    assert kit.write_elpv_copy(tmp_path / "copy", loader=lambda: fake) == n
    ids, images, probs, types = prepare.load_elpv_copy(tmp_path / "copy")
    assert list(ids) == list(fake[0]) and list(types) == list(fake[3]) and images.shape == (n, 20, 20)
    np.testing.assert_array_equal(probs, fake[2])
    assert np.abs(images.astype(int) - fake[1].astype(int)).mean() < 40  # JPEG quality 95 of noise: close
