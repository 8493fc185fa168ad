"""COCO mask and box evaluation with pycocotools' numbers (docs/DESIGN_NOTES.md, decision
8), per class, with the suspicious cases explained; and the evaluation of a trained model or
an export.

Two entry points, both used by ``evaluate.py``:
- :func:`evaluate_files` scores a COCO results file against a COCO ground-truth file
  (no model). :func:`score` does the same on already loaded JSON.
- :func:`evaluate_model` runs a checkpoint or an export over the validation TFRecords of a
  run's data folder, writes the COCO results, ``metrics.json``, TensorBoard scalars and a
  few ground truth | prediction images, and scores them with :func:`score`.

Backends: ``faster`` (faster-coco-eval 1.8.0, a C++ COCOeval; the default) and
``pycocotools`` (the reference). The default is allowed only because
tests/test_evaluation.py asserts that both give bit-identical stats and per-class numbers
on every fixture; every report says which backend produced its numbers.

Units: every metric is a fraction in [0, 1], or -1 where pycocotools has no data (for
example APs when no ground truth is small). COCO boxes are [x, y, w, h] in pixels; masks
are COCO RLE at full image size.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import io
import json
import os
import re
import shutil
import tempfile
import time
import warnings as warnings_module
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from maskrcnn_toolkit.core.atomic import (
    TMP_MARK,
    atomic_write,
    discard,
    refuse_existing,
    temp_path_for,
)
from maskrcnn_toolkit.core.errors import UserError

IOU_TYPES = ("segm", "bbox")
BACKENDS = ("faster", "pycocotools")
DEFAULT_BACKEND = "faster"
# The 12 numbers of COCOeval.stats, in its order.
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl",
             "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# (AP or AR, IoU, area, maxDets) for each stat: the lines pycocotools' summarize() prints.
_STAT_LINES = [(1, None, "all", 100), (1, 0.5, "all", 100), (1, 0.75, "all", 100),
               (1, None, "small", 100), (1, None, "medium", 100), (1, None, "large", 100),
               (0, None, "all", 1), (0, None, "all", 10), (0, None, "all", 100),
               (0, None, "small", 100), (0, None, "medium", 100), (0, None, "large", 100)]
_EXAMPLES = 5  # how many offending items a warning or error names


@dataclass
class EvalReport:
    """What one evaluation produced.

    metrics: {"segm": {...}, "bbox": {...}} for the IoU types evaluated; each holds the
      12 :data:`STAT_KEYS` as float fractions (-1 = no data) and ``per_class``: a list of
      {"category_id", "name", "AP", "AP50", "AP75", "gt_instances"} ordered by id.
    warnings: human-readable explanations of suspicious inputs or numbers.
    backend: the library and version that produced the numbers.
    counts: images, ground-truth instances, detections scored, categories.
    """

    metrics: dict[str, dict]
    warnings: list[str]
    backend: str
    counts: dict[str, int]
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out: dict[str, Any] = dict(self.metrics)
        out["warnings"] = list(self.warnings)
        out["backend"] = self.backend
        out["counts"] = dict(self.counts)
        out.update(self.extras)
        return out


def backend_label(backend: str) -> str:
    """"faster-coco-eval 1.8.0" / "pycocotools 2.0.11": what reports print."""
    from importlib.metadata import version
    if backend not in BACKENDS:
        raise UserError(f"unknown evaluation backend {backend!r}; valid: {', '.join(BACKENDS)}")
    dist = "faster-coco-eval" if backend == "faster" else "pycocotools"
    return f"{dist} {version(dist)}"


# ----------------------------------------------------------------------------- loading

def read_json(path: str | os.PathLike, what: str) -> Any:
    """json.load with a UserError naming the file on a missing file or invalid JSON."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise UserError(f"cannot read the {what} {path!r}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" (line {e.lineno}, column {e.colno})" if hasattr(e, "lineno") else ""
        raise UserError(f"the {what} {path!r} is not valid JSON{where}: "
                        f"{getattr(e, 'msg', e)}; give a COCO JSON file") from None


# The checks run over every entry of files with ~10^5 entries, so they test exact types
# inline (``type(v) is int`` also refuses bools) instead of calling helpers per value.
_NUM = frozenset((int, float))


