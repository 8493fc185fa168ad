"""A synthetic "parts" dataset: bolts, brackets, nuts, screws and washers on textured
backgrounds, written as a real COCO instances JSON + JPEGs (so the demo goes through the
converter like user data does), and a conveyor-belt video of the same parts for the demo.

Geometry: every part is a set of polygons in its own frame (u along the part's long axis,
v across it, pixels), rotated, then translated into the image. Parts with holes (nuts,
washers, brackets) are built as several hole-free polygons whose *union* is the part minus
its holes, because COCO polygons are unions (a polygon cannot carry a hole) and cutting
the hole out as separate pieces keeps a polygon annotation valid COCO.

Exactness: the pixels drawn for a part are exactly the pixels that pycocotools rasterizes
from the (rounded) polygons written to the JSON (core.masks.polygons_to_mask), so the
ground truth matches the image pixel for pixel (up to JPEG). A part partly covered by a
later part is annotated by its visible pixels only, as compressed RLE (iscrowd 0); parts
left with too little visible area are never placed (so no drawn part is unlabeled).

Everything is drawn with numpy + PIL from a per-image random generator seeded by
(seed, image index): the same seed gives byte-identical output.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from maskrcnn_toolkit.core.atomic import atomic_dir, atomic_write
from maskrcnn_toolkit.core.boxes import xyxy_to_xywh
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.masks import mask_box_xyxy_px, mask_to_rle, polygons_to_mask
from maskrcnn_toolkit.dataset_tools.coco_gt import splice_lines

# Category ids follow sorted names: the same ids `convert` gives when no --label-map is set.
CLASSES = ("bolt", "bracket", "nut", "screw", "washer")
CATEGORY_IDS = {name: i for i, name in enumerate(CLASSES, start=1)}

# Scene parameters (for 256 px images; scaled with the image size).
MIN_PARTS, MAX_PARTS = 2, 5
MIN_VISIBLE_FRACTION = 0.55   # an occluded part keeps at least this much of its area...
MIN_VISIBLE_PIXELS = 150      # ...and at least this many pixels (at 256 px)
MARGIN = 3                    # pixels kept free at the image border
OVERLAP_PROBABILITY = 0.25    # share of parts allowed to overlap those placed before them
TOUCH_PROBABILITY = 0.25      # share of the others placed right next to an earlier part
PART_SCALE = (1.0, 1.3)       # random size factor of each part (x the image scale)
BRACKET_WIDTH = (22, 30)      # bracket arm width in pixels (at 256 px)
BRACKET_LONG_ARM = (50, 90)   # arm lengths in pixels (at 256 px)
BRACKET_SHORT_ARM = (36, 70)
BRACKET_HOLE = (0.15, 0.2)    # hole radius, x the arm width
# The cues that tell the look-alikes apart (bolt vs screw, nut vs washer): how strong they are
# decides how hard the set is. Lengths in pixels at 256 px, the others relative.
BOLT_LENGTH = (75, 115)
BOLT_PLAIN_SHANK = (0.3, 0.55)  # share of the shank left unthreaded
SCREW_LENGTH = (45, 78)
SCREW_TIP = (1.6, 2.2)          # pointed tip length, x the shank diameter
SCREW_DIAMETER = (0.19, 0.23)   # shank diameter, x the length
NUT_HOLE = (0.3, 0.4)           # hole radius, x the outer radius
NUT_CHAMFER_SHADE = 0.85        # brightness of the chamfered corners (1 = invisible chamfer)
WASHER_HOLE = (0.5, 0.62)

# Metal tints (RGB) and which classes tend to get them: a hint, never a rule.
TINTS = {
    "steel": (172, 175, 182), "dark_steel": (118, 121, 128), "zinc": (196, 198, 192),
    "yellow_zinc": (205, 182, 112), "brass": (192, 160, 86), "black_oxide": (74, 74, 80),
    "blue_paint": (92, 118, 150), "green_paint": (96, 130, 98), "grey_paint": (140, 140, 136),
}
TINT_WEIGHTS = {
    "bolt": {"steel": 4, "dark_steel": 3, "zinc": 2, "black_oxide": 2},
    "screw": {"brass": 4, "yellow_zinc": 4, "steel": 1, "zinc": 1},
    "nut": {"steel": 3, "zinc": 2, "dark_steel": 3, "black_oxide": 1},
    "washer": {"steel": 2, "zinc": 3, "brass": 2, "yellow_zinc": 2},
    "bracket": {"steel": 2, "zinc": 2, "blue_paint": 2, "green_paint": 1, "grey_paint": 2},
}


# --------------------------------------------------------------------------- parts
@dataclass
class Part:
    """One part in its own frame.

    polygons: list of float [K, 2] arrays of (u, v) vertices in pixels, centered near 0;
      their union is the part (holes already left out).
    shade: (u, v) float32 arrays -> brightness float32 (about 0..1.2), same shape.
    tint: RGB float32 [3].
    holes: the round holes left out of the polygons, for tests and documentation.
    """

    name: str
    polygons: list[np.ndarray]
    shade: Callable[[np.ndarray, np.ndarray], np.ndarray]
    tint: np.ndarray
    radius: float  # max distance of any vertex from (0, 0)
    holes: tuple[tuple[float, float, float], ...] = ()  # (u, v, radius) of each round hole

    def world_polygons(self, cx: float, cy: float, angle: float) -> list[list[float]]:
        """The polygons rotated by ``angle`` (radians) and moved to (cx, cy): flat COCO
        [x0, y0, x1, y1, ...] pixel lists rounded to 0.01 (what the JSON stores)."""
        c, s = math.cos(angle), math.sin(angle)
        out = []
        for p in self.polygons:
            x = cx + c * p[:, 0] - s * p[:, 1]
            y = cy + s * p[:, 0] + c * p[:, 1]
            out.append(np.round(np.stack([x, y], 1).reshape(-1), 2).tolist())
        return out


def _arc(cx, cy, r, a0, a1, n):
    """n points on a circle from angle a0 to a1 (radians), as [n, 2] (u, v)."""
    a = np.linspace(a0, a1, n)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def _ray_hit(outer: np.ndarray, theta: float) -> np.ndarray:
    """Where the ray from (0, 0) at angle ``theta`` leaves the convex polygon ``outer``
    ([K, 2] vertices around (0, 0)), as a (u, v) point."""
    d = np.array([math.cos(theta), math.sin(theta)])
    p, e = outer, np.roll(outer, -1, 0) - outer
    den = d[0] * e[:, 1] - d[1] * e[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (p[:, 0] * e[:, 1] - p[:, 1] * e[:, 0]) / den   # distance along the ray
        t = (p[:, 0] * d[1] - p[:, 1] * d[0]) / den         # position along the edge
    ok = (np.abs(den) > 1e-12) & (s > 0) & (t >= -1e-9) & (t <= 1 + 1e-9)
    return d * np.min(s[ok])


def _ring_pieces(outer: np.ndarray, hole_r: float) -> list[np.ndarray]:
    """A convex outer polygon (vertices [K, 2] around (0, 0)) with a round hole of radius
    ``hole_r`` at (0, 0), as two hole-free annular sectors whose union is the part.

    The sectors overlap by about one pixel at the cuts so rasterization leaves no seam.
    """
    delta = 1.0 / hole_r  # radians: ~1 px of overlap at the hole's rim
    ang = np.mod(np.arctan2(outer[:, 1], outer[:, 0]), 2 * np.pi)
    pieces = []
    for a0 in (0.0, np.pi):
        lo, hi = a0 - delta, a0 + np.pi + delta
        rel = np.mod(ang - lo, 2 * np.pi)
        inside = np.argsort(rel)
        inside = inside[rel[inside] < hi - lo]
        edge = [_ray_hit(outer, lo)] + [outer[i] for i in inside] + [_ray_hit(outer, hi)]
        arc = _arc(0.0, 0.0, hole_r, hi, lo, 24)
        pieces.append(np.concatenate([np.array(edge), arc], 0))
    return pieces


def _strip(length: float, w: float, holes: list[tuple[float, float]], eps: float = 0.7
           ) -> list[np.ndarray]:
    """A straight strip u in [0, length], v in [-w/2, w/2], with a round cap beyond
    ``length`` and round holes (center u, radius < w/2) on its axis, as hole-free pieces
    cut through each hole's center (overlapping by ``eps`` px at the cuts)."""
    cuts = [0.0] + [h for h, _ in holes] + [length]
    pieces = []
    for k in range(len(cuts) - 1):
        a, b = cuts[k], cuts[k + 1]
        # Left side, walked from v=+w/2 down to v=-w/2.
        if k == 0:
            left = [(a, w / 2), (a, -w / 2)]
        else:
            r = holes[k - 1][1]
            y = math.sqrt(r * r - eps * eps)
            th = math.atan2(y, -eps)  # where the cut line u = a - eps meets the hole
            left = [(a - eps, w / 2)] + [tuple(p) for p in _arc(a, 0.0, r, th, -th, 16)] \
                + [(a - eps, -w / 2)]
        # Right side, walked from v=-w/2 up to v=+w/2.
        if k == len(cuts) - 2:
            right = [tuple(p) for p in _arc(b, 0.0, w / 2, -math.pi / 2, math.pi / 2, 15)]
        else:
            r = holes[k][1]
            y = math.sqrt(r * r - eps * eps)
            th = math.atan2(-y, eps)  # where the cut line u = b + eps meets the hole
            right = [(b + eps, -w / 2)] \
                + [tuple(p) for p in _arc(b, 0.0, r, th, -2 * math.pi - th, 16)] \
                + [(b + eps, w / 2)]
        pieces.append(np.array(left + right, np.float64))
    return pieces


