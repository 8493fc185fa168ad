"""core.masks: the PNG mask codec (1-bit palette PNGs that every reader decodes to exactly
0/1) and our COCO RLE decoder (pixel for pixel pycocotools' ``decode``)."""
import io
import struct
import warnings

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn_toolkit.core.masks import (
    decode_mask_png,
    encode_mask_png,
    mask_box_xyxy_px,
    mask_to_rle,
    polygons_to_mask,
    polygons_to_rle,
    rle_runs,
    rle_to_mask,
)


def _masks():
    rng = np.random.default_rng(3)
    noise = (rng.random((37, 53)) > 0.5).astype(np.uint8)  # width not a multiple of 8
    poly = polygons_to_mask([[3.5, 2, 60, 9, 41, 33, 7, 29]], 40, 67)  # Fortran order
    edge = np.zeros((9, 16), bool)
    edge[0, 0] = edge[8, 15] = True  # first and last pixel, bool dtype
    return {"noise": noise, "noise_fortran": np.asfortranarray(noise), "poly": poly,
            "edge": edge, "empty": np.zeros((5, 11), np.uint8),
            "values_0_255": noise * 255}


def test_png_is_1bit_palette_and_decodes_to_0_1_with_pil():
    for name, m in _masks().items():
        png = encode_mask_png(m)
        w, h, depth, color = struct.unpack(">IIBB", png[16:26])
        assert (h, w, depth, color) == (*m.shape, 1, 3), name  # 1-bit, palette
        want = (np.asarray(m) > 0).astype(np.uint8)
        assert np.array_equal(decode_mask_png(png), want), name
        with Image.open(io.BytesIO(png)) as im:  # PIL's own palette -> gray conversion
            assert np.array_equal(np.asarray(im.convert("L")), want), name


def test_png_decodes_to_exact_0_1_with_tensorflow():
    """Model Garden (tf.io.decode_png(channels=1)) and the OD API (decode_image(channels=1))
    read masks this way; Model Garden does not binarize, so a 255 would be a bug."""
    import tensorflow as tf
    for name, m in _masks().items():
        png = encode_mask_png(m)
        want = (np.asarray(m) > 0).astype(np.uint8)
        dec = tf.io.decode_png(png, channels=1, dtype=tf.uint8).numpy()[..., 0]
        assert dec.dtype == np.uint8 and np.array_equal(dec, want), name
        dec = tf.io.decode_image(png, channels=1).numpy()[..., 0]
        assert np.array_equal(dec, want), name


def test_box_hint_gives_the_same_png_and_is_smaller_than_8bit():
    m = _masks()["poly"]
    x0, y0, x1, y1 = mask_box_xyxy_px(m)
    assert encode_mask_png(m, box_xyxy_px=(x0, y0, x1, y1)) == encode_mask_png(m)
    # a box that is not byte-aligned, nor tight on the right/bottom, changes nothing either
    assert encode_mask_png(m, box_xyxy_px=(x0 - 1, y0, x1 + 3, y1 + 1)) == encode_mask_png(m)
    big = np.zeros((480, 640), np.uint8)
    big[100:300, 50:420] = 1
    out = io.BytesIO()
    Image.fromarray(big).save(out, "PNG")  # 8-bit grayscale, as Model Garden's converter
    assert len(encode_mask_png(big)) < len(out.getvalue())


# ------------------------------------------------------------------ COCO RLE decoding
def coco_decode(rle: dict) -> np.ndarray:
    """The reference: pycocotools' own ``decode`` (under numpy 2.4 it warns, see
    core/masks.py; the warning is not what is tested here)."""
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(counts, str):
        rle = {"size": rle["size"], "counts": counts.encode("ascii")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle)