def _is_int(v) -> bool:
    return type(v) is int


def check_ground_truth(gt: Any, path: str, iou_types: Iterable[str] = IOU_TYPES) -> None:
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


# ----------------------------------------------------------------------------- checks

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


# ----------------------------------------------------------------------------- scoring

def score(gt: dict, dets: list, iou_types: Iterable[str] = IOU_TYPES,
          backend: str = DEFAULT_BACKEND, dt_path: str = "detections",
          label_map_ids: dict[int, str] | None = None) -> EvalReport:
    """Score COCO results against a COCO ground truth.

    Args:
      gt: a COCO ground-truth dict, already checked by :func:`check_ground_truth`.
      dets: a COCO results list, already checked by :func:`check_detections`.
        Both are consumed: pycocotools and faster-coco-eval add keys to them in place.
      iou_types: any of "segm", "bbox".
      backend: "faster" or "pycocotools" (the reference).
      dt_path: how warnings name the detections.
      label_map_ids: {id: name} of the model's label map, checked against the GT's
        categories when given.
    Returns:
      An :class:`EvalReport`.
    """
    t0 = time.perf_counter()
    iou_types = tuple(iou_types)
    for t in iou_types:
        if t not in IOU_TYPES:
            raise UserError(f"unknown IoU type {t!r}; valid: {', '.join(IOU_TYPES)}")
    label = backend_label(backend)
    dets, warnings = inspect_inputs(gt, dets, iou_types, dt_path, label_map_ids)
    n_gt = Counter(a["category_id"] for a in gt["annotations"] if not a["iscrowd"])
    names = {c["id"]: str(c["name"]) for c in gt["categories"]}
    counts = {"images": len(gt["images"]), "gt_instances": sum(n_gt.values()),
              "detections": len(dets), "categories": len(names)}
    evals = _run_cocoeval(gt, dets, iou_types, backend)
    metrics = {}
    for t, E in evals.items():
        m = {k: float(v) for k, v in zip(STAT_KEYS, E.stats[:12])}
        m["per_class"] = per_class(E, names, n_gt)
        metrics[t] = m
        kind = "mask" if t == "segm" else "box"
        if m["AP"] == 0.0 and dets:
            warnings.append(f"{kind} AP ({t}) is exactly 0: no detection overlaps a ground "
                            f"truth of its class with IoU >= 0.5; check the category ids, the "
                            f"image ids and the box format (COCO bbox is [x, y, w, h] in "
                            f"pixels)")
        elif dets:
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
    return EvalReport(metrics, warnings, label, counts, time.perf_counter() - t0)


def _run_cocoeval(gt: dict, dets: list, iou_types: tuple[str, ...], backend: str) -> dict:
    """{iou_type: COCOeval after evaluate/accumulate/summarize}. One ground-truth index and
    one results index serve every IoU type, as in pycocotools' own examples."""
    out = {}
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        quiet = lambda *a, **k: None  # noqa: E731
        with warnings_module.catch_warnings():
            # its "annotation id 0" UserWarning: inspect_inputs() already explains that case
            warnings_module.simplefilter("ignore", UserWarning)
            coco_gt = COCO(gt, print_function=quiet)
        coco_dt = coco_gt.loadRes(dets)
        for t in iou_types:
            # faster-coco-eval's C++ does the IoUs, the matching and the accumulation, but
            # its precision of a lone first true positive is 1.0 where pycocotools' is
            # 1 - 2**-52, so APs differ in the last digit: _precision_like_pycocotools
            # corrects exactly those, and the 12 stats come from pycocotools' summarize().
            # One IoU worker: its thread pool runs one small Python call per (image,
            # class) pair and doubled the CPU time here without lowering wall time.
            E = COCOeval_faster(coco_gt, coco_dt, t, print_function=quiet,
                                separate_eval=True, rle_iou_max_workers=1)
            E.evaluate()
            precision, recall = _precision_like_pycocotools(E)
            out[t] = _summarize_with_pycocotools(t, E.params, precision, recall)
        return out
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    # pycocotools prints progress on stdout; our report prints the numbers itself.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:  # loadRes indexes anns[0] and crashes on an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(gt["images"]), "annotations": [],
                               "categories": list(gt["categories"])}
            coco_dt.createIndex()
        for t in iou_types:
            E = COCOeval(coco_gt, coco_dt, t)
            E.evaluate()
            E.accumulate()
            E.summarize()
            out[t] = E
    return out


