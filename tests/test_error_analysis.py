"""modeling.error_analysis and modeling.tide: a hand-made case where every TP/FP/FN, every
cell of the confusion matrix and every TIDE error kind and dAP is known by construction,
and TIDE against the ``tidecv`` package itself on random scenes."""
from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from maskrcnn_toolkit.modeling import error_analysis, scoring
from maskrcnn_toolkit.modeling.tide import tide_errors
from tests.test_evaluation import dataset, det, gt_ann, square

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hand_made():
    """Classes a (1) and b (2), 40 px squares on 100 x 100 images; every score distinct.

    img 1: a found (0.9, TP) and found again 2 px off (0.8): a duplicate.
    img 2: b detected as a (0.85): classification (swapped class).
    img 3: a detected 20 px off (0.6): IoU 800 / 2400 = 1/3, localisation.
    img 4: no object, b detected (0.7): background.
    img 5: b, no detection: missed.
    img 6: a, detected as b 20 px off (0.55): IoU 1/3 with another class: both; the a is
           missed (no classification or localisation error points at it).
    """
    gt = dataset(6, [gt_ann(1, 1, 1, square(10, 10)), gt_ann(2, 2, 2, square(10, 10)),
                     gt_ann(3, 3, 1, square(10, 10)), gt_ann(4, 5, 2, square(50, 50)),
                     gt_ann(5, 6, 1, square(10, 10))], cats=("a", "b"))
    dets = [det(1, 1, square(10, 10), 0.9), det(1, 1, square(12, 10), 0.8),
            det(2, 1, square(10, 10), 0.85), det(3, 1, square(30, 10), 0.6),
            det(4, 2, square(50, 50), 0.7), det(6, 2, square(30, 10), 0.55)]
    return gt, dets


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_hand_made_case_every_count_and_kind_by_construction(hand_made, iou_type):
    gt, dets = copy.deepcopy(hand_made)
    report = scoring.score(gt, dets, (iou_type,), "pycocotools", analysis_threshold=0.5)
    a = report.analysis[iou_type]
    rows = {r["name"]: r for r in a["per_class"]}
    assert {k: rows["a"][k] for k in ("gt_instances", "detections", "tp", "fp", "fn")} == \
        {"gt_instances": 3, "detections": 4, "tp": 1, "fp": 3, "fn": 2}
    assert {k: rows["b"][k] for k in ("gt_instances", "detections", "tp", "fp", "fn")} == \
        {"gt_instances": 2, "detections": 2, "tp": 0, "fp": 2, "fn": 2}
    assert (rows["a"]["precision"], rows["a"]["recall"], rows["a"]["f1"]) == (0.25, 1 / 3, 2 / 7)
    assert (rows["b"]["precision"], rows["b"]["recall"], rows["b"]["f1"]) == (0.0, 0.0, 0.0)
    # a: keeping only the 0.9 detection gives F1 2 * 1 / (1 + 3) = 0.5, the best; b: no
    # threshold finds a b.
    assert (rows["a"]["best_threshold"], rows["a"]["best_f1"]) == (0.9, 0.5)
    assert (rows["b"]["best_threshold"], rows["b"]["best_f1"]) == (None, 0.0)
    assert a["suggested_thresholds"] == {"a": 0.9, "b": None}
    # rows: GT a, b, background; columns: predicted a, b, background
    assert a["confusion"]["labels"] == ["a", "b", "background"]
    assert a["confusion"]["counts"] == [[1, 0, 2],   # img 1 TP; img 3 and 6 missed
                                        [1, 0, 1],   # img 2 b taken for a; img 5 missed
                                        [2, 2, 0]]   # dup + img 3 (a); img 4 + img 6 (b)
    assert a["all"] == {"gt_instances": 5, "detections": 6, "tp": 1, "fp": 5, "fn": 4,
                        "precision": 1 / 6, "recall": 0.2, "f1": 2 / 11}
    e = a["errors"]
    assert e["counts"] == {"classification": 1, "localisation": 1, "both": 1,
                           "duplicate": 1, "background": 1, "missed": 2}
    # TIDE's AP50 (101 recall points): a's one TP comes first at recall 1/3, so precision
    # 1 is sampled at recall 0, .01, ..., .33 (34 points): AP_a = 34/101; AP_b = 0.
    assert e["ap50"] == pytest.approx(17 / 101, abs=1e-15)
    # classification fixed: img 2's detection becomes b's TP (0.85, above b's FPs 0.7
    # and 0.55): AP_b = 51/101 (recall 1/2); AP_a stays 34/101.
    # localisation fixed: img 3's detection becomes a's TP (0.6): precision 1 up to recall
    # 1/3 and 2/4 up to 2/3 (33 points): AP_a = 50.5/101.
    # missed fixed: a and b lose one GT each: AP_a = 51/101 (recall 1/2 at once).
    # duplicate, background, both removed: nothing ranked above a TP changes: 0.
    assert e["dAP"] == pytest.approx({
        "classification": 85 / 202 - 17 / 101, "localisation": 8.25 / 101, "both": 0.0,
        "duplicate": 0.0, "background": 0.0, "missed": 8.5 / 101}, abs=1e-15)
    # every FP below every TP: a's TP was already first: 0. Every unmatched GT removed:
    # a has 1 GT, found first: AP_a = 1; b has none but detections: AP_b = 0.
    assert e["dAP_special"] == pytest.approx({"false_positives": 0.0,
                                              "false_negatives": 0.5 - 17 / 101}, abs=1e-15)