def column_runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed counts of ``mask``, computed with plain Python over the
    column-major pixels (not with the code under test): run lengths, starting with 0s."""
    runs, value, n = [], 0, 0
    for v in np.asarray(mask).T.reshape(-1).tolist():
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    return runs + [n]


def _rle_cases():
    rng = np.random.default_rng(7)
    cases = {"empty": np.zeros((7, 5), np.uint8), "full": np.ones((7, 5), np.uint8),
             "1x1 off": np.zeros((1, 1), np.uint8), "1x1 on": np.ones((1, 1), np.uint8),
             "1 row": (rng.random((1, 37)) > 0.5).astype(np.uint8),
             "1 column": (rng.random((41, 1)) > 0.5).astype(np.uint8)}
    big = np.zeros((1201, 1001), np.uint8)  # runs of ~600k and ~1.2M pixels (> 2**20)
    big[600, 500] = 1
    cases["runs over 2**20"] = big
    cases["full 1201x1001"] = np.ones((1201, 1001), np.uint8)
    first_last = np.zeros((9, 11), np.uint8)
    first_last[0, 0] = first_last[-1, -1] = 1  # counts start with a 0-length run
    cases["first and last pixel"] = first_last
    for k in range(40):  # odd sizes, densities from sparse to full, blobs and noise
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        noise = rng.random((h, w)) < rng.uniform(0, 1)
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w))
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        cases[f"random {k} ({h}x{w})"] = (blob ^ noise if k % 2 else blob).astype(np.uint8)
    return cases


RLE_CASES = _rle_cases()


@pytest.mark.parametrize("name", list(RLE_CASES))
def test_rle_to_mask_equals_pycocotools_decode(name):
    mask = RLE_CASES[name]
    h, w = mask.shape
    compressed = mask_to_rle(mask)
    uncompressed = {"size": [h, w], "counts": column_runs(mask)}
    want = coco_decode(compressed)
    np.testing.assert_array_equal(want, mask)  # the reference agrees with the mask itself
    for rle in (compressed, {"size": [h, w], "counts": compressed["counts"].encode()},
                uncompressed):
        got = rle_to_mask(rle, h, w)
        assert got.dtype == want.dtype == np.uint8 and got.shape == (h, w)
        assert got.flags.f_contiguous  # column-major, as pycocotools returns it
        np.testing.assert_array_equal(got, want)
    assert rle_runs(compressed["counts"]).tolist() == column_runs(mask)


def test_polygons_to_mask_equals_pycocotools_on_random_polygons():
    rng = np.random.default_rng(11)
    for k in range(60):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        polys = [rng.uniform(-10, max(h, w) + 10, 2 * int(rng.integers(3, 12))).tolist()
                 for _ in range(int(rng.integers(1, 4)))]
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
        want = coco_decode(rle)
        got = polygons_to_mask(polys, h, w)
        assert got.dtype == np.uint8 and got.shape == (h, w), k
        np.testing.assert_array_equal(got, want, err_msg=f"polygon set {k}")
        np.testing.assert_array_equal(rle_to_mask(polygons_to_rle(polys, h, w)), want)
    assert polygons_to_mask([], 3, 4).tolist() == [[0] * 4] * 3


def test_rle_decode_does_not_warn():
    """The root of the interrupted-convert TypeError: decoding must not go through
    numpy's deprecated ``__array__`` retry (pycocotools 2.0.11's decode does)."""
    m = RLE_CASES["first and last pixel"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rle_to_mask(mask_to_rle(m))
        polygons_to_mask([[1, 1, 6, 1, 6, 5]], 8, 9)


@pytest.mark.parametrize("rle,message", [
    ({"size": [2, 3], "counts": [2, 3]}, "cover 5 pixels, not the 2x3 = 6"),
    ({"size": [2, 3], "counts": [2, 3, 4]}, "cover 9 pixels"),
    ({"size": [2, 3], "counts": [3, -1, 4]}, "negative run"),
    ({"size": [2, 3], "counts": ""}, "cover 0 pixels"),
    ({"size": [2, 3], "counts": "24x"}, "outside '0'..'o'"),
    ({"size": [2, 3], "counts": "2 4"}, "outside '0'..'o'"),
    ({"size": [2, 3], "counts": "2Z"}, "end in the middle of a count"),
    ({"size": [2, 3], "counts": "2" + "o" * 13 + "0"}, "too long"),
    ({"size": [2, 3], "counts": ["a", "b"]}, "string or a list of numbers"),
])
def test_malformed_rle_is_a_value_error(rle, message):
    """pycocotools refuses counts covering too many pixels and returns uninitialized memory
    for too few; ours refuses both, with the reason (convert reports it per annotation)."""
    with pytest.raises(ValueError, match=message):
        rle_to_mask(rle)
