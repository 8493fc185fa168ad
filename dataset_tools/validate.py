"""Validation of one image record: load and check the image, turn every instance into a
mask, fix what can be fixed, refuse the rest, and encode the tf.Example.

Every problem becomes a :class:`Finding` (file, item, value, reason) with a severity:
  fixed    the item is written after a correction (vertices clipped, EXIF orientation
           applied, converted to RGB, declared size differs from the file);
  refused  the item is not written (missing/corrupt image, degenerate polygon, label not in
           the label map, duplicate...);
  warning  written as is, but worth a look (an image kept as a negative example, a class
           with no instances, labels that look like typos of each other);
  ignored  a region whose label names no class (``__ignore__``): not written, not an error.
Nothing is dropped without a finding. :func:`process_record` runs in worker processes: it
takes a light record and returns the framed tf.Example plus light metadata, so images are
loaded, checked, encoded and written one at a time and memory stays flat.

Decisions (docs/DESIGN_NOTES.md, "Convert"):
- The image file decides the size. Annotations are not rescaled when the declared size
  differs (a rescale would silently move every vertex); they are clipped to the image.
- Annotations are taken to be in the displayed orientation (after EXIF rotation), as the
  annotation tools show the image.
- An image annotated with no objects is kept as a negative example (warning). An image all
  of whose instances were refused is refused: written without them it would teach the
  model that those objects are background. Instances whose class the user left out of
  ``--label-map`` do not count: those classes are background by the user's choice.
"""
from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from maskrcnn_toolkit.core.boxes import xywh_to_xyxy
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.images import SIXTEEN_BIT_MODES, has_alpha, to_rgb
from maskrcnn_toolkit.core.json_files import read_json
from maskrcnn_toolkit.core.masks import encode_mask_png, mask_to_rle, polygons_to_rle, rle_to_mask
from maskrcnn_toolkit.dataset_tools.coco_gt import annotation_from_rle
from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Instance, encode_example, short
from maskrcnn_toolkit.dataset_tools.writer import frame_record

FIXED, REFUSED, WARNING, IGNORED = "fixed", "refused", "warning", "ignored"
SEVERITIES = (REFUSED, FIXED, WARNING, IGNORED)  # in the order a summary lists them
_EXIF_ORIENTATION = 0x0112
JPEG_QUALITY = 95  # re-encoded JPEGs (EXIF rotation, CMYK...): visually lossless


@dataclass
class Finding:
    """One reported problem. ``item`` is the image file name or the instance's place in the
    annotation file; ``value`` is the offending value, shortened for reading."""

    severity: str
    file: str
    item: str
    value: str
    reason: str
    split: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.file}: {self.item}: {self.reason} (value: {self.value})"


@dataclass
class ValidateOptions:
    """What the worker needs besides the record: label-map ids by name, the split name."""

    ids_by_name: dict[str, int]
    split: str = "train"


@dataclass
class ImageResult:
    """What a worker returns for one record (light: no pixels except the encoded example).

    record: the serialized tf.Example framed as one TFRecord record (writer.frame_record:
      the checksums are computed here, in the worker), or None when the image is refused.
    digest: blake2b of the image file bytes (duplicate detection happens in the parent,
      which sees every image in order).
    annotations: COCO annotation fields per written instance (coco_gt.annotation_from_rle).
    """

    file_name: str
    annotation_file: str
    image_id: int
    record: bytes | None = None
    digest: str = ""
    width: int = 0
    height: int = 0
    annotations: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    instances_refused: int = 0

    @property
    def refused(self) -> bool:
        return self.record is None


class _Refuse(Exception):
    def __init__(self, value: str, reason: str):
        super().__init__(reason)
        self.value, self.reason = value, reason


