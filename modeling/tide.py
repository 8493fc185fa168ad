"""Where the AP goes: TIDE's error breakdown (Bolya et al., "TIDE: A General Toolbox for
Identifying Object Detection Errors", ECCV 2020), computed as the ``tidecv`` package
(1.0.1) computes it, on the matching of :mod:`maskrcnn_toolkit.modeling.error_analysis`.

At IoU 0.5 (foreground) and 0.1 (background), every false positive gets one kind, tested
in this order against the image's ground truth:

- localisation: its IoU with the best ground truth of its class is in [0.1, 0.5];
- classification: IoU >= 0.5 with a ground truth of another class;
- duplicate: IoU >= 0.5 with a ground truth of its class that a higher-scored detection took;
- background: IoU <= 0.1 with every ground truth (or the image has none);
- both: anything else (wrong class and badly placed);

and every ground truth that no detection took and that no localisation or classification
error points at is missed. The AP lost to a kind (dAP) is TIDE's AP50 with every error of
that kind fixed by its oracle, minus TIDE's AP50: a localisation or classification error
becomes a true positive (only the highest-scored one per ground truth; the others are
removed), duplicates and background and "both" errors are removed, missed objects leave
the ground truth count. TIDE's AP is its own (all ground truth, 101 recall points, the
100 best detections per image, a class with detections but no ground truth counts as 0):
close to pycocotools' AP50, not equal to it.

One difference from tidecv: a detection ignored for lying in a crowd region is not an
error here (tidecv still classifies it, and may "fix" it into a true positive).
"""
from __future__ import annotations

import numpy as np

BACKGROUND_IOU = 0.1
FOREGROUND_IOU = 0.5
FP_KINDS = ("classification", "localisation", "both", "duplicate", "background")
ERROR_KINDS = (*FP_KINDS, "missed")
_MISSED = len(FP_KINDS)
_KIND = {k: i for i, k in enumerate(ERROR_KINDS)}


