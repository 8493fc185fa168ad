"""COCO instances JSON reader (https://cocodataset.org/#format-data).

SRC is one COCO JSON: ``{"images": [...], "annotations": [...], "categories": [...]}``.

What becomes of each annotation:
- ``segmentation`` a list of polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixels, x right,
  y down): one Instance with every part (a multi-part object). A bare flat list of numbers
  (written by some tools) is read as one polygon.
- ``segmentation`` an RLE dict ``{"size": [H, W], "counts": str | list[int]}`` (compressed
  or uncompressed counts): an Instance with ``rle`` (uncompressed counts must sum to H*W).
- ``segmentation`` empty or missing: a box-only Instance with ``box_xywh_px`` (the ``bbox``
  (x, y, w, h)) that the converter refuses with a reason, or, with ``box_as_polygon``, a
  rectangle polygon.
- ``iscrowd`` is honoured as written (is_crowd=True). Note: CVAT/Datumaro COCO exports
  write every mask-like shape (brush masks, ellipses) as RLE with iscrowd=1.
- unknown ``category_id``: refused with a reason on its image. Unknown ``image_id``: the
  annotations are refused on a placeholder record named ``(unknown image_id N)`` whose
  ``error`` says why (there is no image to attach them to).
Labels are category NAMES; ids (non-contiguous, huge, 0) are forgotten here and assigned by
the label map. Two categories with the same name are merged into that name when their
supercategories agree (the label map is keyed by name, so they could not be told apart
later anyway); with different supercategories they are a UserError (probably two classes).

Images are looked for in ``options.images_dir``, else beside the JSON, in ``images/`` next
to it, in ``../images`` and ``../images/<subset>`` (CVAT/Datumaro put the JSON in
``annotations/instances_<subset>.json``) and ``../<subset>`` (the official COCO layout,
``annotations/instances_val2017.json`` + ``val2017/``). Declared width/height go into the
record; the image file decides and the converter reports a mismatch.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterator

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.json_files import read_json
from maskrcnn_toolkit.dataset_tools.readers import ReaderOptions
from maskrcnn_toolkit.dataset_tools.readers._common import (
    drop_exact_duplicates,
    ignored_label,
    int_or_none,
    num,
    rect_polygon,
    resolve_image,
)
from maskrcnn_toolkit.dataset_tools.readers.sniff import not_this_format
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Instance, Refusal

EXPECTED = ('a COCO instances JSON object with "images", "annotations" and "categories" '
            'lists (https://cocodataset.org/#format-data)')


def read(src: Path, options: ReaderOptions) -> Iterator[ImageRecord]:
    """Parse a COCO JSON into one ImageRecord per entry of ``images`` (in file order).

    The file is loaded and its structure checked before the first record is produced, so a
    broken file fails at once with a UserError naming the file and what was expected.
    """
    src = Path(src)
    if src.is_dir():
        raise not_this_format("coco", src, f"{src} is a folder; the coco format takes the COCO "
                                           f"JSON file itself (e.g. "
                                           f"annotations/instances_default.json)")
    try:
        data = read_json(src, EXPECTED)
    except UserError as e:
        raise not_this_format("coco", src, str(e)) from None
    images, anns_by_image, categories = _check_structure(src, data)
    search_dirs, root = _image_dirs(src, options)
    return _records(src, images, anns_by_image, categories, search_dirs, root, options)


def _check_structure(src: Path, data):
    if not isinstance(data, dict):
        raise not_this_format("coco", src, f"{src}: top level is a JSON "
                                           f"{type(data).__name__}; expected {EXPECTED}", data)
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        hint = (" (an image-info or test file has no annotations to train on)"
                if missing == ["annotations"] else "")
        raise not_this_format("coco", src, f"{src}: missing "
                                           f"{', '.join(repr(k) for k in missing)}{hint}; "
                                           f"expected {EXPECTED}", data)
    for k in ("images", "annotations", "categories"):
        if not isinstance(data[k], list):
            raise UserError(f"{src}: {k!r} is a {type(data[k]).__name__}; expected {EXPECTED}")
    anns = data["annotations"]
    if anns and isinstance(anns[0], dict) and "segments_info" in anns[0]:
        raise UserError(f"{src}: this is a COCO panoptic file (annotations have "
                        f"'segments_info'); give a COCO instances JSON")

    categories = _categories(src, data["categories"])

    images: list[dict] = []
    seen_ids: dict = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise UserError(f"{src}: images[{i}] = {str(im)[:120]} lacks an 'id' or a "
                            f"'file_name' string; every COCO image needs both")
        key = _id_key(im["id"])
        if key in seen_ids:
            raise UserError(f"{src}: image id {im['id']!r} is used by images[{seen_ids[key]}] "
                            f"and images[{i}]; image ids must be unique (annotations would be "
                            f"ambiguous)")
        seen_ids[key] = i
        images.append(im)

    anns_by_image: dict = defaultdict(list)
    for i, a in enumerate(anns):
        key = _id_key(a.get("image_id")) if isinstance(a, dict) else None
        anns_by_image[key].append((i, a))
    return images, anns_by_image, categories


def _id_key(v):
    """Ids compare as written, except that 7 and 7.0 (some exporters write floats) match;
    a list or object where an id belongs becomes its text so that it can still be reported."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, (list, dict)):
        return repr(v)
    return v


