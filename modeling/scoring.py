"""COCO mask and box scoring with pycocotools' numbers (docs/DESIGN_NOTES.md, decision 8),
per class, with the suspicious cases explained. No TensorFlow: ``evaluate.py --gt
--detections`` runs on this module alone.

- :func:`evaluate_files` reads, checks and scores a COCO results file against a COCO
  ground-truth file; :func:`score` does the same on already loaded JSON. The checks and
  warnings are in :mod:`maskrcnn_toolkit.modeling.scoring_checks`.
- :func:`format_report` and :func:`summary_line` are what ``evaluate.py`` prints.

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
import os
import time
import warnings as warnings_module
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.json_files import read_json
from maskrcnn_toolkit.modeling.scoring_checks import (
    check_detections,
    check_ground_truth,
    inspect_inputs,
    inspect_numbers,
)

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


@dataclass
class EvalReport:
    """What one evaluation produced.

    metrics: {"segm": {...}, "bbox": {...}} for the IoU types evaluated; each holds the
      12 :data:`STAT_KEYS` as float fractions (-1 = no data) and ``per_class``: a list of
      {"category_id", "name", "AP", "AP50", "AP75", "gt_instances"} ordered by id.
    warnings: human-readable explanations of suspicious inputs or numbers.
    backend: the library and version that produced the numbers.
    counts: images, ground-truth instances, detections scored, categories.
    analysis: the operating point, confusion matrix and error breakdown
      (:func:`maskrcnn_toolkit.modeling.error_analysis.analyse`), when asked for.
    details: what the report draws beyond metrics.json (an
      ``error_analysis.Details``: PR curves, matches, the scored inputs), when asked for.
    """

    metrics: dict[str, dict]
    warnings: list[str]
    backend: str
    counts: dict[str, int]
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)
    analysis: dict | None = None
    details: Any = field(default=None, repr=False)

    def to_json(self) -> dict:
        out: dict[str, Any] = dict(self.metrics)
        out["warnings"] = list(self.warnings)
        out["backend"] = self.backend
        out["counts"] = dict(self.counts)
        out.update(self.extras)
        if self.analysis is not None:
            out["analysis"] = self.analysis
        return out


def backend_label(backend: str) -> str:
    """"faster-coco-eval 1.8.0" / "pycocotools 2.0.11": what reports print."""
    from importlib.metadata import version
    if backend not in BACKENDS:
        raise UserError(f"unknown evaluation backend {backend!r}; valid: {', '.join(BACKENDS)}")
    dist = "faster-coco-eval" if backend == "faster" else "pycocotools"
    return f"{dist} {version(dist)}"


def check_iou_types(iou_types: Iterable[str]) -> tuple[str, ...]:
    """``iou_types`` as a tuple; UserError unless each is one of :data:`IOU_TYPES`."""
    iou_types = tuple(iou_types)
    for t in iou_types:
        if t not in IOU_TYPES:
            raise UserError(f"unknown IoU type {t!r}; valid: {', '.join(IOU_TYPES)}")
    return iou_types


# ----------------------------------------------------------------------------- scoring

def score(gt: dict, dets: list, iou_types: Iterable[str] = IOU_TYPES,
          backend: str = DEFAULT_BACKEND, dt_path: str = "detections",
          label_map_ids: dict[int, str] | None = None,
          analysis_threshold: float | None = None) -> EvalReport:
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
      analysis_threshold: when given, also the error analysis at this score threshold
        (``report.analysis`` and ``report.details``).
    Returns:
      An :class:`EvalReport`.
    """
    t0 = time.perf_counter()
    iou_types = check_iou_types(iou_types)
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
        warnings.extend(inspect_numbers(t, m, bool(dets)))
    report = EvalReport(metrics, warnings, label, counts, time.perf_counter() - t0)
    if analysis_threshold is not None:
        from maskrcnn_toolkit.modeling.error_analysis import analyse
        # after scoring: the ground truth's RLEs that scoring made are reused
        report.analysis, report.details = analyse(gt, dets, evals, analysis_threshold)
    return report


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
def gc_paused():
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
                   iou_types: Iterable[str] = IOU_TYPES, backend: str = DEFAULT_BACKEND,
                   analysis_threshold: float | None = None) -> EvalReport:
    """Read, check and score a COCO ground-truth file and a COCO results file
    (``analysis_threshold``: see :func:`score`)."""
    with gc_paused():
        return _evaluate_files(gt_path, dt_path, iou_types, backend, analysis_threshold)


def _evaluate_files(gt_path, dt_path, iou_types, backend, analysis_threshold) -> EvalReport:
    t0 = time.perf_counter()
    iou_types = tuple(iou_types)
    gt_path, dt_path = os.fspath(gt_path), os.fspath(dt_path)
    gt = read_json(gt_path, "a COCO ground-truth JSON object with 'images', 'annotations' "
                            "and 'categories' lists")
    check_ground_truth(gt, gt_path, iou_types)
    dets = read_json(dt_path, "a COCO results JSON list of {image_id, category_id, bbox, "
                              "segmentation, score}")
    check_detections(dets, dt_path)
    report = score(gt, dets, iou_types, backend, dt_path,
                   analysis_threshold=analysis_threshold)
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
