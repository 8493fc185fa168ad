"""Instance masks: polygons / COCO RLE <-> binary masks, PNG mask codec, box-mask pasting.

Conventions used everywhere in this project:
- A binary mask is a numpy array of shape [H, W], dtype uint8 (values 0/1) or bool.
- A polygon is a flat list ``[x0, y0, x1, y1, ...]`` in pixel coordinates of the full
  image (x right, y down, origin at the top-left corner of the top-left pixel), as in COCO.
  An instance may have several polygons (parts); their union is the instance.
- RLE is COCO's: ``{"size": [H, W], "counts": str}`` (compressed) or ``counts`` as a list
  of ints (uncompressed, column-major runs starting with zeros).
- A box is named by its convention (``box_yxyx_px``, ``boxes_yxyx_norm``, ``box_xyxy_px``:
  core/boxes.py).
Rasterization is pycocotools' own, so masks written into TFRecords and the COCO ground
truth JSON that evaluation reads agree pixel for pixel. Decoding an RLE to a mask is ours
(:func:`rle_runs`, :func:`runs_to_mask`, numpy): pycocotools 2.0.11's ``decode`` hands numpy
an object whose ``__array__`` takes no ``copy`` argument, which numpy 2.4 first calls with
one, catches the TypeError, warns (DeprecationWarning) and calls again; a Ctrl-C landing
in that retry surfaced as ``TypeError: __array__() got an unexpected keyword argument
'copy'`` instead of an interrupt.
"""
from __future__ import annotations

import math
import struct
import zlib
from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterize polygons (flat pixel xy lists, each >= 3 points) to a uint8 [H, W] mask."""
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), np.uint8)
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    return runs_to_mask(rle_runs(rle["counts"]), height, width)


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> dict:
    """Rasterize polygons (flat pixel xy lists, each >= 3 points) to a compressed COCO RLE
    with ``counts`` as str: exactly the pixels of :func:`polygons_to_mask`, without
    decoding a full [H, W] array (converters that need both the RLE and the mask decode
    this once instead of encoding the mask again)."""
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polys:
        return mask_to_rle(np.zeros((height, width), np.uint8))
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Decode a COCO RLE (``{"size": [H, W], "counts": ...}``, ``counts`` compressed as str
    or bytes, or uncompressed as a list of ints) to a uint8 [H, W] 0/1 mask (column-major
    in memory, as pycocotools' ``decode`` returns it). ``height``/``width``, when given,
    must equal ``size``. Raises ValueError for a malformed RLE (see :func:`rle_runs`,
    :func:`runs_to_mask`)."""
    h, w = (int(v) for v in rle["size"])
    if height is not None and (h, w) != (height, width):
        raise ValueError(f"RLE size {h}x{w} does not match image size {height}x{width}")
    return runs_to_mask(rle_runs(rle["counts"]), h, w)


def rle_runs(counts: str | bytes | Sequence[int]) -> np.ndarray:
    """The run lengths of a COCO RLE's ``counts``, int64 [R]: alternately background and
    foreground pixels, column-major, starting with background (a mask whose first pixel is
    foreground starts with a 0).

    ``counts`` is either uncompressed (a list of ints, returned as is) or compressed (str or
    bytes), in the format of pycocotools' ``rleToString`` / ``rleFrString`` (maskApi.c):
    each count is a little-endian run of 6-bit characters (byte - 48), 5 value bits each,
    0x20 meaning "another character follows", 0x10 in the last character the sign; from the
    fourth count on, each is stored as the difference to the count two before it (the run
    of the same value). Decoded here in a few vectorized numpy passes.
    Raises ValueError for characters outside '0'..'o', a count cut short at the end, or a
    negative run.
    """
    if isinstance(counts, (str, bytes, bytearray)):
        runs = _runs_from_string(counts.encode("ascii") if isinstance(counts, str) else counts)
    else:
        runs = np.asarray(counts)
        if runs.ndim != 1 or (runs.size and not np.issubdtype(runs.dtype, np.number)):
            raise ValueError("RLE counts must be a string or a list of numbers")
        runs = runs.astype(np.int64)
    if runs.size and runs.min() < 0:
        raise ValueError("RLE counts hold a negative run length")
    return runs


_MAX_CHARS = 12  # characters of one compressed count: 60 bits, beyond any uint32 count