def _categories(src: Path, cats: list) -> dict:
    """category id -> name; see the module docstring for duplicate names."""
    by_id: dict = {}
    by_name: dict = {}  # name -> (id, supercategory)
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or "id" not in c:
            raise UserError(f"{src}: categories[{i}] = {str(c)[:120]} has no 'id'")
        name = c.get("name")
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"{src}: categories[{i}] (id {c['id']!r}) has no name "
                            f"({name!r}); labels are category names, give it one")
        name = name.strip()  # "bolt " and "bolt" are one class to a user
        cid = _id_key(c["id"])
        if cid in by_id and by_id[cid] != name:
            raise UserError(f"{src}: category id {c['id']!r} is named both {by_id[cid]!r} and "
                            f"{name!r}; category ids must be unique")
        sup = c.get("supercategory") or ""
        if name in by_name and by_name[name][0] != cid and by_name[name][1] != sup:
            raise UserError(
                f"{src}: category name {name!r} is used by id {by_name[name][0]!r} "
                f"(supercategory {by_name[name][1]!r}) and id {c['id']!r} (supercategory "
                f"{sup!r}); these look like two different classes with one name. Rename one "
                f"of them in the JSON (labels are category names)")
        by_name.setdefault(name, (cid, sup))
        by_id[cid] = name
    return by_id


def _image_dirs(src: Path, options: ReaderOptions) -> tuple[list[Path], Path]:
    if options.images_dir is not None:
        d = Path(options.images_dir)
        return [d], d
    ann_dir = src.parent
    dirs = [ann_dir, ann_dir / "images"]
    subset = src.stem[len("instances_"):] if src.stem.startswith("instances_") else ""
    dirs.append(ann_dir.parent / "images")
    if subset:
        dirs += [ann_dir.parent / "images" / subset, ann_dir.parent / subset]
    # The root is the JSON's folder; resolve_image also accepts anything inside a search
    # dir, so ../images works while a file_name like "../../etc/x.jpg" is still refused.
    return dirs, ann_dir


def _records(src, images, anns_by_image, categories, search_dirs, root, options
             ) -> Iterator[ImageRecord]:
    file = str(src)
    for im in images:
        rec = ImageRecord(file_name=im["file_name"].replace("\\", "/"), annotation_file=file,
                          width=int_or_none(im.get("width")),
                          height=int_or_none(im.get("height")))
        path, reason = resolve_image(im["file_name"], search_dirs, root)
        if path is None:
            rec.error = Refusal(file=file, item=f"image id {im['id']!r}",
                                value=im["file_name"], reason=reason)
        else:
            rec.image_path = str(path)
        instances = []
        for idx, ann in anns_by_image.pop(_id_key(im["id"]), []):
            inst = _instance(src, idx, ann, categories, rec, options)
            if inst is not None:
                instances.append((inst, _ann_name(idx, ann)))
        rec.instances = drop_exact_duplicates(instances, rec.refusals, file)
        yield rec
    # Whatever is left points at no image in "images".
    for key, anns in anns_by_image.items():
        ids = ", ".join(_ann_name(i, a) for i, a in anns[:20]) + (" ..." if len(anns) > 20 else "")
        rec = ImageRecord(file_name=f"(unknown image_id {key!r})", annotation_file=file)
        rec.error = Refusal(file=file, item=ids, value=f"image_id={key!r}",
                            reason=f"{len(anns)} annotation(s) point at an image id that is not "
                                   f"in 'images'; they were not used")
        yield rec


