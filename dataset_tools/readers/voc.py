"""Pascal VOC reader (instance segmentation): SRC is the VOC root folder.

Layout read (the VOC devkit's, and what CVAT / Datumaro / labelme2voc export)::

  JPEGImages/<id>.jpg             the images (``--images DIR`` overrides)
  SegmentationObject/<id>.png     instance ids: palette / grayscale index PNG, or RGB PNG with
                                  the VOC colormap (CVAT and Datumaro write RGB)
  SegmentationClass/<id>.png      class of every pixel, same encodings
  Annotations/<id>.xml            objects: name, bndbox, difficult, truncated, occluded, pose
  ImageSets/Segmentation/*.txt    which images (ImageSets/Main/*.txt as a fallback)
  labelmap.txt                    optional, Datumaro/CVAT: ``name:r,g,b:parts:actions`` lines
  class_names.txt                 optional, labelme2voc: one class per line, line i = value i

Instances of an image = the distinct values of its SegmentationObject PNG, except 0
(background) and 255 / RGB (224, 224, 192) ("void": object boundaries and hard regions,
never an object). Instance k's mask is exactly the pixels of value k (the void boundary
around it is not part of it). Its class is the most frequent SegmentationClass value under
it, ignoring 0 and 255, named by ``labelmap.txt`` (palette value = line index among the
label lines; RGB = the line's color), else ``class_names.txt``, else the 21 standard VOC
classes and colormap. Masks are full-size COCO RLE.

Annotations XML objects: the VOC devkit numbers instance k after the k-th ``<object>``;
when object k's name is instance k's class, the object gives the instance its attributes
(``difficult``, ``truncated``, ``occluded``, ``pose``, ``<attributes>``). An object with no
such instance (no segmentation PNG, or CVAT/Datumaro exports, whose boxes and masks are
numbered separately) is a box-only instance, ``Instance(box_xywh_px=...)``, which the converter
refuses unless ``options.box_as_polygon`` (then it is a rectangle polygon).

Which images: ``options.voc_image_set`` (see ReaderOptions); None = every image listed in
``ImageSets/Segmentation/*.txt``; if there is no such list, ``ImageSets/Main/*.txt``; if
there is no ImageSets at all (labelme2voc output), every id with a SegmentationObject PNG or
an Annotations XML.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.masks import mask_to_rle
from maskrcnn_toolkit.dataset_tools.readers import ReaderOptions
from maskrcnn_toolkit.dataset_tools.readers._common import (
    box_xywh_px_rounded,
    ignored_label,
    refuse_zip,
    resolve_image,
)
from maskrcnn_toolkit.dataset_tools.readers.sniff import not_this_format
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Instance, Refusal

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOID = 255
BACKGROUND_NAMES = ("background", "_background_", "__background__")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG", ".tif", ".tiff",
               ".webp")


def voc_colormap(n: int = 256) -> np.ndarray:
    """The VOC devkit's colormap (``labelcolormap``): uint8 [n, 3] RGB, index -> color.

    Index 0 is black (background), 1 (128, 0, 0), 2 (0, 128, 0), ..., 255 (224, 224, 192).
    """
    cmap = np.zeros((n, 3), np.int64)
    idx = np.arange(n)
    for j in range(7, -1, -1):  # bit-interleaving of the index, as in the devkit
        for c in range(3):
            cmap[:, c] |= ((idx >> c) & 1) << j
        idx = idx >> 3
    return cmap.astype(np.uint8)


def _rgb_key(rgb) -> int:
    r, g, b = (int(v) for v in rgb)
    return (r << 16) | (g << 8) | b


_VOC_CMAP = voc_colormap()
_INDEX_BY_COLOR = {_rgb_key(c): i for i, c in enumerate(_VOC_CMAP)}


@dataclass
class _Classes:
    """How class values in SegmentationClass PNGs map to names."""

    names: dict[int, str]  # index (palette / grayscale value) -> name
    index_by_color: dict[int, int]  # packed RGB -> index
    origin: str  # for messages
    background: set[int] = field(default_factory=lambda: {0})


def read(src: Path, options: ReaderOptions) -> Iterator[ImageRecord]:
    """Yield one ImageRecord per listed image id.

    Args:
      src: the VOC root (the folder holding JPEGImages/ ...), a ``VOCdevkit`` folder with one
        ``VOC20xx`` inside, or an ``ImageSets/.../*.txt`` list (its root is two levels up).
      options: ``images_dir``, ``box_as_polygon``, ``voc_image_set`` apply.
    """
    src = Path(src)
    root, set_files = _root_and_sets(src, options.voc_image_set)
    classes = _load_classes(root)
    ids, set_files = _image_ids(root, set_files)
    image_dirs = [Path(options.images_dir)] if options.images_dir else [root / "JPEGImages"]
    outside = _outside_the_set(root, ids, set_files)
    for k, image_id in enumerate(ids):
        rec = _record(root, image_id, image_dirs, classes, options)
        if k == 0 and outside is not None:  # once per dataset: on its first record
            rec.refusals.append(outside)
        yield rec


# ---------------------------------------------------------------------------------------
# layout

def _is_voc_root(p: Path) -> bool:
    return any((p / d).is_dir() for d in ("SegmentationObject", "Annotations", "ImageSets",
                                          "SegmentationClass"))


def _root_and_sets(src: Path, image_set: str | None) -> tuple[Path, list[Path] | None]:
    refuse_zip(src, "DIR, the folder holding JPEGImages/")
    if src.is_file():
        if src.suffix != ".txt" or src.parent.parent.name != "ImageSets":
            raise not_this_format("voc", src, f"{str(src)!r} is a file; for VOC give the dataset "
                                              f"root folder (the one holding JPEGImages/, "
                                              f"SegmentationObject/, Annotations/) or an "
                                              f"ImageSets/<task>/<set>.txt list")
        return src.parents[2], [src]
    root = src
    if not _is_voc_root(root):
        inner = [d for d in sorted(root.iterdir()) if d.is_dir() and _is_voc_root(d)] \
            if root.is_dir() else []
        if len(inner) != 1:
            raise not_this_format("voc", src, f"{str(src)!r} is not a Pascal VOC root: it has "
                                              f"no SegmentationObject/, SegmentationClass/, "
                                              f"Annotations/ or ImageSets/ folder; give the "
                                              f"folder that holds them (e.g. "
                                              f"VOCdevkit/VOC2012)")
        root = inner[0]  # VOCdevkit/ holding one VOC20xx/
    if image_set is None:
        return root, None
    sets = root / "ImageSets"
    candidates = []
    p = Path(image_set)
    if p.suffix == ".txt":
        candidates += [p, sets / p]
    else:
        candidates += [sets / f"{image_set}.txt", sets / "Segmentation" / f"{image_set}.txt",
                       sets / "Main" / f"{image_set}.txt"]
    for c in candidates:
        if c.is_file():
            return root, [c]
    available = sorted(str(f.relative_to(sets).with_suffix("")) for f in sets.glob("*/*.txt")
                       if f.parent.name in ("Segmentation", "Main")) if sets.is_dir() else []
    raise UserError(f"VOC image set {image_set!r} not found under {str(sets)!r}; available: "
                    f"{', '.join(available) or 'none'} (give a name such as 'train', "
                    f"'Main/train', or a .txt file)")


