"""core.masks PNG mask codec: 1-bit palette PNGs that every reader decodes to exactly 0/1."""
import io
import struct

import numpy as np
import pytest
from PIL import Image

from maskrcnn_toolkit.core.masks import (
    decode_mask_png,
    encode_mask_png,
    mask_box_xyxy_px,
    polygons_to_mask,
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
    tf = pytest.importorskip("tensorflow")
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
