"""export.py / modeling.exporting: the SavedModel, the OD API-style frozen graph, atomicity.

All on the real tiny Model Garden Mask R-CNN export (``tiny_export``, tests/fixtures/export.py)
with a low pre-NMS threshold so the comparisons have detections to compare.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import read_label_map
from maskrcnn_toolkit.core.masks import paste_box_masks
from tests.conftest import ROOT
from tests.fixtures.export import TINY_SCORE_THRESHOLD

pytestmark = pytest.mark.slow
OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections",
           "detection_masks")


def sample_image(h=100, w=150, seed=0) -> np.ndarray:
    """Not the model's 128x128 input size, so resizing back to input pixels is exercised."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 40, np.uint8)
    img[10:50, 20:70] = (200, 60, 60)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - 70) ** 2 + (xx - 110) ** 2 < 20 ** 2] = (60, 200, 60)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def saved(tiny_export_predictor):
    return tiny_export_predictor._backend.loaded  # the loaded SavedModel, shared


@pytest.fixture(scope="module")
def saved_out(saved):
    import tensorflow as tf
    out = saved.signatures["image_tensor"](images=tf.constant(sample_image()[None]))
    return {k: v.numpy() for k, v in out.items()}


def run_frozen_tf1(pb_path, image):
    """Exactly what TF1 OD API tutorials do with frozen_inference_graph.pb."""
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    with open(pb_path, "rb") as f:
        graph_def.ParseFromString(f.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run({k: f"{k}:0" for k in OUTPUTS}, feed_dict={"image_tensor:0": image[None]})


def test_layout_and_metadata(tiny_export, tiny_export_model):
    assert sorted(p.name for p in tiny_export.iterdir()) == [
        "frozen_graph.pb", "label_map.pbtxt", "metadata.json", "saved_model"]
    meta = json.loads((tiny_export / "metadata.json").read_text())
    label_map = tiny_export_model[1].label_map
    assert meta["classes"] == {str(i): n for i, n in label_map.names_by_id.items()}
    assert read_label_map(tiny_export / "label_map.pbtxt") == label_map
    assert meta["input_size"] == [128, 128]
    assert meta["score_threshold"] == pytest.approx(TINY_SCORE_THRESHOLD)
    assert meta["versions"]["tensorflow"].startswith("2.")
    assert meta["tensors"]["frozen_graph"]["outputs"]["detection_boxes:0"]["order"] == \
        "ymin, xmin, ymax, xmax"
    assert meta["mask_size"] == [28, 28]
    checkpoint = tiny_export_model[2]
    assert checkpoint and meta["checkpoint"] == checkpoint


def test_saved_model_outputs_are_final(tiny_export, saved, saved_out):
    assert {"serving_default", "image_tensor", "encoded_image"} <= set(saved.signatures)
    out = saved_out
    n = int(out["num_detections"][0])
    assert n > 0, "the tiny model must produce detections (low pre-NMS threshold)"
    assert out["detection_boxes"].dtype == np.float32 and out["detection_boxes"].shape[2] == 4
    assert out["detection_classes"].dtype == np.int32
    assert out["num_detections"].dtype == np.int32
    assert out["detection_masks"].dtype == np.uint8
    assert out["detection_masks"].shape[2:] == (100, 150)  # full input-image size
    assert set(np.unique(out["detection_masks"])) <= {0, 1}
    boxes = out["detection_boxes"][0, :n]  # (ymin, xmin, ymax, xmax) input-image pixels
    assert (boxes >= 0).all()
    assert (boxes[:, [0, 2]] <= 100).all() and (boxes[:, [1, 3]] <= 150).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert set(out["detection_classes"][0, :n].tolist()) <= set(
        read_label_map(tiny_export / "label_map.pbtxt").ids)
    scores = out["detection_scores"][0, :n]
    assert (np.diff(scores) <= 1e-6).all() and (scores >= TINY_SCORE_THRESHOLD).all()
    # Masks live inside their boxes (pasted, not a 28x28 box-relative grid).
    k = int(np.argmax(out["detection_masks"][0, :n].sum(axis=(1, 2))))
    ys, xs = np.nonzero(out["detection_masks"][0, k])
    y0, x0, y1, x1 = boxes[k]
    assert ys.min() >= np.floor(y0) - 1 and ys.max() <= np.ceil(y1) + 1
    assert xs.min() >= np.floor(x0) - 1 and xs.max() <= np.ceil(x1) + 1


def test_encoded_image_signature_agrees(saved, saved_out):
    import tensorflow as tf
    buf = io.BytesIO()
    Image.fromarray(sample_image()).save(buf, "PNG")  # lossless: the same pixels
    out = saved.signatures["encoded_image"](encoded_images=tf.constant([buf.getvalue()]))
    for k in OUTPUTS:
        np.testing.assert_array_equal(out[k].numpy(), saved_out[k], err_msg=k)


def test_frozen_graph_is_an_od_api_drop_in(tiny_export, saved_out):
    fo = run_frozen_tf1(tiny_export / "frozen_graph.pb", sample_image())
    assert fo["detection_classes"].dtype == np.float32 and fo["num_detections"].dtype == np.float32
    n = int(fo["num_detections"][0])
    assert n == int(saved_out["num_detections"][0]) > 0
    np.testing.assert_allclose(fo["detection_scores"][0, :n], saved_out["detection_scores"][0, :n],
                               atol=1e-5)
    boxes_px = fo["detection_boxes"][0, :n] * np.array([100, 150, 100, 150], np.float32)
    np.testing.assert_allclose(boxes_px, saved_out["detection_boxes"][0, :n], atol=1e-3)
    assert (fo["detection_boxes"] >= 0).all() and (fo["detection_boxes"] <= 1).all()
    np.testing.assert_array_equal(fo["detection_classes"][0, :n],
                                  saved_out["detection_classes"][0, :n].astype(np.float32))
    # The usual OD API reframing of the box-relative masks gives the SavedModel's masks,
    # except for float32 rounding ties: a probability within 1e-4 of the 0.5 threshold, or a
    # pixel whose sampling point falls exactly on the mask's edge (a box touching the image
    # border), which TF's crop_and_resize and numpy may round to opposite sides.
    assert fo["detection_masks"].shape[2:] == (28, 28)
    nboxes = fo["detection_boxes"][0, :n]  # (ymin, xmin, ymax, xmax) normalized
    probs = od_api_reframe(fo["detection_masks"][0, :n], nboxes, 100, 150)
    # Predictor's numpy paste of these masks is that reframing > 0.5 exactly.
    np.testing.assert_array_equal(
        paste_box_masks(fo["detection_masks"][0, :n], nboxes, 100, 150), probs > 0.5)
    full = saved_out["detection_masks"][0, :n].astype(bool)
    assert full.sum() > 0
    k, y, x = np.nonzero((probs > 0.5) != full)
    ry = (y / 99 - nboxes[k, 0]) / np.maximum(nboxes[k, 2] - nboxes[k, 0], 1e-12) * 27
    rx = (x / 149 - nboxes[k, 1]) / np.maximum(nboxes[k, 3] - nboxes[k, 1], 1e-12) * 27
    tie = ((np.abs(probs[k, y, x] - 0.5) < 1e-4) | (np.abs(ry) < 1e-3) | (np.abs(ry - 27) < 1e-3)
           | (np.abs(rx) < 1e-3) | (np.abs(rx - 27) < 1e-3))
    assert tie.all(), f"{(~tie).sum()} mask pixels differ beyond rounding"
    assert len(k) <= 1e-3 * full.size


def test_box_masks_signature_pastes_to_image_tensor(saved, saved_out):
    """``image_tensor_box_masks`` = ``image_tensor`` with the masks not yet pasted: the
    same boxes, scores, classes and count, and pasting its box-relative masks in numpy
    (what Predictor does) gives ``image_tensor``'s masks pixel for pixel."""
    import tensorflow as tf
    out = saved.signatures["image_tensor_box_masks"](images=tf.constant(sample_image()[None]))
    out = {k: v.numpy() for k, v in out.items()}
    n = int(saved_out["num_detections"][0])
    assert n > 0 and out["detection_masks"].shape == (1, n, 28, 28)
    assert out["detection_masks"].dtype == np.float32
    for k in OUTPUTS:
        if k != "detection_masks":
            assert out[k].dtype == saved_out[k].dtype, k
            np.testing.assert_array_equal(out[k], saved_out[k], err_msg=k)
    boxes_yxyx_norm = out["detection_boxes"][0] / np.array([100, 150, 100, 150], np.float32)
    pasted = paste_box_masks(out["detection_masks"][0], boxes_yxyx_norm, 100, 150)
    full = saved_out["detection_masks"][0].astype(bool)
    assert full.sum() > 0
    np.testing.assert_array_equal(pasted, full)


def od_api_reframe(box_masks, boxes_yxyx_norm, height, width):
    """The OD API's ``reframe_box_masks_to_image_masks`` (ops/utils), the reference."""
    import tensorflow as tf
    y0, x0, y1, x1 = tf.unstack(tf.constant(boxes_yxyx_norm, tf.float32), axis=1)
    bh, bw = tf.maximum(y1 - y0, 1e-12), tf.maximum(x1 - x0, 1e-12)
    unit = tf.stack([-y0 / bh, -x0 / bw, (1.0 - y0) / bh, (1.0 - x0) / bw], axis=1)
    return tf.image.crop_and_resize(tf.constant(box_masks, tf.float32)[..., None], unit,
                                    tf.range(len(box_masks)), [height, width],
                                    extrapolation_value=0.0)[..., 0].numpy()


@pytest.mark.parametrize("height,width", [(100, 150), (480, 640), (1, 37), (23, 1)])
def test_paste_box_masks_binary_equals_od_api_reframing(height, width):
    """The windowed pastes, in-graph and numpy (Predictor's), give exactly the pixels of
    crop_and_resize at full size > 0.5: both repeat the kernel's float32 operations."""
    import tensorflow as tf

    from maskrcnn_toolkit.modeling.exporting import paste_box_masks_binary
    rng = np.random.default_rng(height)
    k = 60
    corners = np.sort(rng.uniform(-0.1, 1.1, (k, 2, 2)), axis=1).clip(0, 1)
    boxes_yxyx_norm = np.concatenate([corners[:, 0], corners[:, 1]], axis=1).astype(np.float32)
    boxes_yxyx_norm[0] = [0, 0, 1, 1]                      # the whole image
    boxes_yxyx_norm[1] = [0.5, 0.5, 0.5, 0.5]              # degenerate (the 1e-12 guard)
    boxes_yxyx_norm[2] = [0.2, 0.3, 0.2 + 1 / height, 0.3 + 1 / width]  # about one pixel
    boxes_yxyx_norm[3] = [0.9, 0.0, 1.0, 0.05]             # touching two image edges
    boxes_yxyx_norm[4] = [0.0, 0.0, 0.0, 0.0]              # a zero padding row
    masks = rng.uniform(0, 1, (k, 28, 28)).astype(np.float32)
    masks[5] = 0.5                               # exactly the threshold everywhere
    got = paste_box_masks_binary(tf.constant(masks), tf.constant(boxes_yxyx_norm),
                                 tf.constant(height), tf.constant(width)).numpy()
    assert got.dtype == np.uint8 and got.shape == (k, height, width)
    want = od_api_reframe(masks, boxes_yxyx_norm, height, width) > 0.5
    assert want.sum() > 0
    np.testing.assert_array_equal(got.astype(bool), want)
    pasted = paste_box_masks(masks, boxes_yxyx_norm, height, width)
    assert pasted.dtype == bool
    np.testing.assert_array_equal(pasted, want)
    empty = paste_box_masks_binary(tf.zeros([0, 28, 28]), tf.zeros([0, 4]),
                                   tf.constant(height), tf.constant(width))
    assert empty.shape == (0, height, width) and empty.dtype == tf.uint8


def test_load_detector_matches_export(tiny_export_model, tiny_export, saved_out):
    from maskrcnn_toolkit.modeling.exporting import detector_from_model
    model, run, _ = tiny_export_model
    det = detector_from_model(model, run.experiment, run.label_map, score_threshold=0.0,
                              pre_nms_score_threshold=TINY_SCORE_THRESHOLD)(sample_image())
    n = int(saved_out["num_detections"][0])
    assert len(det) == n
    np.testing.assert_allclose(det.boxes_yxyx_px, saved_out["detection_boxes"][0, :n], atol=1e-3)
    np.testing.assert_allclose(det.scores, saved_out["detection_scores"][0, :n], atol=1e-5)
    assert det.class_names[0] in run.label_map.names
    assert (det.masks != saved_out["detection_masks"][0, :n].astype(bool)).mean() < 1e-3


def test_cli_exports_with_one_summary_line(tiny_export_cli, tiny_run):
    """``tiny_export`` is export.py's own output (tests/fixtures/export.py): its exit status
    and its one line, whose sizes and threshold are the export's."""
    out, r = tiny_export_cli
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    m = re.fullmatch(rf"exported {len(tiny_run.label_map)} classes in \d+ s to "
                     rf"{re.escape(str(out))}: saved_model/ ([\d.]+) MB, frozen_graph.pb "
                     rf"([\d.]+) MB, score threshold 0.0001", lines[0])
    assert m, lines[0]
    saved_mb = sum(f.stat().st_size for f in (out / "saved_model").rglob("*") if f.is_file())
    assert float(m[1]) == round(saved_mb / 1e6, 1) > 0
    assert float(m[2]) == round((out / "frozen_graph.pb").stat().st_size / 1e6, 1) > 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["config"] == str(tiny_run.config_path)


def test_ctrl_c_prints_one_line_exits_130_and_leaves_no_folder(tiny_export_model, tmp_path,
                                                               monkeypatch, capsys):
    """export.py's main() on Ctrl-C midway (after the SavedModel is written into the
    temporary folder): one line on stderr, exit 130, no DIR and no temporary left."""
    import maskrcnn_toolkit.modeling.exporting as exporting
    from maskrcnn_toolkit import export as export_cli
    model, run, checkpoint = tiny_export_model
    # The session's already restored model instead of building a second one.
    monkeypatch.setattr(exporting, "_build_and_restore", lambda run, ckpt: (model, checkpoint))

    def ctrl_c(module):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporting, "freeze", ctrl_c)
    out = tmp_path / "out"
    assert export_cli.main(["--config", str(run.config_path), "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("interrupted: no export written") and str(out) in captured.err
    assert captured.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_refused(tiny_export, tmp_path):
    from maskrcnn_toolkit.modeling.exporting import export_model
    before = sorted(p.name for p in tiny_export.iterdir())
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        export_model(None, None, None, tiny_export)
    assert sorted(p.name for p in tiny_export.iterdir()) == before
    # The CLI refuses before building anything: exit 2, "error: ..." on stderr.
    (tmp_path / "cfg.yaml").write_text("data: x\nrun_dir: y\n")
    r = subprocess.run([sys.executable, str(ROOT / "export.py"), "--config",
                        str(tmp_path / "cfg.yaml"), "--out", str(tiny_export)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("error: export folder") and "--overwrite" in r.stderr