def _image_ids(root: Path, set_files: list[Path] | None
               ) -> tuple[list[str], list[Path] | None]:
    """The image ids to read, and the ImageSets lists they come from (None: no lists, every
    id with a SegmentationObject PNG or an Annotations XML)."""
    if set_files is None:
        for task in ("Segmentation", "Main"):
            files = sorted((root / "ImageSets" / task).glob("*.txt"))
            if task == "Main":
                # Per-class lists (aeroplane_train.txt) repeat the ids of train.txt with
                # +1/-1 flags; the plain set lists suffice when they exist.
                plain = [f for f in files if "_" not in f.stem]
                files = plain or files
            if files:
                set_files = files
                break
    if set_files is None:
        stems = {p.stem for p in (root / "SegmentationObject").glob("*.png")}
        stems |= {p.stem for p in (root / "Annotations").glob("*.xml")}
        if not stems:
            raise UserError(f"{str(root)!r}: no ImageSets lists, SegmentationObject PNGs or "
                            f"Annotations XMLs; nothing to read")
        return sorted(stems), None
    ids: dict[str, None] = {}
    for f in set_files:
        ids.update(dict.fromkeys(_list_ids(f)))
    return list(ids), set_files


def _list_ids(f: Path) -> list[str]:
    """The image ids of one ImageSets list, in order."""
    try:
        text = f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read VOC image list {str(f)!r}: {e}") from None
    # "2008_000008 -1" in per-class lists: the id is the first field.
    return [ln.split()[0] for ln in (raw.strip() for raw in text.splitlines())
            if ln and not ln.startswith("#")]