def _ann_name(idx: int, ann) -> str:
    if isinstance(ann, dict) and "id" in ann:
        return f"annotation id {ann['id']!r}"
    return f"annotations[{idx}]"


def _instance(src: Path, idx: int, ann, categories: dict, rec: ImageRecord,
              options: ReaderOptions) -> Instance | None:
    file = str(src)
    item = _ann_name(idx, ann)
    source = f"{src.name} {item}"

    def refuse(value, reason):
        rec.refusals.append(Refusal(file=file, item=item, value=str(value)[:200], reason=reason))

    if not isinstance(ann, dict):
        refuse(ann, "annotation is not a JSON object")
        return None
    cid = ann.get("category_id")
    if _id_key(cid) not in categories:
        refuse(f"category_id={cid!r}", "category id is not in 'categories'")
        return None
    label = categories[_id_key(cid)]
    ignored = ignored_label(label, file, item)
    if ignored is not None:
        rec.refusals.append(ignored)
        return None
    is_crowd = ann.get("iscrowd", 0) in (1, True, "1")
    seg = ann.get("segmentation")

    if isinstance(seg, dict) and seg:
        rle, why = _rle(seg, rec)
        if rle is None:
            refuse(f"segmentation={str(seg)[:120]}", why)
            return None
        return Instance(label=label, rle=rle, is_crowd=is_crowd, source=source)

    if isinstance(seg, list) and seg:
        # A flat list of numbers is one polygon (some tools drop the outer list).
        parts = [seg] if not isinstance(seg[0], list) else seg
        polygons = []
        for k, part in enumerate(parts):
            if not isinstance(part, list):
                refuse(f"segmentation[{k}]={str(part)[:80]}", "polygon part is not a list")
                return None
            try:
                coords = [num(v) for v in part]
            except ValueError as e:
                refuse(f"segmentation[{k}]", f"polygon has a bad coordinate: {e}")
                return None
            if len(coords) % 2:
                refuse(f"segmentation[{k}] ({len(coords)} numbers)",
                       "polygon has an odd number of coordinates (expected x, y pairs)")
                return None
            if coords:
                polygons.append(coords)
        if polygons:
            return Instance(label=label, polygons=polygons, is_crowd=is_crowd, source=source)

    if seg not in (None, [], {}) and not (isinstance(seg, list) and all(p == [] for p in seg)):
        refuse(f"segmentation={str(seg)[:120]}",
               "segmentation is neither a polygon list nor an RLE dict")
        return None

    # No segmentation: a box-only annotation.
    bbox = ann.get("bbox")
    try:
        x, y, w, h = (num(v) for v in bbox)
    except (TypeError, ValueError):
        refuse(f"bbox={bbox!r}", "annotation has neither a segmentation nor a valid bbox")
        return None
    if options.box_as_polygon:
        return Instance(label=label, polygons=[rect_polygon(x, y, x + w, y + h)],
                        is_crowd=is_crowd, source=source + " (box as polygon)")
    return Instance(label=label, box_xywh_px=(x, y, w, h), is_crowd=is_crowd, source=source)


def _rle(seg: dict, rec: ImageRecord) -> tuple[dict | None, str]:
    size, counts = seg.get("size"), seg.get("counts")
    try:
        h, w = (int(num(v)) for v in size)
    except (TypeError, ValueError):
        return None, "RLE 'size' is not [height, width]"
    if h <= 0 or w <= 0:
        return None, f"RLE size {h}x{w} is empty"
    if rec.height is not None and rec.width is not None and (h, w) != (rec.height, rec.width):
        return None, (f"RLE size {h}x{w} (height x width) differs from the image's declared "
                      f"size {rec.height}x{rec.width}")
    if isinstance(counts, str):
        if not counts.isascii():
            return None, "compressed RLE 'counts' is not ASCII"
        return {"size": [h, w], "counts": counts}, ""
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            return None, "uncompressed RLE 'counts' must be non-negative integers"
        if sum(counts) != h * w:
            return None, (f"uncompressed RLE counts sum to {sum(counts)}, not height*width = "
                          f"{h * w}")
        return {"size": [h, w], "counts": list(counts)}, ""
    return None, "RLE 'counts' is neither a string (compressed) nor a list (uncompressed)"
