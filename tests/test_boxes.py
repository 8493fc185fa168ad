"""core/boxes.py: the box conventions' conversions.

Each conversion replaced a formula written out by hand somewhere (Detections.to_coco, the
records' normalization, the evaluation's ground-truth drawing, the predictor's OD API
outputs, the preview, the readers' box-only instances...): outputs stay byte-identical only
if the helper does the same float operations in the same dtype, so each is compared here,
bit for bit, with the formula it replaced, on random boxes.
"""
from __future__ import annotations

import numpy as np
import pytest

from maskrcnn_toolkit.core.boxes import (
    denormalize_yxyx,
    normalize_yxyx,
    xywh_to_xyxy,
    xywh_to_yxyx,
    xyxy_to_xywh,
    xyxy_to_yxyx,
    yxyx_to_xywh,
)
from maskrcnn_toolkit.core.detections import Detections
from maskrcnn_toolkit.dataset_tools.readers._common import box_xywh_px_rounded


def random_boxes_yxyx_px(n: int, dtype, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    corners = np.sort(rng.uniform(-5, 700, (n, 2, 2)), axis=1)  # [n, (min, max), (y, x)]
    return np.concatenate([corners[:, 0], corners[:, 1]], axis=1).astype(dtype)


def test_conversions_on_one_box_and_on_n():
    box_yxyx_px = [10.0, 20.0, 50.0, 80.0]  # ymin, xmin, ymax, xmax
    assert yxyx_to_xywh(box_yxyx_px).tolist() == [20, 10, 60, 40]
    assert xywh_to_yxyx([20, 10, 60, 40]).tolist() == box_yxyx_px
    assert xyxy_to_xywh([20, 10, 80, 50]).tolist() == [20, 10, 60, 40]
    assert xywh_to_xyxy([20, 10, 60, 40]).tolist() == [20, 10, 80, 50]
    assert xyxy_to_yxyx([20, 10, 80, 50]).tolist() == box_yxyx_px
    assert normalize_yxyx(box_yxyx_px, 100, 200).tolist() == [0.1, 0.1, 0.5, 0.4]
    assert denormalize_yxyx([0.1, 0.1, 0.5, 0.4], 100, 200).tolist() == [10, 20, 50, 80]
    boxes_yxyx_px = random_boxes_yxyx_px(7, np.float64)
    for f in (yxyx_to_xywh, xywh_to_yxyx, xyxy_to_xywh, xywh_to_xyxy, xyxy_to_yxyx):
        assert f(boxes_yxyx_px).shape == (7, 4)
        np.testing.assert_array_equal(f(boxes_yxyx_px)[3], f(boxes_yxyx_px[3]))
    assert yxyx_to_xywh(np.zeros((0, 4))).shape == (0, 4)
    # Round trips (exact: the values are small integers plus halves).
    b = np.array([[1.5, 2.0, 30.5, 41.0], [0, 0, 480, 640]])
    np.testing.assert_array_equal(xywh_to_yxyx(yxyx_to_xywh(b)), b)
    np.testing.assert_array_equal(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    np.testing.assert_array_equal(xyxy_to_yxyx(xyxy_to_yxyx(b)), b)
    np.testing.assert_array_equal(denormalize_yxyx(normalize_yxyx(b, 480, 640), 480, 640), b)
    with pytest.raises(ValueError, match=r"\[N, 4\] or \[4\]"):
        yxyx_to_xywh([1, 2, 3])


def test_dtypes_are_numpys_promotion_with_float32():
    b32 = random_boxes_yxyx_px(5, np.float32)
    assert yxyx_to_xywh(b32).dtype == np.float32
    assert normalize_yxyx(b32, 480, 640).dtype == np.float32
    assert yxyx_to_xywh(b32.astype(np.float64)).dtype == np.float64
    assert yxyx_to_xywh(b32.astype(np.float16)).dtype == np.float32
    assert xywh_to_yxyx([[1, 2, 3, 4]]).dtype == np.float64       # ints, as JSON gives them
    assert normalize_yxyx(b32.astype(np.float16), 480, 640).dtype == np.float32


def test_bit_identical_to_the_formulas_they_replaced():
    h, w = 479, 641
    b32 = random_boxes_yxyx_px(500, np.float32, seed=1)
    b64 = random_boxes_yxyx_px(500, np.float64, seed=2)
    # predictor (our export's box masks, training's drawing): boxes / size in float32
    scale32 = np.array([h, w, h, w], np.float32)
    assert normalize_yxyx(b32, h, w).tobytes() == (b32 / scale32).tobytes()
    # predictor (OD API outputs), preview (Model Garden's groundtruth_boxes): norm * size
    n32 = (b32 / scale32).astype(np.float32)
    assert denormalize_yxyx(n32, h, w).tobytes() == (n32 * scale32).tobytes()
    # records: (xmin, ymin, xmax, ymax) float64 pixels, each column / width or / height
    xyxy = b64[:, [1, 0, 3, 2]]
    n64 = normalize_yxyx(xyxy_to_yxyx(xyxy), h, w)
    for got, want in [(n64[:, 1], xyxy[:, 0] / w), (n64[:, 0], xyxy[:, 1] / h),
                      (n64[:, 3], xyxy[:, 2] / w), (n64[:, 2], xyxy[:, 3] / h)]:
        assert got.tobytes() == want.tobytes()
    # evaluation's ground truth drawing: COCO [x, y, w, h] (JSON ints or floats) -> float32
    bboxes = [[int(v) for v in r] for r in b64[:50]] + b64[50:].tolist()
    old = np.array([[a[1], a[0], a[1] + a[3], a[0] + a[2]] for a in bboxes], np.float32)
    new = xywh_to_yxyx(np.array(bboxes, np.float64)).astype(np.float32)
    assert new.tobytes() == old.tobytes()
    # validate.py: COCO bbox -> (xmin, ymin, xmax, ymax) float64 for the record and the PNG
    old = np.array([[a[0], a[1], a[0] + a[2], a[1] + a[3]] for a in bboxes], np.float64)
    assert xywh_to_xyxy(np.array(bboxes, np.float64)).tobytes() == old.tobytes()
    # synthetic.py: mask_box_xyxy_px's floats -> COCO bbox floats
    for x0, y0, x1, y1 in xyxy[:50].tolist():
        assert [float(v) for v in xyxy_to_xywh((x0, y0, x1, y1))] == [x0, y0, x1 - x0, y1 - y0]
    # readers (VOC, CVAT box-only instances): w and h rounded to 6 decimals, Python floats
    for x0, y0, x1, y1 in xyxy.tolist():
        got = box_xywh_px_rounded((x0, y0, x1, y1))
        assert got == (x0, y0, round(x1 - x0, 6), round(y1 - y0, 6))
        assert all(type(v) is float for v in got)


def test_to_coco_bbox_is_the_formula_it_replaced():
    """Detections.to_coco's bbox: float32 yxyx pixels -> [x, y, w, h] rounded to 0.01 px,
    w and h subtracted as Python floats (float64)."""
    b32 = random_boxes_yxyx_px(300, np.float32, seed=3)
    det = Detections(b32, np.linspace(1, 0, 300), np.ones(300), ["a"] * 300, (700, 700))
    want = []
    for y0, x0, y1, x1 in ([float(v) for v in b] for b in b32):
        want.append([round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)])
    assert [e["bbox"] for e in det.to_coco(1)] == want
    assert det.to_json()["boxes"] == [[round(float(v), 2) for v in b] for b in b32]
    with pytest.raises(TypeError):  # one name for the field: no ``boxes`` alias
        Detections(boxes=b32, scores=np.zeros(300), class_ids=np.ones(300),
                   class_names=["a"] * 300, image_size=(700, 700))
