"""Image files in, fixed-size uint8 arrays out: decoding, checks, border crop, resizing, and the
symmetries of the image's shape. Needs only numpy and OpenCV (no torch), so the exported ONNX
bundle ships this very file and preprocesses exactly as training did."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from .errors import OneLineError

MIN_SIDE = 8  # pixels: smaller images carry no usable detail (a 1x1 image is a broken export)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PAD_VALUE = 0  # letterbox colour of resize=pad


class ImageError(OneLineError):
    """An image file that cannot be used; the message names the file."""


def _truncated(data: bytes, suffix: str) -> bool:
    """A JPEG must end with its EOI marker (FF D9, allowing a little padding after it), a PNG
    with its IEND chunk: OpenCV decodes some truncated files with only a warning on stderr."""
    if suffix in (".jpg", ".jpeg") and data[:2] == b"\xff\xd8":  # not the whole of a small file: an EXIF
        return data.rfind(b"\xff\xd9", len(data) - min(4096, len(data) // 4)) < 0  # thumbnail ends in FF D9 too
    if suffix == ".png" and data[:8] == b"\x89PNG\r\n\x1a\n":
        return data.rfind(b"IEND", max(0, len(data) - 64)) < 0
    return False


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3): grey repeated to 3 channels, 16-bit scaled, alpha
    dropped. Raises ImageError naming the file if it is missing, truncated, undecodable or
    smaller than MIN_SIDE pixels on a side."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: image file missing") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, expected an image file") from None
    except OSError as e:  # a symbolic link loop, no permission, an I/O error
        raise ImageError(f"{path}: cannot be read ({e.strerror or e})") from None
    if _truncated(data, path.suffix.lower()):
        raise ImageError(f"{path}: image file is truncated (its end marker is missing)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise ImageError(f"{path}: cannot be decoded as an image (corrupt or unsupported format)")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{path}: image is {img.shape[1]}x{img.shape[0]} pixels; at least "
                         f"{MIN_SIDE}x{MIN_SIDE} expected")
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    interp = cv2.INTER_AREA if img.shape[0] > h and img.shape[1] > w else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


def fit_image(img: np.ndarray, hw: tuple[int, int], resize: str = "squash", border_crop: float = 0.0) -> np.ndarray:
    """Cut `border_crop` of each side, then bring the image to (h, w):
    squash  resize to (h, w), whatever the aspect ratio
    pad     keep the aspect ratio: resize to fit inside, centre, fill the rest with PAD_VALUE
    crop    keep the aspect ratio: centre-crop to the target's aspect ratio, then resize
    """
    h, w = hw
    if border_crop > 0:
        ih, iw = img.shape[:2]
        dy, dx = int(round(ih * border_crop)), int(round(iw * border_crop))
        img = img[dy:ih - dy, dx:iw - dx]
    ih, iw = img.shape[:2]
    if resize == "squash":
        return _resize(img, h, w)
    if resize == "crop":
        scale = max(h / ih, w / iw)
        ch, cw = min(ih, int(round(h / scale))), min(iw, int(round(w / scale)))
        y0, x0 = (ih - ch) // 2, (iw - cw) // 2
        return _resize(img[y0:y0 + ch, x0:x0 + cw], h, w)
    if resize == "pad":
        scale = min(h / ih, w / iw)
        nh, nw = max(1, min(h, int(round(ih * scale)))), max(1, min(w, int(round(iw * scale))))
        out = np.full((h, w, img.shape[2]), PAD_VALUE, np.uint8)
        y0, x0 = (h - nh) // 2, (w - nw) // 2
        out[y0:y0 + nh, x0:x0 + nw] = _resize(img, nh, nw)
        return out
    raise ValueError(f"resize={resize!r}: expected squash, pad or crop")


def load_image(path: str | Path, hw: tuple[int, int], resize: str = "squash", border_crop: float = 0.0) -> np.ndarray:
    return fit_image(read_image(path), hw, resize, border_crop)


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes a model's input: cut `border_crop` of each side, bring it to `hw`
    by `resize` (fit_image), then normalise by `mean` and `std` (None where the model does it
    itself: an exported graph). One value where a recipe, a checkpoint and a bundle entry say it;
    `geometry` (without the normalisation) is what decides the uint8 array, so images are fitted
    once per geometry."""
    hw: tuple[int, int]
    resize: str = "squash"
    border_crop: float = 0.0
    mean: tuple | None = None
    std: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "hw", (int(self.hw[0]), int(self.hw[1])))

    @property
    def geometry(self) -> Preprocess:
        return replace(self, mean=None, std=None)

    def fit(self, img: np.ndarray) -> np.ndarray:
        return fit_image(img, self.hw, self.resize, self.border_crop)

    def load(self, path: str | Path) -> np.ndarray:
        return self.fit(read_image(path))

    def to_json(self) -> dict:
        """The bundle's `preprocess` entry (its geometry; the normalisation is inside each model)."""
        return {"hw": list(self.hw), "resize": self.resize, "border_crop": self.border_crop}


# The 8 symmetries of the square (dihedral group D4) on (..., H, W) arrays, in the order TTA
# takes them: 1 = identity, 2 = + horizontal flip, 4 = + vertical flip and 180 degrees (the 4
# that keep a rectangle's shape), 8 = + transpose, 90, 270 degrees, anti-transpose.
def _t(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


D4_NUMPY = (
    lambda a: a,
    lambda a: a[..., :, ::-1],
    lambda a: a[..., ::-1, :],
    lambda a: a[..., ::-1, ::-1],
    _t,
    lambda a: np.rot90(a, 1, axes=(-2, -1)),
    lambda a: np.rot90(a, 3, axes=(-2, -1)),
    lambda a: _t(a[..., ::-1, ::-1]),
)