def _outside_the_set(root: Path, ids: list[str], set_files: list[Path] | None
                     ) -> Refusal | None:
    """A warning naming the images the dataset has (an Annotations XML, a SegmentationObject
    PNG or a JPEGImages file) that the chosen image set leaves out, with how to read them;
    None when there are none. Reading 1 image of 4 and saying "converted 1 images" would
    hide the other 3."""
    kinds = {"an Annotations XML": (root / "Annotations").glob("*.xml"),
             "a SegmentationObject PNG": (root / "SegmentationObject").glob("*.png"),
             "a file in JPEGImages/": (p for p in (root / "JPEGImages").glob("*")
                                       if p.suffix in _IMAGE_EXTS)}
    listed = set(ids)
    missing: dict[str, set[str]] = {}
    for kind, paths in kinds.items():
        for p in paths:
            if p.stem not in listed:
                missing.setdefault(p.stem, set()).add(kind)
    if not missing:
        return None
    n = len(missing)
    counts = ", ".join(f"{sum(kind in k for k in missing.values())} with {kind}"
                       for kind in kinds if any(kind in k for k in missing.values()))
    examples = ", ".join(sorted(missing)[:5]) + (", ..." if n > 5 else "")
    sets = root / "ImageSets"
    if set_files is None:
        return Refusal(str(root), "image set", f"{n} images",
                       f"{n} images ({counts}) have neither a SegmentationObject PNG nor an "
                       f"Annotations XML, so there is nothing to read for them: {examples}",
                       severity="warning")
    used = ", ".join(str(f.relative_to(sets)) if f.is_relative_to(sets) else str(f)
                     for f in set_files)
    # The other plain lists that hold some of them: the one holding most is the fix.
    best, best_n = None, 0
    for f in sorted(sets.glob("*/*.txt")):
        if f in set_files or f.parent.name not in ("Segmentation", "Main") or "_" in f.stem:
            continue
        k = len(missing.keys() & set(_list_ids(f)))
        if k > best_n:
            best, best_n = f, k
    if best is not None:
        name = best.relative_to(sets).with_suffix("").as_posix()
        fix = (f"ImageSets/{name}.txt lists {best_n} of them: pass --voc-image-set {name} to "
               f"read that list instead")
    else:
        fix = f"add their ids to {used} to read them"
    return Refusal(str(set_files[0]), "image set", f"{n} images",
                   f"{n} images of this dataset ({counts}) are not in the image set read "
                   f"({used}), so they were not converted: {examples}; {fix}",
                   severity="warning")


def _load_classes(root: Path) -> _Classes:
    labelmap = root / "labelmap.txt"
    if labelmap.is_file():
        return _parse_labelmap(labelmap)
    class_names = root / "class_names.txt"
    if class_names.is_file():
        names = [ln.strip() for ln in class_names.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
        bg = {i for i, n in enumerate(names) if n in BACKGROUND_NAMES} | {0}
        return _Classes(dict(enumerate(names)), {_rgb_key(_VOC_CMAP[i]): i
                                                 for i in range(len(names))},
                        str(class_names), bg)
    return _Classes(dict(enumerate(VOC_CLASSES)),
                    {_rgb_key(_VOC_CMAP[i]): i for i in range(len(VOC_CLASSES))},
                    "the 21 standard VOC classes (no labelmap.txt)")


def _parse_labelmap(path: Path) -> _Classes:
    """Datumaro / CVAT ``labelmap.txt``: ``# label:color_rgb:parts:actions`` then one
    ``name:r,g,b:parts:actions`` line per label; the label's index is its position."""
    names, by_color, bg = {}, {}, {0}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {str(path)!r}: {e}") from None
    for lineno, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) != 4:
            raise UserError(f"{path}:{lineno}: {line!r} has {len(fields)} ':'-separated fields; "
                            f"labelmap.txt lines are 'name:r,g,b:parts:actions' (e.g. "
                            f"'cat:64,0,0::')")
        name, color = fields[0].strip(), fields[1].strip()
        index = len(names)
        if name in names.values():
            raise UserError(f"{path}:{lineno}: label {name!r} is listed twice")
        names[index] = name
        if color:
            try:
                rgb = [int(c) for c in color.split(",")]
                if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                    raise ValueError
            except ValueError:
                raise UserError(f"{path}:{lineno}: color {color!r} of {name!r} is not 'r,g,b' "
                                f"with values 0..255") from None
            if _rgb_key(rgb) in by_color:
                raise UserError(f"{path}:{lineno}: color {color!r} of {name!r} is also used by "
                                f"{names[by_color[_rgb_key(rgb)]]!r}; colors must be unique")
            by_color[_rgb_key(rgb)] = index
            if rgb == [0, 0, 0]:
                bg.add(index)
        if name in BACKGROUND_NAMES:
            bg.add(index)
    if not names:
        raise UserError(f"{path}: no labels; lines are 'name:r,g,b:parts:actions'")
    return _Classes(names, by_color, str(path), bg)