def _precision_like_pycocotools(E) -> tuple[np.ndarray, np.ndarray]:
    """(precision [T, R, K, A, M], recall [T, K, A, M]) exactly as pycocotools'
    ``accumulate()`` computes them, from faster-coco-eval's per-image results.

    faster-coco-eval's C++ ``Accumulate`` follows pycocotools step for step (stable sort by
    score, tp/fp cumulative sums, the right-to-left precision envelope, ``lower_bound`` =
    ``searchsorted(side='left')``) except for one division: pycocotools computes precision
    as ``tp / (tp + fp + eps)`` with eps = 2**-52, the C++ as ``tp / (tp + fp)``. For any
    integer tp + fp >= 2, ``tp + fp + eps`` rounds back to ``tp + fp`` in float64, so the two
    agree everywhere except where tp + fp == 1 and tp == 1 (the first counted detection is a
    true positive): pycocotools gets 1 / (1 + eps) = 1 - 2**-52 there, the C++ 1.0. That
    value survives the envelope only when no later point has precision exactly 1, i.e. when
    the second counted detection is not a true positive too; then every 1.0 of that
    precision curve is 1 - 2**-52 in pycocotools.

    Which curves those are is read from extra probe recall thresholds 1.5 / npig (npig =
    the non-ignored ground truths of the curve's class and area range), sampled in the same
    C++ pass: the precision there is 1.0 exactly when the first two counted detections are
    true positives. A curve whose precision at recall 0 is 1.0 (the first counted detection
    is a true positive) and whose probe is not 1.0 is corrected.
    """
    import faster_coco_eval.faster_eval_api_cpp as _C
    p = E._paramsEval
    npig = _valid_ground_truth_counts(E.cocoGt, p)  # [K, A]
    probes = sorted({1.5 / n for n in npig.ravel().tolist() if n > 0})
    # One C++ pass with the probe thresholds appended after COCO's 101: each threshold is
    # sampled independently (lower_bound), and one pass costs half of two.
    R = len(p.recThrs)
    params = copy.copy(p)
    params.recThrs = np.concatenate([np.asarray(p.recThrs, np.float64),
                                     np.array(probes, np.float64)])
    acc = _C.COCOevalAccumulate(params, E._evalImgs_cpp)
    all_precision = np.asarray(acc["precision"], dtype=np.float64)
    precision = np.array(all_precision[:, :R])
    probe = all_precision[:, R:]
    recall = np.array(acc["recall"], dtype=np.float64)
    if not probes:
        return precision, recall
    column = {v: j for j, v in enumerate(probes)}
    K, A = npig.shape
    # probe precision of each curve at its own threshold: [T, K, A, M]
    own = np.full(recall.shape, -1.0)
    for k in range(K):
        for a in range(A):
            if npig[k, a] > 0:
                own[:, k, a, :] = probe[:, column[1.5 / npig[k, a]], k, a, :]
    fix = (precision[:, 0] == 1.0) & (own != 1.0)  # [T, K, A, M]
    one_true_positive = 1.0 / (1.0 + np.spacing(1))  # pycocotools' tp / (fp + tp + eps)
    precision[(precision == 1.0) & fix[:, None]] = one_true_positive
    return precision, recall


def _valid_ground_truth_counts(coco_gt, p) -> np.ndarray:
    """[K, A] int: ground truths per class and area range that pycocotools counts (npig):
    on an evaluated image, not crowd, area within the range (bounds included)."""
    img_ids = set(int(i) for i in p.imgIds)
    cat_index = {int(c): k for k, c in enumerate(p.catIds)}
    anns = [a for a in coco_gt.anns.values()
            if a["image_id"] in img_ids and a["category_id"] in cat_index
            and not a.get("iscrowd", 0)]
    cats = np.array([cat_index[a["category_id"]] for a in anns], np.int64)
    areas = np.array([a["area"] for a in anns], np.float64)
    out = np.zeros((len(p.catIds), len(p.areaRng)), np.int64)
    for a, (lo, hi) in enumerate(p.areaRng):
        inside = (areas >= lo) & (areas <= hi)
        out[:, a] = np.bincount(cats[inside], minlength=len(p.catIds))
    return out


