"""core/draw.py: the fast overlay draws exactly what the straightforward one drew.

``draw_instances`` blends masks through per-color lookup tables inside each mask's own
rows/cols and caches text sizes (video draws every frame on the cores the model uses;
docs/DESIGN_NOTES.md, Video and annotate). The reference below is the straightforward
version it replaced (blend the whole box window in uint16, measure every label): same
pixels, on scenes with many overlapping instances, fractional boxes, boxes crossing the
image edge, uint8 masks and no boxes. The palette and the blend are pinned by hand-worked
pixel values; the preview's ``instance_colors`` option is checked on its own at the end.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from maskrcnn_toolkit.core.draw import _font, class_color, draw_instances


def reference_draw(image, boxes_yxyx_px, class_ids, labels, masks=None, alpha=0.45):
    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    n = len(class_ids)
    if masks is not None and n:
        a = int(round(alpha * 256))
        for i in range(n):
            m = masks[i]
            if boxes_yxyx_px is not None:
                y0, x0, y1, x1 = boxes_yxyx_px[i]
                r0, c0 = max(0, int(np.floor(y0)) - 1), max(0, int(np.floor(x0)) - 1)
                r1, c1 = min(h, int(np.ceil(y1)) + 1), min(w, int(np.ceil(x1)) + 1)
            else:
                rows = np.flatnonzero(m.any(axis=1))
                if rows.size == 0:
                    continue
                cols = np.flatnonzero(m.any(axis=0))
                r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            if r1 <= r0 or c1 <= c0:
                continue
            sub = out[r0:r1, c0:c1]
            sm = np.asarray(m[r0:r1, c0:c1], bool)
            color = np.array(class_color(class_ids[i]), np.uint16) * a
            blended = ((sub.astype(np.uint16) * (256 - a) + color) >> 8).astype(np.uint8)
            np.copyto(sub, blended, where=sm[..., None])
    if boxes_yxyx_px is None and masks is None or n == 0:
        return out
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    line = max(1, round(min(h, w) / 300))
    font = _font(max(10, round(min(h, w) / 40)))
    for i in range(n):
        color = class_color(class_ids[i])
        if boxes_yxyx_px is not None:
            y0, x0, y1, x1 = (float(v) for v in boxes_yxyx_px[i])
        else:
            ys = np.flatnonzero(masks[i].any(axis=1))
            xs = np.flatnonzero(masks[i].any(axis=0))
            if ys.size == 0:
                continue
            y0, x0, y1, x1 = ys[0], xs[0], ys[-1] + 1, xs[-1] + 1
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=line)
        if labels[i]:
            tb = draw.textbbox((0, 0), labels[i], font=font)
            tw, th = tb[2] - tb[0], tb[3] - tb[1]
            ty = y0 - th - 2 * line if y0 - th - 2 * line >= 0 else y0
            draw.rectangle([x0, ty, x0 + tw + 2 * line, ty + th + 2 * line], fill=color)
            txt = (0, 0, 0) if sum(color) > 400 else (255, 255, 255)
            draw.text((x0 + line - tb[0], ty + line - tb[1]), labels[i], fill=txt, font=font)
    return np.asarray(pil)


def scene(seed: int, h: int = 120, w: int = 160, n: int = 30):
    """A noisy image with n overlapping blob instances: fractional boxes around each blob
    (some crossing the image edge), masks holed at random, random classes and labels."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    boxes, masks = [], []
    for _ in range(n):
        cy, cx = rng.uniform(-10, h + 10), rng.uniform(-10, w + 10)
        ry, rx = rng.uniform(2, h / 3), rng.uniform(2, w / 3)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        m &= rng.random((h, w)) < rng.choice([0.6, 1.0])
        masks.append(m)
        boxes.append([cy - ry + rng.uniform(-0.5, 0.5), cx - rx + rng.uniform(-0.5, 0.5),
                      cy + ry + rng.uniform(-0.5, 0.5), cx + rx + rng.uniform(-0.5, 0.5)])
    class_ids = rng.integers(1, 25, n)
    labels = [f"class_{c} {s:.2f}" if s > 0.1 else "" for c, s in zip(class_ids,
                                                                         rng.random(n))]
    return image, np.array(boxes, np.float32), class_ids, labels, np.array(masks)


