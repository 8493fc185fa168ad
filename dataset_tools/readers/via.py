"""VGG Image Annotator (VIA) JSON reader (https://www.robots.ox.ac.uk/~vgg/software/via/).

SRC is one VIA JSON, any of:
- VIA 1.x ``via_region_data.json``: ``{"<filename><size>": {"filename", "size", "regions",
  "file_attributes"}}`` with ``regions`` a dict ``{"0": {...}}`` (1.0.x, e.g. the balloon
  dataset) or a list (later 1.x);
- VIA 2.x annotation export: the same shape, ``regions`` a list;
- VIA 2.x project file: ``{"_via_settings", "_via_img_metadata": {same entries},
  "_via_attributes": {"region": {...}, "file": {...}}}``.
VIA 3 projects and the CSV export are not read (UserError saying so).

Each region is ``{"shape_attributes": {"name": ..., ...}, "region_attributes": {...}}``;
coordinates are pixels, x right, y down. Shapes:
- ``polygon`` (all_points_x, all_points_y): one polygon.
- ``polyline``: read as a polygon CLOSED from its last point back to its first (VIA has
  no closed/open flag and users draw object outlines with it); fewer than 3 points is
  refused.
- ``rect`` (x, y, width, height): a 4-vertex polygon (VIA regions are areas).
- ``circle`` (cx, cy, r) and ``ellipse`` (cx, cy, rx, ry, optional ``theta`` in radians,
  newer VIA 2 releases): polygons with enough vertices (<= 0.1 px from the curve).
- ``point`` and anything else: refused with a reason.

The class name comes from a region attribute:
- ``options.via_attribute`` names it; a value may be a string (text, dropdown, radio) or a
  checkbox dict ``{"option": true}`` with exactly one option checked;
- without it: if no region in the file has an attribute with a value, every region gets
  ``options.default_label`` (the balloon dataset); if exactly one attribute name has values,
  that one is used; if several do, UserError listing them (pass --via-attribute).
A region with no usable value for the chosen attribute is refused with a reason.

Images are looked for in ``options.images_dir``, else beside the JSON (and, for 2.x
projects, in ``_via_settings.core.default_filepath`` and the "search path list"
``_via_settings.core.filepath`` when they are local folders).
VIA stores no image size, so width/height stay None.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.json_files import read_json
from maskrcnn_toolkit.dataset_tools.readers import ReaderOptions
from maskrcnn_toolkit.dataset_tools.readers._common import (
    drop_exact_duplicates,
    ellipse_polygon,
    ignored_label,
    num,
    rect_polygon,
    resolve_image,
)
from maskrcnn_toolkit.dataset_tools.readers.sniff import not_this_format
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Instance, Refusal

EXPECTED = ("a VIA 1.x/2.x JSON: either {\"<file><size>\": {\"filename\", \"regions\", ...}} "
            "(via_region_data.json / 'Export annotations as JSON') or a VIA 2 project with "
            "\"_via_img_metadata\"")


def read(src: Path, options: ReaderOptions) -> Iterator[ImageRecord]:
    """Parse a VIA JSON into one ImageRecord per image entry (in file order).

    Loads the file, checks its structure and picks the class attribute before the first
    record is produced, so configuration errors fail at once.
    """
    src = Path(src)
    if src.is_dir():
        raise not_this_format("via", src, f"{src} is a folder; the via format takes the VIA "
                                          f"JSON file itself (e.g. via_region_data.json or a "
                                          f"VIA project .json)")
    if src.suffix.lower() == ".csv":
        raise UserError(f"{src}: the VIA CSV export is not read; in VIA use "
                        f"'Annotation > Export Annotations (as json)' and give that file")
    try:
        data = read_json(src, EXPECTED)
    except UserError as e:
        raise not_this_format("via", src, str(e)) from None
    entries, default_dirs = _entries(src, data)
    attr = _class_attribute(src, entries, options)
    if options.images_dir is not None:
        search_dirs, root = [Path(options.images_dir)], Path(options.images_dir)
    else:
        search_dirs, root = [src.parent, *default_dirs], src.parent
    return (_record(src, key, entry, attr, search_dirs, root, options)
            for key, entry in entries)


def _entries(src: Path, data) -> tuple[list[tuple[str, dict]], list[Path]]:
    """[(key, image entry)] and extra image folders from a 2.x project's settings."""
    if not isinstance(data, dict):
        raise not_this_format("via", src, f"{src}: top level is a JSON "
                                          f"{type(data).__name__}; expected {EXPECTED}", data)
    extra_dirs: list[Path] = []
    if "_via_img_metadata" in data:
        meta = data["_via_img_metadata"]
        core = (data.get("_via_settings") or {}).get("core") or {}
        core = core if isinstance(core, dict) else {}
        # VIA 2 prepends default_filepath, or tries each "search path list" entry, to names.
        paths = [core.get("default_filepath")]
        if isinstance(core.get("filepath"), dict):
            paths += list(core["filepath"])
        for path in paths:
            if isinstance(path, str) and path and "://" not in path:
                d = Path(path.replace("\\", "/"))
                d = d if d.is_absolute() else src.parent / d
                if d.is_dir() and d not in extra_dirs:
                    extra_dirs.append(d)
    elif "project" in data and ("file" in data or "metadata" in data):
        raise UserError(f"{src}: this is a VIA 3 project, which is not read; open it in VIA 2 "
                        f"or export the annotations as VIA 2 JSON")
    else:
        meta = data
    if not isinstance(meta, dict):
        raise not_this_format("via", src, f"{src}: image metadata is a JSON "
                                          f"{type(meta).__name__}; expected {EXPECTED}", data)
    if not meta:
        raise UserError(f"{src}: holds no images; expected {EXPECTED}")
    entries = []
    for key, entry in meta.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise not_this_format("via", src, f"{src}: entry {key!r} has no 'filename' string "
                                              f"(got {str(entry)[:100]}); expected {EXPECTED}",
                                  data)
        regions = entry.get("regions")
        if regions is not None and not isinstance(regions, (list, dict)):
            raise not_this_format("via", src, f"{src}: entry {key!r} has 'regions' of type "
                                              f"{type(regions).__name__}; expected a list (or a "
                                              f"dict in VIA 1.0)", data)
        entries.append((key, entry))
    return entries, extra_dirs


