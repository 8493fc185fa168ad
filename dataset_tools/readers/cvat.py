"""CVAT XML reader: "CVAT for images 1.1" (``<image>`` elements) and "CVAT for video 1.1"
(``<track>`` elements with one shape per frame).

SRC is the ``annotations.xml`` (or the folder of an extracted CVAT export that holds it).
Images are looked up in ``--images DIR``, else ``images/`` next to the XML (``images/<subset>/``
for project exports), else beside the XML; names may include task subfolders.

What each CVAT element becomes (coordinates are pixels of the full image, x right, y down,
pixel edges as in COCO, exactly as CVAT writes them):
  <polygon points="x1,y1;x2,y2;...">  -> Instance(polygons=[[x1, y1, x2, y2, ...]])
  <ellipse cx cy rx ry rotation>      -> Instance(polygons=[...]) (the ellipse sampled with
                                         vertices at most ~2 px apart, rotation in degrees,
                                         clockwise on screen as CVAT draws it)
  <mask rle left top width height>    -> Instance(rle=full-size COCO RLE)
  <box xtl ytl xbr ybr rotation>      -> Instance(bbox=(x, y, w, h)) (box-only: the converter
                                         refuses it), or the (rotated) rectangle as a polygon
                                         when ``options.box_as_polygon``
  <polyline> <points> <cuboid> <skeleton> <tag>  -> Refusal (not an instance mask)
Kept in ``Instance.attributes``: ``occluded`` (bool), ``z_order`` (int), ``group_id`` (int,
when non-zero), ``rotation`` (degrees, when non-zero), the CVAT ``source`` (manual/auto...)
as ``cvat_source``, and every ``<attribute name="...">value</attribute>`` under ``attributes``.

Decisions (see docs/DESIGN_NOTES.md, "Readers: CVAT, VOC"):
- CVAT's mask RLE (cvat-core ``mask2Rle``, read back by Datumaro's CVAT importer): run
  lengths, comma-separated, alternating background / foreground and starting with a
  background run (0 when the first pixel is foreground), row-major over the
  ``width`` x ``height`` box whose top-left pixel is (``left``, ``top``).
- ``z_order``: where shapes of different ``z_order`` overlap, the higher one covers the lower
  one, as CVAT draws them and as its own mask exports (Segmentation mask, VOC) paint them;
  the covered instance loses those pixels and is written as RLE. Shapes of equal
  ``z_order`` are left as drawn (possibly overlapping), as CVAT's COCO export does: nothing
  says which one is in front.
- ``group_id``: shapes of one group with the same label are one multi-part instance (what
  Datumaro's COCO export does with groups); a box in such a group is that object's box,
  kept as ``attributes["grouped_box"]``, not a second instance.
- Video tracks: every shape with ``outside="0"`` (keyframe or interpolated, as CVAT exports
  them) is an instance of its frame; frames are images named ``frame_NNNNNN.*`` (what CVAT
  writes when a video task is exported with images). Frames with no visible shape are not
  read: an export cannot tell "nothing there" from "not annotated".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.masks import mask_to_rle, polygons_to_mask
from maskrcnn_toolkit.dataset_tools.readers import ReaderOptions, resolve_image
from maskrcnn_toolkit.dataset_tools.readers._common import ellipse_polygon
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Instance, Refusal, short

# Elements that are annotations but cannot be an instance mask, with the reason.
_NOT_MASKS = {
    "polyline": "a polyline is an open line with no area, not an instance mask; draw a polygon",
    "points": "points have no area, not an instance mask",
    "cuboid": "a 3D cuboid is not an instance mask",
    "skeleton": "a skeleton (keypoints) is not an instance mask",
    "tag": "a tag labels the whole image, not an instance",
}
_SHAPES = ("polygon", "box", "ellipse", "mask", *_NOT_MASKS)
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class _Part:
    """One CVAT shape that can carry a mask, before grouping and z_order."""

    label: str
    kind: str  # "polygon" | "mask" | "box"
    source: str
    order: int
    z_order: int = 0
    group_id: int = 0
    polygon: list[float] | None = None
    # A <mask> as its box only (uint8 [h, w], clipped to the image) and the box's top-left
    # (x, y): full-size masks of every shape of a large photo would not fit in memory.
    mask: np.ndarray | None = None
    mask_xy: tuple[int, int] = (0, 0)
    box: tuple[float, float, float, float] | None = None  # xtl, ytl, xbr, ybr
    rotation: float = 0.0
    attributes: dict = field(default_factory=dict)


class _ShapeError(ValueError):
    """A shape whose values cannot be used (reported as a Refusal, not a crash)."""


def read(src: Path, options: ReaderOptions) -> Iterator[ImageRecord]:
    """Yield one ImageRecord per ``<image>`` (images XML) or per annotated frame (video XML).

    Args:
      src: the CVAT ``annotations.xml``, or a folder holding exactly one such file.
      options: ``images_dir``, ``box_as_polygon`` apply.
    Raises:
      UserError: the file is not CVAT XML or is malformed (names the file and line).
    """
    from lxml import etree

    xml_path = _find_xml(Path(src))
    xml_dir = xml_path.parent
    ctx = _Context(xml_path, options)
    meta_size: tuple[int | None, int | None] = (None, None)
    frames: dict[int, list] = {}
    images_seen = 0
    try:
        # Streamed: elements are freed as soon as they are read, so memory stays flat on
        # exports with hundreds of thousands of shapes. No entity resolution / network
        # access (a hostile XML cannot read local files).
        parser = etree.iterparse(str(xml_path), events=("start", "end"), resolve_entities=False,
                                 no_network=True, huge_tree=True, remove_comments=True)
        root = None
        for event, el in parser:
            if root is None:
                root = el
                if el.tag != "annotations":
                    hint = (" (this looks like a Pascal VOC file: use format 'voc' with the VOC "
                            "root folder)" if el.tag == "annotation" else "")
                    raise UserError(f"{xml_path}: root element is <{el.tag}>, not <annotations>; "
                                    f"this is not a CVAT XML export{hint}. Export the task as "
                                    f"'CVAT for images 1.1'")
                continue
            if event != "end" or el.getparent() is not root:
                continue
            if el.tag == "meta":
                meta_size = _meta_size(el)
            elif el.tag == "image":
                images_seen += 1
                yield _image_record(el, ctx, xml_dir)
            elif el.tag == "track":
                _collect_track(el, ctx, frames)
            # Free what was read (the element and the already-processed siblings before it).
            el.clear()
            while el.getprevious() is not None:
                del root[0]
    except etree.XMLSyntaxError as e:
        line = e.lineno if e.lineno else "?"
        raise UserError(f"{xml_path}: malformed XML at line {line}: {e.msg}; the file is "
                        f"damaged or not XML. Re-export it from CVAT ('CVAT for images 1.1') "
                        f"or fix that line") from None
    except OSError as e:
        raise UserError(f"cannot read CVAT XML {str(xml_path)!r}: {e.strerror or e}") from None
    if frames:
        yield from _frame_records(frames, ctx, xml_dir, meta_size)
    elif images_seen == 0 and root is not None:
        raise UserError(f"{xml_path}: no <image> or <track> elements; the export is empty "
                        f"(check that the task has annotated frames and export it as "
                        f"'CVAT for images 1.1')")


def _find_xml(src: Path) -> Path:
    if src.suffix.lower() == ".zip":
        raise UserError(f"{str(src)!r} is a zip archive; extract it first (unzip "
                        f"{src.name} -d DIR) and give DIR/annotations.xml")
    if src.is_dir():
        candidates = [src / "annotations.xml"] if (src / "annotations.xml").is_file() else \
            sorted(src.glob("*.xml"))
        if len(candidates) != 1:
            raise UserError(f"{str(src)!r} is a folder with {len(candidates)} XML files; give the "
                            f"CVAT annotations XML file itself (usually annotations.xml)")
        return candidates[0]
    return src


@dataclass
class _Context:
    xml_path: Path
    options: ReaderOptions

    @property
    def name(self) -> str:
        return self.xml_path.name


# ---------------------------------------------------------------------------------------
# <image> elements (CVAT for images)

def _image_record(el, ctx: _Context, xml_dir: Path) -> ImageRecord:
    name = (el.get("name") or "").replace("\\", "/")
    width, height = _size_attr(el, "width"), _size_attr(el, "height")
    rec = ImageRecord(file_name=name, annotation_file=str(ctx.xml_path), width=width,
                      height=height)
    where = f"{ctx.name} image {name!r}"
    if not name:
        rec.file_name = f"<image id={el.get('id')!r} at line {el.sourceline}>"
        rec.error = Refusal(str(ctx.xml_path), f"<image> at line {el.sourceline}", "",
                            "the <image> element has no 'name' attribute, so its image "
                            "cannot be found; re-export from CVAT")
        return rec
    dirs = _search_dirs(ctx, xml_dir, el.get("subset"))
    path, reason = resolve_image(name, dirs, xml_dir)
    if path is None and Path(name).suffix.lower() not in _IMAGE_EXTS:
        # Frames of a video task exported as images are named "frame_000000" in the XML
        # and "frame_000000.PNG" on disk.
        for ext in (".PNG", ".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".bmp"):
            p2, _ = resolve_image(name + ext, dirs, xml_dir)
            if p2 is not None:
                path, rec.file_name = p2, name + ext
                break
    if path is None:
        rec.error = Refusal(str(ctx.xml_path), where, name, reason)
    else:
        rec.image_path = str(path)
    parts = []
    for k, child in enumerate((c for c in el if isinstance(c.tag, str)), start=1):
        src = f"{where} {child.tag} {k} (line {child.sourceline})"
        _parse_shape(child, child.get("label"), src, k, width, height, ctx, parts, rec)
    _finish(parts, rec, ctx)
    return rec


def _search_dirs(ctx: _Context, xml_dir: Path, subset: str | None) -> list[Path]:
    bases = [Path(ctx.options.images_dir)] if ctx.options.images_dir else [xml_dir / "images",
                                                                            xml_dir]
    # Project exports put each subset's images in images/<subset>/; a subset that is not a
    # plain folder name ("../x") is not used, so it cannot widen where images may come from.
    plain = bool(subset) and subset not in (".", "..") and not any(c in subset for c in "/\\")
    dirs = []
    for b in bases:
        if plain:
            dirs.append(b / subset)
        dirs.append(b)
    return dirs


# ---------------------------------------------------------------------------------------
# <track> elements (CVAT for video)

def _meta_size(meta) -> tuple[int | None, int | None]:
    w = meta.find(".//original_size/width")
    h = meta.find(".//original_size/height")
    try:
        return (int(w.text) if w is not None else None, int(h.text) if h is not None else None)
    except (TypeError, ValueError):
        return None, None


def _collect_track(el, ctx: _Context, frames: dict[int, list]) -> None:
    track_id = el.get("id", "?")
    label = el.get("label")
    group = el.get("group_id")
    subset = el.get("subset") or ""  # project exports: frame numbers restart per subset
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.get("outside") == "1":
            continue  # the object left the frame: no instance there
        try:
            frame = int(child.get("frame"))
        except (TypeError, ValueError):
            raise UserError(f"{ctx.xml_path}: line {child.sourceline}: track {track_id} has a "
                            f"<{child.tag}> with frame={child.get('frame')!r}, not a frame "
                            f"number; re-export from CVAT") from None
        src = f"{ctx.name} track {track_id} frame {frame} {child.tag} (line {child.sourceline})"
        # Shapes inside a track carry no label / group: they are the track's.
        if group and child.get("group_id") is None:
            child.set("group_id", group)
        # Parsed per frame in _frame_records; the detached copies are small.
        frames.setdefault((subset, frame), []).append(
            (child.tag, src, _detach(child, label), track_id))


def _detach(child, label):
    """A standalone copy of a shape element (its track is freed after reading)."""
    from copy import deepcopy
    c = deepcopy(child)
    if label is not None and c.get("label") is None:
        c.set("label", label)
    return c


def _frame_records(frames, ctx: _Context, xml_dir: Path, meta_size) -> Iterator[ImageRecord]:
    width, height = meta_size
    stems: dict[str, dict[str, Path]] = {}
    for subset, frame in sorted(frames):
        dirs = _search_dirs(ctx, xml_dir, subset or None)
        if subset not in stems:  # one directory listing per subset, not one per frame
            by_stem = stems[subset] = {}
            for d in reversed(dirs):  # earlier dirs win
                if d.is_dir():
                    for p in d.iterdir():
                        if p.suffix.lower() in _IMAGE_EXTS:
                            by_stem[p.stem] = p
        stem = f"frame_{frame:06d}"
        found = stems[subset].get(stem)
        name = found.name if found else f"{stem}.png"
        if subset:  # frame numbers restart in each subset of a project export
            name = f"{subset}/{name}"
        rec = ImageRecord(file_name=name, annotation_file=str(ctx.xml_path), width=width,
                          height=height)
        if found is not None:
            path, reason = resolve_image(found.name, [found.parent], xml_dir)
            if path is None:
                rec.error = Refusal(str(ctx.xml_path), f"frame {frame}", name, reason)
            else:
                rec.image_path = str(path)
        else:
            rec.error = Refusal(
                str(ctx.xml_path), f"frame {frame}", stem,
                f"video annotation (<track>) frame {frame}: no image {stem}.* in "
                f"{', '.join(str(d) for d in dirs)}; CVAT names the frames of a video export "
                f"'frame_NNNNNN.PNG': export the task with images, or pass --images DIR with "
                f"the extracted frames, or export it as 'CVAT for images 1.1'")
        parts = []
        for k, (_tag, src, el, track_id) in enumerate(frames[(subset, frame)], start=1):
            n_before = len(parts)
            _parse_shape(el, el.get("label"), src, k, width, height, ctx, parts, rec)
            for p in parts[n_before:]:
                p.attributes["track_id"] = int(track_id) if str(track_id).isdigit() else track_id
        _finish(parts, rec, ctx)
        yield rec


# ---------------------------------------------------------------------------------------
# shapes

def _parse_shape(el, label, src: str, order: int, width, height, ctx: _Context,
                 parts: list[_Part], rec: ImageRecord) -> None:
    tag = el.tag
    file = str(ctx.xml_path)
    if tag not in _SHAPES:
        rec.refusals.append(Refusal(file, src, tag, f"<{tag}> is not a CVAT shape this reader "
                                                    f"knows (polygon, box, ellipse, mask)"))
        return
    if tag == "tag":  # about the whole image, not an object: not a refused instance
        rec.refusals.append(Refusal(file, src, f"label {label!r}", _NOT_MASKS[tag] +
                                    "; ignored", severity="warning"))
        return
    if tag in _NOT_MASKS:
        rec.refusals.append(Refusal(file, src, f"label {label!r}", _NOT_MASKS[tag]))
        return
    if not label:
        rec.refusals.append(Refusal(file, src, "", f"<{tag}> has no 'label' attribute"))
        return
    try:
        attrs = {"occluded": el.get("occluded", "0") == "1"}
        z_order = _int(el, "z_order", 0)
        group_id = _int(el, "group_id", 0)
        attrs["z_order"] = z_order
        if group_id:
            attrs["group_id"] = group_id
        if el.get("source"):
            attrs["cvat_source"] = el.get("source")
        rotation = _float(el, "rotation", 0.0)
        if rotation:
            attrs["rotation"] = rotation
        user_attrs = {a.get("name"): (a.text or "") for a in el.iter("attribute")
                      if a.get("name") is not None}
        if user_attrs:
            attrs["attributes"] = user_attrs
        part = _Part(label=label, kind="polygon", source=src, order=order, z_order=z_order,
                     group_id=group_id, rotation=rotation, attributes=attrs)
        if tag == "polygon":
            part.polygon = _points(el)
        elif tag == "ellipse":
            rx, ry = _float(el, "rx"), _float(el, "ry")
            if rx <= 0 or ry <= 0:
                raise _ShapeError(f"ellipse radii rx={rx}, ry={ry} must be > 0")
            # CVAT's rotation is in degrees, clockwise on screen (y down), about the centre.
            part.polygon = ellipse_polygon(_float(el, "cx"), _float(el, "cy"), rx, ry,
                                           math.radians(rotation))
        elif tag == "box":
            part.kind = "box"
            part.box = (_float(el, "xtl"), _float(el, "ytl"), _float(el, "xbr"),
                        _float(el, "ybr"))
        elif tag == "mask":
            part.kind = "mask"
            if width is None or height is None:
                raise _ShapeError("a <mask> needs the image's width and height, which the "
                                  "<image> element does not declare")
            part.mask, part.mask_xy, outside = _decode_cvat_rle(
                el.get("rle"), _int(el, "left"), _int(el, "top"), _int(el, "width"),
                _int(el, "height"), height, width)
            if outside:
                attrs["mask_pixels_outside_image"] = outside
    except _ShapeError as e:
        rec.refusals.append(Refusal(file, src, f"label {label!r}", str(e)))
        return
    parts.append(part)


def _finish(parts: list[_Part], rec: ImageRecord, ctx: _Context) -> None:
    """Group parts into instances, apply box_as_polygon and z_order, fill rec.instances."""
    width, height = rec.width, rec.height
    # 1. group_id: same group + same label = one instance; a box in a group that has a
    #    mask-bearing shape of its label is that object's box, not another instance.
    groups: dict[tuple[int, str], list[_Part]] = {}
    for p in parts:
        if p.group_id and p.kind != "box":
            groups.setdefault((p.group_id, p.label), []).append(p)
    instances: list[list[_Part]] = []
    placed = set()
    for p in parts:
        if p.group_id and p.kind != "box":
            key = (p.group_id, p.label)
            if key not in placed:
                placed.add(key)
                instances.append(groups[key])
        elif p.kind == "box" and p.group_id and (p.group_id, p.label) in groups:
            g = groups[(p.group_id, p.label)]
            g[0].attributes.setdefault("grouped_box", list(p.box))
        else:
            instances.append([p])
    # 2. boxes: box-only instances, or rectangles when the user asked for that.
    out: list[tuple[list[_Part], Instance | None]] = []
    for inst in instances:
        p = inst[0]
        if p.kind == "box":
            corners = _box_corners(p.box, p.rotation)
            if ctx.options.box_as_polygon:
                p.kind, p.polygon = "polygon", corners
                p.attributes["from_box"] = True
            else:
                xs, ys = corners[0::2], corners[1::2]
                x0, y0 = min(xs), min(ys)
                bbox = (x0, y0, round(max(xs) - x0, 6), round(max(ys) - y0, 6))
                out.append((inst, Instance(label=p.label, bbox=bbox, source=p.source,
                                           attributes=dict(p.attributes))))
                continue
        out.append((inst, None))
    # 3. z_order: higher shapes cover lower ones (only where z_order differs). Only shapes
    #    whose boxes overlap a higher one are rasterized, one at a time, full size (the
    #    converter rasterizes the same polygons the same way, so the cut is pixel-exact);
    #    memory stays at a few masks even on large photos with many shapes.
    cut: dict[int, dict] = {}
    covered: set[int] = set()
    bearing = {i: inst for i, (inst, done) in enumerate(out) if done is None}
    z_of = {i: max(p.z_order for p in inst) for i, inst in bearing.items()}
    if len(set(z_of.values())) > 1 and width and height:
        boxes = {i: _extent(inst) for i, inst in bearing.items()}
        for i, inst in bearing.items():
            above = [j for j in bearing if z_of[j] > z_of[i] and _overlaps(boxes[i], boxes[j])]
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
    # 4. emit
    for i, (inst, done) in enumerate(out):
        if done is not None:
            rec.instances.append(done)
            continue
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
        if i in covered:
            rec.refusals.append(Refusal(str(ctx.xml_path), source, f"label {first.label!r}",
                                        "completely covered by shapes with a higher z_order; "
                                        "nothing of it is visible"))
            continue
        if i in cut:
            attrs["cut_by_z_order"] = True
            rec.instances.append(Instance(label=first.label, rle=cut[i], source=source,
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


def _where(source: str) -> str:
    """'annotations.xml image 'a.jpg' polygon 2 (line 9)' -> 'annotations.xml image 'a.jpg''."""
    for tag in ("polygon", "ellipse", "mask", "box"):
        k = source.rfind(f" {tag} ")
        if k > 0:
            return source[:k]
    return source


def _what(source: str) -> str:
    return source[len(_where(source)) + 1:]


def _extent(inst: list[_Part]) -> tuple[float, float, float, float]:
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
    # A pixel touched by both boxes' edges can be set in both rasters: compare with a
    # 1-pixel margin rather than risk missing an overlap.
    return a[0] <= b[2] + 1 and b[0] <= a[2] + 1 and a[1] <= b[3] + 1 and b[1] <= a[3] + 1


def _union_mask(inst: list[_Part], height: int, width: int) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------
# geometry and value parsing

def cvat_rle_to_mask(rle: str | None, left: int, top: int, box_w: int, box_h: int,
                     height: int, width: int) -> tuple[np.ndarray, int]:
    """Decode CVAT's mask RLE into a full-image mask.

    Args:
      rle: "n0, n1, n2, ..." run lengths alternating background / foreground, starting with
        background (n0 may be 0), row-major over the box. A missing trailing background run
        is accepted (the rest of the box is background).
      left, top: the box's top-left pixel in the image; box_w, box_h: its size in pixels.
      height, width: the image size.
    Returns:
      (uint8 [height, width] mask with values 0/1, number of foreground pixels that fell
      outside the image and were dropped).
    Raises:
      ValueError: on a malformed RLE (the message says what is wrong).
    """
    box, (x0, y0), outside = _decode_cvat_rle(rle, left, top, box_w, box_h, height, width)
    full = np.zeros((height, width), np.uint8)
    full[y0:y0 + box.shape[0], x0:x0 + box.shape[1]] = box
    return full, outside


def _decode_cvat_rle(rle, left, top, box_w, box_h, height, width):
    """:func:`cvat_rle_to_mask` without the full-size canvas: (box clipped to the image,
    its top-left (x, y) in the image, foreground pixels dropped outside the image)."""
    if box_w <= 0 or box_h <= 0:
        raise _ShapeError(f"mask box is {box_w}x{box_h} pixels; width and height must be > 0")
    try:
        counts = np.array([int(v) for v in (rle or "").replace(" ", "").split(",") if v != ""],
                          np.int64)
    except ValueError:
        raise _ShapeError(f"rle={short(rle)!r} is not a comma-separated list of integers") \
            from None
    if counts.size == 0:
        raise _ShapeError("the mask has an empty 'rle'")
    if (counts < 0).any():
        raise _ShapeError(f"rle={short(rle)!r} has negative run lengths")
    total = int(counts.sum())
    if total > box_w * box_h:
        raise _ShapeError(f"rle runs cover {total} pixels but the mask box is {box_w}x{box_h} = "
                          f"{box_w * box_h}; the mask is damaged")
    values = np.zeros(counts.size, np.uint8)
    values[1::2] = 1  # runs alternate background, foreground, background...
    flat = np.zeros(box_w * box_h, np.uint8)
    flat[:total] = np.repeat(values, counts)
    box = flat.reshape(box_h, box_w)
    y0, x0 = min(max(top, 0), height), min(max(left, 0), width)
    y1, x1 = max(min(top + box_h, height), y0), max(min(left + box_w, width), x0)
    clipped = box[y0 - top:y1 - top, x0 - left:x1 - left]
    outside = int(box.sum()) - int(clipped.sum())
    return np.ascontiguousarray(clipped), (x0, y0), outside


def _box_corners(box, rotation: float) -> list[float]:
    x0, y0, x1, y1 = box
    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if rotation:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
        pts = [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c)
               for x, y in pts]
    return [round(v, 3) for xy in pts for v in xy]


def _points(el) -> list[float]:
    raw = el.get("points")
    if raw is None:
        raise _ShapeError(f"<{el.tag}> has no 'points' attribute")
    pairs = [q for q in raw.strip().split(";") if q.strip()]
    values = ",".join(pairs).split(",")
    if len(values) == 2 * len(pairs):  # fast path: one split, one map (the common case)
        try:
            flat = list(map(float, values))
            if all(map(math.isfinite, flat)):
                return flat
        except ValueError:
            pass
    for pair in pairs:  # slow path: name the offending pair
        xy = pair.split(",")
        if len(xy) != 2:
            raise _ShapeError(f"points={short(raw)!r}: {pair!r} is not 'x,y'")
        try:
            x, y = float(xy[0]), float(xy[1])
        except ValueError:
            raise _ShapeError(f"points={short(raw)!r}: {pair!r} is not a number pair") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise _ShapeError(f"points={short(raw)!r}: {pair!r} is not finite")
    raise _ShapeError(f"points={short(raw)!r} cannot be read as 'x1,y1;x2,y2;...'")


def _float(el, name: str, default: float | None = None) -> float:
    raw = el.get(name)
    if raw is None:
        if default is None:
            raise _ShapeError(f"<{el.tag}> has no {name!r} attribute")
        return default
    try:
        v = float(raw)
    except ValueError:
        raise _ShapeError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(v):
        raise _ShapeError(f"{name}={raw!r} is not a finite number")
    return v


def _int(el, name: str, default: int | None = None) -> int:
    raw = el.get(name)
    if raw is None:
        if default is None:
            raise _ShapeError(f"<{el.tag}> has no {name!r} attribute")
        return default
    try:
        return int(raw)
    except ValueError:
        try:  # "3.0" from tools that write every number as a float
            v = float(raw)
        except ValueError:
            v = math.nan
        if v.is_integer():
            return int(v)
        raise _ShapeError(f"{name}={raw!r} is not an integer") from None


def _size_attr(el, name: str) -> int | None:
    raw = el.get(name)
    try:
        v = int(raw) if raw is not None else None
    except ValueError:
        return None  # the image file decides; the converter reports a mismatch
    return v if v and v > 0 else None
