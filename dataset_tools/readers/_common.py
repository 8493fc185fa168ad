"""Small helpers shared by the readers: finding an image (all), labels that name no class
(all), numbers from JSON (COCO, LabelMe, VIA), shapes and boxes (all), exact duplicates
(COCO, LabelMe, VIA).

Coordinates are pixels of the full image: x right, y down, origin at the top-left corner
of the top-left pixel (COCO's convention, see core/masks.py). Polygons are flat
``[x0, y0, x1, y1, ...]`` lists of Python floats.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from maskrcnn_toolkit.core.boxes import xyxy_to_xywh
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import is_non_class_name
from maskrcnn_toolkit.dataset_tools.records import Instance, Refusal


def ignored_label(label: str, file: str, item: str) -> Refusal | None:
    """An "ignored" Refusal when ``label`` names no class (``__ignore__``, ``_background_``,
    any ``__name__``: core.label_map.is_non_class_name), else None. Every reader checks its
    labels with this, so such regions are reported as ignored, never refused, in every
    format: labelme's own converters skip them the same way, and ``--strict`` passes on
    labelme's examples."""
    if not is_non_class_name(label):
        return None
    return Refusal(file=file, item=item, value=f"label={label!r}", severity="ignored",
                   reason="marks a region to ignore or the background (labelme's __ignore__ / "
                          "_background_ convention), not an object class; not written")


def refuse_zip(src: Path, give: str) -> None:
    """Raise UserError when SRC is a zip archive (readers read extracted files); ``give``
    says what to pass instead."""
    if src.suffix.lower() == ".zip":
        raise UserError(f"{str(src)!r} is a zip archive; extract it first (unzip {src.name} "
                        f"-d DIR) and give {give}")


def _is_file(path: Path) -> bool:
    """Path.is_file that says False, not raises, for names the OS cannot even look up
    (too long, NUL bytes): such a name is simply "not found"."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _lexical(path: Path) -> Path:
    """Absolute path with ``.``/``..`` collapsed, symlinks not followed."""
    return Path(os.path.normpath(os.path.abspath(path)))


def resolve_image(name: str, search_dirs: list[Path], root: Path) -> tuple[Path | None, str]:
    """Find the image a record names.

    Args:
      name: the path as the annotation writes it (relative or absolute, / or \\ separators).
      search_dirs: folders to try in order (e.g. [images_dir] or [ann_dir / "images", ann_dir]).
      root: the dataset root; a path outside every search dir and the root is refused.
    Returns:
      (absolute, normalized path, "") when found inside the root, else (None, reason).

    "Inside" is decided on the path as written (``..`` collapsed, symlinks not followed):
    ``../../etc/x.jpg`` escapes and is refused, while an image inside the root that is a
    symlink into a store elsewhere (a common way to share one image folder) is accepted.
    """
    name = name.replace("\\", "/")
    candidates = [Path(name)] if os.path.isabs(name) else []
    for d in search_dirs:
        candidates.append(d / name)
        candidates.append(d / Path(name).name)  # tools often store a path from another machine
    bases = [root, *search_dirs]
    # The roots as given and with their own symlinks resolved (an absolute image path may
    # name either form of the same folder).
    roots = {_lexical(b) for b in bases} | {b.resolve() for b in bases}
    escaped = None  # an existing file outside the roots: refused only if nothing else matches
    for c in candidates:
        if _is_file(c):
            r = _lexical(c)
            if not any(r == base or base in r.parents for base in roots):
                escaped = escaped or r
                continue
            return r, ""
    if escaped is not None:
        return None, (f"image path {name!r} resolves to {str(escaped)!r}, outside the dataset "
                      f"root {str(root)!r}; move the image under the root or pass "
                      f"--images DIR")
    tried = ", ".join(sorted({str(c.parent) for c in candidates}))
    return None, f"image {name!r} not found (looked in: {tried}); pass --images DIR"


def int_or_none(v):
    """A declared size as int, or None when it is missing or not a positive whole number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return int(v) if v == int(v) and v > 0 else None


def num(value: Any) -> float:
    """A finite number as float; ValueError for anything else (bool, str, None, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{value!r} is not a finite number")
    return v


def rect_polygon(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """The axis-aligned rectangle spanned by two opposite corners (any order), clockwise from
    the top-left corner: [xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax]."""
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    return [xa, ya, xb, ya, xb, yb, xa, yb]


def box_xywh_px_rounded(box_xyxy_px) -> tuple[float, float, float, float]:
    """``Instance.box_xywh_px`` (COCO's (x, y, w, h) pixels, Python floats) of a box given
    as (xmin, ymin, xmax, ymax) pixels (core.boxes.xyxy_to_xywh); w and h rounded to 6
    decimals, so that float noise in the subtraction (45.8 - 0.2) does not show up in the
    report."""
    x, y, w, h = (float(v) for v in xyxy_to_xywh(box_xyxy_px))
    return x, y, round(w, 6), round(h, 6)


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0,
                    tolerance: float = 0.1) -> list[float]:
    """Vertices of an ellipse (a circle when rx == ry) as a flat polygon.

    theta: rotation in radians of the rx axis, clockwise on screen (y down), as VIA 2.x and
      the HTML canvas ``ellipse()`` draw it: the rx axis points along (cos theta, sin theta).
    tolerance: the largest gap in pixels between the true curve and a polygon edge. The
      vertex count follows from it (labelme2coco uses the same rule with 1 px; 0.1 px keeps
      the rasterized area within ~0.1% for radii of tens of pixels), at least 16, at most 1024.
    Raises ValueError when a vertex is not finite (absurd radii).
    """
    r = max(abs(rx), abs(ry))
    step = math.acos(1.0 - tolerance / r) if r > tolerance else math.pi / 16
    n = min(max(int(math.ceil(math.pi / step)) if step > 0 else 1024, 16), 1024)
    c, s = math.cos(theta), math.sin(theta)
    out: list[float] = []
    for k in range(n):
        t = 2.0 * math.pi * k / n
        ex, ey = rx * math.cos(t), ry * math.sin(t)
        out += [cx + ex * c - ey * s, cy + ex * s + ey * c]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"ellipse ({cx}, {cy}, {rx}, {ry}) has non-finite vertices")
    return out


def _shape_key(inst: Instance):
    rle = inst.rle
    rle_key = None if rle is None else (tuple(rle.get("size", ())), str(rle.get("counts")))
    polys = None if inst.polygons is None else tuple(tuple(p) for p in inst.polygons)
    return inst.label, bool(inst.is_crowd), polys, rle_key, inst.box_xywh_px


def drop_exact_duplicates(found: list[tuple[Instance, str]], refusals: list[Refusal],
                          file: str) -> list[Instance]:
    """Keep the first of instances that repeat the same label, crowd flag and geometry in
    one image, and refuse the others with a reason.

    found: (instance, item) pairs in file order; item names it in its file ("shapes[3]").
    Why: some exports write every region twice (the VIA export in the multi-format sample
    set holds every box twice); a duplicated ground-truth object trains the same target twice
    and, in evaluation, is an object that no detection can match, so it lowers recall.
    """
    first: dict = {}
    kept = []
    for inst, item in found:
        key = _shape_key(inst)
        if key in first:
            refusals.append(Refusal(
                file=file, item=item, value=f"label {inst.label!r}",
                reason=f"exact duplicate of {first[key]} (same label and shape); kept that one"))
            continue
        first[key] = item
        kept.append(inst)
    return kept