# ----------------------------------------------------------------------------- image
def _read_bytes(rec: ImageRecord) -> tuple[bytes, str]:
    """The image file's bytes and a name for messages."""
    if rec.image_path:
        try:
            return Path(rec.image_path).read_bytes(), str(rec.image_path)
        except FileNotFoundError:
            raise _Refuse(str(rec.image_path), "image file not found; check the path in the "
                          "annotation or pass --images DIR") from None
        except OSError as e:
            raise _Refuse(str(rec.image_path), f"cannot read the image file: {e.strerror}") \
                from None
    if rec.embedded:
        json_path, key = rec.embedded
        try:
            data = read_json(json_path, "the annotation file that embeds the image")[key]
            return base64.b64decode(data, validate=False), f"{json_path}[{key}]"
        except (UserError, ValueError, KeyError, TypeError) as e:
            raise _Refuse(f"{json_path}[{key}]", f"cannot read the embedded image data: {e}") \
                from None
    raise _Refuse(rec.file_name, "the annotation names no image file and embeds no image data")


def load_image(rec: ImageRecord) -> tuple[bytes, str, int, int, str, list[tuple[str, str]]]:
    """Read, check and (only if needed) re-encode one image.

    Returns (encoded bytes, "jpeg" | "png", width, height, blake2b hex digest of the file
    bytes, fixes as (value, reason) pairs). JPEG, MPO (the multi-picture JPEG phones write;
    TensorFlow's JPEG decoder reads its first picture, as PIL does) and PNG files that are
    RGB with no EXIF rotation pass through byte for byte. Anything else is decoded and turned
    into RGB by :func:`core.images.to_rgb` (the same rule inference uses) and re-encoded
    (JPEG sources as JPEG q95, others as PNG), each change reported as a fix.
    Raises _Refuse for a missing, unreadable, non-image or truncated file.
    """
    data, where = _read_bytes(rec)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _Refuse(where, "not an image file PIL can read (expected JPEG or PNG)") from None
    except Exception as e:  # PIL raises many types for broken headers
        raise _Refuse(where, f"corrupt image: {e}") from None
    fixes = []
    try:
        with im:
            fmt = im.format
            orientation = 1
            if fmt in ("JPEG", "PNG", "TIFF", "WEBP", "MPO"):
                orientation = im.getexif().get(_EXIF_ORIENTATION, 1) or 1
            passthrough = (fmt in ("JPEG", "MPO", "PNG") and im.mode == "RGB"
                           and orientation == 1 and not has_alpha(im))
            if passthrough:
                if fmt in ("JPEG", "MPO"):
                    # Decoding at 1/8 scale still reads every entropy-coded byte, so a
                    # truncated or corrupt file fails here, at a fraction of the cost.
                    size = im.size
                    im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                    im.load()
                    w, h = size
                else:
                    im.load()
                    w, h = im.size
                return data, "png" if fmt == "PNG" else "jpeg", w, h, digest, fixes
            im.load()
            mode, alpha = im.mode, has_alpha(im)
            rgb = to_rgb(im)
            if orientation != 1:
                fixes.append((f"EXIF orientation {orientation}",
                              "EXIF orientation applied to the pixels (re-encoded)"))
            if mode != "RGB" or alpha:
                how = ("high byte kept (value / 256)" if mode in SIXTEEN_BIT_MODES
                       else "alpha composited over black" if alpha else "")
                fixes.append((f"mode {mode}", f"converted {mode} to RGB (re-encoded)"
                              + (f"; {how}" if how else "")))
            out = io.BytesIO()
            if fmt in ("JPEG", "MPO"):
                rgb.save(out, "JPEG", quality=JPEG_QUALITY)
                out_fmt = "jpeg"
            else:
                if fmt != "PNG":
                    fixes.append((f"format {fmt}", f"{fmt} re-encoded as PNG"))
                rgb.save(out, "PNG", compress_level=3)
                out_fmt = "png"
            return out.getvalue(), out_fmt, rgb.size[0], rgb.size[1], digest, fixes
    except _Refuse:
        raise
    except Exception as e:  # truncated data, broken chunks...
        raise _Refuse(where, f"corrupt or truncated image: {e}") from None


