"""CVAT XML reader, part 2 of 2: the parts of one image or video frame -> its instances.

:func:`add_instances` runs four steps, each a function below:
1. :func:`_group_parts`: ``group_id`` merges parts into multi-part instances;
2. :func:`_box_only_instances`: boxes become box-only instances (or rectangle polygons);
3. :func:`_z_order_cuts`: higher ``z_order`` shapes cut the pixels they cover out of lower
   ones;
4. :func:`_emit`: one Instance (polygons, or RLE when cut or mask-bearing) or a Refusal per
   instance, in the order of the shapes in the XML.
Coordinates are pixels of the full image, x right, y down, pixel edges as in COCO.

Decisions (see docs/DESIGN_NOTES.md, "Readers: CVAT, VOC"):
- ``z_order``: where shapes of different ``z_order`` overlap, the higher one covers the lower
  one, as CVAT draws them and as its own mask exports (Segmentation mask, VOC) paint them;
  the covered instance loses those pixels and is written as RLE. Shapes of equal
  ``z_order`` are left as drawn (possibly overlapping), as CVAT's COCO export does: nothing
  says which one is in front.
- ``group_id``: shapes of one group with the same label are one multi-part instance (what
  Datumaro's COCO export does with groups); a box in such a group is that object's box,
  kept as ``attributes["grouped_box"]``, not a second instance.
"""
from __future__ import annotations

import math

import numpy as np

from maskrcnn_toolkit.core.masks import mask_to_rle, polygons_to_mask
from maskrcnn_toolkit.dataset_tools.readers._common import box_xywh_px_rounded
from maskrcnn_toolkit.dataset_tools.readers.cvat_shapes import Part
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Instance, Refusal


def add_instances(parts: list[Part], rec: ImageRecord, box_as_polygon: bool) -> None:
    """Turn the parts of one image / frame into ``rec.instances`` (and ``rec.refusals`` for
    instances that nothing of is visible).

    Args:
      parts: the image's shapes in XML order (cvat_shapes.parse_shape).
      rec: the record; its ``width`` / ``height`` (declared, pixels) size the masks, and its
        ``annotation_file`` is named in refusals.
      box_as_polygon: boxes become rectangle polygons instead of box-only instances.
    """
    instances = _group_parts(parts)
    boxes = _box_only_instances(instances, box_as_polygon)
    bearing = {i: inst for i, inst in enumerate(instances) if i not in boxes}
    cut, covered = _z_order_cuts(bearing, rec.height, rec.width)
    for i, inst in enumerate(instances):
        if i in boxes:
            rec.instances.append(boxes[i])
        else:
            _emit(inst, cut.get(i), i in covered, rec)


def _group_parts(parts: list[Part]) -> list[list[Part]]:
    """The instances, each a list of parts, in order of their first part in the XML.

    Parts with the same non-zero ``group_id`` and the same label are one instance. A box in
    a group that has a mask-bearing part of its label is that object's box, not another
    instance: it is kept as ``attributes["grouped_box"]`` ([xtl, ytl, xbr, ybr] pixels) of
    the group's first part. Every other part is an instance of its own.
    """
    groups: dict[tuple[int, str], list[Part]] = {}
    for p in parts:
        if p.group_id and p.kind != "box":
            groups.setdefault((p.group_id, p.label), []).append(p)
    instances: list[list[Part]] = []
    placed = set()
    for p in parts:
        if p.group_id and p.kind != "box":
            key = (p.group_id, p.label)
            if key not in placed:
                placed.add(key)
                instances.append(groups[key])
        elif p.kind == "box" and p.group_id and (p.group_id, p.label) in groups:
            g = groups[(p.group_id, p.label)]
            g[0].attributes.setdefault("grouped_box", list(p.box_xyxy_px))
        else:
            instances.append([p])
    return instances


def _box_only_instances(instances: list[list[Part]], box_as_polygon: bool
                        ) -> dict[int, Instance]:
    """Box-only Instances (``box_xywh_px`` = (x, y, w, h) pixels of the possibly rotated box's
    axis-aligned extent), by index into ``instances``: the converter refuses them with a
    reason.

    With ``box_as_polygon`` there are none: each box part is turned, in place, into a
    polygon part holding its (rotated) corners, marked ``attributes["from_box"]``.
    """
    out: dict[int, Instance] = {}
    for i, inst in enumerate(instances):
        p = inst[0]
        if p.kind != "box":
            continue
        corners = _box_corners(p.box_xyxy_px, p.rotation)
        if box_as_polygon:
            p.kind, p.polygon = "polygon", corners
            p.attributes["from_box"] = True
        else:
            xs, ys = corners[0::2], corners[1::2]
            box_xywh_px = box_xywh_px_rounded((min(xs), min(ys), max(xs), max(ys)))
            out[i] = Instance(label=p.label, box_xywh_px=box_xywh_px, source=p.source,
                              attributes=dict(p.attributes))
    return out


