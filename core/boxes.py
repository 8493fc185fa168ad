"""Box conventions and the conversions between them (numpy, vectorized).

Every box in this project is in one of four conventions, and every name that holds one
says which (docs/development.md, Box conventions):

  ``_yxyx_px``    (ymin, xmin, ymax, xmax) in pixels, pixel edges (a box covering the whole
                  W x H image is (0, 0, H, W)): TensorFlow's order. ``Detections``, drawing,
                  model outputs in input-image pixels.
  ``_yxyx_norm``  the same order divided by the image height / width, in [0, 1]: TFRecord
                  boxes, Model Garden's ``groundtruth_boxes``, the OD API's
                  ``detection_boxes`` and the frozen graph's.
  ``_xyxy_px``    (xmin, ymin, xmax, ymax) in pixels, pixel edges: ``core.masks.mask_box_xyxy_px``,
                  VOC ``<bndbox>``, CVAT ``<box>``, PIL rectangles.
  ``_xywh_px``    COCO's [x, y, w, h] in pixels: x, y the top-left edge, w, h the size.

Each function takes [N, 4] or [4] (any array-like) and returns a new array of the same
shape, computed in numpy's promotion of the input dtype with float32: float32 stays float32
and float64 float64 (the same operations, bit for bit, as writing them out by hand against
a float32 array), float16 becomes float32, int64 and Python ints float64. A conversion only
reorders, adds or subtracts columns, so the units pass through: the permutation
``xyxy_to_yxyx`` works on normalized boxes too.
"""
from __future__ import annotations

import numpy as np


def _as_float(values) -> np.ndarray:
    """``values`` (boxes in any convention) as an [N, 4] or [4] array of ``result_type(dtype,
    float32)``: float32 or float64 kept, float16 -> float32, int64 -> float64."""
    a = np.asarray(values)
    a = a.astype(np.result_type(a.dtype, np.float32), copy=False)
    if a.shape[-1:] != (4,) or a.ndim not in (1, 2):
        raise ValueError(f"boxes must be [N, 4] or [4], got shape {a.shape}")
    return a


def yxyx_to_xywh(boxes_yxyx_px) -> np.ndarray:
    """(ymin, xmin, ymax, xmax) pixels -> COCO [x, y, w, h] pixels (w = xmax - xmin)."""
    b = _as_float(boxes_yxyx_px)
    y0, x0, y1, x1 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=-1)


def xywh_to_yxyx(boxes_xywh_px) -> np.ndarray:
    """COCO [x, y, w, h] pixels -> (ymin, xmin, ymax, xmax) pixels (ymax = y + h)."""
    b = _as_float(boxes_xywh_px)
    x, y, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([y, x, y + h, x + w], axis=-1)


def xyxy_to_xywh(boxes_xyxy_px) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) pixels -> COCO [x, y, w, h] pixels (w = xmax - xmin)."""
    b = _as_float(boxes_xyxy_px)
    x0, y0, x1, y1 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=-1)


def xywh_to_xyxy(boxes_xywh_px) -> np.ndarray:
    """COCO [x, y, w, h] pixels -> (xmin, ymin, xmax, ymax) pixels (xmax = x + w)."""
    b = _as_float(boxes_xywh_px)
    x, y, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([x, y, x + w, y + h], axis=-1)


def xyxy_to_yxyx(boxes_xyxy) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) -> (ymin, xmin, ymax, xmax), pixels or normalized alike."""
    return _as_float(boxes_xyxy)[..., [1, 0, 3, 2]]


def normalize_yxyx(boxes_yxyx_px, height: int, width: int) -> np.ndarray:
    """(ymin, xmin, ymax, xmax) pixels -> the same divided by (height, width, height,
    width): normalized to [0, 1] for a box inside the image. Float32 boxes give a float32
    division, as ``boxes / np.array([h, w, h, w], np.float32)`` does."""
    b = _as_float(boxes_yxyx_px)
    return b / np.array([height, width, height, width], b.dtype)


def denormalize_yxyx(boxes_yxyx_norm, height: int, width: int) -> np.ndarray:
    """Normalized (ymin, xmin, ymax, xmax) -> pixels: multiplied by (height, width, height,
    width). Float32 boxes give a float32 product, as ``boxes * np.array([h, w, h, w],
    np.float32)`` does."""
    b = _as_float(boxes_yxyx_norm)
    return b * np.array([height, width, height, width], b.dtype)