# ----------------------------------------------------------------------------- instances
def _polygon_rle(inst: Instance, h: int, w: int, report) -> tuple[dict, int]:
    """RLE of the union of the instance's polygons after clipping, and how many vertices
    were clipped.

    A degenerate part of a multi-part instance (fewer than 3 points, or zero area inside
    the image) is dropped with a "fixed" finding sent to ``report(severity, value,
    reason)``: the other parts still outline the object. The instance is refused only when
    no part is left (or a part is malformed: odd or non-numeric coordinates).
    """
    polys = inst.polygons or []
    multi = len(polys) > 1
    parts, clipped = [], 0
    for k, poly in enumerate(polys):
        name = f"part {k}" if multi else "polygon"
        try:
            arr = np.asarray(poly, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise _Refuse(short(poly), f"{name} has non-numeric coordinates") from None
        if arr.size % 2:
            raise _Refuse(short(poly), f"{name} has an odd number of coordinates "
                          f"({arr.size}); expected x, y pairs")
        if not np.all(np.isfinite(arr)):
            raise _Refuse(short(poly), f"{name} has non-finite coordinates")
        if arr.size < 6:
            if not multi:
                raise _Refuse(short(poly), f"{name} has {arr.size // 2} point(s); a polygon "
                              f"needs at least 3")
            report(FIXED, short(poly), f"{name} of {len(polys)} has {arr.size // 2} point(s) "
                   f"(a polygon needs at least 3); dropped that part, kept the others")
            continue
        xy = arr.reshape(-1, 2)
        c = np.stack([xy[:, 0].clip(0, w), xy[:, 1].clip(0, h)], axis=1)
        part = c.reshape(-1).tolist()
        if multi and _rle_area(polygons_to_rle([part], h, w)) == 0:
            report(FIXED, short(poly), f"{name} of {len(polys)} has zero area inside the "
                   f"{w}x{h} image; dropped that part, kept the others")
            continue
        clipped += int(np.count_nonzero(np.any(c != xy, axis=1)))
        parts.append(part)
    if not parts and multi:
        raise _Refuse(short(polys), f"none of the {len(polys)} parts is a polygon with area "
                      f"inside the {w}x{h} image")
    return polygons_to_rle(parts, h, w), clipped


def _rle_area(rle: dict) -> int:
    """Pixel count of a compressed RLE with str counts."""
    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}))


def instance_mask(inst: Instance, h: int, w: int, report) -> tuple[np.ndarray, dict]:
    """The uint8 [h, w] 0/1 mask of one instance and its compressed RLE (str counts), or
    raise _Refuse with the reason. The RLE is the one the mask was decoded from (or encodes
    it), so the COCO GT and the record's PNG hold the same pixels.

    ``report(severity, value, reason)`` receives fixes (clipped vertices).
    """
    if inst.polygons:
        rle, clipped = _polygon_rle(inst, h, w, report)
        if _rle_area(rle) == 0:
            raise _Refuse(short(inst.polygons), "polygon has zero area after clipping to "
                          f"the {w}x{h} image")
        if clipped:
            report(FIXED, f"{clipped} vertices", f"{clipped} polygon vertices outside the "
                   f"{w}x{h} image clipped to its border")
        return rle_to_mask(rle), rle
    if inst.rle is not None:
        size = inst.rle.get("size") if isinstance(inst.rle, dict) else None
        if not size or [int(v) for v in size] != [h, w]:
            raise _Refuse(f"RLE size {size}", f"RLE size {size} differs from the image size "
                          f"[{h}, {w}] (height, width); the mask belongs to another image size")
        try:
            mask = rle_to_mask(inst.rle, h, w)
        except Exception as e:
            raise _Refuse(short(inst.rle), f"cannot decode the RLE mask: {e}") from None
        if not mask.any():
            raise _Refuse(f"RLE size {size}", "RLE mask is empty (zero area)")
        return mask, mask_to_rle(mask)  # canonical compressed RLE of exactly this mask
    if inst.box_xywh_px is not None:
        raise _Refuse(short(list(inst.box_xywh_px)), "box-only annotation (no polygon or mask); "
                      "pass --box-as-polygon to use the box as a rectangle mask")
    raise _Refuse("none", "instance has no polygon, mask or box")


# ----------------------------------------------------------------------------- record
def reader_findings(rec: ImageRecord, split: str) -> tuple[list[Finding], int]:
    """What the reader reported about ``rec``, as Findings of ``split``, and the number of
    instances that refuses: each Refusal with its severity (only "refused" counts), then
    ``rec.error`` (the whole image refused, with every instance it has)."""
    findings = [Finding(r.severity, r.file, r.item, r.value, r.reason, split)
                for r in rec.refusals]
    refused = sum(r.severity == REFUSED for r in rec.refusals)
    if rec.error is not None:
        e = rec.error
        findings.append(Finding(REFUSED, e.file, e.item, e.value, e.reason, split))
        refused += len(rec.instances)
    return findings, refused