# ---------------------------------------------------------------------------------------
# one image

def _record(root: Path, image_id: str, image_dirs: list[Path], classes: _Classes,
            options: ReaderOptions) -> ImageRecord:
    xml_path = root / "Annotations" / f"{image_id}.xml"
    obj_path = root / "SegmentationObject" / f"{image_id}.png"
    cls_path = root / "SegmentationClass" / f"{image_id}.png"
    ann_file = xml_path if xml_path.is_file() else obj_path if obj_path.is_file() else root
    rec = ImageRecord(file_name=image_id, annotation_file=str(ann_file))
    parts = image_id.replace("\\", "/").split("/")
    if image_id.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        rec.error = Refusal(str(root / "ImageSets"), f"image {image_id!r}", image_id,
                            "the image id in the ImageSets list escapes the dataset root; "
                            "ids are paths relative to JPEGImages/ without extension")
        return rec
    objects, xml_name, xml_size = [], None, (None, None)
    if xml_path.is_file():
        objects, xml_name, xml_size = _parse_xml(xml_path)
    rec.width, rec.height = xml_size

    # The image: the XML's <filename> when it names one, else <id>.<any image extension>.
    candidates = ([xml_name] if xml_name else []) + [
        f"{image_id}{ext}" for ext in _IMAGE_EXTS]
    found = None
    for name in candidates:
        if any((d / name).is_file() for d in image_dirs):
            found = name
            break
    rec.file_name = found or xml_name or f"{image_id}.jpg"
    path, reason = resolve_image(rec.file_name, image_dirs, root)
    if path is None:
        rec.error = Refusal(str(ann_file), f"image {image_id!r}", rec.file_name, reason)
    else:
        rec.image_path = str(path)

    if not obj_path.is_file() and not xml_path.is_file():
        rec.error = rec.error or Refusal(
            str(root), f"image {image_id!r}", image_id,
            f"listed in ImageSets but has neither SegmentationObject/{image_id}.png nor "
            f"Annotations/{image_id}.xml; remove it from the list or add its annotation")
        if cls_path.is_file():
            rec.refusals.append(_semantic_only(cls_path, image_id))
        return rec

    linked: set[int] = set()
    if obj_path.is_file():
        try:
            linked = _instances_from_pngs(rec, obj_path, cls_path, objects, classes)
        except _PngError as e:
            rec.error = rec.error or Refusal(str(e.path), f"image {image_id!r}", e.value,
                                             e.reason)
            return rec
    elif cls_path.is_file():
        rec.refusals.append(_semantic_only(cls_path, image_id))

    for k, obj in enumerate(objects, start=1):
        if k in linked:
            continue
        src = f"Annotations/{image_id}.xml object {k} (line {obj['line']})"
        if obj.get("error"):
            rec.refusals.append(Refusal(str(xml_path), src, obj.get("name") or "", obj["error"]))
            continue
        ignored = ignored_label(obj["name"], str(xml_path), src)
        if ignored is not None:
            rec.refusals.append(ignored)
            continue
        x0, y0, x1, y1 = obj["box_xyxy_px"]
        attrs = dict(obj["attributes"])
        if options.box_as_polygon:
            attrs["from_box"] = True
            rec.instances.append(Instance(label=obj["name"], source=src, attributes=attrs,
                                          polygons=[[x0, y0, x1, y0, x1, y1, x0, y1]]))
        else:
            rec.instances.append(Instance(label=obj["name"], source=src, attributes=attrs,
                                          box_xywh_px=box_xywh_px_rounded((x0, y0, x1, y1))))
    return rec


def _semantic_only(cls_path: Path, image_id: str) -> Refusal:
    return Refusal(str(cls_path), f"image {image_id!r}", cls_path.name,
                   f"only a class mask (SegmentationClass/{image_id}.png), no "
                   f"SegmentationObject/{image_id}.png: touching objects of one class cannot "
                   f"be told apart, so no instances are read from it")