def _summarize_with_pycocotools(iou_type: str, p, precision: np.ndarray, recall: np.ndarray):
    """A pycocotools ``COCOeval`` holding ``precision``/``recall``, summarized by
    pycocotools' own ``summarize()`` (so the 12 stats are its code's numbers)."""
    from pycocotools.cocoeval import COCOeval
    E = COCOeval(iouType=iou_type)
    E.params.imgIds = list(p.imgIds)
    E.params.catIds = list(p.catIds)
    E.eval = {"params": E.params, "counts": list(precision.shape),
              "precision": precision, "recall": recall}
    with contextlib.redirect_stdout(io.StringIO()):
        E.summarize()
    return E


def per_class(E, names: dict[int, str], n_gt: dict[int, int]) -> list[dict]:
    """Per-category AP, AP50, AP75 from ``E.eval['precision']`` [T, R, K, A, M], computed as
    pycocotools' ``_summarize`` computes the overall ones (area "all", maxDets 100, mean of
    the entries > -1, else -1), restricted to one category."""
    p = E.params
    prec = E.eval["precision"]
    aind = list(p.areaRngLbl).index("all")
    mind = list(p.maxDets).index(100)
    rows = []
    for k, cat_id in enumerate(p.catIds):
        row = {"category_id": int(cat_id), "name": names.get(int(cat_id), f"class_{cat_id}")}
        for key, thr in (("AP", None), ("AP50", 0.5), ("AP75", 0.75)):
            s = prec
            if thr is not None:
                s = s[np.where(thr == p.iouThrs)[0]]
            s = s[:, :, k, aind, mind]
            row[key] = -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))
        row["gt_instances"] = int(n_gt.get(int(cat_id), 0))
        rows.append(row)
    return rows


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector. JSON data has no reference cycles, but
    loading and indexing a few hundred thousand dicts triggers full collections that scan
    all of them: ~30% of the evaluation's CPU time on 3,000 images."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def evaluate_files(gt_path: str | os.PathLike, dt_path: str | os.PathLike,
                   iou_types: Iterable[str] = IOU_TYPES, backend: str = DEFAULT_BACKEND
                   ) -> EvalReport:
    """Read, check and score a COCO ground-truth file and a COCO results file."""
    with _gc_paused():
        return _evaluate_files(gt_path, dt_path, iou_types, backend)


def _evaluate_files(gt_path, dt_path, iou_types, backend) -> EvalReport:
    t0 = time.perf_counter()
    iou_types = tuple(iou_types)
    gt_path, dt_path = os.fspath(gt_path), os.fspath(dt_path)
    gt = read_json(gt_path, "ground truth")
    check_ground_truth(gt, gt_path, iou_types)
    dets = read_json(dt_path, "detections")
    check_detections(dets, dt_path)
    report = score(gt, dets, iou_types, backend, dt_path)
    report.seconds = time.perf_counter() - t0
    return report


# ----------------------------------------------------------------------------- output

def format_stats(metrics: dict, iou_type: str) -> str:
    """The 12 stats as pycocotools' summarize() prints them (3 decimals; metrics.json keeps
    every digit)."""
    lines = []
    for key, (ap, thr, area, max_dets) in zip(STAT_KEYS, _STAT_LINES):
        title = "Average Precision" if ap else "Average Recall"
        kind = "(AP)" if ap else "(AR)"
        iou = "0.50:0.95" if thr is None else f"{thr:0.2f}"
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | "
                     f"maxDets={max_dets:>3d} ] = {metrics[key]:0.3f}")
    return "\n".join(lines)


