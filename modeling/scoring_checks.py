"""Is a COCO ground truth / COCO results pair fit to score, and what would make its numbers
surprising? The checks :func:`maskrcnn_toolkit.modeling.scoring.score` relies on.

- :func:`check_ground_truth` and :func:`check_detections` refuse (UserError naming the file
  and the entry) what pycocotools cannot score or would crash on half way.
- :func:`inspect_inputs` finds, before scoring, what gives a legal but surprising number
  (warnings), and refuses masks at the wrong resolution, which pycocotools would score
  silently wrong.
- :func:`inspect_numbers` explains, after scoring, an AP of exactly 0 or 1.

COCO boxes are [x, y, w, h] in pixels; masks are COCO RLE ({"size": [H, W], "counts"}) at
full image size, or polygons (flat [x0, y0, x1, y1, ...] pixel lists). No TensorFlow, no
pycocotools: plain checks over the loaded JSON.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable

from maskrcnn_toolkit.core.errors import UserError

_EXAMPLES = 5  # how many offending items a warning or error names


# ----------------------------------------------------------------------------- checks

# The checks run over every entry of files with ~10^5 entries, so they test exact types
# inline (``type(v) is int`` also refuses bools) instead of calling helpers per value.
_NUM = frozenset((int, float))


def _is_int(v) -> bool:
    return type(v) is int


def check_ground_truth(gt: Any, path: str, iou_types: Iterable[str]) -> None:
    """Raise UserError (naming ``path`` and the item) unless ``gt`` is a COCO ground truth
    pycocotools can score: ``images`` (id, height, width), ``categories`` (id, name),
    ``annotations`` (id, image_id, category_id, bbox [x, y, w, h], area, iscrowd, and
    ``segmentation`` when segm is asked)."""
    fix = "a COCO ground truth needs 'images', 'annotations' and 'categories' lists"
    if not isinstance(gt, dict):
        raise UserError(f"ground truth {path!r} is a JSON {type(gt).__name__}, not an object; "
                        f"{fix} (did you swap --gt and --detections?)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise UserError(f"ground truth {path!r} has no {key!r} list; {fix}")
    for i, im in enumerate(gt["images"]):
        if not (isinstance(im, dict) and _is_int(im.get("id")) and _is_int(im.get("height"))
                and _is_int(im.get("width"))):
            raise UserError(f"ground truth {path!r}: images[{i}] = {_short(im)} needs integer "
                            f"'id', 'height' and 'width'")
    for i, c in enumerate(gt["categories"]):
        if not (isinstance(c, dict) and _is_int(c.get("id")) and "name" in c):
            raise UserError(f"ground truth {path!r}: categories[{i}] = {_short(c)} needs an "
                            f"integer 'id' and a 'name'")
    need_segm = "segm" in iou_types
    for i, a in enumerate(gt["annotations"]):
        b = a.get("bbox") if type(a) is dict else None
        ok = (type(b) is list and len(b) == 4 and type(b[0]) in _NUM and type(b[1]) in _NUM
              and type(b[2]) in _NUM and type(b[3]) in _NUM and type(a.get("id")) is int
              and type(a.get("image_id")) is int and type(a.get("category_id")) is int
              and type(a.get("area")) in _NUM and "iscrowd" in a)
        if ok and need_segm and not a.get("segmentation"):
            raise UserError(f"ground truth {path!r}: annotations[{i}] (id {a['id']}) has no "
                            f"'segmentation'; mask evaluation needs one (polygons or RLE), or "
                            f"pass --iou-type bbox")
        if not ok:
            raise UserError(f"ground truth {path!r}: annotations[{i}] = {_short(a)} needs "
                            f"integer 'id', 'image_id', 'category_id', a numeric 'area', "
                            f"'iscrowd' and 'bbox' [x, y, w, h]")


def check_detections(dets: Any, path: str) -> None:
    """Raise UserError (naming ``path`` and the item) unless ``dets`` is a COCO results
    list: entries with integer image_id / category_id, numeric score, and a 'bbox'
    [x, y, w, h] and/or a 'segmentation' (RLE {"size": [H, W], "counts"} or polygons)."""
    if isinstance(dets, dict) and "annotations" in dets:
        raise UserError(f"detections {path!r} is a COCO dataset, not a results list; a COCO "
                        f"results file is a JSON list of {{image_id, category_id, bbox, "
                        f"segmentation, score}} (did you swap --gt and --detections?)")
    if not isinstance(dets, list):
        raise UserError(f"detections {path!r} is a JSON {type(dets).__name__}; a COCO results "
                        f"file is a JSON list of {{image_id, category_id, bbox, segmentation, "
                        f"score}}")
    # pycocotools' loadRes decides from the first entry whether boxes are present, then
    # reads 'bbox' of every entry: a mixed file would crash it half way.
    first_has_box = bool(dets) and isinstance(dets[0], dict) and bool(dets[0].get("bbox"))
    for i, d in enumerate(dets):
        if not (type(d) is dict and type(d.get("image_id")) is int
                and type(d.get("category_id")) is int and type(d.get("score")) in _NUM):
            raise UserError(f"detections {path!r}: entry [{i}] = {_short(d)} needs integer "
                            f"'image_id' and 'category_id' and a numeric 'score'")
        box, seg = d.get("bbox"), d.get("segmentation")
        if box is None and seg is None:
            raise UserError(f"detections {path!r}: entry [{i}] has neither 'bbox' nor "
                            f"'segmentation'")
        if box is not None and not (type(box) is list and len(box) == 4
                                    and type(box[0]) in _NUM and type(box[1]) in _NUM
                                    and type(box[2]) in _NUM and type(box[3]) in _NUM):
            raise UserError(f"detections {path!r}: entry [{i}] 'bbox' = {_short(box)} is not "
                            f"[x, y, w, h]")
        if first_has_box and box is None:
            raise UserError(f"detections {path!r}: entry [{i}] has no 'bbox' but entry [0] "
                            f"has one; give every entry a 'bbox' or none")
        if seg is not None and not (
                type(seg) is dict and type(seg.get("counts")) is str
                and type(seg.get("size")) is list) and not _is_segmentation(seg):
            raise UserError(f"detections {path!r}: entry [{i}] 'segmentation' = {_short(seg)} "
                            f"is neither an RLE {{'size': [H, W], 'counts': ...}} nor a list "
                            f"of polygons")


def _is_segmentation(s) -> bool:
    if isinstance(s, dict):
        size = s.get("size")
        return (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)
                and isinstance(s.get("counts"), (str, list)))
    return isinstance(s, list) and all(isinstance(p, list) for p in s)  # polygons


def _short(v, n: int = 80) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + "..."


def _examples(items: list, n: int = _EXAMPLES) -> str:
    return ", ".join(str(x) for x in items[:n]) + (f" (and {len(items) - n} more)"
                                                    if len(items) > n else "")


# ----------------------------------------------------------------------------- inspection

def inspect_inputs(gt: dict, dets: list, iou_types: Iterable[str], dt_path: str = "detections",
                   label_map_ids: dict[int, str] | None = None) -> tuple[list, list[str]]:
    """Find what would make the numbers surprising, before scoring.

    Returns (detections to score, warnings). Detections on images absent from the ground
    truth are dropped (pycocotools' loadRes refuses the whole file for them). Masks whose
    RLE size differs from their image's size raise UserError when segm is asked: pycocotools
    would compare them pixel run by pixel run against a different grid and report a wrong
    number without complaint.
    """
    warnings: list[str] = []
    iou_types = tuple(iou_types)
    images = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    cats = {c["id"]: str(c["name"]) for c in gt["categories"]}

    if not dets:
        warnings.append(f"{dt_path}: no detections at all: every AP and AR is 0 (the model "
                        f"found nothing, or the score threshold removed everything; COCO "
                        f"evaluation expects all detections, threshold ~0)")
    unknown_img = [i for i, d in enumerate(dets) if d["image_id"] not in images]
    orig = list(range(len(dets)))  # messages name entries by their index in the file
    if unknown_img:
        ids = sorted({dets[i]["image_id"] for i in unknown_img})
        warnings.append(f"{dt_path}: {len(unknown_img)} detections are on image ids that are "
                        f"not in the ground truth (ids {_examples(ids)}); they were left out "
                        f"(pycocotools refuses such a file); check that detections and ground "
                        f"truth come from the same split and use the same image ids")
        bad = set(unknown_img)
        orig = [i for i in orig if i not in bad]
        dets = [dets[i] for i in orig]

    unknown_cat = Counter(d["category_id"] for d in dets if d["category_id"] not in cats)
    if unknown_cat:
        warnings.append(f"{dt_path}: {sum(unknown_cat.values())} detections have category ids "
                        f"that are not in the ground truth's categories "
                        f"(ids {_examples(sorted(unknown_cat))}); COCO evaluation ignores them; "
                        f"category ids must be the label map's ids "
                        f"({_examples(sorted(cats))})")
    if label_map_ids is not None:
        diff = {i: n for i, n in label_map_ids.items() if cats.get(i) != n}
        diff_gt = {i: n for i, n in cats.items() if label_map_ids.get(i) != n}
        if diff or diff_gt:
            warnings.append(f"the label map ({_examples(sorted(label_map_ids.items()))}) and "
                            f"the ground truth's categories ({_examples(sorted(cats.items()))}) "
                            f"differ; the model's class ids will be scored against the wrong "
                            f"classes; convert the data again with this label map")

    n_gt = Counter(a["category_id"] for a in gt["annotations"] if not a["iscrowd"])
    no_gt = [f"{i} {cats[i]!r}" for i in sorted(cats) if n_gt[i] == 0]
    if no_gt:
        warnings.append(f"classes with no ground truth instance: {_examples(no_gt)}; their AP "
                        f"is -1 (no data) and they do not count in the mean, whatever was "
                        f"detected for them")
    zero_ids = [a for a in gt["annotations"] if a["id"] == 0]
    if zero_ids:
        warnings.append("the ground truth has an annotation with id 0: pycocotools records a "
                        "match by the matched annotation's id, so a detection matching it "
                        "counts as a false positive; number annotation ids from 1")
    dup = [i for i, c in Counter(a["id"] for a in gt["annotations"]).items() if c > 1]
    if dup:
        warnings.append(f"the ground truth repeats annotation ids ({_examples(sorted(dup))}); "
                        f"pycocotools keeps one annotation per id when matching, so results "
                        f"are unreliable; give every annotation its own id")

    if "segm" in iou_types and dets:
        no_mask = [i for i, d in enumerate(dets) if d.get("segmentation") is None]
        if no_mask:
            warnings.append(f"{dt_path}: {len(no_mask)} of {len(dets)} detections have only a "
                            f"'bbox', no 'segmentation', but mask (segm) evaluation was asked: "
                            f"pycocotools scores their boxes as rectangular masks; pass "
                            f"--iou-type bbox for a box-only model")
        wrong, rles, rle_idx = [], [], []
        for i, d in enumerate(dets):
            s = d.get("segmentation")
            if isinstance(s, dict):
                if tuple(s["size"]) != images[d["image_id"]]:
                    h, w = images[d["image_id"]]
                    wrong.append(f"[{orig[i]}] image {d['image_id']}: RLE "
                                 f"{s['size'][0]}x{s['size'][1]} vs image {h}x{w}")
                else:
                    rles.append(s)
                    rle_idx.append(i)
        if wrong:
            raise UserError(f"{dt_path}: {len(wrong)} detection masks are not at their image's "
                            f"resolution (H x W): {_examples(wrong)}; pycocotools would score "
                            f"them on the wrong pixel grid; paste masks to full image size "
                            f"before RLE-encoding (or pass --iou-type bbox)")
        empty = _empty_rles(rles)
        if empty:
            idx = [f"[{orig[rle_idx[k]]}] image {dets[rle_idx[k]]['image_id']}" for k in empty]
            warnings.append(f"{dt_path}: {len(empty)} detections have an empty mask "
                            f"({_examples(idx)}); each counts as a false positive for segm; "
                            f"check the mask threshold and the mask pasting")
    return dets, warnings


def _empty_rles(rles: list[dict]) -> list[int]:
    """Indices of RLEs with zero foreground pixels.

    Why not ``pycocotools.mask.area``: it overflows on lists longer than 255 in 2.0.11.
    An empty mask is one run of zeros; in COCO's compressed string each number ends at the
    first character without the 0x20 continuation bit, so the mask is empty exactly when
    that character is the last one.
    """
    out = []
    for k, r in enumerate(rles):
        counts = r["counts"]
        if isinstance(counts, list):
            empty = sum(counts[1::2]) == 0
        else:
            end = next((i for i, ch in enumerate(counts) if not (ord(ch) - 48) & 0x20),
                       len(counts) - 1)
            empty = end >= len(counts) - 1
        if empty:
            out.append(k)
    return out


def inspect_numbers(iou_type: str, metrics: dict, scored_detections: bool) -> list[str]:
    """Warnings about the numbers of one IoU type ("segm" or "bbox"): an AP of exactly 0
    overall or for some classes, or an AP of 1.

    Args:
      metrics: the type's 12 stats (fractions) with ``per_class`` rows, as in
        ``EvalReport.metrics[iou_type]``.
      scored_detections: whether any detection was scored (with none, every AP is 0 and
        :func:`inspect_inputs` has already said why).
    """
    warnings: list[str] = []
    m, t = metrics, iou_type
    kind = "mask" if t == "segm" else "box"
    if m["AP"] == 0.0 and scored_detections:
        warnings.append(f"{kind} AP ({t}) is exactly 0: no detection overlaps a ground "
                        f"truth of its class with IoU >= 0.5; check the category ids, the "
                        f"image ids and the box format (COCO bbox is [x, y, w, h] in "
                        f"pixels)")
    elif scored_detections:
        zero = [f"{r['category_id']} {r['name']!r}" for r in m["per_class"]
                if r["AP"] == 0.0 and r["gt_instances"] > 0]
        if zero:
            warnings.append(f"{kind} AP ({t}) is 0 for classes {_examples(zero)}: none of "
                            f"their instances was found with their class at IoU >= 0.5 "
                            f"(missed, or detected as another class)")
    if m["AP"] > 1 - 1e-9:  # pycocotools' eps makes a lone true positive 1 - 2e-16
        warnings.append(f"{kind} AP ({t}) is 1: every ground truth was found at "
                        f"every IoU threshold with no false positive ranked above it; are "
                        f"the detections a copy of the ground truth?")
    return warnings
