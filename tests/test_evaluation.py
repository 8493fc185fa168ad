"""evaluate.py and modeling.{scoring, scoring_checks, evaluation, eval_outputs}: hand-made
cases whose AP follows by reasoning, parity with plain pycocotools (equality, not closeness)
for both backends, the warnings, the CLI, and a tiny real model end to end."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.masks import mask_to_rle
from maskrcnn_toolkit.modeling import evaluation, scoring
from maskrcnn_toolkit.modeling.eval_outputs import write_outputs

ROOT = Path(__file__).resolve().parents[1]
H = W = 100


def square(x0, y0, size=40, h=H, w=W):
    m = np.zeros((h, w), np.uint8)
    m[y0:y0 + size, x0:x0 + size] = 1
    return m


def gt_ann(ann_id, image_id, cat, mask, iscrowd=0):
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {"id": ann_id, "image_id": image_id, "category_id": cat,
            "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
            "area": int(mask.sum()), "iscrowd": iscrowd, "segmentation": mask_to_rle(mask)}


def det(image_id, cat, mask, score):
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {"image_id": image_id, "category_id": cat, "score": score,
            "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
            "segmentation": mask_to_rle(mask)}


def dataset(n_images, anns, cats=("a", "b", "c", "d")):
    return {"images": [{"id": i, "width": W, "height": H, "file_name": f"{i}.png"}
                       for i in range(1, n_images + 1)],
            "annotations": anns,
            "categories": [{"id": k, "name": n} for k, n in enumerate(cats, start=1)]}


@pytest.fixture(scope="module")
def mixed_case():
    """a: perfect (img 1) + perfect (img 4) with a higher-scored detection inside a crowd
    region of img 4 (must be ignored); b: shifted by 11 px -> IoU 29/51 = 0.569, passes
    IoU 0.50 and 0.55 only; c: detected with the wrong class (a, img 3); d: no ground truth.
    """
    gt = dataset(4, [
        gt_ann(1, 1, 1, square(10, 10)),
        gt_ann(2, 2, 2, square(10, 10)),
        gt_ann(3, 3, 3, square(10, 10)),
        gt_ann(4, 4, 1, square(10, 10)),
        gt_ann(5, 4, 1, square(55, 55, 45), iscrowd=1),
    ])
    dets = [det(1, 1, square(10, 10), 0.9),
            det(2, 2, square(21, 10), 0.8),
            det(3, 1, square(10, 10), 0.7),   # wrong class: class a false positive
            det(4, 1, square(60, 60, 30), 0.95),  # inside the crowd region: ignored
            det(4, 1, square(10, 10), 0.85)]
    return gt, dets


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def plain_pycocotools(gt_path, dt_path, iou_type):
    """What a user of pycocotools alone gets: (12 stats, per-class AP/AP50/AP75)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(dt_path))
        E = COCOeval(gt, dt, iou_type)
        E.evaluate()
        E.accumulate()
        E.summarize()
    per_class = []
    for cat in E.params.catIds:  # pycocotools' own _summarize, restricted to one category
        k = E.params.catIds.index(cat)
        row = []
        for t in (slice(None), np.where(0.5 == E.params.iouThrs)[0],
                  np.where(0.75 == E.params.iouThrs)[0]):
            s = E.eval["precision"][t][:, :, k, 0, 2]
            row.append(-1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1])))
        per_class.append(row)
    return [float(x) for x in E.stats], per_class


def assert_identical_to_pycocotools(tmp_path, gt, dets, iou_types=scoring.IOU_TYPES):
    gt_path = write(tmp_path, "gt.json", gt)
    dt_path = write(tmp_path, "dt.json", dets)
    reports = {b: scoring.evaluate_files(gt_path, dt_path, iou_types, b) for b in scoring.BACKENDS}
    for t in iou_types:
        stats, per_class = plain_pycocotools(gt_path, dt_path, t)
        for b, r in reports.items():
            ours = [r.metrics[t][k] for k in scoring.STAT_KEYS]
            assert ours == stats, (b, t)  # equality to the last digit
            assert [[c["AP"], c["AP50"], c["AP75"]] for c in r.metrics[t]["per_class"]] \
                == per_class, (b, t)
    return reports


def classes(report, t="segm"):
    return {c["name"]: c for c in report.metrics[t]["per_class"]}