def _noise1d(rng, n=48):
    return rng.normal(0, 1, n).astype(np.float32)


def _interp_noise(noise, x, scale):
    """Smooth 1D noise sampled at x / scale (wrapping)."""
    n = len(noise)
    t = np.mod(x / scale, n)
    return np.interp(t, np.arange(n + 1), np.append(noise, noise[0])).astype(np.float32)


def _pick_tint(rng, name):
    w = TINT_WEIGHTS[name]
    keys = list(w)
    p = np.array([w[k] for k in keys], np.float64)
    key = keys[rng.choice(len(keys), p=p / p.sum())]
    tint = np.array(TINTS[key], np.float32) * rng.uniform(0.88, 1.1)
    return np.clip(tint + rng.normal(0, 6, 3), 20, 250).astype(np.float32)


def _threaded_shank(u, v, r, pitch, thread_from):
    """Brightness of a cylindrical shank of radius ``r`` seen from the side: a highlight
    along its length, and slanted thread crests from ``thread_from`` on (u, v in px)."""
    t = np.clip(np.abs(v) / max(r, 1e-3), 0, 1)
    cyl = 0.32 + 0.5 * np.sqrt(1 - t * t) + 0.38 * np.exp(-((v / r + 0.3) / 0.22) ** 2)
    thread = 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.35 * v) / pitch)
    return np.where(u >= thread_from, cyl * (0.7 + 0.38 * thread), cyl)


