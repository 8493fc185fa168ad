"""One decode rule for every image the toolkit reads (training records and inference), so
the model sees the same pixels for the same file in both.

:func:`to_rgb` turns a PIL image of any mode into 8-bit RGB:
- EXIF orientation is applied (annotation tools and phones show the rotated image).
- 16-bit grayscale (``I;16*``, and ``I``, which is how PIL opens 16-bit PNG/TIFF) keeps the
  high byte: ``v // 256`` (0..65535 -> 0..255). A plain ``convert("RGB")`` would clip every
  value above 255 to white.
- 32-bit float ``F``: taken as 0..1 when every value is in [0, 1] (scaled by 255), else as
  0..255 (clipped).
- Alpha (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour, premultiplied ``RGBa``
  / ``La``) is composited over black (:data:`ALPHA_BACKGROUND`): transparent pixels become
  background, never whatever colour the file happens to store under them.
- Everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``) goes through
  PIL's ``convert("RGB")``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

ALPHA_BACKGROUND = (0, 0, 0)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def has_alpha(im: Image.Image) -> bool:
    """Whether the image carries transparency (an alpha band or a transparent palette
    entry / colour)."""
    return im.mode in _ALPHA_MODES or (im.mode in ("P", "L", "RGB")
                                       and "transparency" in im.info)


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` EXIF-transposed and converted to mode ``RGB`` (uint8 [H, W, 3] as an array),
    by the rules in the module docstring (a new image; ``im`` is not modified)."""
    im = ImageOps.exif_transpose(im)
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(im).astype(np.int64) // 256
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "F":
        arr = np.asarray(im, np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.rint(arr).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if has_alpha(im):
        rgba = im.convert("RGBA")  # also un-premultiplies RGBa / La, expands P + transparency
        out = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")