def _runs_from_string(s: bytes) -> np.ndarray:
    c = np.frombuffer(s, np.uint8) - np.uint8(48)  # a byte below '0' wraps past 63
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.max() > 63:
        raise ValueError("compressed RLE counts hold a character outside '0'..'o'")
    if c[-1] & 0x20:
        raise ValueError("compressed RLE counts end in the middle of a count")
    last = np.flatnonzero(c < 0x20)  # the last character of each count (no 0x20 bit)
    first = np.zeros_like(last)
    first[1:] = last[:-1] + 1
    length = last - first + 1
    if length.max() > _MAX_CHARS:
        raise ValueError("compressed RLE counts hold a count too long to be a run length")
    shift = 5 * (np.arange(c.size) - np.repeat(first, length))  # 5 bits per character
    x = np.add.reduceat((c & 0x1F).astype(np.int64) << shift, first)
    # The sign: ``x |= -1 << 5 * length`` when the last character has 0x10.
    x -= (c[last] & 0x10).astype(np.int64) << (5 * length - 4)
    # rleFrString: ``if (m > 2) x += cnts[m - 2]``: counts 3, 5, 7... add up from count 1,
    # counts 4, 6, 8... from count 2.
    x[1::2] = np.cumsum(x[1::2])
    x[2::2] = np.cumsum(x[2::2])
    return x


def runs_to_mask(runs: np.ndarray, height: int, width: int) -> np.ndarray:
    """Paint COCO RLE run lengths (int [R], from :func:`rle_runs`) into a uint8 [H, W] 0/1
    mask: column-major (a transposed C array, as pycocotools' ``decode`` returns).
    Raises ValueError unless the runs cover exactly H x W pixels (pycocotools refuses more,
    and leaves the rest of its buffer uninitialized for fewer)."""
    runs = np.asarray(runs, np.int64)
    total = int(runs.sum())
    if total != height * width:
        raise ValueError(f"RLE counts cover {total} pixels, not the {height}x{width} = "
                         f"{height * width} of the mask")
    values = np.zeros(runs.size, np.uint8)
    values[1::2] = 1
    return np.repeat(values, runs).reshape(width, height).T


