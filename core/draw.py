"""Overlays: masks blended with a fixed color per class, boxes, names and scores.

Used by the dataset preview (ground truth) and by inference / video (predictions), so
the same class always has the same color everywhere. With ``instance_colors`` (the
preview), each mask gets its own shade of its class color and an outline, so that touching
objects of one class (a bunch of balloons) can be told apart; boxes and labels keep the
class color.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# A fixed palette of well-separated colors; class id k uses PALETTE[(k - 1) % len].
PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
], np.uint8)


def class_color(class_id: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in PALETTE[(int(class_id) - 1) % len(PALETTE)])


# How far the k-th instance of a class moves its class color toward white (> 0) or black
# (< 0): neighbours in this order differ clearly, and every shade stays in the class's hue.
_SHADES = (0.0, 0.55, -0.5, 0.3, -0.3, 0.75, -0.7)


def instance_color(class_id: int, k: int) -> tuple[int, int, int]:
    """The color of the k-th (from 0) instance of a class: a shade of its class color."""
    c = np.array(class_color(class_id), np.float64)
    t = _SHADES[k % len(_SHADES)]
    shade = c + (255.0 - c) * t if t > 0 else c * (1.0 + t)
    return tuple(int(round(v)) for v in shade)


def _instance_colors(class_ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """One color per instance: the k-th instance of each class gets instance_color(c, k)."""
    seen: dict[int, int] = {}
    out = []
    for c in class_ids:
        k = seen.get(int(c), 0)
        seen[int(c)] = k + 1
        out.append(instance_color(int(c), k))
    return out


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """bool [h, w]: the pixels of ``mask`` within ``width`` pixels of its edge (4-connected
    erosion; outside the array counts as outside the mask)."""
    inner = mask
    for _ in range(width):
        p = np.pad(inner, 1)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


@lru_cache(maxsize=16)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def draw_instances(image: np.ndarray, boxes_yxyx_px: np.ndarray | None,
                   class_ids: Sequence[int],
                   labels: Sequence[str], masks: np.ndarray | None = None,
                   alpha: float = 0.45, instance_colors: bool = False) -> np.ndarray:
    """Draw instances on a copy of ``image``.

    Args:
      image: uint8 [H, W, 3] RGB.
      boxes_yxyx_px: float [N, 4] (ymin, xmin, ymax, xmax) in pixels, or None (then the
        box drawn is each mask's own extent).
      class_ids: N label-map ids (pick the color).
      labels: N strings written at each box's top-left ("bolt 0.93").
      masks: bool/uint8 [N, H, W] at image size, or None.
      instance_colors: blend each mask in its own shade of the class color
        (:func:`instance_color`) and outline it in that shade, opaque, as wide as the box
        lines; boxes and labels stay in the class color. Off by default (video and
        evaluation images draw one color per class).
    Returns:
      uint8 [H, W, 3] RGB.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    n = len(class_ids)
    line = max(1, round(min(h, w) / 300))
    colors = _instance_colors(class_ids) if instance_colors else None
    outlines = []  # (rows, cols, edge pixels, color), drawn over every fill
    if masks is not None and n:
        # Blend only inside each instance's window, in integer arithmetic through a lookup
        # table (video draws every frame, so this runs on the 2 cores the model uses;
        # docs/DESIGN_NOTES.md, Video and annotate). The window is the box when boxes are
        # given (every model here pastes masks inside their boxes), else the mask's own
        # bounding rows/cols; in both cases it is narrowed to the rows/cols the mask covers
        # (with many detections, masks cover ~20% of their boxes).
        a = int(round(alpha * 256))
        for i in range(n):
            m = masks[i]
            if boxes_yxyx_px is not None:
                y0, x0, y1, x1 = boxes_yxyx_px[i]
                r0, c0 = max(0, int(np.floor(y0)) - 1), max(0, int(np.floor(x0)) - 1)
                r1, c1 = min(h, int(np.ceil(y1)) + 1), min(w, int(np.ceil(x1)) + 1)
            else:
                r0, r1, c0, c1 = 0, h, 0, w
            if r1 <= r0 or c1 <= c0:
                continue
            win = m[r0:r1, c0:c1]
            rows = np.flatnonzero(win.any(axis=1))
            if rows.size == 0:
                continue
            cols = np.flatnonzero(win[rows[0]:rows[-1] + 1].any(axis=0))
            r0, r1, c0, c1 = r0 + rows[0], r0 + rows[-1] + 1, c0 + cols[0], c0 + cols[-1] + 1
            sub = out[r0:r1, c0:c1]
            sm = m[r0:r1, c0:c1]
            if sm.dtype != bool:
                sm = sm != 0
            color = colors[i] if colors else class_color(class_ids[i])
            lut = _blend_lut(color, a)
            for ch in range(3):
                plane = sub[..., ch]
                np.copyto(plane, lut[ch][plane], where=sm)
            if colors:
                outlines.append((slice(r0, r1), slice(c0, c1), _outline(sm, line), color))
        for rows, cols, edge, color in outlines:
            out[rows, cols][edge] = color
    if boxes_yxyx_px is None and masks is None or n == 0:
        return out
    size = max(10, round(min(h, w) / 40))
    font = _font(size)
    pad = 2 * line + 4
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
        # Rectangles to draw, (xmin, ymin, xmax, ymax) pixels as PIL takes them: the box
        # outline, then the label's background.
        rects = [([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], {"outline": color, "width": line})]
        if labels[i]:
            tb = _text_box_xyxy_px(labels[i], size)
            tw, th = tb[2] - tb[0], tb[3] - tb[1]
            ty = y0 - th - 2 * line if y0 - th - 2 * line >= 0 else y0
            rects.append(([x0, ty, x0 + tw + 2 * line, ty + th + 2 * line], {"fill": color}))
        # Each instance's strokes go through PIL in a crop around them, not the whole
        # image: converting a 640x480 frame to PIL and back cost 2.4 ms of the ~6 ms a
        # video frame's drawing took (docs/DESIGN_NOTES.md, Video and annotate). The crop
        # starts at 0 or where every coordinate stays positive, so the shift is by whole
        # pixels and PIL rasterizes the same pixels (tests/test_draw.py compares with
        # whole-image drawing).
        c0 = max(0, int(np.floor(min(r[0][0] for r in rects))) - pad)
        r0 = max(0, int(np.floor(min(r[0][1] for r in rects))) - pad)
        c1 = min(w, int(np.ceil(max(r[0][2] for r in rects))) + pad + 1)
        r1 = min(h, int(np.ceil(max(r[0][3] for r in rects))) + pad + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        pil = Image.fromarray(out[r0:r1, c0:c1])
        draw = ImageDraw.Draw(pil)
        for (rx0, ry0, rx1, ry1), style in rects:
            draw.rectangle([rx0 - c0, ry0 - r0, rx1 - c0, ry1 - r0], **style)
        if labels[i]:
            # Dark text on light colors, white on dark: readable on any palette entry.
            txt = (0, 0, 0) if sum(color) > 400 else (255, 255, 255)
            draw.text((x0 + line - tb[0] - c0, ty + line - tb[1] - r0), labels[i], fill=txt,
                      font=font)
        out[r0:r1, c0:c1] = np.asarray(pil)
    return out


@lru_cache(maxsize=64)
def _blend_lut(color: tuple[int, int, int], a: int) -> np.ndarray:
    """uint8 [3, 256]: ``lut[c, v] = (v * (256 - a) + color[c] * a) >> 8``, the blend of
    channel value v with the class color at opacity a / 256 (one table per color)."""
    v = np.arange(256, dtype=np.uint16)
    return ((v[None, :] * (256 - a) + np.array(color, np.uint16)[:, None] * a) >> 8
            ).astype(np.uint8)


@lru_cache(maxsize=4096)
def _text_box_xyxy_px(label: str, size: int) -> tuple[int, int, int, int]:
    """The label's text bounding box at (0, 0), (left, top, right, bottom) pixels, as
    Pillow's ``textbbox`` on an RGB image gives it. Cached: labels repeat from frame to
    frame (class name + 2-digit score), and measuring the text costs a third of drawing
    it."""
    return tuple(ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), label,
                                                                    font=_font(size)))
