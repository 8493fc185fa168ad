"""CVAT XML reader, part 1 of 2: one shape element (``<polygon>``, ``<box>``, ...) -> a
:class:`Part`, or a Refusal on the record saying why it cannot be one.

A Part is one shape as CVAT wrote it; readers/cvat_instances.py then groups the parts of an
image (``group_id``), turns boxes into box-only instances or rectangles, and applies
``z_order``. Coordinates are pixels of the full image, x right, y down, pixel edges as in
COCO, exactly as CVAT writes them (see readers/cvat.py for what each element becomes).

CVAT's mask RLE (cvat-core ``mask2Rle``, read back by Datumaro's CVAT importer; see
docs/DESIGN_NOTES.md, "Readers: CVAT, VOC"): run lengths, comma-separated, alternating
background / foreground and starting with a background run (0 when the first pixel is
foreground), row-major over the ``width`` x ``height`` box whose top-left pixel is
(``left``, ``top``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from maskrcnn_toolkit.dataset_tools.readers._common import ellipse_polygon, ignored_label
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Refusal, short

# Elements that are annotations but cannot be an instance mask, with the reason.
_NOT_MASKS = {
    "polyline": "a polyline is an open line with no area, not an instance mask; draw a polygon",
    "points": "points have no area, not an instance mask",
    "cuboid": "a 3D cuboid is not an instance mask",
    "skeleton": "a skeleton (keypoints) is not an instance mask",
    "tag": "a tag labels the whole image, not an instance",
}
_SHAPES = ("polygon", "box", "ellipse", "mask", *_NOT_MASKS)


@dataclass
class Part:
    """One CVAT shape that can carry a mask, before grouping and z_order.

    kind: "polygon" (a <polygon> or <ellipse>, as ``polygon``: flat [x0, y0, x1, y1, ...]
      pixels), "mask" (``mask``, ``mask_xy``) or "box" (``box_xyxy_px``, ``rotation``).
    source: where the shape is in the XML, for the report; order: its 1-based position
      among the elements of its image / frame.
    attributes: what becomes ``Instance.attributes`` (occluded, z_order, group_id,
      cvat_source, rotation, the user's ``attributes``...).
    """

    label: str
    kind: str  # "polygon" | "mask" | "box"
    source: str
    order: int
    z_order: int = 0
    group_id: int = 0
    polygon: list[float] | None = None
    # A <mask> as its box only (uint8 [h, w], clipped to the image) and the box's top-left
    # (x, y): full-size masks of every shape of a large photo would not fit in memory.
    mask: np.ndarray | None = None
    mask_xy: tuple[int, int] = (0, 0)
    box_xyxy_px: tuple[float, float, float, float] | None = None  # xtl, ytl, xbr, ybr
    rotation: float = 0.0  # degrees, clockwise on screen (y down), about the box centre
    attributes: dict = field(default_factory=dict)


class _ShapeError(ValueError):
    """A shape whose values cannot be used (reported as a Refusal, not a crash)."""


def parse_shape(el, src: str, order: int, width: int | None, height: int | None,
                rec: ImageRecord) -> Part | None:
    """One shape element -> a Part, or None after appending a Refusal to ``rec.refusals``.

    Args:
      el: the lxml element; its ``label`` attribute is the class (track shapes get their
        track's label before they come here).
      src: where it is in the XML ("annotations.xml image 'a.jpg' polygon 2 (line 9)").
      order: its 1-based position among the elements of its image / frame.
      width, height: the image's declared size in pixels (a <mask> needs both).
      rec: the record the refusals go to; they name ``rec.annotation_file``.
    """
    tag = el.tag
    label = el.get("label")
    file = rec.annotation_file
    if tag not in _SHAPES:
        rec.refusals.append(Refusal(file, src, tag, f"<{tag}> is not a CVAT shape this reader "
                                                    f"knows (polygon, box, ellipse, mask)"))
        return None
    if tag == "tag":  # about the whole image, not an object: not a refused instance
        rec.refusals.append(Refusal(file, src, f"label {label!r}", _NOT_MASKS[tag] +
                                    "; ignored", severity="warning"))
        return None
    if tag in _NOT_MASKS:
        rec.refusals.append(Refusal(file, src, f"label {label!r}", _NOT_MASKS[tag]))
        return None
    if not label:
        rec.refusals.append(Refusal(file, src, "", f"<{tag}> has no 'label' attribute"))
        return None
    ignored = ignored_label(label, file, src)
    if ignored is not None:
        rec.refusals.append(ignored)
        return None
    try:
        attrs = {"occluded": el.get("occluded", "0") == "1"}
        z_order = _int(el, "z_order", 0)
        group_id = _int(el, "group_id", 0)
        attrs["z_order"] = z_order
        if group_id:
            attrs["group_id"] = group_id
        if el.get("source"):
            attrs["cvat_source"] = el.get("source")
        rotation = _float(el, "rotation", 0.0)
        if rotation:
            attrs["rotation"] = rotation
        user_attrs = {a.get("name"): (a.text or "") for a in el.iter("attribute")
                      if a.get("name") is not None}
        if user_attrs:
            attrs["attributes"] = user_attrs
        part = Part(label=label, kind="polygon", source=src, order=order, z_order=z_order,
                    group_id=group_id, rotation=rotation, attributes=attrs)
        if tag == "polygon":
            part.polygon = _points(el)
        elif tag == "ellipse":
            rx, ry = _float(el, "rx"), _float(el, "ry")
            if rx <= 0 or ry <= 0:
                raise _ShapeError(f"ellipse radii rx={rx}, ry={ry} must be > 0")
            # CVAT's rotation is in degrees, clockwise on screen (y down), about the centre.
            part.polygon = ellipse_polygon(_float(el, "cx"), _float(el, "cy"), rx, ry,
                                           math.radians(rotation))
        elif tag == "box":
            part.kind = "box"
            part.box_xyxy_px = (_float(el, "xtl"), _float(el, "ytl"), _float(el, "xbr"),
                                _float(el, "ybr"))
        elif tag == "mask":
            part.kind = "mask"
            if width is None or height is None:
                raise _ShapeError("a <mask> needs the image's width and height, which the "
                                  "<image> element does not declare")
            part.mask, part.mask_xy, outside = _decode_cvat_rle(
                el.get("rle"), _int(el, "left"), _int(el, "top"), _int(el, "width"),
                _int(el, "height"), height, width)
            if outside:
                attrs["mask_pixels_outside_image"] = outside
    except _ShapeError as e:
        rec.refusals.append(Refusal(file, src, f"label {label!r}", str(e)))
        return None
    return part


# ---------------------------------------------------------------------------------------
# CVAT's mask RLE

def cvat_rle_to_mask(rle: str | None, left: int, top: int, box_w: int, box_h: int,
                     height: int, width: int) -> tuple[np.ndarray, int]:
    """Decode CVAT's mask RLE into a full-image mask.

    Args:
      rle: "n0, n1, n2, ..." run lengths alternating background / foreground, starting with
        background (n0 may be 0), row-major over the box. A missing trailing background run
        is accepted (the rest of the box is background).
      left, top: the box's top-left pixel in the image; box_w, box_h: its size in pixels.
      height, width: the image size.
    Returns:
      (uint8 [height, width] mask with values 0/1, number of foreground pixels that fell
      outside the image and were dropped).
    Raises:
      ValueError: on a malformed RLE (the message says what is wrong).
    """
    box, (x0, y0), outside = _decode_cvat_rle(rle, left, top, box_w, box_h, height, width)
    full = np.zeros((height, width), np.uint8)
    full[y0:y0 + box.shape[0], x0:x0 + box.shape[1]] = box
    return full, outside


def _decode_cvat_rle(rle, left, top, box_w, box_h, height, width):
    """:func:`cvat_rle_to_mask` without the full-size canvas: (box clipped to the image,
    its top-left (x, y) in the image, foreground pixels dropped outside the image)."""
    if box_w <= 0 or box_h <= 0:
        raise _ShapeError(f"mask box is {box_w}x{box_h} pixels; width and height must be > 0")
    try:
        counts = np.array([int(v) for v in (rle or "").replace(" ", "").split(",") if v != ""],
                          np.int64)
    except ValueError:
        raise _ShapeError(f"rle={short(rle)!r} is not a comma-separated list of integers") \
            from None
    if counts.size == 0:
        raise _ShapeError("the mask has an empty 'rle'")
    if (counts < 0).any():
        raise _ShapeError(f"rle={short(rle)!r} has negative run lengths")
    total = int(counts.sum())
    if total > box_w * box_h:
        raise _ShapeError(f"rle runs cover {total} pixels but the mask box is {box_w}x{box_h} = "
                          f"{box_w * box_h}; the mask is damaged")
    values = np.zeros(counts.size, np.uint8)
    values[1::2] = 1  # runs alternate background, foreground, background...
    flat = np.zeros(box_w * box_h, np.uint8)
    flat[:total] = np.repeat(values, counts)
    box = flat.reshape(box_h, box_w)
    y0, x0 = min(max(top, 0), height), min(max(left, 0), width)
    y1, x1 = max(min(top + box_h, height), y0), max(min(left + box_w, width), x0)
    clipped = box[y0 - top:y1 - top, x0 - left:x1 - left]
    outside = int(box.sum()) - int(clipped.sum())
    return np.ascontiguousarray(clipped), (x0, y0), outside


# ---------------------------------------------------------------------------------------
# attribute values

def _points(el) -> list[float]:
    """``points="x1,y1;x2,y2;..."`` -> flat [x1, y1, x2, y2, ...] finite floats."""
    raw = el.get("points")
    if raw is None:
        raise _ShapeError(f"<{el.tag}> has no 'points' attribute")
    pairs = [q for q in raw.strip().split(";") if q.strip()]
    values = ",".join(pairs).split(",")
    if len(values) == 2 * len(pairs):  # fast path: one split, one map (the common case)
        try:
            flat = list(map(float, values))
            if all(map(math.isfinite, flat)):
                return flat
        except ValueError:
            pass
    for pair in pairs:  # slow path: name the offending pair
        xy = pair.split(",")
        if len(xy) != 2:
            raise _ShapeError(f"points={short(raw)!r}: {pair!r} is not 'x,y'")
        try:
            x, y = float(xy[0]), float(xy[1])
        except ValueError:
            raise _ShapeError(f"points={short(raw)!r}: {pair!r} is not a number pair") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise _ShapeError(f"points={short(raw)!r}: {pair!r} is not finite")
    raise _ShapeError(f"points={short(raw)!r} cannot be read as 'x1,y1;x2,y2;...'")


def _float(el, name: str, default: float | None = None) -> float:
    raw = el.get(name)
    if raw is None:
        if default is None:
            raise _ShapeError(f"<{el.tag}> has no {name!r} attribute")
        return default
    try:
        v = float(raw)
    except ValueError:
        raise _ShapeError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(v):
        raise _ShapeError(f"{name}={raw!r} is not a finite number")
    return v


def _int(el, name: str, default: int | None = None) -> int:
    raw = el.get(name)
    if raw is None:
        if default is None:
            raise _ShapeError(f"<{el.tag}> has no {name!r} attribute")
        return default
    try:
        return int(raw)
    except ValueError:
        try:  # "3.0" from tools that write every number as a float
            v = float(raw)
        except ValueError:
            v = math.nan
        if v.is_integer():
            return int(v)
        raise _ShapeError(f"{name}={raw!r} is not an integer") from None
