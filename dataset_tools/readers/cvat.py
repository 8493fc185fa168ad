"""CVAT XML reader: "CVAT for images 1.1" (``<image>`` elements) and "CVAT for video 1.1"
(``<track>`` elements with one shape per frame).

SRC is the ``annotations.xml`` (or the folder of an extracted CVAT export that holds it).
Images are looked up in ``--images DIR``, else ``images/`` next to the XML (``images/<subset>/``
for project exports), else beside the XML; names may include task subfolders.

What each CVAT element becomes (coordinates are pixels of the full image, x right, y down,
pixel edges as in COCO, exactly as CVAT writes them):
  <polygon points="x1,y1;x2,y2;...">  -> Instance(polygons=[[x1, y1, x2, y2, ...]])
  <ellipse cx cy rx ry rotation>      -> Instance(polygons=[...]) (the ellipse sampled so
                                         that no edge is more than 0.1 px inside the curve,
                                         rotation in degrees, clockwise on screen as CVAT
                                         draws it)
  <mask rle left top width height>    -> Instance(rle=full-size COCO RLE)
  <box xtl ytl xbr ybr rotation>      -> Instance(box_xywh_px=(x, y, w, h)) (box-only: the
                                         converter refuses it), or the (rotated) rectangle
                                         as a polygon when ``options.box_as_polygon``
  <polyline> <points> <cuboid> <skeleton> <tag>  -> Refusal (not an instance mask)
Kept in ``Instance.attributes``: ``occluded`` (bool), ``z_order`` (int), ``group_id`` (int,
when non-zero), ``rotation`` (degrees, when non-zero), the CVAT ``source`` (manual/auto...)
as ``cvat_source``, and every ``<attribute name="...">value</attribute>`` under ``attributes``.

Shapes are parsed by readers/cvat_shapes.py (one element -> a Part; CVAT's mask RLE) and
the parts of an image or frame become instances in readers/cvat_instances.py (``group_id``,
boxes, ``z_order``: the decisions are stated there).

Decisions (see docs/DESIGN_NOTES.md, "Readers: CVAT, VOC"):
- Video tracks: every shape with ``outside="0"`` (keyframe or interpolated, as CVAT exports
  them) is an instance of its frame; frames are images named ``frame_NNNNNN.*`` (what CVAT
  writes when a video task is exported with images). Frames with no visible shape are not
  read: an export cannot tell "nothing there" from "not annotated".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.dataset_tools.readers import ReaderOptions
from maskrcnn_toolkit.dataset_tools.readers._common import refuse_zip, resolve_image
from maskrcnn_toolkit.dataset_tools.readers.cvat_instances import add_instances
from maskrcnn_toolkit.dataset_tools.readers.cvat_shapes import parse_shape
from maskrcnn_toolkit.dataset_tools.readers.sniff import not_this_format
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Refusal

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


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
    frames: dict[tuple[str, int], list] = {}
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
                    raise not_this_format("cvat", xml_path, f"{xml_path}: root element is "
                                          f"<{el.tag}>, not <annotations>; this is not a CVAT "
                                          f"XML export. Export the task as 'CVAT for images "
                                          f"1.1'")
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
        raise not_this_format("cvat", xml_path, f"{xml_path}: malformed XML at line {line}: "
                              f"{e.msg}; the file is damaged or not XML. Re-export it from "
                              f"CVAT ('CVAT for images 1.1') or fix that line") from None
    except OSError as e:
        raise UserError(f"cannot read CVAT XML {str(xml_path)!r}: {e.strerror or e}") from None
    if frames:
        yield from _frame_records(frames, ctx, xml_dir, meta_size)
    elif images_seen == 0 and root is not None:
        raise UserError(f"{xml_path}: no <image> or <track> elements; the export is empty "
                        f"(check that the task has annotated frames and export it as "
                        f"'CVAT for images 1.1')")


def _find_xml(src: Path) -> Path:
    """The annotations XML that SRC names (itself, or the one XML in a folder)."""
    refuse_zip(src, "DIR/annotations.xml")
    if src.is_dir():
        candidates = [src / "annotations.xml"] if (src / "annotations.xml").is_file() else \
            sorted(src.glob("*.xml"))
        if len(candidates) != 1:
            raise not_this_format("cvat", src, f"{str(src)!r} is a folder with "
                                               f"{len(candidates)} XML files; give the CVAT "
                                               f"annotations XML file itself (usually "
                                               f"annotations.xml)")
        return candidates[0]
    return src


@dataclass
class _Context:
    """What every record of one XML needs: the file (for messages) and the user's options."""

    xml_path: Path
    options: ReaderOptions

    @property
    def name(self) -> str:
        return self.xml_path.name