def _regions(entry: dict) -> list[tuple[str, object]]:
    """(index as written, region) pairs; 1.0.x stores regions as {"0": {...}, "1": ...}."""
    regions = entry.get("regions") or []
    if isinstance(regions, dict):
        return [(str(k), r) for k, r in regions.items()]
    return [(str(i), r) for i, r in enumerate(regions)]


def _has_value(v) -> bool:
    if isinstance(v, dict):
        return any(bool(x) for x in v.values())
    if isinstance(v, str):
        return v.strip() != ""
    return v is not None


def _class_attribute(src: Path, entries, options: ReaderOptions) -> str | None:
    """The region attribute that holds the class, or None for "default_label everywhere"."""
    names: dict[str, int] = {}  # attribute name -> number of regions with a value
    all_names: set[str] = set()
    for _, entry in entries:
        for _, region in _regions(entry):
            attrs = region.get("region_attributes") if isinstance(region, dict) else None
            if isinstance(attrs, dict):
                all_names.update(attrs)
                for k, v in attrs.items():
                    if _has_value(v):
                        names[k] = names.get(k, 0) + 1
    if options.via_attribute is not None:
        if options.via_attribute not in all_names:
            listed = ", ".join(repr(n) for n in sorted(all_names)) or "none"
            raise UserError(f"{src}: no region has the attribute {options.via_attribute!r} "
                            f"given by --via-attribute; region attributes in this file: "
                            f"{listed}")
        return options.via_attribute
    if not names:
        return None
    if len(names) == 1:
        return next(iter(names))
    listed = ", ".join(f"{n!r} ({c} regions)" for n, c in sorted(names.items()))
    raise UserError(f"{src}: regions have several attributes ({listed}); pass "
                    f"--via-attribute NAME to say which one holds the class name")