def test_hand_made_case_gives_the_ap_found_by_reasoning(tmp_path, mixed_case):
    gt, dets = mixed_case
    reports = assert_identical_to_pycocotools(tmp_path, gt, dets)
    r = reports["faster"]
    assert r.backend.startswith("faster-coco-eval ")
    assert reports["pycocotools"].backend.startswith("pycocotools ")
    for t in scoring.IOU_TYPES:
        c = classes(r, t)
        # a: two perfect matches; the crowd detection (highest score) is ignored, else the
        # first true positive would come at precision 1/2 and AP would be 2/3.
        assert c["a"]["AP"] == 1.0 and c["a"]["AP75"] == 1.0
        assert c["a"]["gt_instances"] == 2  # the crowd region is not an instance
        # b: IoU 29/51 = 0.569 passes 0.50 and 0.55 only -> 2 of 10 thresholds.
        assert c["b"]["AP"] == pytest.approx(0.2, abs=1e-12)
        # (pycocotools divides by tp + fp + eps: one true positive alone is 1 - 2e-16)
        assert (c["b"]["AP50"], c["b"]["AP75"]) == (pytest.approx(1.0, abs=1e-12), 0.0)
        assert c["c"]["AP"] == 0.0  # detected only as the wrong class
        assert c["d"]["AP"] == -1.0 and c["d"]["gt_instances"] == 0  # no data
        assert r.metrics[t]["AP"] == pytest.approx((1 + 0.2 + 0) / 3, abs=1e-12)
        assert r.metrics[t]["APs"] == -1.0 and r.metrics[t]["APl"] == -1.0
    assert any("no ground truth instance" in w and "'d'" in w for w in r.warnings)
    assert any("mask AP (segm) is 0 for classes 3 'c'" in w for w in r.warnings)


def test_perfect_detection_is_ap_one_and_says_so(tmp_path):
    gt = dataset(1, [gt_ann(1, 1, 1, square(10, 10))], cats=("a",))
    r = assert_identical_to_pycocotools(tmp_path, gt, [det(1, 1, square(10, 10), 0.5)])["faster"]
    # one true positive alone: pycocotools' precision 1 / (1 + eps) = 1 - 2.2e-16
    assert r.metrics["segm"]["AP"] == pytest.approx(1.0, abs=1e-12)
    assert r.metrics["bbox"]["AP"] == pytest.approx(1.0, abs=1e-12)
    assert any("is 1" in w and "copy of the ground truth" in w for w in r.warnings)


def test_wrong_class_everywhere_is_ap_zero_and_says_why(tmp_path):
    gt = dataset(1, [gt_ann(1, 1, 1, square(10, 10))], cats=("a", "b"))
    r = assert_identical_to_pycocotools(tmp_path, gt, [det(1, 2, square(10, 10), 0.5)])["faster"]
    assert r.metrics["segm"]["AP"] == 0.0
    assert any("is exactly 0" in w and "category ids" in w for w in r.warnings)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_scenes_identical_in_both_backends(tmp_path, seed):
    """Overlapping squares of all sizes, crowds, wrong classes, false positives, tied
    scores: the cases where pycocotools' arithmetic and faster-coco-eval's differ."""
    rng = np.random.default_rng(seed)
    anns, dets, aid = [], [], 1
    for img in range(1, 21):
        for _ in range(rng.integers(0, 5)):
            s = int(rng.integers(5, 60))
            x, y = (int(v) for v in rng.integers(0, W - s, 2))
            cat = int(rng.integers(1, 4))
            anns.append(gt_ann(aid, img, cat, square(x, y, s), iscrowd=int(rng.random() < .1)))
            aid += 1
            if rng.random() < 0.8:
                dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
                m = square(max(0, x + dx), max(0, y + dy), s)
                score = round(float(rng.random()), 1)  # ties across and within images
                dets.append(det(img, cat if rng.random() < .9 else 1, m, score))
        for _ in range(rng.integers(0, 3)):
            s = int(rng.integers(5, 40))
            x, y = (int(v) for v in rng.integers(0, W - s, 2))
            dets.append(det(img, int(rng.integers(1, 4)), square(x, y, s), float(rng.random())))
    assert_identical_to_pycocotools(tmp_path, dataset(20, anns, ("a", "b", "c")), dets)


