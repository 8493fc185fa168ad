"""What the COCO numbers do not say: which detections are right or wrong at a score
threshold, and why. No TensorFlow; ``evaluate.py`` runs it on the same checked ground truth
and detections that :func:`maskrcnn_toolkit.modeling.scoring.score` scores.

- :func:`match_all`: the IoU of every detection with every ground truth of its image, and
  the same-class matching at IoU 0.5, greedy by score as COCO matches (:class:`Matches`).
- :func:`analyse`: from that matching, at an operating point (a score threshold): the
  per-class table (TP, FP, FN, precision, recall, F1, recall by object size), the
  F1-maximising threshold of each class, F1 against score, the confusion matrix with a
  background row and column, and where the AP goes by TIDE's definitions
  (:mod:`maskrcnn_toolkit.modeling.tide`).

The definitions (docs/evaluate.md, "What metrics.json holds"): a detection is a true
positive when it is matched (greedy by score, best IoU, same class, IoU >= 0.5) to a ground
truth that no higher-scored detection took; a detection that matches nothing but lies in a
crowd region of its class (crowd IoU >= 0.5, as pycocotools) is ignored, not counted. Only
the 100 highest-scored detections of each image take part (TIDE's rule; pycocotools keeps
100 per class and image: the two differ only past 100 per image). Matching is greedy by
score, so the matching of the detections above any threshold is the first part of the
matching of all detections: it is computed once.

Geometry: COCO boxes [x, y, w, h] in pixels (IoU as pycocotools' ``bbIou``); masks as COCO
RLE at full image size (ground-truth polygons converted as COCOeval's ``annToRLE``). All
fractions are in [0, 1]; a ratio with nothing to divide by is None (``null``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from maskrcnn_toolkit.modeling.tide import classify_false_positives, tide_errors

IOU_THRESHOLD = 0.5
DEFAULT_SCORE_THRESHOLD = 0.5
MAX_DETS = 100
# COCO's area ranges in pixels (small < 32², medium < 96², large).
SIZE_BOUNDS = (("small", 0.0, 32.0 ** 2), ("medium", 32.0 ** 2, 96.0 ** 2),
               ("large", 96.0 ** 2, np.inf))
F1_GRID = np.linspace(0.0, 1.0, 101)  # the score thresholds the F1 curves are sampled at


@dataclass
class Matches:
    """Every image of one evaluation, one IoU type, as flat arrays.

    Detections (D): the 100 highest-scored of each image, images in the ground truth's
    order, by descending score within an image (ties in results-file order).
    det_img int [D] (position in ``image_ids``), det_index int [D] (position in the results
    list), det_cls int [D], det_score float [D].
    Ground truth (G, crowd regions left out): gt_img, gt_index (position in
    ``annotations``), gt_cls int [G], gt_area float [G] (the annotation's ``area``).
    Pairs (P, every detection x ground truth of one image with IoU > 0, by detection then
    ground truth): pair_det, pair_gt int [P], pair_iou float [P].
    match int [D]: the ground truth each detection took, -1 for none.
    ignored / ignored_tide bool [D]: unmatched, in a crowd region of its class
    (crowd IoU >= 0.5; TIDE: > 0.5).
    """

    image_ids: list
    det_img: np.ndarray
    det_index: np.ndarray
    det_cls: np.ndarray
    det_score: np.ndarray
    gt_img: np.ndarray
    gt_index: np.ndarray
    gt_cls: np.ndarray
    gt_area: np.ndarray
    pair_det: np.ndarray
    pair_gt: np.ndarray
    pair_iou: np.ndarray
    match: np.ndarray
    ignored: np.ndarray
    ignored_tide: np.ndarray

    def used_by(self, dets: np.ndarray) -> np.ndarray:
        """bool [G]: the ground truth taken by the detections ``dets`` (bool [D])."""
        used = np.zeros(len(self.gt_cls), bool)
        taken = self.match[dets & (self.match >= 0)]
        used[taken] = True
        return used

    def classify(self, fp: np.ndarray, used: np.ndarray) -> tuple[list[str], np.ndarray]:
        """TIDE's kind of each false positive ``fp`` (int positions), against the ground
        truth ``used`` (bool [G]); see :func:`tide.classify_false_positives`."""
        return classify_false_positives(fp, self.det_cls, self.gt_cls, self.pair_det,
                                        self.pair_gt, self.pair_iou, used)


# ----------------------------------------------------------------------------- geometry

def segm_rle(seg, h: int, w: int):
    """A segmentation as RLE, as pycocotools' ``COCO.annToRLE`` makes it."""
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects(seg, h, w)
    return seg


def _gt_rles(anns: list[dict], h: int, w: int) -> list:
    """RLEs of one image's annotations. Scoring leaves each annotation's RLE behind
    (faster-coco-eval 1.8 under ``rle``, pycocotools in ``segmentation``): used when its
    size is the image's, else the annotation is converted here (single polygons in one
    pycocotools call)."""
    out = []
    for a in anns:
        r = a.get("rle")
        if not (isinstance(r, dict) and list(r.get("size", ())) == [h, w] and "counts" in r):
            r = a["segmentation"]
            if not (isinstance(r, dict) and not isinstance(r.get("counts"), list)):
                r = None
        out.append(r)
    single = [k for k, a in enumerate(anns) if out[k] is None
              and isinstance(a["segmentation"], list) and len(a["segmentation"]) == 1
              and len(a["segmentation"][0]) > 4]
    if single:
        for k, r in zip(single, mask_utils.frPyObjects(
                [anns[k]["segmentation"][0] for k in single], h, w)):
            out[k] = r
    return [r if r is not None else segm_rle(a["segmentation"], h, w) for r, a in zip(out, anns)]


def det_rle(det: dict, h: int, w: int):
    """A detection's mask as RLE; a box-only detection as its box's rectangle (what
    pycocotools' ``loadRes`` makes of it when masks are scored)."""
    seg = det.get("segmentation")
    if seg is None:
        x, y, bw, bh = det["bbox"]
        seg = [[x, y, x, y + bh, x + bw, y + bh, x + bw, y]]
    return segm_rle(seg, h, w)


def box_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """float [N]: IoU of the box pairs d[i], g[i] ([x, y, w, h] float64 [N, 4]), computed as
    pycocotools' ``bbIou`` computes it (same operations, same order: equal to the bit);
    for a crowd ground truth the union is the detection's own area."""
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    inter = w * h
    da, ga = d[:, 2] * d[:, 3], g[:, 2] * g[:, 3]
    union = np.where(crowd, da, da + ga - inter)
    ok = (w > 0) & (h > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def _pairs(n_det: np.ndarray, n_gt: np.ndarray, det_start: np.ndarray, gt_start: np.ndarray):
    """(det, gt) global positions of every detection x ground truth pair of each image,
    image by image, by detection then ground truth."""
    n = n_det * n_gt
    total = int(n.sum())
    img = np.repeat(np.arange(len(n)), n)
    local = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    per_row = np.maximum(n_gt[img], 1)
    return det_start[img] + local // per_row, gt_start[img] + local % per_row


# ----------------------------------------------------------------------------- matching

def match_all(gt: dict, dets: list, iou_type: str) -> Matches:
    """The :class:`Matches` of ``dets`` (checked COCO results; detections on images not in
    ``gt`` are left out, as scoring does) against ``gt`` (checked COCO ground truth) for
    ``iou_type`` "segm" or "bbox". Neither input is modified."""
    anns = gt["annotations"]
    by_image: dict[int, list[int]] = defaultdict(list)
    for k, a in enumerate(anns):
        by_image[a["image_id"]].append(k)
    dets_of: dict[int, list[int]] = defaultdict(list)
    for k, d in enumerate(dets):
        dets_of[d["image_id"]].append(k)
    image_ids = [im["id"] for im in gt["images"]]
    det_index, gt_index, crowd_index, flat_iou, crowd_iou = [], [], [], [], []
    n_det, n_gt, n_crowd = [], [], []
    for im in gt["images"]:
        mine = dets_of.get(im["id"], [])
        scores = np.array([dets[k]["score"] for k in mine], np.float64)
        order = np.argsort(-scores, kind="stable")[:MAX_DETS]
        d_idx = [mine[k] for k in order.tolist()]
        g_idx = [k for k in by_image.get(im["id"], ()) if not anns[k]["iscrowd"]]
        c_idx = [k for k in by_image.get(im["id"], ()) if anns[k]["iscrowd"]]
        det_index += d_idx
        gt_index += g_idx
        crowd_index += c_idx
        n_det.append(len(d_idx))
        n_gt.append(len(g_idx))
        n_crowd.append(len(c_idx))
        if iou_type == "segm" and d_idx and (g_idx or c_idx):
            h, w = im["height"], im["width"]
            d_geo = [det_rle(dets[k], h, w) for k in d_idx]
            g_geo = _gt_rles([anns[k] for k in g_idx + c_idx], h, w)
            iou = np.asarray(mask_utils.iou(d_geo, g_geo, [0] * len(g_idx) + [1] * len(c_idx)),
                             np.float64).reshape(len(d_idx), -1)
            flat_iou.append(iou[:, :len(g_idx)].ravel())
            crowd_iou.append(iou[:, len(g_idx):].ravel())
    n_det, n_gt, n_crowd = (np.array(x, np.int64) for x in (n_det, n_gt, n_crowd))
    det_index = np.array(det_index, np.int64)
    gt_index, crowd_index = np.array(gt_index, np.int64), np.array(crowd_index, np.int64)
    det_start, gt_start = np.cumsum(n_det) - n_det, np.cumsum(n_gt) - n_gt
    crowd_start = np.cumsum(n_crowd) - n_crowd
    pd, pg = _pairs(n_det, n_gt, det_start, gt_start)
    cd, cg = _pairs(n_det, n_crowd, det_start, crowd_start)
    if iou_type == "bbox":
        d_box = np.array([dets[k]["bbox"] for k in det_index], np.float64).reshape(-1, 4)
        g_box = np.array([anns[k]["bbox"] for k in gt_index], np.float64).reshape(-1, 4)
        c_box = np.array([anns[k]["bbox"] for k in crowd_index], np.float64).reshape(-1, 4)
        p_iou = box_iou(d_box[pd], g_box[pg], np.zeros(len(pd), bool))
        c_iou = box_iou(d_box[cd], c_box[cg], np.ones(len(cd), bool))
    else:
        p_iou = np.concatenate(flat_iou) if flat_iou else np.zeros(0)
        c_iou = np.concatenate(crowd_iou) if crowd_iou else np.zeros(0)
    det_cls = np.array([dets[k]["category_id"] for k in det_index], np.int64)
    gt_cls = np.array([anns[k]["category_id"] for k in gt_index], np.int64)
    keep = p_iou > 0
    pd, pg, p_iou = pd[keep], pg[keep], p_iou[keep]
    match = greedy_match(pd, pg, p_iou, det_cls[pd] == gt_cls[pg], len(det_cls))
    # crowd regions: the best same-class crowd IoU of each unmatched detection
    crowd_cls = np.array([anns[k]["category_id"] for k in crowd_index], np.int64)
    best_crowd = np.full(len(det_cls), -1.0)
    same = det_cls[cd] == crowd_cls[cg] if len(cd) else np.zeros(0, bool)
    np.maximum.at(best_crowd, cd[same], c_iou[same])
    free = match < 0
    return Matches(
        image_ids, np.repeat(np.arange(len(image_ids)), n_det), det_index, det_cls,
        np.array([dets[k]["score"] for k in det_index], np.float64),
        np.repeat(np.arange(len(image_ids)), n_gt), gt_index, gt_cls,
        np.array([anns[k]["area"] for k in gt_index], np.float64),
        pd, pg, p_iou, match, free & (best_crowd >= IOU_THRESHOLD),
        free & (best_crowd > IOU_THRESHOLD))


def greedy_match(pair_det: np.ndarray, pair_gt: np.ndarray, pair_iou: np.ndarray,
                 allowed: np.ndarray, n_det: int, threshold: float = IOU_THRESHOLD
                 ) -> np.ndarray:
    """int [n_det]: for detections in order (by descending score within an image), the
    allowed ground truth of highest IoU >= ``threshold`` (the first on ties) that no earlier
    detection took; -1 for none. Pairs are (det, gt, IoU) ordered by det then gt."""
    match = np.full(n_det, -1, np.int64)
    cand = allowed & (pair_iou >= threshold)
    cd, cg, ci = pair_det[cand], pair_gt[cand], pair_iou[cand]
    if not len(cd):
        return match
    # Where no detection has two candidates and no ground truth two takers, there is no
    # choice to make; the rest is matched one detection at a time.
    rival = (np.bincount(cd)[cd] > 1) | (np.bincount(cg)[cg] > 1)
    match[cd[~rival]] = cg[~rival]
    if rival.any():
        # Detections come in score order (pairs are ordered by detection); each takes its
        # best candidate that an earlier one did not take.
        taken: set[int] = set()
        current, best_g, best_v = -1, -1, -1.0
        for d, g, v in zip(cd[rival].tolist(), cg[rival].tolist(), ci[rival].tolist()):
            if d != current:
                if best_g >= 0:
                    match[current] = best_g
                    taken.add(best_g)
                current, best_g, best_v = d, -1, -1.0
            if g not in taken and v > best_v:
                best_g, best_v = g, v
        if best_g >= 0:
            match[current] = best_g
    return match


# ----------------------------------------------------------------------- operating point

def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _f1(tp, fp, fn):
    tp, fp, fn = (np.asarray(x, np.float64) for x in (tp, fp, fn))
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def best_threshold(scores: np.ndarray, tp: np.ndarray, n_gt: int
                   ) -> tuple[float | None, float | None]:
    """(t, F1): the detection score t whose "keep score >= t" maximises F1 (the highest
    such t on ties); (None, None) without ground truth or detections. ``scores`` float
    [N] and ``tp`` bool [N] of one class's (not ignored) detections; (None, 0.0) when no
    detection of the class is a true positive."""
    if n_gt == 0 or len(scores) == 0:
        return None, None
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], tp[order]
    f1 = 2 * np.cumsum(t) / (np.arange(1, len(s) + 1) + n_gt)
    f1[:-1][s[1:] == s[:-1]] = -1.0  # a threshold keeps a whole group of tied scores
    k = int(f1.argmax())
    if f1[k] <= 0:
        return None, 0.0  # no threshold finds anything of this class
    return float(s[k]), float(f1[k])


def confusion(m: Matches, score_threshold: float, categories: list[int]) -> np.ndarray:
    """int [K + 1, K + 1] at ``score_threshold``, IoU 0.5: rows the ground-truth class,
    columns the predicted class, the last row and column "background". True positives are
    on the diagonal; then the left-over detections, by score, take the left-over ground
    truth (of another class) of highest IoU >= 0.5; detections still left count in the
    background row (detections of nothing, duplicates), ground truth still left in the
    background column (missed). Each row of a class sums to its ground-truth count."""
    index = np.full(max(categories + [0]) + 1, len(categories), np.int64)
    index[categories] = np.arange(len(categories))
    kept = (m.det_score >= score_threshold) & ~m.ignored
    tp = kept & (m.match >= 0)
    used = m.used_by(kept)
    left_det = kept & (m.match < 0)
    pair_ok = left_det[m.pair_det] & ~used[m.pair_gt]
    cross = greedy_match(m.pair_det, m.pair_gt, m.pair_iou, pair_ok, len(m.det_cls))
    used[cross[cross >= 0]] = True
    k = len(categories)
    rows = np.concatenate([index[m.det_cls[tp]], index[m.gt_cls[cross[left_det & (cross >= 0)]]],
                           np.full(int((left_det & (cross < 0)).sum()), k),
                           index[m.gt_cls[~used]]])
    cols = np.concatenate([index[m.det_cls[tp]], index[m.det_cls[left_det & (cross >= 0)]],
                           index[m.det_cls[left_det & (cross < 0)]],
                           np.full(int((~used).sum()), k)])
    cells = np.zeros((k + 1, k + 1), np.int64)
    np.add.at(cells, (rows, cols), 1)
    return cells


def operating_point(m: Matches, categories: dict[int, str], score_threshold: float) -> dict:
    """The per-class table, the suggested thresholds, F1 against score and the confusion
    matrix at ``score_threshold`` (IoU 0.5). ``categories``: {id: name}, in row order."""
    live = ~m.ignored
    det_cls, det_score, det_tp = m.det_cls[live], m.det_score[live], (m.match >= 0)[live]
    hit = np.full(len(m.gt_cls), -1.0)  # the score of the detection that took each GT
    hit[m.match[m.match >= 0]] = m.det_score[m.match >= 0]
    rows, curves = [], {}
    for cid, name in categories.items():
        s, t = det_score[det_cls == cid], det_tp[det_cls == cid]
        n_gt = int((m.gt_cls == cid).sum())
        keep = s >= score_threshold
        tp, fp = int((t & keep).sum()), int((~t & keep).sum())
        fn = n_gt - tp
        best_t, best_f1 = best_threshold(s, t, n_gt)
        row = {"category_id": cid, "name": name, "gt_instances": n_gt,
               "detections": tp + fp, "tp": tp, "fp": fp, "fn": fn,
               "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, n_gt),
               "f1": float(_f1(tp, fp, fn)) if tp + fp + fn else None,
               "best_threshold": best_t, "best_f1": best_f1, "by_size": {}}
        area = m.gt_area[m.gt_cls == cid]
        found = hit[m.gt_cls == cid] >= score_threshold
        for size, lo, hi in SIZE_BOUNDS:
            inside = (area >= lo) & (area < hi)
            row["by_size"][size] = {"gt_instances": int(inside.sum()),
                                    "tp": int((inside & found).sum()),
                                    "recall": _ratio(int((inside & found).sum()),
                                                     int(inside.sum()))}
        rows.append(row)
        sorted_s = np.sort(s)
        n_kept = len(s) - np.searchsorted(sorted_s, F1_GRID, side="left")
        tp_s = np.sort(s[t])
        n_tp = len(tp_s) - np.searchsorted(tp_s, F1_GRID, side="left")
        curves[name] = _f1(n_tp, n_kept - n_tp, n_gt - n_tp).tolist()
    tot = {k: sum(r[k] for r in rows) for k in ("tp", "fp", "fn")}
    cells = confusion(m, score_threshold, list(categories))
    return {
        "per_class": rows,
        "all": {"gt_instances": int(len(m.gt_cls)), "detections": tot["tp"] + tot["fp"],
                **tot, "precision": _ratio(tot["tp"], tot["tp"] + tot["fp"]),
                "recall": _ratio(tot["tp"], tot["tp"] + tot["fn"]),
                "f1": float(_f1(tot["tp"], tot["fp"], tot["fn"])) if any(tot.values())
                else None},
        "suggested_thresholds": {r["name"]: r["best_threshold"] for r in rows},
        "f1_curves": {"thresholds": F1_GRID.round(2).tolist(), "f1": curves},
        "confusion": {"labels": [*categories.values(), "background"],
                      "category_ids": [*categories, 0], "counts": cells.tolist()},
    }


@dataclass
class Details:
    """What the report draws beyond metrics.json.

    curves: {iou_type: {"recall": float [101], "category_ids": [K], "precision": float
    [2, 101, K] at IoU 0.5 and 0.75}}: pycocotools' interpolated precision (area all,
    maxDets 100; -1 where a class has no ground truth), whose mean is AP50 / AP75.
    matches: {iou_type: Matches}. gt, dets: the scored COCO ground truth and results.
    """

    curves: dict
    matches: dict
    gt: dict
    dets: list


def pr_curves(E) -> dict:
    """The PR curves of a summarized pycocotools ``COCOeval`` ``E``, see :class:`Details`."""
    p = E.params
    iou = [int(np.where(np.isclose(p.iouThrs, v))[0][0]) for v in (0.5, 0.75)]
    a, m = list(p.areaRngLbl).index("all"), list(p.maxDets).index(100)
    return {"recall": np.asarray(p.recThrs, np.float64),
            "category_ids": [int(c) for c in p.catIds],
            "precision": np.asarray(E.eval["precision"])[iou][:, :, :, a, m]}


def analyse(gt: dict, dets: list, evals: dict, score_threshold: float
            ) -> tuple[dict, Details]:
    """(metrics.json's ``analysis``, the report's :class:`Details`).

    ``gt`` and ``dets``: the checked COCO ground truth and results that were scored (not
    modified here); ``evals``: {iou_type: the summarized pycocotools COCOeval}."""
    categories = {int(c["id"]): str(c["name"])
                  for c in sorted(gt["categories"], key=lambda c: c["id"])}
    out = {"score_threshold": score_threshold, "iou_threshold": IOU_THRESHOLD,
           "max_detections_per_image": MAX_DETS}
    matches, curves = {}, {}
    for t, E in evals.items():
        m = match_all(gt, dets, t)
        matches[t] = m
        curves[t] = pr_curves(E)
        out[t] = operating_point(m, categories, score_threshold)
        out[t]["errors"] = tide_errors(m)
    return out, Details(curves, matches, gt, dets)