# ---------------------------------------------------------------------------------------
# <image> elements (CVAT for images)

def _image_record(el, ctx: _Context, xml_dir: Path) -> ImageRecord:
    """One ``<image>`` element -> its record: the image found on disk (or the error), and
    its shapes as instances and refusals."""
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
        part = parse_shape(child, src, k, width, height, rec)
        if part is not None:
            parts.append(part)
    add_instances(parts, rec, ctx.options.box_as_polygon)
    return rec


def _search_dirs(ctx: _Context, xml_dir: Path, subset: str | None) -> list[Path]:
    """Folders to look for images in, in order: ``--images DIR``, else ``images/`` next to
    the XML, then the XML's folder; each preceded by its ``<subset>/`` subfolder."""
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
    """The task's (width, height) in pixels from ``<meta>``'s ``original_size`` (the frames'
    size in a video export), None where absent or not a number."""
    w = meta.find(".//original_size/width")
    h = meta.find(".//original_size/height")
    try:
        return (int(w.text) if w is not None else None, int(h.text) if h is not None else None)
    except (TypeError, ValueError):
        return None, None


def _collect_track(el, ctx: _Context, frames: dict[tuple[str, int], list]) -> None:
    """Add the visible shapes of one ``<track>`` to ``frames``: (subset, frame number) ->
    [(source for the report, detached shape element carrying the track's label and
    group_id, track id)]."""
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
        frames.setdefault((subset, frame), []).append((src, _detach(child, label), track_id))


def _detach(child, label):
    """A standalone copy of a shape element (its track is freed after reading)."""
    from copy import deepcopy
    c = deepcopy(child)
    if label is not None and c.get("label") is None:
        c.set("label", label)
    return c


def _frame_records(frames, ctx: _Context, xml_dir: Path, meta_size) -> Iterator[ImageRecord]:
    """One record per (subset, frame) with a visible shape, in that order; the frame's image
    is ``frame_NNNNNN.*`` and its declared size is ``meta_size`` (width, height)."""
    width, height = meta_size
    stems: dict[str, dict[str, Path]] = {}  # subset -> image stem -> path
    for subset, frame in sorted(frames):
        dirs = _search_dirs(ctx, xml_dir, subset or None)
        if subset not in stems:  # one directory listing per subset, not one per frame
            stems[subset] = _images_by_stem(dirs)
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
        for k, (src, el, track_id) in enumerate(frames[(subset, frame)], start=1):
            part = parse_shape(el, src, k, width, height, rec)
            if part is not None:
                part.attributes["track_id"] = int(track_id) if str(track_id).isdigit() \
                    else track_id
                parts.append(part)
        add_instances(parts, rec, ctx.options.box_as_polygon)
        yield rec


def _images_by_stem(dirs: list[Path]) -> dict[str, Path]:
    """Image files in ``dirs`` by file stem; a stem in an earlier folder wins."""
    by_stem = {}
    for d in reversed(dirs):
        if d.is_dir():
            for p in d.iterdir():
                if p.suffix.lower() in _IMAGE_EXTS:
                    by_stem[p.stem] = p
    return by_stem


def _size_attr(el, name: str) -> int | None:
    """A declared image size (``width`` / ``height``) as a positive int, else None."""
    raw = el.get(name)
    try:
        v = int(raw) if raw is not None else None
    except ValueError:
        return None  # the image file decides; the converter reports a mismatch
    return v if v and v > 0 else None