def test_no_detections_scores_zero_in_both_backends(tmp_path):
    gt = dataset(1, [gt_ann(1, 1, 1, square(10, 10))], cats=("a",))
    gt_path, dt_path = write(tmp_path, "gt.json", gt), write(tmp_path, "dt.json", [])
    rs = [scoring.evaluate_files(gt_path, dt_path, backend=b) for b in scoring.BACKENDS]
    # plain pycocotools crashes on an empty results list (loadRes reads anns[0]).
    assert rs[0].metrics == rs[1].metrics
    assert rs[0].metrics["segm"]["AP"] == 0.0 and rs[0].metrics["bbox"]["AR100"] == 0.0
    assert any("no detections at all" in w for w in rs[0].warnings)


def test_warnings_name_each_suspicious_input(tmp_path):
    gt = dataset(1, [gt_ann(0, 1, 1, square(10, 10))], cats=("a", "b"))
    empty = det(1, 1, square(10, 10), 0.3)
    empty["segmentation"] = mask_to_rle(np.zeros((H, W), np.uint8))
    dets = [det(1, 1, square(10, 10), 0.9),
            det(7, 1, square(10, 10), 0.8),   # image 7 is not in the GT
            det(1, 9, square(10, 10), 0.7),   # category 9 is not in the GT
            empty]
    r = scoring.evaluate_files(write(tmp_path, "gt.json", gt), write(tmp_path, "dt.json", dets))
    text = "\n".join(r.warnings)
    assert "1 detections are on image ids that are not in the ground truth (ids 7)" in text
    assert "category ids that are not in the ground truth's categories (ids 9)" in text
    assert "1 detections have an empty mask ([3] image 1)" in text  # index in the file
    assert "annotation with id 0" in text
    assert "no ground truth instance: 2 'b'" in text
    assert r.counts["detections"] == 3  # the image-7 detection was left out
    saved = r.to_json()
    assert saved["warnings"] == r.warnings


def test_label_map_that_differs_from_the_ground_truth_warns():
    gt = dataset(1, [gt_ann(1, 1, 1, square(10, 10))], cats=("a", "b"))
    r = scoring.score(gt, [det(1, 1, square(10, 10), 0.9)], label_map_ids={1: "b", 2: "a"})
    assert any("the label map" in w and "differ" in w for w in r.warnings)
    gt = dataset(1, [gt_ann(1, 1, 1, square(10, 10))], cats=("a", "b"))
    r = scoring.score(gt, [det(1, 1, square(10, 10), 0.9)], label_map_ids={1: "a", 2: "b"})
    assert not any("the label map" in w for w in r.warnings)


def test_box_only_detections_for_segm_warn(tmp_path):
    gt = dataset(1, [gt_ann(1, 1, 1, square(10, 10))], cats=("a",))
    d = det(1, 1, square(10, 10), 0.9)
    del d["segmentation"]
    r = scoring.evaluate_files(write(tmp_path, "gt.json", gt), write(tmp_path, "dt.json", [d]))
    assert any("have only a 'bbox'" in w and "--iou-type bbox" in w for w in r.warnings)
    r = scoring.evaluate_files(tmp_path / "gt.json", tmp_path / "dt.json", ("bbox",))
    assert not any("only a 'bbox'" in w for w in r.warnings)


def test_mask_at_wrong_resolution_is_an_error_naming_the_detection(tmp_path):
    gt = dataset(1, [gt_ann(1, 1, 1, square(10, 10))], cats=("a",))
    d = det(1, 1, square(10, 10, h=50, w=50), 0.9)
    gt_p, dt_p = write(tmp_path, "gt.json", gt), write(tmp_path, "dt.json", [d])
    with pytest.raises(UserError, match=r"\[0\] image 1: RLE 50x50 vs image 100x100"):
        scoring.evaluate_files(gt_p, dt_p)
    # boxes alone do not use the mask
    assert scoring.evaluate_files(gt_p, dt_p, ("bbox",)).metrics["bbox"]["AP"] > 0.999