def mask_to_rle(mask: np.ndarray) -> dict:
    """Encode a [H, W] binary mask as compressed COCO RLE with ``counts`` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def box_mask_to_rle(mask: np.ndarray, box_yxyx_px: Sequence[float]) -> dict:
    """:func:`mask_to_rle` of a mask that lies inside its box, encoding only the
    box's window: the same compressed COCO RLE (``{"size": [H, W], "counts": str}``),
    character for character, as pycocotools' ``encode`` of the whole mask.

    Args:
      mask: bool [H, W] at image size.
      box_yxyx_px: (ymin, xmin, ymax, xmax) in pixels; the window is the box grown by 1 px (as
        ``core.draw`` blends it), clipped to the image.
    A mask with pixels outside that window is encoded whole (same result, full cost).

    Why: the annotator RLE-encodes every mask of every frame for its JSONL on the 2 cores
    the model runs on (docs/DESIGN_NOTES.md, Video and annotate); encoding a full [H, W]
    copy per mask cost ~0.5 ms at 640x480, the window alone a fraction of it.
    """
    h, w = mask.shape
    y0, x0, y1, x1 = (float(v) for v in box_yxyx_px)
    if mask.dtype != bool or not all(map(math.isfinite, (y0, x0, y1, x1))):
        return mask_to_rle(mask)
    r0, c0 = max(0, math.floor(y0) - 1), max(0, math.floor(x0) - 1)
    r1, c1 = min(h, math.ceil(y1) + 1), min(w, math.ceil(x1) + 1)
    if r1 <= r0 or c1 <= c0:
        return mask_to_rle(mask)
    win = mask[r0:r1, c0:c1]
    if np.count_nonzero(win) != np.count_nonzero(mask):
        return mask_to_rle(mask)
    hr, wc = win.shape
    # COCO runs go down each column, left to right, starting with a run of zeros. Lay the
    # window out that way between a 0 before (the zeros before the window) and a 0 after,
    # each column followed by one 0 standing for the zeros between it and the next
    # column's window part (the rows outside the window; none when it has every row).
    pad = int(hr < h)
    seq = np.zeros(2 + wc * (hr + pad), bool)
    seq[1:-1].reshape(wc, hr + pad)[:, :hr] = win.T
    t = np.flatnonzero(seq[1:] != seq[:-1])  # a run starts at seq[t + 1]
    # seq[t + 1] is row r0 + j of column c0 + k, (k, j) = divmod(t, hr + pad) (j == hr:
    # the 0 after the column, at row r1); its column-major pixel index:
    starts = c0 * h + r0 + t + (t // (hr + pad)) * (h - hr - pad)
    if starts.size and starts[-1] == h * w:
        starts = starts[:-1]  # the mask's last run ends at the image's last pixel
    bounds = np.empty(starts.size + 2, np.int64)
    bounds[0], bounds[1:-1], bounds[-1] = 0, starts, h * w
    counts = bounds[1:] - bounds[:-1]
    # pycocotools compresses the run lengths itself, so the string is its own.
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def mask_box_xyxy_px(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box of a mask, ``box_xyxy_px``: (xmin, ymin, xmax, ymax) in pixel-edge
    coordinates (xmax = last column + 1), or None for an empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Palette entry 0 = (0, 0, 0), entry 1 = (1, 1, 1): see encode_mask_png.
_PLTE_0_1 = _png_chunk(b"PLTE", b"\x00\x00\x00\x01\x01\x01")
_IEND = _png_chunk(b"IEND", b"")


def encode_mask_png(mask: np.ndarray,
                    box_xyxy_px: tuple[float, float, float, float] | None = None
                    ) -> bytes:
    """Encode a binary [H, W] mask (any value > 0 is foreground; C or Fortran order) as a
    1-bit palette PNG that decodes to pixel values exactly 0/1.

    Args:
      mask: [H, W] uint8 or bool.
      box_xyxy_px: optional (xmin, ymin, xmax, ymax) in pixel edges (as
        :func:`mask_box_xyxy_px`, or pycocotools ``toBbox`` converted) containing every
        foreground pixel: when the caller has it from the RLE, it saves a pass over the
        mask. Pixels outside it are written as 0.
    Returns:
      PNG bytes: bit depth 1, color type 3 (palette), palette (0, 0, 0), (1, 1, 1).

    Why values 0/1: Model Garden's ``TfExampleDecoder`` decodes masks with
    ``tf.io.decode_png(channels=1)`` and casts them to float without binarizing: a 255
    would become a mask target of 255 (the mask loss goes negative). Model Garden's own
    converter writes 8-bit 0/1 PNGs.
    Why a 1-bit *palette* PNG: one bit per pixel is 8x less data to deflate than 8-bit
    grayscale (docs/DESIGN_NOTES.md, Core: PNG-encoding full-size masks is where
    converters spend their time). A 1-bit *grayscale* PNG would not do: libpng expands it
    to 0/255. A palette image is expanded by its palette instead, (1, 1, 1) -> RGB
    (1, 1, 1) -> gray 1 (libpng keeps gray = R when R = G = B; PIL's "L" conversion gives 1
    too), so TensorFlow (``decode_png`` / ``decode_image`` with ``channels=1``, as Model
    Garden and the TF Object Detection API read masks), PIL and :func:`decode_mask_png` all
    get 0/1 (tests/test_masks.py). Rows use PNG filter "None" and zlib's run-length
    strategy: a mask row is long runs of one value.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    h, w = mask.shape
    raw = np.zeros((h, 1 + (w + 7) // 8), np.uint8)  # column 0: filter type "None"
    if box_xyxy_px is None:
        box_xyxy_px = mask_box_xyxy_px(mask)
    if box_xyxy_px is not None:
        bx0, by0, bx1, by1 = box_xyxy_px
        x0 = max(0, int(bx0)) // 8 * 8  # whole bytes: a row's bits are packed 8 per byte
        y0, x1, y1 = max(0, int(by0)), min(w, int(math.ceil(bx1))), \
            min(h, int(math.ceil(by1)))
        if x1 > x0 and y1 > y0:
            # RLE masks decode to column-major arrays, and packbits is ~20x faster on
            # contiguous rows: copy only the box. (packbits maps any non-zero to 1.)
            packed = np.packbits(np.ascontiguousarray(mask[y0:y1, x0:x1]), axis=1)
            raw[y0:y1, 1 + x0 // 8:1 + x0 // 8 + packed.shape[1]] = packed
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = z.compress(raw.tobytes()) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 3, 0, 0, 0)  # bit depth 1, palette
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _PLTE_0_1
            + _png_chunk(b"IDAT", idat) + _IEND)


def decode_mask_png(data: bytes) -> np.ndarray:
    """Decode a PNG mask to uint8 [H, W] with values 0/1 (any pixel > 0 is foreground)."""
    import io

    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("L") if im.mode not in ("1", "L") else im)
    return (arr > 0).astype(np.uint8)


