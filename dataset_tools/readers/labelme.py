"""LabelMe JSON reader (labelme 3.x-5.x, https://github.com/wkentaro/labelme).

SRC is a folder searched recursively for ``*.json`` (sorted, so the order is stable), or a
single LabelMe JSON. One file = one image:
``{"shapes": [{"label", "points": [[x, y], ...], "shape_type", "group_id", "mask"?}],
"imagePath", "imageData", "imageHeight", "imageWidth"}``; points are pixels, x right,
y down.

Shapes, following labelme's own ``labelme2coco.py`` / ``shape_to_mask``:
- ``polygon`` (also a missing/null shape_type, labelme's default) and
  ``oriented_rectangle``: the points as one polygon.
- ``rectangle``: two opposite corners in any order (or more points: their bounding box)
  -> a 4-vertex polygon, as labelme2coco writes it.
- ``circle``: center + a point on the circle -> a polygon with enough vertices that no
  edge is more than 0.1 px inside the circle.
- ``mask`` (labelme >= 5.3): a base64 PNG covering the box at ``points`` [[x1, y1],
  [x2, y2]], pasted at the rounded top-left corner into a full-size mask of the declared
  imageHeight x imageWidth -> a COCO RLE.
- ``point``, ``points``, ``line``, ``linestrip`` and unknown types: refused with a reason
  (they have no area).
- ``group_id``: shapes with the same (label, group_id) are ONE instance with several parts,
  exactly labelme2coco's rule; shapes with group_id null are each their own instance.
- Labels labelme's tooling reserves (``__ignore__``, ``_background_``, any ``__name__``):
  ignored, reported as such (readers/_common.ignored_label), as labelme2coco skips them.
  ``__ignore__`` marks "don't care" pixels for every class (labelme2voc writes them as
  255); a COCO crowd region belongs to one class, so there is no faithful crowd
  equivalent, and Model Garden drops crowd objects in training anyway.
- Images: embedded ``imageData`` wins, as in labelme itself (it is read lazily through
  ``ImageRecord.embedded``; ``imagePath`` may even name the JSON itself, as in labelme's
  tutorial example), unless ``options.images_dir`` is given and holds the image.
  Otherwise ``imagePath`` is resolved relative to the JSON (Windows backslashes accepted),
  then by its base name beside the JSON.
- A ``.json`` that is not a LabelMe file (no ``shapes`` list, e.g. a COCO file lying in the
  folder) becomes a record whose ``error`` says it was skipped and what it looks like. SRC
  holding no LabelMe file at all (a COCO or VIA JSON, a folder of other formats) is a
  UserError naming the format it looks like and the command for it (readers/sniff.py).
  Invalid JSON is a UserError naming the file.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
import os
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from maskrcnn_toolkit.core.json_files import read_json
from maskrcnn_toolkit.core.masks import mask_to_rle, polygons_to_mask
from maskrcnn_toolkit.dataset_tools.readers import ReaderOptions
from maskrcnn_toolkit.dataset_tools.readers._common import (
    drop_exact_duplicates,
    ellipse_polygon,
    ignored_label,
    int_or_none,
    num,
    rect_polygon,
    resolve_image,
)
from maskrcnn_toolkit.dataset_tools.readers.sniff import not_this_format, sniff
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Instance, Refusal

EXPECTED = ('a LabelMe JSON object with "shapes", "imagePath" and "imageData" '
            '(as labelme saves it)')
NO_AREA = {"point": "a point", "points": "points", "line": "a line",
           "linestrip": "a line strip"}


def read(src: Path, options: ReaderOptions) -> Iterator[ImageRecord]:
    """Parse LabelMe JSONs into ImageRecords, one per JSON file.

    The folder is listed before the first record is produced (no JSON at all is a
    UserError); each file is parsed when its record is requested. SRC that is not LabelMe
    (one other JSON, or a folder none of whose JSONs is LabelMe) is a UserError naming the
    format it looks like (readers/sniff.py).
    """
    src = Path(src)
    if src.is_dir():
        files = sorted((p for p in src.rglob("*") if p.suffix.lower() == ".json" and p.is_file()),
                       key=lambda p: p.relative_to(src).as_posix())
        if not files:
            raise not_this_format("labelme", src, f"{src}: no .json files found (searched "
                                                  f"recursively); the labelme format takes a "
                                                  f"folder of LabelMe JSONs or one JSON file")
        return _records(src, files, src, options)
    if src.suffix.lower() != ".json":
        raise not_this_format("labelme", src, f"{src}: not a .json file; the labelme format "
                                              f"takes a folder of LabelMe JSONs or one LabelMe "
                                              f"JSON file")
    data = read_json(src, EXPECTED)
    if not _is_labelme(data):
        raise not_this_format("labelme", src, f"{src}: not a LabelMe annotation "
                                              f"({_not_labelme(data)}); expected {EXPECTED}",
                              data)
    return iter([_record(src, src.parent, options, data)])


def _records(src: Path, files: list[Path], root: Path, options: ReaderOptions
             ) -> Iterator[ImageRecord]:
    """One record per file; a file that is not LabelMe becomes a record whose ``error``
    says what it looks like. When no file at all is LabelMe, UserError (after the records)."""
    any_labelme = False
    for path in files:
        data = read_json(path, EXPECTED)
        if _is_labelme(data):
            any_labelme = True
            yield _record(path, root, options, data)
            continue
        guess = sniff(path, data)
        looks = f"; it looks like {guess.what}" if guess is not None else ""
        file = str(path)
        yield ImageRecord(file_name=path.relative_to(root).as_posix(), annotation_file=file,
                          error=Refusal(file=file, item="file", value=_not_labelme(data),
                                        reason=f"not a LabelMe annotation (expected "
                                               f"{EXPECTED}){looks}; skipped"))
    if not any_labelme:
        raise not_this_format("labelme", src, f"{src}: none of its {len(files)} .json files is "
                                              f"a LabelMe annotation (expected {EXPECTED})")


def _is_labelme(data) -> bool:
    return (isinstance(data, dict) and isinstance(data.get("shapes"), list)
            and ("imagePath" in data or "imageData" in data))


def _not_labelme(data) -> str:
    """What the JSON holds instead, in a few words."""
    return (f"top-level keys {sorted(data)[:8]}" if isinstance(data, dict)
            else f"top level is a JSON {type(data).__name__}")


def _record(path: Path, root: Path, options: ReaderOptions, data: dict) -> ImageRecord:
    file = str(path)
    rel = path.relative_to(root).as_posix()
    rec = ImageRecord(file_name=rel, annotation_file=file,
                      width=int_or_none(data.get("imageWidth")),
                      height=int_or_none(data.get("imageHeight")))
    _locate_image(rec, path, root, data, options)
    rec.instances = drop_exact_duplicates(_instances(path, rel, data, rec), rec.refusals, file)
    return rec


def _locate_image(rec: ImageRecord, path: Path, root: Path, data: dict,
                  options: ReaderOptions) -> None:
    file = str(path)
    image_path = data.get("imagePath")
    image_path = image_path.replace("\\", "/") if isinstance(image_path, str) else ""
    image_data = data.get("imageData")
    has_embedded = isinstance(image_data, str) and image_data[:64].strip() != ""
    json_dir_rel = PurePosixPath(path.relative_to(root).as_posix()).parent

    if options.images_dir is not None and image_path:
        found, reason = resolve_image(image_path, [Path(options.images_dir)],
                                      Path(options.images_dir))
        if found is not None or not has_embedded:
            _set_file(rec, found, reason, image_path, file, Path(options.images_dir))
            return
    if has_embedded:
        rec.embedded = (str(path.resolve()), "imageData")
        name = PurePosixPath(image_path).name
        if not name or name.lower().endswith(".json"):
            name = path.stem + _sniff_ext(image_data)
        rec.file_name = (json_dir_rel / name).as_posix()
        return
    if not image_path:
        rec.error = Refusal(file=file, item="imagePath", value=repr(data.get("imagePath")),
                            reason="no imagePath and no imageData; the JSON names no image")
        return
    found, reason = resolve_image(image_path, [path.parent], root)
    _set_file(rec, found, reason, image_path, file, root)


def _set_file(rec, found, reason, image_path, file, root):
    if found is None:
        rec.error = Refusal(file=file, item="imagePath", value=image_path, reason=reason)
        return
    rec.image_path = str(found)
    try:
        rec.file_name = found.relative_to(os.path.normpath(os.path.abspath(root))).as_posix()
    except ValueError:
        rec.file_name = found.name


def _sniff_ext(b64: str) -> str:
    head = b64[:16].lstrip()
    if head.startswith("iVBOR"):
        return ".png"
    if head.startswith("/9j/"):
        return ".jpg"
    return ".img"


def _instances(path: Path, rel: str, data: dict, rec: ImageRecord
               ) -> list[tuple[Instance, str]]:
    """Shapes -> (instance, item) pairs, merging shapes that share (label, group_id)."""
    file = str(path)
    groups: dict = {}  # (label, group_id) -> [(index, part)], in order of first appearance
    for idx, shape in enumerate(data["shapes"]):
        item = f"shapes[{idx}]"
        label = shape.get("label") if isinstance(shape, dict) else None
        ignored = ignored_label(label.strip(), file, item) if isinstance(label, str) else None
        if ignored is not None:
            rec.refusals.append(ignored)
            continue
        part, label, why = _shape_part(shape, rec)
        if part is None:
            rec.refusals.append(Refusal(file=file, item=item, value=why[0], reason=why[1]))
            continue
        gid = shape.get("group_id")
        if gid is not None and not isinstance(gid, (int, str)):
            gid = str(gid)  # labelme writes int or null; anything else still groups by value
        key = (label, gid if gid is not None else ("single", idx))
        groups.setdefault(key, []).append((idx, part))

    out = []
    for (label, gid), parts in groups.items():
        idxs = ",".join(str(i) for i, _ in parts)
        item = f"shapes[{idxs}]"
        source = f"{rel} {item}"
        if not isinstance(gid, tuple):
            source += f" (group_id {gid})"
        polygons = [p for _, p in parts if isinstance(p, list)]
        masks = [p for _, p in parts if isinstance(p, np.ndarray)]
        if not masks:
            out.append((Instance(label=label, polygons=polygons, source=source,
                                 attributes={"group_id": None if isinstance(gid, tuple) else gid}),
                        item))
            continue
        # A mask part: the whole group becomes one full-size mask (union of every part).
        full = masks[0].copy()
        for m in masks[1:]:
            full |= m
        if polygons:
            full |= polygons_to_mask(polygons, rec.height, rec.width).astype(bool)
        out.append((Instance(label=label, rle=mask_to_rle(full), source=source,
                             attributes={"group_id": None if isinstance(gid, tuple) else gid}),
                    item))
    return out


def _shape_part(shape, rec: ImageRecord):
    """One shape -> (polygon list | full-size bool mask, label, None) or (None, None, (value,
    reason))."""
    if not isinstance(shape, dict):
        return None, None, (str(shape)[:80], "shape is not a JSON object")
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        return None, None, (f"label={label!r}", "shape has no label")
    label = label.strip()  # "bolt " and "bolt" are one class to a user
    stype = shape.get("shape_type") or "polygon"
    if not isinstance(stype, str):
        return None, None, (f"shape_type={str(stype)[:40]}", "shape_type is not a string")
    if stype in NO_AREA:
        return None, None, (f"shape_type={stype!r} label={label!r}",
                            f"{NO_AREA[stype]} has no area; instance segmentation needs a "
                            f"polygon, rectangle, circle or mask")
    raw = shape.get("points")
    try:
        pts = [(num(p[0]), num(p[1])) for p in raw if len(p) == 2]
        if len(pts) != len(raw):
            raise ValueError("a point is not [x, y]")
    except (TypeError, ValueError) as e:
        return None, None, (f"points={str(raw)[:80]}", f"points must be a list of [x, y] "
                                                       f"numbers ({e})")
    flat = [c for p in pts for c in p]
    if stype in ("polygon", "oriented_rectangle"):
        return flat, label, None
    if stype == "rectangle":
        if len(pts) < 2:
            return None, None, (f"{len(pts)} point(s)", "a rectangle needs two corners")
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return rect_polygon(min(xs), min(ys), max(xs), max(ys)), label, None
    if stype == "circle":
        if len(pts) != 2:
            return None, None, (f"{len(pts)} point(s)",
                                "a circle needs 2 points (center, a point on the circle)")
        (cx, cy), (px, py) = pts
        r = math.hypot(px - cx, py - cy)
        try:
            return ellipse_polygon(cx, cy, r, r), label, None
        except ValueError as e:
            return None, None, (f"points={pts}", str(e))
    if stype == "mask":
        return _mask_part(shape, pts, label, rec)
    return None, None, (f"shape_type={stype!r}", "unsupported LabelMe shape type")


def _mask_part(shape: dict, pts, label: str, rec: ImageRecord):
    from PIL import Image
    if rec.height is None or rec.width is None:
        return None, None, ("imageHeight/imageWidth missing",
                            "a mask shape needs the declared image size to be placed")
    if rec.height * rec.width > Image.MAX_IMAGE_PIXELS:
        return None, None, (f"imageHeight x imageWidth = {rec.height}x{rec.width}",
                            "declared image size is implausibly large for a mask")
    if len(pts) != 2 or not isinstance(shape.get("mask"), str):
        return None, None, (f"{len(pts)} point(s), mask={str(shape.get('mask'))[:40]}",
                            "a mask shape needs 2 corner points and a base64 PNG 'mask'")
    try:
        with Image.open(io.BytesIO(base64.b64decode(shape["mask"], validate=False))) as im:
            patch = np.asarray(im.convert("L")) > 0
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as e:
        return None, None, ("mask", f"mask is not a base64 PNG ({e})")
    # As labelme's shape_to_mask: the patch's top-left is the first point truncated to int
    # (np.asarray(points).astype(int)); the patch keeps its own size.
    x0 = int(min(pts[0][0], pts[1][0]))
    y0 = int(min(pts[0][1], pts[1][1]))
    h, w = rec.height, rec.width
    full = np.zeros((h, w), bool)
    ph, pw = patch.shape
    ys, ye = max(y0, 0), min(y0 + ph, h)
    xs, xe = max(x0, 0), min(x0 + pw, w)
    if ys < ye and xs < xe:
        full[ys:ye, xs:xe] = patch[ys - y0:ye - y0, xs - x0:xe - x0]
    return full, label, None