def test_operating_threshold_moves_detections_out(hand_made):
    """At 0.75 only img 1's TP (0.9), the duplicate (0.8) and img 2's swap (0.85) stay."""
    gt, dets = copy.deepcopy(hand_made)
    a = scoring.score(gt, dets, ("segm",), "faster", analysis_threshold=0.75).analysis
    assert a["score_threshold"] == 0.75
    rows = {r["name"]: r for r in a["segm"]["per_class"]}
    assert [rows["a"][k] for k in ("tp", "fp", "fn")] == [1, 2, 2]
    assert [rows["b"][k] for k in ("tp", "fp", "fn")] == [0, 0, 2]
    assert a["segm"]["confusion"]["counts"] == [[1, 0, 2], [1, 0, 1], [1, 0, 0]]


def test_box_iou_is_pycocotools_to_the_bit():
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(0)
    d = np.round(rng.uniform(0, 60, (40, 4)), 2)
    g = np.round(rng.uniform(0, 60, (30, 4)), 2)
    for crowd in (0, 1):
        ref = np.asarray(mask_utils.iou(d, g, [crowd] * len(g)))
        dd, gg = np.repeat(d, len(g), 0), np.tile(g, (len(d), 1))
        ours = error_analysis.box_iou(dd, gg, np.full(len(dd), bool(crowd)))
        assert np.array_equal(ours.reshape(len(d), len(g)), ref)


def _bench_scenes(n, seed, crowd):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from eval import make_set
    finally:
        sys.path.pop(0)
    gt, dets = make_set(n, seed)
    if not crowd:
        gt["annotations"] = [a for a in gt["annotations"] if not a["iscrowd"]]
    return gt, dets


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_analysis_does_not_depend_on_what_scoring_left_behind(backend):
    """The analysis reuses the RLEs scoring leaves in the ground truth; computed on
    untouched copies it must be the same."""
    gt, dets = _bench_scenes(25, 5, crowd=True)
    fresh_gt, fresh_dets = copy.deepcopy(gt), copy.deepcopy(dets)
    report = scoring.score(gt, dets, ("segm", "bbox"), backend, analysis_threshold=0.4)
    for t in ("segm", "bbox"):
        m = error_analysis.match_all(fresh_gt, fresh_dets, t)
        cats = {c["id"]: c["name"] for c in fresh_gt["categories"]}
        expected = error_analysis.operating_point(m, cats, 0.4)
        expected["errors"] = tide_errors(m)
        assert json.dumps(report.analysis[t]) == json.dumps(expected)


def _tidecv():
    try:
        import tidecv  # noqa: F401
        from tidecv import datasets  # noqa: F401
    except ImportError as e:
        message = (f"tidecv is not installed ({e}); .ci/run installs it: .venv/bin/pip "
                   f"install --no-deps tidecv==1.0.1 seaborn appdirs")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    import tidecv
    return tidecv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tide_matches_tidecv(tmp_path, seed):
    """Our TIDE breakdown equals the tidecv package's on random scenes (no crowd regions:
    there the two differ on purpose, see modeling/tide.py)."""
    tidecv = _tidecv()
    from tidecv import datasets
    gt, dets = _bench_scenes(30, seed, crowd=False)
    # a few duplicates, so that every kind occurs
    dets += [dict(d, score=round(d["score"] * 0.9, 5)) for d in dets[::7]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    ours = scoring.score(copy.deepcopy(gt), copy.deepcopy(dets), ("segm", "bbox"),
                         analysis_threshold=0.5).analysis
    names = {"Cls": "classification", "Loc": "localisation", "Both": "both",
             "Dupe": "duplicate", "Bkg": "background", "Miss": "missed"}
    for t, mode in (("segm", tidecv.TIDE.MASK), ("bbox", tidecv.TIDE.BOX)):
        tide = tidecv.TIDE(mode=mode)
        run = tide.evaluate(datasets.COCO(str(tmp_path / "gt.json")),
                            datasets.COCOResult(str(tmp_path / "dt.json")), mode=mode)
        e = ours[t]["errors"]
        assert e["ap50"] * 100 == pytest.approx(run.ap, abs=1e-9)
        assert {names[k.short_name]: v for k, v in run.count_errors().items()} == e["counts"]
        main = {names[k.short_name]: v for k, v in run.fix_main_errors().items()}
        assert {k: 100 * v for k, v in e["dAP"].items()} == pytest.approx(main, abs=1e-9)
        special = {k.short_name: v for k, v in run.fix_special_errors().items()}
        assert 100 * e["dAP_special"]["false_positives"] == \
            pytest.approx(special["FalsePos"], abs=1e-9)
        assert 100 * e["dAP_special"]["false_negatives"] == \
            pytest.approx(special["FalseNeg"], abs=1e-9)
        assert min(e["counts"].values()) > 0 or t == "bbox"