def paste_box_masks(box_masks: np.ndarray, boxes_yxyx_norm: np.ndarray, height: int,
                    width: int) -> np.ndarray:
    """Paste box-relative masks into the full image and threshold them: exactly the pixels
    of the TF Object Detection API's ``reframe_box_masks_to_image_masks`` (bilinear
    ``tf.image.crop_and_resize`` of the image's unit box in each box's frame, zero outside
    the box) ``> 0.5``, and of the export's in-graph ``paste_box_masks_binary``.

    Args:
      box_masks: float32 [N, mh, mw], mask probabilities covering each box.
      boxes_yxyx_norm: float32 [N, 4], (ymin, xmin, ymax, xmax) normalized to [0, 1] by
        image size.
      height, width: output image size in pixels.
    Returns:
      bool [N, height, width].

    Why this shape of code (docs/DESIGN_NOTES.md, Export and inference; 100 detections at
    640x480): the kernel's float32 operations are repeated in its order (samples
    ``r0 * (in - 1) + i * scale``, then x on the mask rows, then y), so the result is
    bit-identical, but only over each box's own window. Measured here: ~16 ms for 100
    masks of ~120x120 px, half of it zeroing the 30 MB output (an anonymous mmap, zero
    pages touched on demand, was slower: page faults cost ~10 us each in this VM), where
    interpolating whole images took ~50.
    """
    box_masks = np.asarray(box_masks, np.float32)
    boxes_yxyx_norm = np.asarray(boxes_yxyx_norm, np.float32).reshape(-1, 4)
    n = box_masks.shape[0]
    out = np.zeros((n, height, width), bool)
    if n == 0:
        return out
    mh, mw = box_masks.shape[1:3]
    one, tiny = np.float32(1.0), np.float32(1e-12)
    y0, x0, y1, x1 = boxes_yxyx_norm.T
    # Model Garden's paste_instance_masks_v2 crashes on zero-height boxes (docs/
    # DESIGN_NOTES.md, Export and inference); the guard keeps the division finite and such a
    # box samples at most one row.
    bh, bw = np.maximum(y1 - y0, tiny), np.maximum(x1 - x0, tiny)
    # The image's unit box expressed in each box's own normalized frame (the crop box the
    # OD API passes to crop_and_resize); then the sample position of every output pixel.
    vy, ty, by, ly = _crop_samples(-y0 / bh, (one - y0) / bh, height, mh)   # [N, H]
    vx, lx, rx, xl = _crop_samples(-x0 / bw, (one - x0) / bw, width, mw)    # [N, W]
    # Samples grow with the pixel index, so each box's valid pixels are one run per axis.
    ya, hy = vy.argmax(axis=1), vy.sum(axis=1)
    xa, wx = vx.argmax(axis=1), vx.sum(axis=1)
    half = np.float32(0.5)
    for k in np.flatnonzero((hy > 0) & (wx > 0)):
        ys, xs = slice(ya[k], ya[k] + hy[k]), slice(xa[k], xa[k] + wx[k])
        m = box_masks[k]
        # x on the mask rows, then y: ``a + (b - a) * lerp`` as the kernel computes it,
        # in place (float32 addition commutes exactly).
        left = m[:, lx[k, xs]]                                      # [mh, ww]
        rows = m[:, rx[k, xs]]
        rows -= left
        rows *= xl[k, xs]
        rows += left
        top = rows[ty[k, ys]]                                       # [wh, ww]
        val = rows[by[k, ys]]
        val -= top
        val *= ly[k, ys, None]
        val += top
        np.greater(val, half, out=out[k, ys, xs])
    return out


def _crop_samples(r0: np.ndarray, r1: np.ndarray, out_size: int, in_size: int):
    """Where ``tf.image.crop_and_resize`` (bilinear) samples its input along one axis, for
    every output pixel of every box, in the kernel's float32 operations and order
    (crop_and_resize_op.cc): crops span [r0, r1] (float32 [N], normalized input
    coordinates), the output axis is ``out_size`` long, the input axis ``in_size``.

    Returns valid bool [N, out_size] (the sample lies inside the input; the kernel gives
    its extrapolation value, 0, elsewhere), lo / hi intp [N, out_size] (floor / ceil input
    index, clipped) and lerp float32 [N, out_size] (sample - floor).
    """
    last = np.float32(in_size - 1)
    if out_size > 1:
        scale = (r1 - r0) * last / np.float32(out_size - 1)
        c = r0[:, None] * last + np.arange(out_size, dtype=np.float32)[None, :] * scale[:, None]
    else:  # a 1-pixel output axis samples the crop's middle (the kernel's special case)
        c = (np.float32(0.5) * (r0 + r1) * last)[:, None]
    valid = (c >= 0) & (c <= last)
    floor = np.floor(c)
    lo = np.clip(floor, 0, in_size - 1).astype(np.intp)
    hi = np.clip(np.ceil(c), 0, in_size - 1).astype(np.intp)
    return valid, lo, hi, (c - floor).astype(np.float32)