def make_bolt(rng, s=1.0) -> Part:
    """Hex bolt lying on its side: a flat-topped head with chamfered corners and a long
    shank, threaded on its far part, with a flat, chamfered tip."""
    L = rng.uniform(*BOLT_LENGTH) * s
    d = L * rng.uniform(0.16, 0.21)
    hw = d * rng.uniform(1.55, 1.8)
    hl = d * rng.uniform(0.6, 0.8)
    c, c2 = hl * 0.25, d * 0.2
    pitch = max(d * 0.28, 2.4)
    thread_from = hl + (L - hl) * rng.uniform(*BOLT_PLAIN_SHANK)
    pts = [(0, -hw / 2 + c), (c, -hw / 2), (hl, -hw / 2), (hl, -d / 2)]
    pts += [(L - c2, -d / 2), (L, -d / 2 + c2), (L, d / 2 - c2), (L - c2, d / 2)]
    pts += [(hl, d / 2), (hl, hw / 2), (c, hw / 2), (0, hw / 2 - c)]
    poly = np.array(pts) - [L / 2, 0]
    side = rng.choice([-1.0, 1.0])

    def shade(u, v):
        u = u + L / 2
        head = u < hl
        face = np.where(np.abs(v) < hw * 0.2, 0.95,
                        np.where(v * side > 0, 0.72, 0.52))
        face = face * (0.9 + 0.12 * (u / hl))
        shank = _threaded_shank(u, v, d / 2, pitch, thread_from)
        return np.where(head, face, shank).astype(np.float32)

    return Part("bolt", [poly], shade, _pick_tint(rng, "bolt"), float(np.hypot(L / 2, hw / 2)))


def make_screw(rng, s=1.0) -> Part:
    """Pan-head screw lying on its side: a dome-shaped head, a fully threaded shank with a
    pointed tip; shorter than a bolt."""
    L = rng.uniform(*SCREW_LENGTH) * s
    d = L * rng.uniform(*SCREW_DIAMETER)
    hw = d * rng.uniform(1.8, 2.1)
    hl = d * rng.uniform(0.6, 0.8)
    tip = d * rng.uniform(*SCREW_TIP)
    pitch = max(d * 0.35, 2.6)
    phi = np.linspace(-np.pi / 2, np.pi / 2, 17)
    head = np.stack([hl - hl * np.cos(phi) ** 0.45, (hw / 2) * np.sin(phi)], 1)[::-1]
    # head is walked from v=+hw/2 to v=-hw/2 along the dome; then the shank from the head.
    pts = [tuple(p) for p in head]
    pts += [(hl, -d / 2), (L - tip, -d / 2), (L, 0.0), (L - tip, d / 2), (hl, d / 2)]
    poly = np.array(pts) - [L / 2, 0]

    def shade(u, v):
        u = u + L / 2
        dome = 0.42 + 0.62 * np.exp(-((v / (hw / 2) + 0.25) / 0.5) ** 2)
        dome = dome * (0.8 + 0.25 * np.clip(u / hl, 0, 1))
        shank = _threaded_shank(u, v, d / 2, pitch, hl + 1.0)
        return np.where(u < hl, dome, shank).astype(np.float32)

    return Part("screw", [poly], shade, _pick_tint(rng, "screw"), float(np.hypot(L / 2, hw / 2)))


def _round_metal_shade(rng, R, hole_r, bevel):
    """Top view of a turned part: flat face, a bow-tie highlight of circular brushing, dark
    bevels at the rims."""
    theta_l = rng.uniform(0, 2 * np.pi)
    lx, ly = math.cos(theta_l), math.sin(theta_l)
    streak = _noise1d(rng, 64)

    def shade(u, v):
        r = np.sqrt(u * u + v * v)
        th = np.arctan2(v, u)
        b = 0.62 + 0.14 * (u * lx + v * ly) / R + 0.2 * np.cos(2 * (th - theta_l))
        b = b + 0.05 * _interp_noise(streak, r, 1.5)
        b = np.where(r < hole_r + bevel, b * 0.72, b)
        return b.astype(np.float32)

    return shade


def make_nut(rng, s=1.0) -> Part:
    """Hex nut seen from the top: a hexagon with a round threaded hole and chamfered corners."""
    R = rng.uniform(17, 30) * s
    hole = R * rng.uniform(*NUT_HOLE)
    a0 = rng.uniform(0, np.pi / 3)
    outer = _arc(0, 0, R, a0, a0 + 2 * np.pi, 7)[:-1]
    base = _round_metal_shade(rng, R, hole, max(1.5, 0.08 * R))
    inscribed = R * math.cos(math.pi / 6)

    def shade(u, v):
        b = base(u, v)
        r = np.sqrt(u * u + v * v)
        # The chamfer circle: the corners beyond it are bevelled and darker.
        return np.where(r > 0.93 * inscribed, b * NUT_CHAMFER_SHADE, b).astype(np.float32)

    return Part("nut", _ring_pieces(outer, hole), shade, _pick_tint(rng, "nut"), R,
                ((0.0, 0.0, hole),))


