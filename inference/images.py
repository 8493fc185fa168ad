"""Reading images for inference: decoded RGB, EXIF orientation applied, clear errors."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.images import to_rgb


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 [H, W, 3] RGB, rotated as its EXIF orientation says
    (phones store portrait photos sideways plus a tag; annotation tools show them upright).
    Decoded by :func:`core.images.to_rgb`, the rule ``dataset_tools convert`` uses for
    training records (16-bit keeps the high byte, alpha over black), so a file gives the
    model the same pixels in training and inference.

    Raises UserError naming the file when it is missing or cannot be decoded.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            return np.asarray(to_rgb(im), dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"image {path!r} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot decode image {path!r} ({e.__class__.__name__}: {e}); "
                        f"expected a JPEG, PNG, BMP, GIF, TIFF or WebP file") from None


def check_image(image, what: str = "image") -> np.ndarray:
    """Validate an in-memory image: uint8 [H, W, 3] RGB (gray [H, W] and RGBA are
    converted). Raises UserError otherwise."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise UserError(f"{what} has dtype {arr.dtype}; expected uint8 RGB [H, W, 3] "
                        f"(use inference.load_image(path) to read a file)")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UserError(f"{what} has shape {arr.shape}; expected uint8 RGB [H, W, 3]")
    return np.ascontiguousarray(arr)