class _PngError(Exception):
    def __init__(self, path: Path, value: str, reason: str):
        super().__init__(reason)
        self.path, self.value, self.reason = path, value, reason


def _load_png(path: Path) -> tuple[np.ndarray, str]:
    """A segmentation PNG as (values, kind).

    values: int32 [H, W]: the palette / grayscale index, or for RGB the packed
    (r << 16 | g << 8 | b) color. kind: "index" (8-bit: 255 is void), "index16" (16-bit
    grayscale ids, no void value) or "rgb".
    """
    from PIL import Image
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("P", "L", "1"):
                return np.asarray(im).astype(np.int32), "index"
            if mode in ("RGB", "RGBA"):
                a = np.asarray(im.convert("RGB")).astype(np.int32)
                return (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2], "rgb"
            if mode.startswith("I"):
                return np.asarray(im).astype(np.int32), "index16"
    except OSError as e:
        raise _PngError(path, path.name, f"cannot read the PNG: {e}") from None
    raise _PngError(path, mode, f"PNG mode {mode!r} is not a VOC segmentation mask; save it as "
                                f"a palette (P), grayscale (L) or RGB PNG")


def _instances_from_pngs(rec: ImageRecord, obj_path: Path, cls_path: Path, objects: list,
                         classes: _Classes) -> set[int]:
    """Fill rec.instances from the PNGs; returns the XML object numbers (1-based) used."""
    inst, inst_kind = _load_png(obj_path)
    inst_rgb = inst_kind == "rgb"
    h, w = inst.shape
    if rec.width and rec.height and (rec.width, rec.height) != (w, h):
        rec.refusals.append(Refusal(str(obj_path), obj_path.name, f"{w}x{h}",
                                    f"the Annotations XML declares {rec.width}x{rec.height}; "
                                    f"the mask's own size is used", severity="fixed"))
    rec.width, rec.height = w, h  # the masks are the annotation: their size is the truth
    cls = None
    if cls_path.is_file():
        cls, cls_kind = _load_png(cls_path)
        if cls.shape != inst.shape:
            raise _PngError(cls_path, f"{cls.shape[1]}x{cls.shape[0]}",
                            f"SegmentationClass PNG is {cls.shape[1]}x{cls.shape[0]} but "
                            f"SegmentationObject PNG is {w}x{h}; they must match")
        if cls_kind == "rgb":
            cls = _colors_to_index(cls, classes.index_by_color, cls_path, classes.origin)
    void = {"rgb": _rgb_key(_VOC_CMAP[VOID]), "index": VOID, "index16": -1}[inst_kind]
    values, counts = np.unique(inst, return_counts=True)
    linked = set()
    id_path = f"SegmentationObject/{obj_path.name}"
    found = []
    for v, n in zip(values.tolist(), counts.tolist()):
        if v == 0 or v == void:
            continue  # background / void boundary: never an object
        number = _INDEX_BY_COLOR.get(v) if inst_rgb else v  # the devkit's instance number
        found.append((number is None, number or 0, v, n))
    for _, number, v, n in sorted(found):
        number = number or None
        desc = (f"color ({v >> 16}, {(v >> 8) & 255}, {v & 255})" if inst_rgb else f"value {v}")
        src = f"{id_path} instance {number if number is not None else '?'} ({desc})"
        mask = inst == v
        label = None
        xml_obj = objects[number - 1] if number and 0 < number <= len(objects) else None
        if cls is not None:
            under = cls[mask]
            under = under[(under >= 0) & (under != VOID) & ~np.isin(under, list(
                classes.background))]
            if under.size:
                cvals, ccounts = np.unique(under, return_counts=True)
                cval = int(cvals[np.argmax(ccounts)])
                label = classes.names.get(cval)
                if label is None:
                    rec.refusals.append(Refusal(str(cls_path), src, f"class value {cval}",
                                                f"SegmentationClass value {cval} has no name "
                                                f"in {classes.origin}; add it there"))
                    continue
        if label is None and xml_obj is not None and not xml_obj.get("error"):
            label = xml_obj["name"]  # no class pixels under it: the devkit's object k
        if label is None:
            rec.refusals.append(Refusal(str(obj_path), src, f"{n} pixels",
                                        "no class for this instance: only background/void "
                                        "under it in SegmentationClass and no matching "
                                        "Annotations object"))
            continue
        ignored = ignored_label(label, str(obj_path), src)
        if ignored is not None:
            rec.refusals.append(ignored)
            continue
        attrs = {"voc_instance": number if number is not None else desc}
        if xml_obj is not None and not xml_obj.get("error") and xml_obj["name"] == label:
            attrs.update(xml_obj["attributes"])
            linked.add(number)
        rec.instances.append(Instance(label=label, rle=mask_to_rle(mask.astype(np.uint8)),
                                      source=src, attributes=attrs))
    return linked