def format_per_class(rows: list[dict]) -> str:
    width = max([len("class")] + [len(r["name"]) for r in rows])
    head = f"  {'id':>4}  {'class':<{width}}  {'AP':>6}  {'AP50':>6}  {'AP75':>6}  {'GT':>6}"
    out = [head]
    for r in rows:
        out.append(f"  {r['category_id']:>4}  {r['name']:<{width}}  {_fmt(r['AP'])}  "
                   f"{_fmt(r['AP50'])}  {_fmt(r['AP75'])}  {r['gt_instances']:>6}")
    return "\n".join(out)


def _fmt(v: float) -> str:
    return f"{'n/a':>6}" if v == -1 else f"{v:6.3f}"


def format_report(report: EvalReport) -> str:
    """The printed report: 12 stats and a per-class table per IoU type, then warnings."""
    parts = []
    for t, m in report.metrics.items():
        kind = "mask" if t == "segm" else "box"
        parts.append(f"== {t} ({kind}) — numbers by {report.backend}")
        parts.append(format_stats(m, t))
        parts.append("per class (area all, maxDets 100; n/a = no ground truth):")
        parts.append(format_per_class(m["per_class"]))
        parts.append("")
    for w in report.warnings:
        parts.append(f"warning: {w}")
    return "\n".join(parts)


def summary_line(report: EvalReport, out: str | None) -> str:
    aps = ", ".join(f"{'mask' if t == 'segm' else 'box'} AP {m['AP']:.3f}"
                    for t, m in report.metrics.items())
    c = report.counts
    source = f" of {report.extras['source']}" if report.extras.get("source") else ""
    return (f"scored {c['detections']} detections{source} on {c['images']} images "
            f"({c['gt_instances']} ground-truth instances, {c['categories']} classes) with "
            f"{report.backend}: {aps}; {len(report.warnings)} "
            f"warning{'' if len(report.warnings) == 1 else 's'}; "
            f"{report.seconds:.1f} s" + (f" -> {out}" if out else ""))


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write JSON (full float precision: floats round-trip exactly)."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def default_metrics_path(dt_path: str | os.PathLike) -> Path:
    """``DT.json`` -> ``DT.metrics.json`` beside it."""
    p = Path(dt_path)
    stem = p.name[:-5] if p.name.endswith(".json") else p.name
    return p.with_name(stem + ".metrics.json")


# ----------------------------------------------------------------------------- models

VISUAL_THRESHOLD = 0.5  # what the side-by-side images show; scoring uses every detection


def read_val_records(files: list, max_images: int | None = None):
    """Yield (image_id, uint8 [H, W, 3] RGB image) from validation TFRecord ``files``,
    decoded with tf.data; the id is ``image/source_id`` (= the COCO GT image id)."""
    import tensorflow as tf
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/source_id": tf.io.FixedLenFeature([], tf.string)}

    def parse(x):
        f = tf.io.parse_single_example(x, spec)
        img = tf.io.decode_image(f["image/encoded"], channels=3, expand_animations=False)
        return f["image/source_id"], img

    ds = tf.data.TFRecordDataset([str(f) for f in files]).map(parse, num_parallel_calls=2)
    if max_images:
        ds = ds.take(max_images)
    for sid, img in ds.prefetch(2):
        yield int(sid.numpy().decode()), img.numpy()


def val_record_files(run) -> list[Path]:
    files = list(getattr(run, "val_files", None) or
                 sorted(Path(run.data_dir).glob("val-*.tfrecord*")))
    if not files:
        raise UserError(f"no validation TFRecords (val-*.tfrecord) in {str(run.data_dir)!r}; "
                        f"convert the data with `python -m dataset_tools convert` and keep a "
                        f"validation split (--val-fraction)")
    return files


def _batches(items, size: int):
    batch = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _checkpoint_step(checkpoint: str | None) -> int:
    m = re.search(r"ckpt-(\d+)", checkpoint or "")
    return int(m.group(1)) if m else 0


def _export_folders(model: Path) -> list[Path]:
    """Where an export's label_map.pbtxt / metadata.json may be: the export folder itself,
    or the parent of ``saved_model/`` / ``frozen_graph.pb`` when one of those is given."""
    return [model, model.parent] if model.is_dir() else [model.parent]