def make_washer(rng, s=1.0) -> Part:
    """Flat washer seen from the top: a ring."""
    R = rng.uniform(16, 31) * s
    hole = R * rng.uniform(*WASHER_HOLE)
    outer = _arc(0, 0, R, 0, 2 * np.pi, 49)[:-1]
    base = _round_metal_shade(rng, R, hole, 1.2)

    def shade(u, v):
        b = base(u, v)
        r = np.sqrt(u * u + v * v)
        return np.where(r > R - 1.6, b * 0.75, b).astype(np.float32)

    return Part("washer", _ring_pieces(outer, hole), shade, _pick_tint(rng, "washer"),
                R, ((0.0, 0.0, hole),))


def make_bracket(rng, s=1.0) -> Part:
    """L-shaped angle bracket (a flat plate seen from the top) with round holes along both
    arms and rounded ends."""
    w = rng.uniform(*BRACKET_WIDTH) * s
    a = rng.uniform(*BRACKET_LONG_ARM) * s
    b = rng.uniform(*BRACKET_SHORT_ARM) * s
    hr = w * rng.uniform(*BRACKET_HOLE)

    def holes(length):
        # One hole on a short arm, two on a long one; clear of the corner square.
        n = 1 if length < 55 * s else 2
        return [(w + (length - w) * (k + 0.5) / n, hr) for k in range(n)]

    la, lb = a - w / 2, b - w / 2
    # Arm A runs along +u on v = w/2, arm B along +v on u = w/2; both start at the middle
    # of the corner square [0, w] x [0, w], which a plain square covers.
    arm_a = [p + [w / 2, w / 2] for p in _strip(la, w, holes(la))]
    arm_b = [p[:, ::-1] + [w / 2, w / 2] for p in _strip(lb, w, holes(lb))]
    corner = np.array([(0, 0), (w, 0), (w, w), (0, w)], np.float64)
    center = np.array([a, b]) * 0.35
    polys = [p - center for p in arm_a + arm_b + [corner]]
    all_pts = np.concatenate(polys)
    radius = float(np.max(np.hypot(all_pts[:, 0], all_pts[:, 1])))
    hole_centers = [(w / 2 + h - center[0], w / 2 - center[1], r) for h, r in holes(la)]
    hole_centers += [(w / 2 - center[0], w / 2 + h - center[1], r) for h, r in holes(lb)]
    streak = _noise1d(rng, 64)
    theta_l = rng.uniform(0, 2 * np.pi)
    lx, ly = math.cos(theta_l), math.sin(theta_l)
    flip = rng.random() < 0.5

    def shade(u, v):
        along = v if flip else u
        b_ = 0.66 + 0.16 * (u * lx + v * ly) / radius + 0.08 * _interp_noise(streak, along, 1.2)
        for hx, hy, r in hole_centers:
            d = np.sqrt((u - hx) ** 2 + (v - hy) ** 2)
            b_ = np.where(d < r + 1.8, b_ * 0.62, b_)
        return b_.astype(np.float32)

    return Part("bracket", polys, shade, _pick_tint(rng, "bracket"), radius,
                tuple(hole_centers))


MAKERS = {"bolt": make_bolt, "bracket": make_bracket, "nut": make_nut, "screw": make_screw,
          "washer": make_washer}


# --------------------------------------------------------------------------- backgrounds
def _smooth_noise(rng, h, w, cells_y, cells_x) -> np.ndarray:
    """Float32 [h, w] smooth noise (about N(0, 1)), bicubic upsampling of a coarse grid."""
    g = rng.normal(0, 1, (cells_y, cells_x)).astype(np.float32)
    return np.asarray(Image.fromarray(g, "F").resize((w, h), Image.BICUBIC), np.float32)