def _z_order_cuts(bearing: dict[int, list[Part]], height: int | None, width: int | None
                  ) -> tuple[dict[int, dict], set[int]]:
    """Where instances of different ``z_order`` overlap, cut the higher ones out of the lower.

    Args:
      bearing: the instances that carry a polygon or mask, by index; an instance's z_order
        is the highest of its parts'.
      height, width: the image size in pixels (nothing is cut when either is unknown).
    Returns:
      (index -> compressed RLE of what is left visible of a cut instance, indices of
      instances nothing of which is left). Nothing is cut when all z_orders are equal.

    Only instances whose extents overlap a higher one are rasterized, one at a time, full
    size (the converter rasterizes the same polygons the same way, so the cut is
    pixel-exact); memory stays at a few masks even on large photos with many shapes.
    """
    cut: dict[int, dict] = {}
    covered: set[int] = set()
    z_of = {i: max(p.z_order for p in inst) for i, inst in bearing.items()}
    if len(set(z_of.values())) <= 1 or not (width and height):
        return cut, covered
    extents_xyxy_px = {i: _extent(inst) for i, inst in bearing.items()}
    for i, inst in bearing.items():
        above = [j for j in bearing
                 if z_of[j] > z_of[i] and _overlaps(extents_xyxy_px[i], extents_xyxy_px[j])]
        if not above:
            continue
        m = _union_mask(inst, height, width).astype(bool)
        cover = np.zeros((height, width), bool)
        for j in above:
            cover |= _union_mask(bearing[j], height, width).astype(bool)
        if (m & cover).any():
            m &= ~cover
            if m.any():
                cut[i] = mask_to_rle(m.astype(np.uint8))  # RLE at once: small
            else:
                covered.add(i)
    return cut, covered


def _emit(inst: list[Part], cut_rle: dict | None, covered: bool, rec: ImageRecord) -> None:
    """Append one mask-bearing instance to ``rec.instances``, or a Refusal when it is
    ``covered`` entirely by higher shapes.

    Its shape: ``cut_rle`` when z_order cut it (``attributes["cut_by_z_order"]``), else the
    full-size RLE of its parts when one is a mask, else its polygons. Its attributes are
    the first part's, with the highest z_order, ``occluded`` when any part is, and the user
    attributes of every part (the first part's value wins).
    """
    height, width = rec.height, rec.width
    first = inst[0]
    attrs = dict(first.attributes)
    attrs["z_order"] = max(p.z_order for p in inst)
    attrs["occluded"] = any(p.attributes.get("occluded") for p in inst)
    for p in inst[1:]:
        for k, v in p.attributes.get("attributes", {}).items():
            attrs.setdefault("attributes", {}).setdefault(k, v)
    source = first.source if len(inst) == 1 else (
        f"{_where(first.source)} group {first.group_id} "
        f"({'; '.join(_what(p.source) for p in inst)})")
    if covered:
        rec.refusals.append(Refusal(rec.annotation_file, source, f"label {first.label!r}",
                                    "completely covered by shapes with a higher z_order; "
                                    "nothing of it is visible"))
        return
    if cut_rle is not None:
        attrs["cut_by_z_order"] = True
        rec.instances.append(Instance(label=first.label, rle=cut_rle, source=source,
                                      attributes=attrs))
    elif any(p.kind == "mask" for p in inst):
        if width and height:
            rle = mask_to_rle(_union_mask(inst, height, width))
            rec.instances.append(Instance(label=first.label, rle=rle, source=source,
                                          attributes=attrs))
    else:
        rec.instances.append(Instance(label=first.label,
                                      polygons=[p.polygon for p in inst], source=source,
                                      attributes=attrs))


# ---------------------------------------------------------------------------------------
# helpers

def _where(source: str) -> str:
    """'annotations.xml image 'a.jpg' polygon 2 (line 9)' -> 'annotations.xml image 'a.jpg''."""
    for tag in ("polygon", "ellipse", "mask", "box"):
        k = source.rfind(f" {tag} ")
        if k > 0:
            return source[:k]
    return source


def _what(source: str) -> str:
    """'annotations.xml image 'a.jpg' polygon 2 (line 9)' -> 'polygon 2 (line 9)'."""
    return source[len(_where(source)) + 1:]


def _box_corners(box_xyxy_px: tuple[float, float, float, float], rotation: float
                 ) -> list[float]:
    """The corners of ``box_xyxy_px`` (CVAT's xtl, ytl, xbr, ybr) rotated by ``rotation``
    degrees (clockwise on screen) about the box centre, as a flat [x0, y0, ..., x3, y3]
    polygon rounded to 3 decimals, clockwise from the top-left corner of the unrotated
    box."""
    x0, y0, x1, y1 = box_xyxy_px
    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if rotation:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
        pts = [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c)
               for x, y in pts]
    return [round(v, 3) for xy in pts for v in xy]


def _extent(inst: list[Part]) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) covering every part, in pixels (for a cheap overlap test)."""
    xs, ys = [], []
    for p in inst:
        if p.kind == "mask":
            x0, y0 = p.mask_xy
            xs += [x0, x0 + p.mask.shape[1]]
            ys += [y0, y0 + p.mask.shape[0]]
        elif p.polygon:
            xs += [min(p.polygon[0::2]), max(p.polygon[0::2])]
            ys += [min(p.polygon[1::2]), max(p.polygon[1::2])]
    if not xs:
        return (0.0, 0.0, -1.0, -1.0)
    return float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))


def _overlaps(a, b) -> bool:
    """Whether two (xmin, ymin, xmax, ymax) extents may share a pixel."""
    # A pixel touched by both boxes' edges can be set in both rasters: compare with a
    # 1-pixel margin rather than risk missing an overlap.
    return a[0] <= b[2] + 1 and b[0] <= a[2] + 1 and a[1] <= b[3] + 1 and b[1] <= a[3] + 1


def _union_mask(inst: list[Part], height: int, width: int) -> np.ndarray:
    """uint8 [height, width] 0/1 union of the instance's polygons and masks."""
    m = np.zeros((height, width), np.uint8)
    polys = [p.polygon for p in inst if p.kind == "polygon" and p.polygon]
    if polys:
        m |= polygons_to_mask(polys, height, width)
    for p in inst:
        if p.kind == "mask":
            x0, y0 = p.mask_xy
            h, w = p.mask.shape
            m[y0:y0 + h, x0:x0 + w] |= p.mask
    return m