def export_metadata(model: str | os.PathLike) -> tuple[dict, Path | None]:
    """(metadata.json of the export ``model``, its path); ({}, None) when there is none."""
    for folder in _export_folders(Path(model)):
        path = folder / "metadata.json"
        if path.is_file():
            meta = read_json(path, "export metadata")
            return (meta if isinstance(meta, dict) else {}), path
    return {}, None


def check_export_label_map(model: str | os.PathLike, run) -> None:
    """Raise UserError when the export ``model`` was made with other classes than the run:
    its ``label_map.pbtxt`` (else ``metadata.json``'s ``classes``) must map the same ids to
    the same names as ``run.label_map``; otherwise its detections would be scored under the
    wrong class names. An export with neither file is taken as the run's."""
    from maskrcnn_toolkit.core.label_map import read_label_map
    theirs, where = None, None
    for folder in _export_folders(Path(model)):
        if (folder / "label_map.pbtxt").is_file():
            where = folder / "label_map.pbtxt"
            theirs = dict(read_label_map(where).names_by_id)
            break
    if theirs is None:
        meta, where = export_metadata(model)
        classes = meta.get("classes")
        if isinstance(classes, dict):
            try:
                theirs = {int(k): str(v) for k, v in classes.items()}
            except ValueError:
                theirs = None
    ours = dict(run.label_map.names_by_id)
    if theirs is not None and theirs != ours:
        raise UserError(
            f"the export {os.fspath(model)!r} was made with other classes than the run: "
            f"{str(where)!r} has {theirs}, the run's label map "
            f"{str(Path(run.data_dir) / 'label_map.pbtxt')!r} has {ours}; evaluate the export "
            f"with the config of the run it was exported from")


def gt_instances_for_drawing(gt: dict, image_id: int, height: int, width: int):
    """(boxes [N, 4] ymin, xmin, ymax, xmax pixels; class ids; names; masks uint8
    [N, H, W]) of one image's ground truth, for the side-by-side pictures."""
    from maskrcnn_toolkit.core.masks import polygons_to_mask, rle_to_mask
    names = {c["id"]: str(c["name"]) for c in gt["categories"]}
    anns = [a for a in gt["annotations"] if a["image_id"] == image_id]
    boxes = np.array([[a["bbox"][1], a["bbox"][0], a["bbox"][1] + a["bbox"][3],
                       a["bbox"][0] + a["bbox"][2]] for a in anns], np.float32).reshape(-1, 4)
    masks = np.zeros((len(anns), height, width), np.uint8)
    for k, a in enumerate(anns):
        seg = a.get("segmentation")
        if isinstance(seg, dict):
            masks[k] = rle_to_mask(seg)
        elif seg:
            masks[k] = polygons_to_mask(seg, height, width)
    ids = [a["category_id"] for a in anns]
    labels = [names.get(i, f"class_{i}") + (" (crowd)" if a["iscrowd"] else "")
              for i, a in zip(ids, anns)]
    return boxes, ids, labels, masks