def process_record(rec: ImageRecord, image_id: int, opts: ValidateOptions) -> ImageResult:
    """Validate one record and encode its tf.Example (runs in a worker process).

    The masks written to the record and the COCO annotations come from the same arrays.
    """
    res = ImageResult(file_name=rec.file_name, annotation_file=rec.annotation_file,
                      image_id=image_id)

    def find(severity, item, value, reason, file=None):
        res.findings.append(Finding(severity, file or rec.annotation_file, item, value,
                                    reason, opts.split))

    findings, refused = reader_findings(rec, opts.split)
    res.findings += findings
    res.instances_refused += refused
    if rec.error is not None:
        return res
    try:
        data, fmt, w, h, res.digest, fixes = load_image(rec)
    except _Refuse as e:
        find(REFUSED, rec.file_name, e.value, e.reason)
        res.instances_refused += len(rec.instances)
        return res
    res.width, res.height = w, h
    for value, reason in fixes:
        find(FIXED, rec.file_name, value, reason)
    if rec.width is not None and rec.height is not None and (rec.width, rec.height) != (w, h):
        find(FIXED, rec.file_name, f"declared {rec.width}x{rec.height}, file {w}x{h}",
             "image size differs from the size the annotation declares; kept the file's "
             "size, annotations not rescaled (clipped to the image)")

    pngs, anns, names, ids, crowd = [], [], [], [], []
    seen: dict[tuple[str, bytes], str] = {}
    outside_map = 0  # instances refused only because --label-map leaves their class out
    for k, inst in enumerate(rec.instances):
        item = inst.source or f"{rec.file_name} instance {k}"

        def report(severity, value, reason, item=item):
            find(severity, item, value, reason)

        try:
            if inst.label not in opts.ids_by_name:
                outside_map += 1
                raise _Refuse(inst.label, f"label {inst.label!r} is not in the label map; add "
                              f"it to --label-map or fix the annotation")
            mask, rle = instance_mask(inst, h, w, report)
            ann = annotation_from_rle(rle, opts.ids_by_name[inst.label], inst.is_crowd)
            # COCO's bbox, from the runs: no pass over the [h, w] mask
            png = encode_mask_png(mask, box_xyxy_px=xywh_to_xyxy(ann["bbox"]))
            # Equal masks give equal PNG bytes (deterministic encoder): hash those.
            key = (inst.label, hashlib.blake2b(png, digest_size=16).digest())
            if key in seen:
                raise _Refuse(inst.label, f"exact duplicate (same label and mask) of "
                              f"{seen[key]}")
            seen[key] = item
        except _Refuse as e:
            report(REFUSED, e.value, e.reason)
            res.instances_refused += 1
            continue
        cid = opts.ids_by_name[inst.label]
        pngs.append(png)
        anns.append(ann)
        names.append(inst.label)
        ids.append(cid)
        crowd.append(bool(inst.is_crowd))

    if not pngs and res.instances_refused > outside_map:
        find(REFUSED, rec.file_name, f"{res.instances_refused} refused, 0 valid",
             "every instance of this image was refused; written without them it would teach "
             "the model that those objects are background")
        return res
    if not pngs and outside_map:
        # Classes the user left out of --label-map are background by their choice.
        find(WARNING, rec.file_name, f"{outside_map} instances outside the label map",
             "image has objects only of classes outside the label map; kept as a negative "
             "example")
    elif not pngs:
        find(WARNING, rec.file_name, "0 instances",
             "image has no annotated objects; kept as a negative example")
    boxes_xyxy_px = xywh_to_xyxy(np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4))
    res.record = frame_record(encode_example(
        image_bytes=data, image_format=fmt, height=h, width=w, image_id=image_id,
        file_name=rec.file_name, boxes_xyxy_px=boxes_xyxy_px, class_ids=ids, class_names=names,
        is_crowd=crowd, areas=[a["area"] for a in anns],
        mask_pngs=pngs))
    res.annotations = anns
    return res
