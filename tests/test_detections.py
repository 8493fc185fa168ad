"""core/detections.py: masks RLE-encoded from their box windows are pycocotools' own RLE.

``box_mask_to_rle`` builds COCO's column-major runs from the box's window only (the
annotator encodes every mask of every frame: docs/DESIGN_NOTES.md, Video and annotate); the
compressed string must be exactly what ``pycocotools.mask.encode`` gives for the whole mask,
whatever the window: at the image's edges and corners, as tall as the image, empty, full,
or too small for the mask. Boxes here are (ymin, xmin, ymax, xmax) pixels, as
``Detections.boxes_yxyx_px``.
"""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskrcnn_toolkit.core.detections import Detections
from maskrcnn_toolkit.core.masks import box_mask_to_rle


def coco_encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def random_case(rng):
    h, w = (int(v) for v in rng.integers(1, 14, 2))
    m = np.zeros((h, w), bool)
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    y1, x1 = rng.integers(y0, h + 1), rng.integers(x0, w + 1)
    m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.choice([0.2, 0.5, 0.9, 1.0])
    jitter = rng.uniform(-1.5, 1.5, 4)
    box = (y0 + jitter[0], x0 + jitter[1], y1 + jitter[2], x1 + jitter[3])
    if rng.random() < 0.1:  # any box at all, the mask partly or wholly outside it
        box = tuple(rng.uniform(-3, [h + 3, w + 3, h + 3, w + 3]))
    return m, box


def test_box_rle_equals_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        m, box = random_case(rng)
        assert box_mask_to_rle(m, box) == coco_encode(m), (m.astype(int).tolist(), box)


@pytest.mark.parametrize("window", [
    (slice(None), slice(None)),        # the whole image
    (slice(None), slice(3, 6)),        # every row: columns meet without zeros between
    (slice(0, 1), slice(0, 1)),        # the first pixel (COCO's first run has length 0)
    (slice(-1, None), slice(-1, None)),  # the last pixel (the last run ends the image)
    (slice(2, 5), slice(-2, None)),    # the right edge
    (slice(0, 0), slice(0, 0)),        # empty
])
def test_box_rle_edge_windows(window):
    h, w = 9, 7
    m = np.zeros((h, w), bool)
    m[window] = True
    ys, xs = np.nonzero(m)
    box = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) if ys.size else (2, 2, 4, 4)
    assert box_mask_to_rle(m, box) == coco_encode(m)
    m[window] = False
    m[::2, ::3] = True  # stripes: a mask far outside that box falls back to the whole mask
    assert box_mask_to_rle(m, box) == coco_encode(m)
    assert box_mask_to_rle(m, (np.nan, 0, np.inf, 3)) == coco_encode(m)  # no usable box


def test_json_and_coco_masks_are_pycocotools_rle():
    rng = np.random.default_rng(1)
    h, w = 48, 64
    masks = np.zeros((3, h, w), bool)
    masks[0, 5:20, 10:30] = rng.random((15, 20)) < 0.7
    masks[1, :, 60:] = True                                 # full height, right edge
    masks[2, 40:, 50:] = True                               # the last pixel
    boxes_yxyx_px = [[5.2, 9.7, 19.6, 30.0], [0, 60, h, w], [40, 50, h, w]]
    det = Detections(boxes_yxyx_px, [0.9, 0.5, 0.2], [1, 2, 1], ["a", "b", "a"], (h, w), masks)
    want = [coco_encode(m) for m in masks]
    assert det.to_json()["masks"] == want
    assert [e["segmentation"] for e in det.to_coco(3)] == want
    assert det.mask_rles() == want
    with pytest.raises(ValueError):
        Detections(boxes_yxyx_px, [0.9, 0.5, 0.2], [1, 2, 1], ["a", "b", "a"], (h, w)).mask_rles()