def side_by_side(image: np.ndarray, gt: dict, image_id: int, dets) -> np.ndarray:
    """uint8 [H, 2W + 8, 3]: ground truth on the left, predictions with score >= 0.5 on
    the right, drawn with core.draw.draw_instances (same class, same color)."""
    from maskrcnn_toolkit.core.draw import draw_instances
    h, w = image.shape[:2]
    boxes, ids, labels, masks = gt_instances_for_drawing(gt, image_id, h, w)
    left = draw_instances(image, boxes, ids, labels, masks)
    shown = dets.filter(score_threshold=VISUAL_THRESHOLD)
    right = draw_instances(image, shown.boxes, shown.class_ids,
                           [f"{n} {s:.2f}" for n, s in zip(shown.class_names, shown.scores)],
                           shown.masks)
    gap = np.full((h, 8, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image
    with atomic_write(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")


def evaluate_model(config: str | os.PathLike, checkpoint: str | None = None,
                   model: str | os.PathLike | None = None, max_images: int | None = None,
                   out: str | os.PathLike | None = None, overwrite: bool = False,
                   backend: str = DEFAULT_BACKEND, num_visuals: int | None = None,
                   show_progress: bool = True, pre_nms_score_threshold: float | None = None,
                   iou_types: Iterable[str] = IOU_TYPES) -> tuple[EvalReport, Path]:
    """Run a checkpoint (default: the run's latest) or an export over the run's validation
    TFRecords and score it against the data folder's ``val_annotations.json``.

    Writes into ``out`` (default ``<run_dir>/eval``): ``metrics.json``,
    ``detections.json`` (COCO results: full-size RLE masks, [x, y, w, h] pixel boxes,
    label-map category ids) and ``images/<image_id>.png`` (ground truth | prediction);
    TensorBoard scalars ``segm/AP``... go to ``<run_dir>/eval`` whatever ``out`` is (step =
    the checkpoint's step; for an export, the step of the checkpoint its metadata.json
    names, else 0). Nothing is written until everything is computed, then all outputs are
    renamed into place together: an interruption leaves the previous outputs. An existing
    ``images/`` folder is replaced as a whole (no stale pictures). The model is asked
    for every detection (score threshold 0), as COCO evaluation expects. ``num_visuals``
    (default: the config's ``eval.num_images_to_draw``, else 4) images are drawn.
    ``pre_nms_score_threshold`` overrides the checkpoint model's own (the config's); an
    export keeps the one it was exported with. ``iou_types``: what is scored ("segm",
    "bbox" or both).

    Returns (report, output folder).
    """
    from tqdm import tqdm

    from maskrcnn_toolkit.modeling.config import load_run
    iou_types = tuple(iou_types)
    for t in iou_types:
        if t not in IOU_TYPES:
            raise UserError(f"unknown IoU type {t!r}; valid: {', '.join(IOU_TYPES)}")
    run = load_run(config)
    if model is not None:
        if not Path(model).exists():
            raise UserError(f"model {os.fspath(model)!r} does not exist; give an export folder "
                            f"made by `python export.py`")
        check_export_label_map(model, run)
    gt_path = Path(run.data_dir) / "val_annotations.json"
    out_dir = Path(out) if out is not None else Path(run.run_dir) / "eval"
    metrics_path, results_path = out_dir / "metrics.json", out_dir / "detections.json"
    refuse_existing(metrics_path, overwrite)
    refuse_existing(results_path, overwrite)
    gt = read_json(gt_path, "validation ground truth")
    check_ground_truth(gt, str(gt_path), iou_types)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}

    if model is not None:
        from maskrcnn_toolkit.inference.predictor import Predictor
        # check_export_label_map() made sure the export's own label map is the run's.
        detector = Predictor(model, label_map=run.label_map, score_threshold=0.0)
        meta, _ = export_metadata(model)
        step = _checkpoint_step(str(meta.get("checkpoint") or ""))
        source = f"export {os.fspath(model)}"
        if meta.get("checkpoint"):
            source += f" (of checkpoint {meta['checkpoint']})"
    else:
        from maskrcnn_toolkit.modeling.exporting import load_detector
        from maskrcnn_toolkit.modeling.model import find_checkpoint
        # Resolve once, so the report names the checkpoint that was really evaluated.
        checkpoint = find_checkpoint(checkpoint if checkpoint is not None else run.run_dir)
        detector = load_detector(run, checkpoint, score_threshold=0.0,
                                 pre_nms_score_threshold=pre_nms_score_threshold)
        source, step = f"checkpoint {checkpoint}", _checkpoint_step(checkpoint)

    if num_visuals is None:
        num_visuals = int(getattr(getattr(run.user, "eval", None), "num_images_to_draw", 4))
    t0 = time.perf_counter()
    results, seen, visuals = [], [], []
    total = len(sizes) if not max_images else min(len(sizes), max_images)
    batch_size = int(getattr(getattr(run.user, "eval", None), "batch_size", 1) or 1)
    records = read_val_records(val_record_files(run), max_images)
    with tqdm(total=total, desc="evaluate", unit="img", disable=not show_progress) as bar:
        for batch in _batches(records, batch_size):
            for image_id, _ in batch:
                if image_id not in sizes:
                    raise UserError(
                        f"validation record with image/source_id {image_id} is not in "
                        f"{str(gt_path)!r}; the records and val_annotations.json come from "
                        f"different conversions; convert the data again")
            for (image_id, image), dets in zip(batch, detector.predict_batch(
                    [im for _, im in batch])):
                results.extend(dets.to_coco(image_id))
                seen.append(image_id)
                if len(visuals) < num_visuals:
                    visuals.append((image_id, image, dets))
            bar.update(len(batch))
    infer_s = time.perf_counter() - t0

    missing = len(sizes) - len(set(seen))
    notes = []
    if max_images or missing:
        # Score only the images the model saw: unseen images would count as all misses.
        keep = set(seen)
        gt = dict(gt, images=[im for im in gt["images"] if im["id"] in keep],
                  annotations=[a for a in gt["annotations"] if a["image_id"] in keep])
        notes.append(f"scored on {len(keep)} of {len(sizes)} validation images"
                     + (" (--max-images)" if max_images else
                        f"; {missing} ground-truth images have no record"))
    # The COCO results text is made before scoring: score() consumes its inputs, and what
    # is scored must be exactly what is saved.
    results_text = json.dumps(results)
    # score() consumes its inputs; the drawings need an intact ground truth.
    gt_for_drawing = json.loads(json.dumps({"categories": gt["categories"],
                                            "annotations": [a for a in gt["annotations"]
                                                            if a["image_id"] in
                                                            {v[0] for v in visuals}]}))
    with _gc_paused():
        report = score(gt, results, iou_types, backend, str(results_path),
                       label_map_ids=dict(run.label_map.names_by_id))
    report.warnings[:0] = notes
    report.extras = {"source": source, "step": step, "inference_seconds": round(infer_s, 3)}
    report.seconds = time.perf_counter() - t0
    pictures = [(image_id, side_by_side(image, gt_for_drawing, image_id, dets))
                for image_id, image, dets in visuals]
    _write_outputs(out_dir, results_text, report, pictures)
    _write_scalars(Path(run.run_dir) / "eval", report, step)
    return report, out_dir


def _write_outputs(out_dir: Path, results_text: str, report: EvalReport,
                   pictures: list[tuple[int, np.ndarray]]) -> None:
    """Write detections.json, metrics.json and images/ as one step: all into temporaries
    first, then renamed into place; on any failure (Ctrl-C included) the temporaries are
    removed and the previous outputs stay. The previous images/ folder is moved aside and
    removed only once the new one is in place, so no stale picture survives a re-run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_results = temp_path_for(out_dir / "detections.json")
    tmp_metrics = temp_path_for(out_dir / "metrics.json")
    tmp_images = Path(tempfile.mkdtemp(prefix=f".images{TMP_MARK}", dir=out_dir))
    old_images = None
    try:
        tmp_results.write_text(results_text)
        tmp_metrics.write_text(json.dumps(report.to_json(), indent=1) + "\n")
        for image_id, picture in pictures:
            _save_png(tmp_images / f"{image_id}.png", picture)
        images = out_dir / "images"
        if images.exists():
            old_images = Path(tempfile.mkdtemp(prefix=f".images-old{TMP_MARK}", dir=out_dir))
            os.replace(images, old_images / "images")
        os.replace(tmp_images, images)
        os.replace(tmp_results, out_dir / "detections.json")
        os.replace(tmp_metrics, out_dir / "metrics.json")
    except BaseException:
        for t in (tmp_results, tmp_metrics, tmp_images):
            discard(t)
        if old_images is not None and not (out_dir / "images").exists():
            os.replace(old_images / "images", out_dir / "images")  # put the old set back
        raise
    finally:
        if old_images is not None:
            shutil.rmtree(old_images, ignore_errors=True)


def _write_scalars(out_dir: Path, report: EvalReport, step: int) -> None:
    import tensorflow as tf
    writer = tf.summary.create_file_writer(str(out_dir))
    with writer.as_default():
        for t, m in report.metrics.items():
            for k in STAT_KEYS:
                tf.summary.scalar(f"{t}/{k}", m[k], step=step)
            for r in m["per_class"]:
                if r["AP"] != -1:
                    tf.summary.scalar(f"{t}_per_class/{r['name']}", r["AP"], step=step)
    writer.flush()
    writer.close()