@pytest.mark.parametrize("gt_text, dt_text, match", [
    ("{not json", "[]", r"gt\.json: not valid JSON \(.* at line 1"),
    ("[]", "[]", r"gt\.json' is a JSON list.*swap"),
    ('{"images": [], "annotations": []}', "[]", r"has no 'categories' list"),
    (None, '{"x": 1}', r"dt\.json' is a JSON dict"),
    (None, '[{"image_id": 1, "category_id": 1}]', r"dt\.json': entry \[0\].*'score'"),
    (None, '[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2]}]', r"not \[x, y"),
])
def test_malformed_input_is_a_user_error_naming_the_file(tmp_path, gt_text, dt_text, match):
    good = dataset(1, [gt_ann(1, 1, 1, square(10, 10))], cats=("a",))
    (tmp_path / "gt.json").write_text(gt_text if gt_text is not None else json.dumps(good))
    (tmp_path / "dt.json").write_text(dt_text)
    with pytest.raises(UserError, match=match):
        scoring.evaluate_files(tmp_path / "gt.json", tmp_path / "dt.json")


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_cli_scores_files_and_writes_metrics(tmp_path, mixed_case):
    gt, dets = copy.deepcopy(mixed_case)
    gt_p, dt_p = write(tmp_path, "gt.json", gt), write(tmp_path, "dt.json", dets)
    out = tmp_path / "m" / "metrics.json"
    p = run_cli("--gt", gt_p, "--detections", dt_p, "--out", out)
    assert p.returncode == 0, p.stderr
    m = json.loads(out.read_text())
    assert set(m) >= {"segm", "bbox", "warnings", "backend"}
    assert set(m["segm"]) == set(scoring.STAT_KEYS) | {"per_class"}
    assert m["backend"].startswith("faster-coco-eval")
    # mixed_case worked by hand: classes a 1, b 0.2, c 0 (d has no ground truth)
    assert m["segm"]["AP"] == pytest.approx((1 + 0.2 + 0) / 3, abs=1e-12)
    assert [c["AP"] for c in m["segm"]["per_class"]] == pytest.approx([1, 0.2, 0, -1],
                                                                      abs=1e-12)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.400" \
        in p.stdout
    assert p.stdout.strip().splitlines()[-1].startswith("scored 5 detections on 4 images")
    # an existing output is refused without --overwrite
    p = run_cli("--gt", gt_p, "--detections", dt_p, "--out", out, "--backend", "pycocotools")
    assert p.returncode == 2 and "--overwrite" in p.stderr
    p = run_cli("--gt", gt_p, "--detections", dt_p, "--out", out, "--backend", "pycocotools",
                "--iou-type", "bbox", "--overwrite")
    assert p.returncode == 0, p.stderr
    m = json.loads(out.read_text())
    assert "segm" not in m and m["backend"].startswith("pycocotools")


def test_cli_bad_file_exits_2_without_traceback(tmp_path):
    (tmp_path / "gt.json").write_text("{oops")
    (tmp_path / "dt.json").write_text("[]")
    p = run_cli("--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json",
                "--out", tmp_path / "m.json")
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and "gt.json" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "m.json").exists()


def test_cli_reads_files_with_a_utf8_byte_order_mark(tmp_path, mixed_case):
    """Windows tools write a BOM; `convert` accepts such a file, so `evaluate.py --gt` must
    too, with the same numbers."""
    gt, dets = copy.deepcopy(mixed_case)
    metrics = {}
    for encoding in ("utf-8", "utf-8-sig"):
        folder = tmp_path / encoding
        folder.mkdir()
        (folder / "gt.json").write_text(json.dumps(gt), encoding=encoding)
        (folder / "dt.json").write_text(json.dumps(dets), encoding=encoding)
        p = run_cli("--gt", folder / "gt.json", "--detections", folder / "dt.json",
                    "--out", folder / "m.json")
        assert p.returncode == 0, p.stderr
        metrics[encoding] = json.loads((folder / "m.json").read_text())
    assert (tmp_path / "utf-8-sig" / "gt.json").read_bytes().startswith(b"\xef\xbb\xbf")
    assert (tmp_path / "utf-8-sig" / "dt.json").read_bytes().startswith(b"\xef\xbb\xbf")
    plain, bom = metrics["utf-8"], metrics["utf-8-sig"]
    for key in ("segm", "bbox", "counts", "warnings"):
        assert bom[key] == plain[key], key
    assert plain["segm"]["AP"] == pytest.approx(0.4, abs=1e-12)  # the file was really scored