def test_draw_pixels_worked_by_hand():
    """Gray 100 under a class-1 mask (palette color (230, 25, 75)), alpha 0.45: the blend is
    (100 * (256 - 115) + color * 115) >> 8 with 115 = round(0.45 * 256), i.e. (158, 66, 88)
    (100 * 0.55 + color * 0.45 = (158.5, 66.25, 88.75) in floats); the box outline is the
    class color itself; a pixel outside box and mask keeps its value."""
    img = np.full((64, 96, 3), 100, np.uint8)
    masks = np.zeros((1, 64, 96), bool)
    masks[0, 30:40, 40:60] = True
    out = draw_instances(img, np.array([[30, 40, 40, 60]]), [1], ["bolt 0.9"], masks)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out[35, 50].tolist() == [158, 66, 88]   # inside the mask: blended
    assert out[39, 50].tolist() == [230, 25, 75]   # the box's bottom edge
    assert out[35, 59].tolist() == [230, 25, 75]   # its right edge (xmax - 1)
    assert out[60, 5].tolist() == [100, 100, 100]  # far away: untouched
    # nothing below the box or left of it (the label sits above it, and may be wider)
    assert (out[40:] == 100).all() and (out[:, :40] == 100).all()
    assert (out[31:40, 60:] == 100).all()  # (row 30 is also the label box's bottom row)
    # class 21 wraps around the 20-color palette to class 1's color
    again = draw_instances(img, np.array([[30, 40, 40, 60]]), [21], [""], masks)
    assert again[35, 50].tolist() == [158, 66, 88]


@pytest.mark.parametrize("seed", range(4))
def test_draw_matches_the_straightforward_version(seed):
    image, boxes, ids, labels, masks = scene(seed)
    for args in [(boxes, ids, labels, masks),          # masks blended in their boxes
                 (boxes, ids, labels, masks.astype(np.uint8)),  # 0/1 uint8 masks
                 (None, ids, labels, masks),           # no boxes: the masks' own extent
                 (boxes, ids, labels, None),           # boxes only
                 (boxes[:0], ids[:0], [], masks[:0])]:  # nothing to draw
        got = draw_instances(image, *args)
        want = reference_draw(image, *args)
        assert got.dtype == np.uint8 and got.shape == image.shape
        assert np.array_equal(got, want)
    assert not np.array_equal(draw_instances(image, boxes, ids, labels, masks), image)


def test_draw_leaves_the_input_untouched_and_repeats_itself():
    image, boxes, ids, labels, masks = scene(7)
    before = image.copy()
    first = draw_instances(image, boxes, ids, labels, masks)
    again = draw_instances(image, boxes, ids, labels, masks)  # text sizes from the cache
    assert np.array_equal(image, before)
    assert np.array_equal(first, again)


def test_instance_colors_tell_touching_instances_of_one_class_apart():
    """The preview's option: each mask in its own shade of the class color, outlined;
    boxes keep the class color. Off (the default), both masks blend to the same color."""
    from maskrcnn_toolkit.core.draw import instance_color
    image = np.full((60, 80, 3), 128, np.uint8)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:40, 10:40] = True
    masks[1, 10:40, 40:70] = True  # touches the first one
    boxes = np.array([[8, 8, 42, 42], [8, 38, 42, 72]], np.float32)  # 2 px around the masks
    ids, labels = [3, 3], ["", ""]
    plain = draw_instances(image, boxes, ids, labels, masks)
    assert np.array_equal(plain[25, 25], plain[25, 55])  # one color per class: no boundary
    shaded = draw_instances(image, boxes, ids, labels, masks, instance_colors=True)
    assert not np.array_equal(shaded[25, 25], shaded[25, 55])
    first, second = instance_color(3, 0), instance_color(3, 1)
    assert first == class_color(3) and second != first
    # Outlines, opaque, in each instance's shade: where the two masks meet, both show.
    assert tuple(shaded[25, 39]) == first and tuple(shaded[25, 40]) == second
    # Boxes stay in the class color (the legend): the top edge of the second box.
    assert tuple(shaded[8, 55]) == class_color(3)
    # Interiors are blended, not painted over.
    assert tuple(shaded[25, 55]) not in (second, class_color(3), (128, 128, 128))