def _background(rng, h, w) -> np.ndarray:
    """Float32 [h, w, 3] RGB in 0..255: wood, brushed metal, cloth, concrete, a gradient
    or conveyor rubber.

    Each kind is a one-channel pattern times a color (one full-size RGB operation), which
    keeps the background at a few milliseconds.
    """
    kind = rng.choice(["wood", "metal", "cloth", "concrete", "gradient", "belt"])
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    if kind == "wood":
        a = rng.uniform(0, np.pi)
        warp = _smooth_noise(rng, h, w, 5, 5)
        t = (xx * np.float32(math.cos(a)) + yy * np.float32(math.sin(a))) \
            * np.float32(1 / rng.uniform(7, 16)) + 1.6 * warp
        grain = np.sin(t)
        m = 0.5 + 0.5 * grain * grain * grain + 0.08 * _smooth_noise(rng, h, w, h // 2, 8)
        light = np.array(rng.uniform([150, 105, 60], [215, 160, 110]), np.float32)
        dark = light * np.float32(rng.uniform(0.55, 0.75))
        return dark + np.clip(m, 0, 1)[..., None] * (light - dark)
    if kind == "metal":
        streaks = _smooth_noise(rng, h, w, h, 6) if rng.random() < 0.5 else \
            _smooth_noise(rng, h, w, 6, w)
        lum = rng.uniform(90, 190) + 12 * streaks + 10 * _smooth_noise(rng, h, w, 3, 3)
        color = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    elif kind == "cloth":
        p = rng.uniform(3.0, 6.0)
        weave = np.abs(np.sin(np.float32(np.pi / p) * xx)) * 0.5 \
            + np.abs(np.sin(np.float32(np.pi / p) * yy)) * 0.5
        base = np.array(rng.uniform(40, 200, 3), np.float32)
        lum = 0.75 + 0.3 * weave + (10 / base.mean()) * _smooth_noise(rng, h, w, 8, 8)
        color = base
    elif kind == "belt":  # dark conveyor rubber with seams, like conveyor_frames
        period = rng.uniform(60, 130)
        across = np.float32(math.cos(rng.uniform(-0.3, 0.3)))
        seam = np.abs(np.mod(xx * across + rng.uniform(0, period), period) - period / 2) \
            > period / 2 - 1.5
        lum = rng.uniform(45, 85) + 6 * _smooth_noise(rng, h, w, h // 3, 6) \
            + 3 * rng.standard_normal((h, w), np.float32)
        lum = np.where(seam, lum * 0.7, lum)
        color = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    elif kind == "concrete":
        lum = rng.uniform(100, 180) + 14 * _smooth_noise(rng, h, w, 16, 16) \
            + 8 * _smooth_noise(rng, h, w, 64, 64)
        color = rng.uniform(0.93, 1.07, 3).astype(np.float32)
    else:
        c0 = np.array(rng.uniform(30, 220, 3), np.float32)
        c1 = np.array(rng.uniform(30, 220, 3), np.float32)
        a = rng.uniform(0, 2 * np.pi)
        t = (xx * np.float32(math.cos(a)) + yy * np.float32(math.sin(a))) / (h + w) + 0.5
        return c0 + np.clip(t, 0, 1)[..., None] * (c1 - c0)
    return lum.astype(np.float32)[..., None] * color


def _draw_clutter(rng, img: np.ndarray, scale: float) -> np.ndarray:
    """Unlabeled distractors drawn on the background: small stains, specks and scratches."""
    h, w = img.shape[:2]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.integers(0, 5)):
        kind = rng.integers(0, 3)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if kind == 0:  # stain / blob
            r = rng.uniform(3, 9) * scale
            ang = np.sort(rng.uniform(0, 2 * np.pi, 7))
            rad = r * rng.uniform(0.5, 1.2, 7)
            pts = [(x + rr * math.cos(a), y + rr * math.sin(a)) for a, rr in zip(ang, rad)]
            col = tuple(int(c) for c in rng.integers(20, 200, 3))
            draw.polygon(pts, fill=col)
        elif kind == 1:  # scratch
            L = rng.uniform(15, 70) * scale
            a = rng.uniform(0, np.pi)
            col = (230, 230, 225) if rng.random() < 0.5 else (40, 38, 36)
            draw.line([(x, y), (x + L * math.cos(a), y + L * math.sin(a))], fill=col, width=1)
        else:  # specks
            for _ in range(rng.integers(3, 12)):
                px, py = x + rng.normal(0, 8), y + rng.normal(0, 8)
                draw.point((px, py), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return np.array(pil, np.float32)  # writable: later steps work in place


# --------------------------------------------------------------------------- rendering
def _paint_part(img: np.ndarray, part: Part, mask: np.ndarray, cx, cy, angle) -> None:
    """Paint ``part`` into float32 [H, W, 3] ``img`` exactly on the pixels of ``mask``."""
    box_xyxy_px = mask_box_xyxy_px(mask)
    if box_xyxy_px is None:
        return
    x0, y0, x1, y1 = (int(b) for b in box_xyxy_px)
    m = mask[y0:y1, x0:x1].view(bool)
    ys, xs = np.nonzero(m)  # shade only the part's own pixels (elementwise shaders)
    dx = xs.astype(np.float32) + np.float32(x0 + 0.5 - cx)
    dy = ys.astype(np.float32) + np.float32(y0 + 0.5 - cy)
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u, v = c * dx + s * dy, -s * dx + c * dy  # inverse rotation: pixel center -> part frame
    b = part.shade(u, v)[:, None]
    # Tinted metal, plus a specular term that goes toward white on the brightest spots.
    img[y0 + ys, x0 + xs] = part.tint[None, :] * b + 408.0 * np.clip(b - 0.88, 0, None)


def _shadow(masks_union: np.ndarray, dx: int, dy: int, radius: float) -> np.ndarray:
    """Soft drop shadow [H, W] in 0..1 from the union of part masks shifted by (dx, dy)."""
    h, w = masks_union.shape
    sh = np.roll(np.roll(masks_union, dy, 0), dx, 1) * 255
    # Blurred at half resolution (a shadow is soft anyway): 4x fewer pixels to filter.
    pil = Image.fromarray(sh.astype(np.uint8)).resize((w // 2, h // 2), Image.BILINEAR)
    pil = pil.filter(ImageFilter.GaussianBlur(radius / 2)).resize((w, h), Image.BILINEAR)
    return np.asarray(pil, np.float32) * (1 / 255.0)


def _lighting(rng, h, w) -> np.ndarray:
    """Float32 [h, w, 3] multiplicative illumination: gain, a color cast, a linear falloff
    and a soft spot light."""
    # Smooth by nature: computed on a coarse grid (pixel centers of a 1/8 image) and
    # upsampled, which is ~10x cheaper than evaluating it per pixel.
    ch, cw = max(h // 8, 2), max(w // 8, 2)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    yy, xx = (yy + 0.5) * (h / ch), (xx + 0.5) * (w / cw)
    gain = rng.uniform(0.65, 1.25)
    a = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)) / max(h, w)
    field = gain * (1 + rng.uniform(0, 0.5) * ramp)
    sx, sy = rng.uniform(0, w), rng.uniform(0, h)
    sr = rng.uniform(0.3, 0.8) * max(h, w)
    field = field * (1 + rng.uniform(0, 0.35) * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2)
                                                        / (sr * sr)))
    field = np.asarray(Image.fromarray(field.astype(np.float32), "F").resize(
        (w, h), Image.BILINEAR), np.float32)
    cast = np.array([1, 1, 1], np.float32) + rng.normal(0, 0.05, 3).astype(np.float32)
    return field[..., None] * cast  # [h, w, 3] by broadcasting in the caller


@dataclass
class Placed:
    """A part placed in a scene: class name, rounded world polygons and its full mask."""

    name: str
    polygons: list[list[float]]
    mask: np.ndarray  # uint8 [H, W], the whole part (before occlusion by later parts)
    part: Part
    cx: float
    cy: float
    angle: float
    area: int  # pixels of the whole part


def _sample_class(rng) -> str:
    return CLASSES[rng.integers(len(CLASSES))]


def render_scene(rng: np.random.Generator, height: int, width: int, paint_parts: bool = True
                 ) -> tuple[np.ndarray, list[tuple[Placed, np.ndarray]]]:
    """Draw one image of parts.

    ``paint_parts=False`` draws the same scene (background, clutter, shadows, lighting,
    noise: the generator is consumed identically) without the parts themselves, so tests
    can check that the parts' pixels are exactly their masks.

    Returns:
      image: uint8 [H, W, 3] RGB.
      parts: list of (placed part, visible mask uint8 [H, W] 0/1) in drawing order
        (later parts on top); every visible mask is non-empty and at least
        MIN_VISIBLE_FRACTION of the part.
    """
    scale = min(height, width) / 256.0
    min_vis = MIN_VISIBLE_PIXELS * scale * scale
    n_parts = int(rng.integers(MIN_PARTS, MAX_PARTS + 1))
    owner = np.full((height, width), -1, np.int16)  # which part shows at each pixel
    placed: list[Placed] = []
    boxes_xyxy_px: list[tuple[int, int, int, int]] = []  # integer pixel edges
    visible = []  # visible pixel count per placed part
    for _ in range(n_parts):
        name = _sample_class(rng)
        part = MAKERS[name](rng, scale * rng.uniform(*PART_SCALE))
        allow_overlap = rng.random() < OVERLAP_PROBABILITY
        # Some non-overlapping parts are pushed against an earlier one (touching parts are
        # what instance segmentation must split); they fall back to anywhere after a while.
        touch = placed and not allow_overlap and rng.random() < TOUCH_PROBABILITY
        verts = np.concatenate(part.polygons)
        for _attempt in range(25):
            angle = float(rng.uniform(0, 2 * np.pi))
            c, s_ = math.cos(angle), math.sin(angle)
            pts = verts @ np.array([[c, s_], [-s_, c]])  # rotated vertices, (x, y)
            lo, hi = pts.min(0) - 0.01, pts.max(0) + 0.01  # + the JSON's rounding
            xmin, xmax = MARGIN - lo[0], width - MARGIN - hi[0]
            ymin, ymax = MARGIN - lo[1], height - MARGIN - hi[1]
            if xmin >= xmax or ymin >= ymax:
                continue
            if touch and _attempt < 15:
                other = placed[int(rng.integers(len(placed)))]
                a = rng.uniform(0, 2 * np.pi)
                dist = (part.radius + other.part.radius) * rng.uniform(0.45, 0.85)
                cx = float(np.round(np.clip(other.cx + dist * math.cos(a), xmin, xmax), 2))
                cy = float(np.round(np.clip(other.cy + dist * math.sin(a), ymin, ymax), 2))
            else:
                cx = float(np.round(rng.uniform(xmin, xmax), 2))
                cy = float(np.round(rng.uniform(ymin, ymax), 2))
            box_xyxy_px = (int(cx + lo[0]) - 1, int(cy + lo[1]) - 1,
                           int(cx + hi[0]) + 2, int(cy + hi[1]) + 2)
            # Only parts whose boxes meet can share pixels: the masks decide for those
            # (boxes of touching parts overlap while their masks do not).
            near = any(b[0] < box_xyxy_px[2] and box_xyxy_px[0] < b[2]
                       and b[1] < box_xyxy_px[3] and box_xyxy_px[1] < b[3]
                       for b in boxes_xyxy_px)
            polys = part.world_polygons(cx, cy, angle)
            mask = polygons_to_mask(polys, height, width)
            x0, y0, x1, y1 = (max(box_xyxy_px[0], 0), max(box_xyxy_px[1], 0), box_xyxy_px[2],
                              box_xyxy_px[3])
            m = mask[y0:y1, x0:x1].view(bool)
            if near:
                under = owner[y0:y1, x0:x1][m]
                lost = np.bincount(under[under >= 0], minlength=len(placed))
                if lost.any() and not allow_overlap:
                    continue
                if any(lost[j] and (visible[j] - lost[j] < MIN_VISIBLE_FRACTION
                                    * placed[j].area or visible[j] - lost[j] < min_vis)
                       for j in range(len(placed))):
                    continue
                visible = [v - int(k) for v, k in zip(visible, lost)]
            owner[y0:y1, x0:x1][m] = len(placed)
            placed.append(Placed(name, polys, mask, part, cx, cy, angle, int(m.sum())))
            visible.append(placed[-1].area)
            boxes_xyxy_px.append(box_xyxy_px)
            break

    img = _background(rng, height, width)
    img = _draw_clutter(rng, img, scale)
    if placed:
        union = (owner >= 0).astype(np.uint8)
        sdx, sdy = (int(v) for v in np.round(rng.uniform(-4, 4, 2) * scale))
        sh = _shadow(union, sdx, sdy, rng.uniform(1.5, 3.5) * scale)
        img *= (1 - rng.uniform(0.25, 0.5) * sh)[..., None]
    for p in placed if paint_parts else ():
        _paint_part(img, p.part, p.mask, p.cx, p.cy, p.angle)
    img *= _lighting(rng, height, width)
    # Sensor noise, one value per pixel for all channels (JPEG drops most chroma noise).
    img += rng.uniform(1.5, 5) * rng.standard_normal((height, width, 1), np.float32) + 0.5
    image = np.clip(img, 0, 255, out=img).astype(np.uint8)
    out = [(p, (owner == k).astype(np.uint8)) for k, p in enumerate(placed)]
    return image, out


# --------------------------------------------------------------------------- dataset
def _annotation(ann_id: int, image_id: int, placed: Placed, visible: np.ndarray) -> dict:
    """COCO annotation: the polygons when the part is fully visible (they rasterize to
    exactly ``visible``), else the visible pixels as compressed RLE."""
    area = int(np.count_nonzero(visible))
    box_xywh_px = xyxy_to_xywh(mask_box_xyxy_px(visible))
    if area == placed.area:
        seg = placed.polygons
    else:
        seg = mask_to_rle(visible)
    return {"id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[placed.name],
            "segmentation": seg, "area": area, "bbox": [float(v) for v in box_xywh_px],
            "iscrowd": 0}


def _check_args(num_images, image_size):
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise UserError(f"synth: --images {num_images!r} is not a positive integer; "
                        f"pass e.g. --images 400")
    h, w = image_size
    if min(h, w) < 96 or max(h, w) > 4096:
        raise UserError(f"synth: image size {h}x{w} is out of range; use 96..4096 pixels "
                        f"per side (parts are sized for about 256)")


def _is_ours(name: str) -> bool:
    """Top-level names a synth output holds (``atomic_dir``'s --overwrite guard)."""
    return name in ("images", "annotations.json")


def generate(out_dir, num_images: int, seed: int = 0, image_size: tuple[int, int] = (256, 256),
             overwrite: bool = False, quality: int = 92) -> Path:
    """Write a synthetic parts dataset to ``out_dir``.

    Writes ``out_dir/images/000001.jpg``... (RGB JPEGs of ``image_size`` = (height, width),
    JPEG ``quality``) and ``out_dir/annotations.json``: a COCO instances JSON (image ids
    1..N; categories bolt=1, bracket=2, nut=3, screw=4, washer=5; non-crowd annotations
    whose ``segmentation`` is polygons in pixel coordinates for a whole part, or compressed
    RLE of the visible pixels for a part partly covered by another; ``bbox`` is
    (x, y, w, h) of the visible pixels, ``area`` their count).

    Deterministic: the same (num_images, seed, image_size, quality) gives byte-identical
    files with the same numpy / Pillow / libjpeg; image i depends only on (seed, i).
    Atomic: everything is written into a
    temporary sibling folder, the JSON last, which is renamed onto ``out_dir`` at the end;
    an existing ``out_dir`` is refused unless ``overwrite``, and even with ``overwrite``
    when it holds anything but ``images/`` and ``annotations.json`` (the whole folder is
    replaced; a user's other files must not vanish). Streamed: images and
    annotation entries go to disk as they are made, so memory stays flat in
    ``num_images``. Returns ``out_dir`` as a Path.
    """
    from tqdm import tqdm

    _check_args(num_images, image_size)
    out_dir = Path(out_dir)
    h, w = int(image_size[0]), int(image_size[1])
    per_class = dict.fromkeys(CLASSES, 0)
    n_ann = 0
    t0 = time.perf_counter()
    with atomic_dir(out_dir, overwrite=overwrite, owned=_is_ours) as tmp:
        img_dir = tmp / "images"
        img_dir.mkdir()
        # COCO's "images" and "annotations" lists, one JSON entry per line, spliced into
        # the final JSON at the end (so nothing accumulates in memory).
        images_part, anns_part = tmp / ".images.part", tmp / ".annotations.part"
        with open(images_part, "w") as fi, open(anns_part, "w") as fa:
            for i in tqdm(range(num_images), desc="synth", unit="img", leave=False):
                rng = np.random.default_rng([int(seed), i])
                image, parts = render_scene(rng, h, w)
                image_id = i + 1
                name = f"{image_id:06d}.jpg"
                Image.fromarray(image).save(img_dir / name, "JPEG", quality=quality)
                fi.write(_dumps({"id": image_id, "file_name": name, "width": w,
                                 "height": h}) + "\n")
                for placed, visible in parts:
                    n_ann += 1
                    fa.write(_dumps(_annotation(n_ann, image_id, placed, visible)) + "\n")
                    per_class[placed.name] += 1
        info = {"description": "synthetic parts (dataset_tools.synthetic)", "version": "1",
                "seed": int(seed)}
        categories = [{"id": CATEGORY_IDS[n], "name": n, "supercategory": "part"}
                      for n in CLASSES]
        with atomic_write(tmp / "annotations.json", "w") as f:
            f.write('{"info":' + _dumps(info) + ',"licenses":[],"images":[')
            splice_lines(images_part, f)
            f.write('],"annotations":[')
            splice_lines(anns_part, f)
            f.write('],"categories":' + _dumps(categories) + "}")
        images_part.unlink()
        anns_part.unlink()
    dt = time.perf_counter() - t0
    counts = ", ".join(f"{n} {c}" for n, c in per_class.items())
    print(f"synth: {num_images} images, {n_ann} parts ({counts}) in {dt:.1f} s "
          f"({num_images / max(dt, 1e-9):.0f} img/s) -> {out_dir / 'annotations.json'}")
    return out_dir


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


# --------------------------------------------------------------------------- conveyor video
def conveyor_frames(num_frames: int, seed: int = 0, size: tuple[int, int] = (256, 256),
                    fps: float = 10) -> Iterator[np.ndarray]:
    """Frames of parts riding a conveyor belt from left to right, for the demo video.

    Yields ``num_frames`` uint8 [H, W, 3] RGB arrays (``size`` = (height, width)). Parts
    enter at the left edge, move at a constant ~55 px/s (at 256 px) with the belt, and
    leave at the right edge; the belt's texture moves with them, so consecutive frames
    differ only by the motion (plus a little sensor noise). Deterministic per seed.
    """
    h, w = int(size[0]), int(size[1])
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 0:
        raise UserError(f"conveyor: num_frames {num_frames!r} must be an integer >= 0")
    if not fps > 0:
        raise UserError(f"conveyor: fps {fps!r} must be > 0 (e.g. 10)")
    if min(h, w) < 96:
        raise UserError(f"conveyor: size {h}x{w} is too small; use at least 96x96 pixels")
    rng = np.random.default_rng([int(seed), 1_000_003])
    scale = min(h, w) / 256.0
    speed = 55.0 * scale / fps  # pixels per frame
    rail = int(round(0.12 * h))
    belt_top, belt_bot = rail, h - rail

    # Belt texture: one loop of belt, T pixels long and periodic, scrolled by the belt's
    # travel (so it never jumps when the loop wraps); a seam every `period` pixels.
    period = int(round(96 * scale))
    T = period * max(3, -(-(w + period) // period))
    xx = np.arange(T, dtype=np.float32)[None, :]
    coarse = rng.normal(0, 1, (max(h // 3, 2), 6)).astype(np.float32)
    # Tiling the coarse grid three times and keeping the middle third makes it periodic.
    streaks = np.asarray(Image.fromarray(np.tile(coarse, (1, 3)), "F").resize(
        (3 * T, h), Image.BICUBIC), np.float32)[:, T:2 * T]
    rubber = 58 + 6 * streaks + 4 * rng.normal(0, 1, (h, T)).astype(np.float32)
    seam = np.abs(np.mod(xx, period) - period / 2) > period / 2 - 1.5
    rubber = np.where(seam, rubber * 0.7, rubber)
    belt = np.repeat(rubber[..., None], 3, 2) * np.array([1.0, 1.0, 1.05], np.float32)
    rail_img = 150 + 15 * _smooth_noise(rng, rail, w, rail, 4)
    rail_rgb = np.repeat(rail_img[..., None], 3, 2)
    light = _lighting(rng, h, w)
    light = light / light.mean()  # a fixed uneven light over the belt, no flicker

    # Parts are spawned at the left edge as the video goes (lane, pose, slow spin) and
    # forgotten once past the right edge, so a long video costs the same per frame.
    active = []  # (part, angle, spin, cy, spawn frame)
    next_spawn = 0
    noise_rng = np.random.default_rng([int(seed), 2_000_003])
    for f in range(num_frames):
        while f >= next_spawn:
            part = MAKERS[_sample_class(rng)](rng, scale * rng.uniform(0.85, 1.05))
            cy = float(rng.uniform(belt_top + part.radius * 0.6, belt_bot - part.radius * 0.6))
            active.append((part, float(rng.uniform(0, 2 * np.pi)), float(rng.normal(0, 0.01)),
                           cy, next_spawn))
            # The next part follows after about its own length plus a gap (lanes differ, so
            # parts may pass close to each other).
            gap = (2 * part.radius + rng.uniform(6, 50) * scale) / speed / 1.6
            next_spawn += max(1, int(gap))
        active = [p for p in active if -p[0].radius + (f - p[4]) * speed - p[0].radius <= w]
        off = int(round(f * speed)) % T
        img = belt[:, (np.arange(w) - off) % T]  # a copy (fancy indexing)
        img[:rail] = rail_rgb
        img[h - rail:] = rail_rgb[::-1]
        visible = []
        for part, angle, spin, cy, start in active:
            cx = -part.radius + (f - start) * speed
            a = angle + spin * (f - start)
            visible.append((part, polygons_to_mask(part.world_polygons(cx, cy, a), h, w),
                            cx, cy, a))
        if visible:
            union = np.zeros((h, w), np.uint8)
            for v in visible:
                union |= v[1]
            sh = _shadow(union, int(2 * scale), int(3 * scale), 2.0 * scale)
            img *= (1 - 0.45 * sh)[..., None]
        for part, mask, cx, cy, a in visible:
            _paint_part(img, part, mask, cx, cy, a)
        img *= light
        img += 2.0 * noise_rng.standard_normal((h, w, 1), np.float32) + 0.5
        yield np.clip(img, 0, 255, out=img).astype(np.uint8)