def _colors_to_index(rgb: np.ndarray, index_by_color: dict[int, int], path: Path,
                     origin: str) -> np.ndarray:
    """Packed RGB class mask -> class index (-1 for unknown colors, 255 for void)."""
    out = np.full(rgb.shape, -1, np.int32)
    lut = dict(index_by_color)
    lut.setdefault(_rgb_key(_VOC_CMAP[VOID]), VOID)
    lut.setdefault(0, 0)
    unknown = []
    for v in np.unique(rgb).tolist():
        if v in lut:
            out[rgb == v] = lut[v]
        else:
            unknown.append(v)
    if unknown:
        colors = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" for v in unknown[:5])
        raise _PngError(path, colors, f"SegmentationClass colors {colors} are not in {origin}; "
                                      f"add them to labelmap.txt as 'name:r,g,b::'")
    return out


def _parse_xml(path: Path) -> tuple[list[dict], str | None, tuple[int | None, int | None]]:
    """Annotations XML -> (objects, <filename>, (width, height)).

    Each object: {"name", "box_xyxy_px": (xmin, ymin, xmax, ymax) pixels, "attributes",
    "line"} or
    {"error": reason, "line"} when its values cannot be used.
    """
    from lxml import etree
    try:
        tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True,
                                                      remove_comments=True))
    except etree.XMLSyntaxError as e:
        raise UserError(f"{path}: malformed XML at line {e.lineno or '?'}: {e.msg}; fix the "
                        f"file or re-export the dataset") from None
    except OSError as e:
        raise UserError(f"cannot read {str(path)!r}: {e}") from None
    root = tree.getroot()
    if root.tag != "annotation":
        raise UserError(f"{path}: root element is <{root.tag}>, not <annotation>; this is not a "
                        f"Pascal VOC annotation file")
    filename = (root.findtext("filename") or "").strip() or None
    size = (_pos_int(root.findtext("size/width")), _pos_int(root.findtext("size/height")))
    objects = []
    for obj in root.iterfind("object"):
        entry = {"line": obj.sourceline, "name": (obj.findtext("name") or "").strip()}
        objects.append(entry)
        if not entry["name"]:
            entry["error"] = "<object> has no <name>"
            continue
        texts = [(obj.findtext(f"bndbox/{k}") or "").strip()
                 for k in ("xmin", "ymin", "xmax", "ymax")]
        try:
            x0, y0, x1, y1 = (float(t) for t in texts)
            if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
                raise ValueError
        except ValueError:
            entry["error"] = (f"<bndbox> is missing or its xmin/ymin/xmax/ymax {texts} are not "
                              f"numbers")
            continue
        if not any("." in t or "e" in t.lower() for t in texts):
            # The VOC devkit writes 1-based, inclusive integer pixel indices (xmin=1 is the
            # first column); in pixel-edge coordinates that box starts at xmin - 1 and ends
            # at xmax (as detectron2's VOC loader does). CVAT / Datumaro write floats that
            # are already edge coordinates ("45.8", "46.0"), so those are kept as they are.
            x0, y0 = x0 - 1, y0 - 1
        entry["box_xyxy_px"] = (x0, y0, x1, y1)
        attrs = {}
        for key in ("difficult", "truncated", "occluded"):
            text = (obj.findtext(key) or "").strip()
            if text:
                attrs[key] = text == "1"
        pose = (obj.findtext("pose") or "").strip()
        if pose:
            attrs["pose"] = pose
        extra = {a.findtext("name"): a.findtext("value") for a in obj.iterfind(
            "attributes/attribute") if a.findtext("name")}
        if extra:
            attrs["attributes"] = extra
        entry["attributes"] = attrs
    return objects, filename, size


def _pos_int(text: str | None) -> int | None:
    try:
        v = int(float(text)) if text and text.strip() else None
    except ValueError:
        return None
    return v if v and v > 0 else None