def _first_max(group: np.ndarray, value: np.ndarray, tie: np.ndarray, n: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per group 0..n-1: (the largest ``value``, 0 where the group is empty; the ``tie`` of
    the first pair that has it, lowest ``tie`` first, -1 where empty)."""
    best, arg = np.zeros(n), np.full(n, -1, np.int64)
    if len(group):
        order = np.lexsort((tie, -value, group))
        first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
        best[group[first]] = value[first]
        arg[group[first]] = tie[first]
    return best, arg


def classify_false_positives(fp: np.ndarray, det_cls: np.ndarray, gt_cls: np.ndarray,
                             pair_det: np.ndarray, pair_gt: np.ndarray, pair_iou: np.ndarray,
                             used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kind of each false positive as an index into :data:`FP_KINDS`, int [F]; the ground
    truth a localisation or classification error points at, else -1, int [F]).

    fp: int [F] detection positions; det_cls int [D], gt_cls int [G]; the pairs (detection,
    ground truth of the same image, IoU > 0) as three [P] arrays; used: bool [G], the ground
    truth taken by true positives. The ground truth an error points at is the one of
    highest IoU (the first in annotation order on ties), as tidecv's ``argmax``."""
    pos = np.full(len(det_cls), -1, np.int64)
    pos[fp] = np.arange(len(fp))
    sel = pos[pair_det] >= 0
    f, g, v = pos[pair_det[sel]], pair_gt[sel], pair_iou[sel]
    same = det_cls[fp][f] == gt_cls[g]
    n = len(fp)
    v_loc, i_loc = _first_max(f[same], v[same], g[same], n)
    v_cls, i_cls = _first_max(f[~same], v[~same], g[~same], n)
    dup = same & used[g]
    v_dup, _ = _first_max(f[dup], v[dup], g[dup], n)
    v_any, _ = _first_max(f, v, g, n)
    loc = (v_loc >= BACKGROUND_IOU) & (v_loc <= FOREGROUND_IOU)
    cls = ~loc & (v_cls >= FOREGROUND_IOU)
    kind = np.select([loc, cls, v_dup >= FOREGROUND_IOU, v_any <= BACKGROUND_IOU],
                     [_KIND["localisation"], _KIND["classification"], _KIND["duplicate"],
                      _KIND["background"]], _KIND["both"])
    target = np.where(loc, i_loc, np.where(cls, i_cls, -1))
    return kind, target


def tide_ap(scores: np.ndarray, correct: np.ndarray, n_gt: int) -> float:
    """TIDE's AP of one class: data points (score, correct) in insertion order (a stable
    sort by descending score keeps ties in that order), the precision envelope sampled at
    recall 0, 0.01, ..., 1 (first point with recall >= r; 0 past the last), averaged."""
    if n_gt <= 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    c = correct[order]
    tp = np.cumsum(c)
    fp = np.cumsum(~c)
    precision = tp / (tp + fp)
    recall = tp / n_gt
    if len(precision):
        precision = np.maximum.accumulate(precision[::-1])[::-1]
    x = np.array([i / 100 for i in range(101)])
    idx = np.searchsorted(recall, x, side="left")
    y = np.zeros(len(x))
    inside = idx < len(precision)
    y[inside] = precision[idx[inside]]
    return sum(y.tolist()) / 101  # summed in order, as tidecv sums its list


def _mean_ap(cls, scores, correct, n_gt: dict[int, int]) -> float:
    """Mean of :func:`tide_ap` over the classes that have data points or ground truth."""
    aps = []
    for c, n in n_gt.items():
        sel = cls == c
        if n > 0 or sel.any():
            aps.append(tide_ap(scores[sel], correct[sel], n))
    return sum(aps) / len(aps) if aps else 0.0


def tide_errors(m) -> dict:
    """TIDE's breakdown at IoU 0.5 of an ``error_analysis.Matches``: {"ap50": TIDE's own
    AP50, "dAP": {kind: AP gained by fixing every error of that kind alone},
    "dAP_special": {"false_positives": gained by scoring every false positive below every
    true positive, "false_negatives": gained by removing every unmatched ground truth},
    "counts": {kind: number of errors}}; AP and gains as fractions."""
    live = ~m.ignored_tide
    used = m.used_by(np.ones(len(m.det_cls), bool))
    # TIDE's data points, in insertion order: image by image, by score.
    pt_cls, pt_score, pt_ok = m.det_cls[live], m.det_score[live], (m.match >= 0)[live]
    fp = np.flatnonzero(live & (m.match < 0))  # its errors, in the order TIDE adds them
    kind, target = m.classify(fp, used)
    e_cls, e_score = m.det_cls[fp], m.det_score[fp]
    # The oracle of a localisation or classification error pointing at a free ground truth
    # makes the first (highest-scored) such error a true positive of the ground truth's
    # class; the others are removed. Such a ground truth is not "missed".
    e_fix_cls = np.full(len(fp), -1, np.int64)
    free = (target >= 0) & ~used[np.maximum(target, 0)]
    if free.any():
        _, first = np.unique(target[free], return_index=True)
        rows = np.flatnonzero(free)[first]
        e_fix_cls[rows] = m.gt_cls[target[rows]]
    usable = np.zeros(len(m.gt_cls), bool)
    usable[target[free]] = True
    missed_cls = m.gt_cls[~used & ~usable]
    classes = sorted(set(m.gt_cls.tolist()) | set(pt_cls.tolist()))
    n_gt = {c: int((m.gt_cls == c).sum()) for c in classes}
    fn = {c: int((m.gt_cls[~used] == c).sum()) for c in classes}
    ok_cls, ok_score = pt_cls[pt_ok], pt_score[pt_ok]

    def fixed_ap(fix: np.ndarray, n: dict[int, int], transform: bool = False) -> float:
        # tidecv's fix_errors: the errors' data points (fixed or original) in error order,
        # then the true positives.
        keep_fixed = fix & (e_fix_cls >= 0)
        kept = keep_fixed | ~fix
        cls = np.concatenate([np.where(keep_fixed, e_fix_cls, e_cls)[kept], ok_cls])
        score = np.concatenate([e_score[kept], ok_score])
        correct = np.concatenate([keep_fixed[kept], np.ones(len(ok_cls), bool)])
        if transform:
            score = correct.astype(np.float64)
        return _mean_ap(cls, score, correct, n)

    base = _mean_ap(pt_cls, pt_score, pt_ok, n_gt)
    none = np.zeros(len(fp), bool)
    d_ap = {k: max(fixed_ap(kind == i, n_gt) - base, 0.0) for i, k in enumerate(FP_KINDS)}
    # a fixed missed object leaves the ground truth count
    d_ap["missed"] = max(fixed_ap(none, {c: n - int((missed_cls == c).sum())
                                         for c, n in n_gt.items()}) - base, 0.0)
    special = {"false_positives": fixed_ap(none, n_gt, transform=True) - base,
               "false_negatives": fixed_ap(none, {c: n - fn[c] for c, n in n_gt.items()})
               - base}
    counts = {k: int((kind == i).sum()) for i, k in enumerate(FP_KINDS)}
    counts["missed"] = int(len(missed_cls))
    return {"ap50": base, "dAP": {k: d_ap[k] for k in ERROR_KINDS}, "dAP_special": special,
            "counts": counts}