def _record(src: Path, key: str, entry: dict, attr: str | None, search_dirs, root,
            options: ReaderOptions) -> ImageRecord:
    file = str(src)
    name = entry["filename"]
    rec = ImageRecord(file_name=name.replace("\\", "/"), annotation_file=file)
    found, reason = resolve_image(name, search_dirs, root)
    if found is None:
        rec.error = Refusal(file=file, item=f"image {key!r}", value=name, reason=reason)
    else:
        rec.image_path = str(found)
    instances = []
    for idx, region in _regions(entry):
        item = f"{name!r} regions[{idx}]"
        label, why = _label(region, attr, options)
        if label is None:
            rec.refusals.append(Refusal(file=file, item=item, value=why[0], reason=why[1]))
            continue
        ignored = ignored_label(label, file, item)
        if ignored is not None:
            rec.refusals.append(ignored)
            continue
        polygon, why = _polygon(region.get("shape_attributes"))
        if polygon is None:
            rec.refusals.append(Refusal(file=file, item=item, value=why[0], reason=why[1]))
            continue
        instances.append((Instance(label=label, polygons=[polygon], default_label=attr is None,
                                   source=f"{src.name} {item}",
                                   attributes=dict(region.get("region_attributes") or {})),
                          item))
    rec.instances = drop_exact_duplicates(instances, rec.refusals, file)
    return rec


def _label(region, attr: str | None, options: ReaderOptions):
    if not isinstance(region, dict):
        return None, (str(region)[:80], "region is not a JSON object")
    if attr is None:
        return options.default_label, None
    attrs = region.get("region_attributes")
    value = attrs.get(attr) if isinstance(attrs, dict) else None
    if isinstance(value, dict):  # checkbox: {"option id": true, ...}
        checked = [k for k, v in value.items() if v]
        if len(checked) == 1:
            return checked[0], None
        what = "no option is checked" if not checked else f"{len(checked)} options are checked"
        return None, (f"{attr}={value!r}", f"class attribute {attr!r}: {what}; an instance "
                                           f"needs exactly one class")
    if isinstance(value, str) and value.strip():
        return value.strip(), None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    return None, (f"{attr}={value!r}", f"region has no value for the class attribute {attr!r}")


def _polygon(shape):
    if not isinstance(shape, dict):
        return None, (str(shape)[:80], "region has no shape_attributes object")
    kind = shape.get("name")
    try:
        if kind in ("polygon", "polyline"):
            xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
            if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
                return None, (f"{kind} all_points_x/all_points_y",
                              "all_points_x and all_points_y must be lists of equal length")
            if kind == "polyline" and len(xs) < 3:
                return None, (f"polyline with {len(xs)} point(s)",
                              "a polyline is closed into a polygon, which needs >= 3 points")
            return [c for x, y in zip(xs, ys) for c in (num(x), num(y))], None
        if kind == "rect":
            x, y = num(shape["x"]), num(shape["y"])
            w, h = num(shape["width"]), num(shape["height"])
            return rect_polygon(x, y, x + w, y + h), None
        if kind == "circle":
            r = num(shape["r"])
            return ellipse_polygon(num(shape["cx"]), num(shape["cy"]), r, r), None
        if kind == "ellipse":
            theta = num(shape.get("theta", 0) or 0)
            return ellipse_polygon(num(shape["cx"]), num(shape["cy"]), num(shape["rx"]),
                                   num(shape["ry"]), theta), None
    except KeyError as e:
        return None, (f"{kind} {str(shape)[:80]}", f"{kind} lacks the field {e.args[0]!r}")
    except ValueError as e:
        return None, (f"{kind} {str(shape)[:80]}", f"{kind} has a bad value: {e}")
    if kind == "point":
        return None, ("point", "a point has no area; instance segmentation needs a polygon, "
                               "polyline, rect, circle or ellipse")
    return None, (f"name={kind!r}", "unsupported VIA shape")
