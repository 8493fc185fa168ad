"""The in-memory record every reader produces, and the tf.Example encoder
(docs/DESIGN_NOTES.md, decision 2).

Keys written (the ones both Model Garden's ``TfExampleDecoder`` and the TF Object Detection
API's decoder read):
  image/encoded (bytes, JPEG or PNG), image/format (b"jpeg" | b"png"), image/height,
  image/width (int64), image/source_id (bytes, the decimal COCO image id),
  image/filename (bytes), image/object/bbox/{xmin,ymin,xmax,ymax} (float, normalized to
  [0, 1] by image width/height), image/object/class/label (int64, label-map id),
  image/object/class/text (bytes), image/object/is_crowd (int64 0/1),
  image/object/area (float, mask pixel count), image/object/mask (bytes, one PNG per
  instance, full image size, values 0/1).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from maskrcnn_toolkit.core.boxes import normalize_yxyx, xyxy_to_yxyx


@dataclass
class Instance:
    """One annotated object as a reader found it, before validation.

    Exactly one of ``polygons`` / ``rle`` / ``box_xywh_px`` describes the shape:
      polygons: list of flat [x0, y0, x1, y1, ...] pixel lists (several = one multi-part
        instance).
      rle: COCO RLE dict ({"size": [H, W], "counts": str | list[int]}).
      box_xywh_px: COCO's (x, y, w, h) pixels, for box-only annotations (refused unless the
        user asks to use the box as a polygon).
    ``source`` says where in the annotation file it came from, for the report.
    ``default_label``: the annotation names no class and ``label`` is the reader's
    ``--default-label`` (VIA regions without attributes); counted in the summary.
    """

    label: str
    polygons: list[list[float]] | None = None
    rle: dict | None = None
    box_xywh_px: tuple[float, float, float, float] | None = None
    is_crowd: bool = False
    source: str = ""
    attributes: dict = field(default_factory=dict)
    default_label: bool = False


@dataclass
class Refusal:
    """Something a reader could not turn into an Instance (a LabelMe point, a VIA polyline
    with too few points...): reported, never dropped silently.

    severity: "refused" (default) for an object that is not written; it counts as a refused
      instance, so an image all of whose objects were refused is refused. "ignored" for a
      region whose label names no class (``__ignore__``, readers/_common.ignored_label): not
      written and not an error (``--strict`` passes). "warning" or "fixed" for a finding
      that is not an object (a CVAT image-level <tag>, a declared size the reader
      corrected). Only "refused" counts as a refused instance.
    """

    file: str
    item: str
    value: str
    reason: str
    severity: str = "refused"


@dataclass
class ImageRecord:
    """One image and its instances as a reader found them.

    image_path: where the image file is (absolute), or None when ``embedded`` holds it.
    embedded: (json_path, key) for LabelMe's base64 ``imageData``, read lazily so that
      records stay small (conversion streams images; memory stays flat).
    width/height: as the annotation declares them (None if it does not); the image file
      decides, and a mismatch is reported.
    file_name: the name stored as image/filename and COCO ``file_name``.
    annotation_file: the file the record came from (for messages).
    refusals: shapes the reader could not use, with reasons.
    error: set when the reader already knows the whole image must be refused.
    """

    file_name: str
    annotation_file: str
    image_path: str | None = None
    embedded: tuple[str, str] | None = None
    width: int | None = None
    height: int | None = None
    instances: list[Instance] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    error: Refusal | None = None  # the whole image is refused (e.g. not found, escapes root)


def short(value, limit: int = 80) -> str:
    """``value`` as text for a report (Refusal / Finding ``value``), at most ``limit``
    characters: strings as they are, None as "", anything else as JSON."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else json.dumps(value, default=str)
    return s if len(s) <= limit else s[:limit - 3] + "..."


# tf.train.Example in protobuf wire format, written here rather than with TensorFlow's
# classes: the converter then never imports TensorFlow (~5 s of start-up on 2 cores, half of
# a 900-image conversion; docs/DESIGN_NOTES.md, Convert). The messages (tensorflow/core/example/
# {example,feature}.proto):
#   Example{1: Features}   Features{1: map<string, Feature> (entries {1: key, 2: value})}
#   Feature{1: BytesList | 2: FloatList | 3: Int64List}, each list {1: repeated value},
#   floats and int64s packed as TensorFlow itself writes them.
# tests/test_records.py checks that TensorFlow parses these bytes into the same message its
# own classes build.
def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF  # int64: negatives as two's complement (10 bytes)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: one-byte tag (field number << 3 | 2), length, payload."""
    return tag + _varint(len(payload)) + payload


def _bytes_feature(values: Sequence[bytes]) -> bytes:
    return _field(b"\x0a", b"".join(_field(b"\x0a", v) for v in values))


def _float_feature(values: Sequence[float]) -> bytes:
    packed = np.asarray(values, "<f4").tobytes()
    return _field(b"\x12", _field(b"\x0a", packed) if packed else b"")


def _int_feature(values: Sequence[int]) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(b"\x1a", _field(b"\x0a", packed) if packed else b"")


def encode_example(*, image_bytes: bytes, image_format: str, height: int, width: int,
                   image_id: int, file_name: str, boxes_xyxy_px: np.ndarray,
                   class_ids: Sequence[int], class_names: Sequence[str],
                   is_crowd: Sequence[bool], areas: Sequence[float],
                   mask_pngs: Sequence[bytes]) -> bytes:
    """Serialize one image and its instances as a tf.Example (without importing TensorFlow).

    Args:
      image_bytes: the encoded image (JPEG or PNG), RGB, already EXIF-transposed.
      image_format: "jpeg" or "png".
      boxes_xyxy_px: float [N, 4] as (xmin, ymin, xmax, ymax) in pixels; written normalized
        (``image/object/bbox/*``, divided by the image width / height in float64).
      class_ids: N label-map ids (1..N); class_names: the matching names.
      is_crowd: N flags; areas: N mask areas in pixels.
      mask_pngs: N PNGs of shape [height, width], values 0/1.
    Returns:
      The serialized tf.Example (``tf.train.Example.FromString`` reads it).
    """
    boxes_yxyx_norm = normalize_yxyx(
        xyxy_to_yxyx(np.asarray(boxes_xyxy_px, np.float64).reshape(-1, 4)), height, width)
    feats = {
        "image/encoded": _bytes_feature([image_bytes]),
        "image/format": _bytes_feature([image_format.encode()]),
        "image/height": _int_feature([height]),
        "image/width": _int_feature([width]),
        "image/source_id": _bytes_feature([str(image_id).encode()]),
        "image/filename": _bytes_feature([file_name.encode("utf-8")]),
        "image/object/bbox/xmin": _float_feature(boxes_yxyx_norm[:, 1]),
        "image/object/bbox/ymin": _float_feature(boxes_yxyx_norm[:, 0]),
        "image/object/bbox/xmax": _float_feature(boxes_yxyx_norm[:, 3]),
        "image/object/bbox/ymax": _float_feature(boxes_yxyx_norm[:, 2]),
        "image/object/class/label": _int_feature(class_ids),
        "image/object/class/text": _bytes_feature([n.encode("utf-8") for n in class_names]),
        "image/object/is_crowd": _int_feature([int(bool(c)) for c in is_crowd]),
        "image/object/area": _float_feature(areas),
        "image/object/mask": _bytes_feature(list(mask_pngs)),
    }
    features = b"".join(_field(b"\x0a", _field(b"\x0a", k.encode()) + _field(b"\x12", v))
                        for k, v in feats.items())
    return _field(b"\x0a", features)