def test_cli_gt_path_imports_no_tensorflow(tmp_path, mixed_case):
    """Start-up is part of what a user waits for: --gt/--detections must not pay for
    TensorFlow (seconds) or Model Garden."""
    gt, dets = copy.deepcopy(mixed_case)
    gt_p, dt_p = write(tmp_path, "gt.json", gt), write(tmp_path, "dt.json", dets)
    code = ("import sys, evaluate; rc = evaluate.main(sys.argv[1:]); "
            "print('heavy:', sorted(m for m in ('tensorflow', 'tf_keras', 'official') "
            "if m in sys.modules)); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, "--gt", str(gt_p), "--detections",
                        str(dt_p), "--out", str(tmp_path / "m.json")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "heavy: []"


def test_cli_ctrl_c_exits_130_in_one_line_and_writes_nothing(tmp_path):
    """A real SIGINT-style KeyboardInterrupt (``_thread.interrupt_main``) raised while the
    CLI is scoring a few thousand instances."""
    rng = np.random.default_rng(0)
    anns, dets = [], []
    for img in range(1, 401):
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, 60, 2))
            anns.append(gt_ann(len(anns) + 1, img, int(rng.integers(1, 4)), square(x, y, 30)))
            dets.append(det(img, anns[-1]["category_id"], square(x + 1, y, 30),
                            float(rng.random())))
    gt_p = write(tmp_path, "gt.json", dataset(400, anns, ("a", "b", "c")))
    dt_p = write(tmp_path, "dt.json", dets)
    out = tmp_path / "m.json"
    code = ("import _thread, sys, threading, evaluate\n"
            # imports done, so the interrupt lands in the work
            "import maskrcnn_toolkit.modeling.eval_outputs, maskrcnn_toolkit.modeling.scoring\n"
            "threading.Timer(0.3, _thread.interrupt_main).start()\n"
            "sys.exit(evaluate.main(sys.argv[1:]))\n")
    p = subprocess.run([sys.executable, "-c", code, "--gt", str(gt_p), "--detections",
                        str(dt_p), "--out", str(out), "--backend", "pycocotools"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 130, (p.returncode, p.stderr[-2000:])
    assert p.stderr.strip().splitlines() == ["interrupted: no output was left half-written"]
    assert not out.exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dt.json", "gt.json"]


def test_model_outputs_replace_old_images_and_survive_a_failure(tmp_path):
    out = tmp_path / "eval"
    (out / "images").mkdir(parents=True)
    (out / "images" / "99.png").write_bytes(b"stale")
    report = scoring.EvalReport({}, [], "x", {})
    picture = np.zeros((4, 4, 3), np.uint8)
    write_outputs(out, "[]", report, [(1, picture), (2, picture)])
    assert sorted(p.name for p in (out / "images").iterdir()) == ["1.png", "2.png"]
    assert json.loads((out / "detections.json").read_text()) == []
    assert json.loads((out / "metrics.json").read_text())["backend"] == "x"
    # A picture that cannot be saved (PIL refuses float64 RGB) fails the whole write: the
    # previous outputs stay as they were and no temporary is left behind.
    with pytest.raises(TypeError):
        write_outputs(out, "[1]", scoring.EvalReport({}, [], "y", {}),
                          [(3, picture), (4, np.zeros((4, 4, 3)))])
    assert sorted(p.name for p in (out / "images").iterdir()) == ["1.png", "2.png"]
    assert (out / "detections.json").read_text() == "[]"
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "images",
                                                      "metrics.json"]


def test_export_made_with_other_classes_is_refused(tmp_path):
    """An export's own label map must be the run's: otherwise its class ids would be scored
    under the run's names, silently wrong."""
    from maskrcnn_toolkit.core.label_map import LabelMap, write_label_map
    from tests.fixtures.model import make_tiny_dataset, write_tiny_config
    data = make_tiny_dataset(tmp_path / "data")  # classes 1 box, 2 disc
    config = write_tiny_config(tmp_path, data, tmp_path / "run")
    export = tmp_path / "export"
    export.mkdir()
    write_label_map(export / "label_map.pbtxt", LabelMap.from_names(["bolt", "nut"]))
    with pytest.raises(UserError, match=r"other classes.*export[/\\]label_map\.pbtxt.*"
                       r"\{1: 'bolt', 2: 'nut'\}.*\{1: 'box', 2: 'disc'\}"):
        evaluation.evaluate_model(config, model=export, show_progress=False)
    # metadata.json's classes are used when there is no label_map.pbtxt
    (export / "label_map.pbtxt").unlink()
    (export / "metadata.json").write_text(json.dumps({"classes": {"1": "disc", "2": "box"}}))
    with pytest.raises(UserError, match=r"metadata\.json' has \{1: 'disc', 2: 'box'\}"):
        evaluation.evaluate_model(config, model=export, show_progress=False)
    assert not (tmp_path / "run" / "eval").exists()


# ------------------------------------------------------------------- the tiny real model

def _mask_iou(a: dict, b: dict) -> float:
    from pycocotools import mask as mask_utils
    return float(mask_utils.iou([a], [b], [0])[0][0])


@pytest.mark.slow
def test_tiny_model_end_to_end_checkpoint_and_export_agree(tiny_run, tiny_export, tmp_path):
    """evaluate.py --config --model on the tiny trained run's export, then the run's
    checkpoint in memory with the export's pre-NMS threshold: the same detections (the AP
    of a 2-step model is ~0, so comparing APs could not fail)."""
    from tests.fixtures.export import TINY_SCORE_THRESHOLD
    config = tiny_run.config_path
    out = tmp_path / "eval_cli"
    scalars = Path(tiny_run.run_dir) / "eval"
    events_before = set(scalars.glob("events.out.tfevents.*"))
    p = run_cli("--config", config, "--max-images", 4, "--out", out, "--model", tiny_export,
                "--iou-type", "segm")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1].startswith("scored ")
    m = json.loads((out / "metrics.json").read_text())
    assert "bbox" not in m and set(scoring.STAT_KEYS) <= set(m["segm"])  # --iou-type honoured
    assert m["source"].startswith(f"export {tiny_export}")
    meta = json.loads((Path(tiny_export) / "metadata.json").read_text())
    assert m["step"] == evaluation._checkpoint_step(meta["checkpoint"]) > 0
    exported = json.loads((out / "detections.json").read_text())
    gt = json.loads((Path(tiny_run.data_dir) / "val_annotations.json").read_text())
    sizes = {im["id"]: [im["height"], im["width"]] for im in gt["images"]}
    assert exported, "the tiny export found nothing: the comparison below would be empty"
    assert all(r["segmentation"]["size"] == sizes[r["image_id"]] for r in exported)
    assert all(r["category_id"] in tiny_run.label_map.ids for r in exported)
    assert list((out / "images").glob("*.png"))
    # the report, with the run's section (training scalars, the dataset's health)
    assert p.stdout.strip().splitlines()[-2] == f"report: {out / 'report.html'} (open it in " \
        "a browser)"
    page = (out / "report.html").read_text()
    assert "id=run>" in page and "id=galleries>" in page and "id=curves>" in page
    assert 'alt="training"' in page  # the tiny run's loss curves
    assert [r["name"] for r in m["analysis"]["segm"]["per_class"]] == \
        list(tiny_run.label_map.names_by_id.values())
    # TensorBoard scalars go to the run directory, whatever --out is.
    assert not list(out.glob("events.out.tfevents.*"))
    assert set(scalars.glob("events.out.tfevents.*")) - events_before

    rep, _ = evaluation.evaluate_model(config, max_images=4, out=tmp_path / "eval_ckpt",
                               show_progress=False,
                               pre_nms_score_threshold=TINY_SCORE_THRESHOLD)
    assert rep.extras["source"].startswith("checkpoint ")
    assert set(rep.metrics) == {"segm", "bbox"}
    in_memory = json.loads((tmp_path / "eval_ckpt" / "detections.json").read_text())
    assert len(in_memory) == len(exported)
    # detections.json rounds boxes to 0.01 px and scores to 1e-5 (Detections.to_coco): two
    # runs that agree to 1e-3 px / 1e-5 differ there by at most one rounding step. Pairs are
    # matched per image (near-tied scores may come out in either order).
    unmatched = list(in_memory)
    for a in exported:
        match = next((b for b in unmatched if b["image_id"] == a["image_id"]
                      and b["category_id"] == a["category_id"]
                      and abs(a["score"] - b["score"]) <= 1e-5 + 1e-9
                      and np.abs(np.subtract(a["bbox"], b["bbox"])).max() <= 0.01 + 1e-9),
                     None)
        assert match is not None, f"export detection {a} has no in-memory counterpart"
        unmatched.remove(match)
        if a["segmentation"] != match["segmentation"]:
            assert _mask_iou(a["segmentation"], match["segmentation"]) >= 0.95
    assert not unmatched
