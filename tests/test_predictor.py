"""inference.Predictor on the three kinds of model it recognizes, and its errors.

Two hand-made models with known outputs (a TF1 frozen graph with the OD API's tensor names,
a tf.Module SavedModel with the OD API's exporter_main_v2 signature) give exact expected
Detections, masks included: those are computed by hand here (``hand_mask``), not with
``core.masks.paste_box_masks``, which the code under test uses. The real tiny export checks
our own SavedModel and frozen graph.
"""
from __future__ import annotations

import copy
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import LabelMap, read_label_map, write_label_map
from maskrcnn_toolkit.inference.images import load_image
from maskrcnn_toolkit.inference.predictor import Predictor

# Known OD API-style outputs: normalized boxes, float classes, box-relative 4x4 masks.
# Box edges fall between the pixel sampling points of the test sizes (see hand_mask).
BOXES_YXYX_NORM = np.array([[0.11, 0.215, 0.51, 0.615], [0.505, 0.505, 0.905, 0.905], [0, 0, 0, 0]],
                 np.float32)
SCORES = np.array([0.9, 0.3, 0.0], np.float32)
CLASSES = np.array([1.0, 2.0, 0.0], np.float32)
BOX_MASKS = np.zeros((3, 4, 4), np.float32)
BOX_MASKS[0] = 1.0  # the whole box
BOX_MASKS[1, :, :2] = 1.0  # the left half of the box
LABELS = LabelMap({1: "bolt", 2: "nut"})


def od_outputs(tf, image, with_masks=True, known=None):
    """``known``: (boxes normalized (ymin, xmin, ymax, xmax), scores, classes, box masks,
    num) instead of the constants above."""
    boxes, scores, classes, box_masks, num = known or (BOXES_YXYX_NORM, SCORES, CLASSES,
                                                       BOX_MASKS, 2)
    b = tf.shape(image)[0]

    def tile(x):
        x = tf.constant(x)[None]
        return tf.tile(x, tf.concat([[b], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
    out = {"detection_boxes": tile(boxes), "detection_scores": tile(scores),
           "detection_classes": tile(classes),
           "num_detections": tf.fill([b], tf.constant(float(num)))}
    if with_masks:
        out["detection_masks"] = tile(box_masks)
    return out


def write_tf1_graph(path, names=True, with_masks=True, known=None):
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [None, None, None, 3],
                                         name="image_tensor" if names else "x")
        for k, v in od_outputs(tf, image, with_masks, known).items():
            tf.identity(v, name=k if names else "y_" + k)
    path.write_bytes(g.as_graph_def().SerializeToString())
    return path


@pytest.fixture(scope="module")
def tf1_graph(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "mask_rcnn_tiny_coco"
    folder.mkdir()
    return write_tf1_graph(folder / "frozen_inference_graph.pb").parent


@pytest.fixture(scope="module")
def odapi_saved_model(tmp_path_factory):
    """The layout exporter_main_v2.py writes: OUT/saved_model/saved_model.pb + pipeline.config."""
    import tensorflow as tf

    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8,
                                                    name="input_tensor")])
        def __call__(self, input_tensor):
            return od_outputs(tf, input_tensor)

    out = tmp_path_factory.mktemp("odapi") / "exported"
    m = Detector()
    tf.saved_model.save(m, str(out / "saved_model"),
                        signatures={"serving_default": m.__call__.get_concrete_function()})
    (out / "pipeline.config").write_text("model { faster_rcnn { num_classes: 2 } }\n")
    return out


def hand_mask(box_yxyx_norm, h, w, left_fraction=1.0):
    """The OD API's pasting (``reframe_box_masks_to_image_masks``: crop_and_resize samples
    pixel (i, j) at the normalized image point (i / (h - 1), j / (w - 1))) worked out by
    hand for our two box-relative masks: all ones covers exactly the pixels whose sampling
    point lies in the box; ones in the left 2 of 4 columns interpolate to > 0.5 up to the
    middle of the box (column 1.5 of 0..3), so ``left_fraction`` 0.5."""
    y0, x0, y1, x1 = (float(v) for v in box_yxyx_norm)
    ys, xs = np.arange(h) / (h - 1), np.arange(w) / (w - 1)
    xe = x0 + left_fraction * (x1 - x0)
    # No sampling point on an edge, where float rounding could go either way.
    assert min(np.abs(ys[:, None] - [y0, y1]).min(), np.abs(xs[:, None] - [x0, xe]).min()) > 1e-3
    rows = (ys >= y0) & (ys <= y1)
    cols = (xs >= x0) & (xs <= xe)
    return rows[:, None] & cols[None, :]


def expected_masks(h, w):
    return np.stack([hand_mask(BOXES_YXYX_NORM[0], h, w), hand_mask(BOXES_YXYX_NORM[1], h, w, 0.5)])


def check_known(det, h, w, names=("bolt", "nut")):
    assert len(det) == 2 and det.image_size == (h, w)
    np.testing.assert_allclose(det.boxes_yxyx_px, BOXES_YXYX_NORM[:2] * [h, w, h, w], atol=1e-4)
    np.testing.assert_allclose(det.scores, SCORES[:2])
    assert det.class_ids.tolist() == [1, 2] and det.class_names == list(names)
    assert det.masks.dtype == bool and det.masks.shape == (2, h, w)
    np.testing.assert_array_equal(det.masks, expected_masks(h, w))
    if (h, w) != (51, 101):
        return
    # Pixel by pixel at 51 x 101: the first mask fills rows i/50 in [0.11, 0.51] (6..25) and
    # columns j/100 in [0.215, 0.615] (22..61); the second, rows i/50 in [0.505, 0.905]
    # (26..45) and the left half of its columns, j/100 in [0.505, 0.705] (51..70).
    for m, (r0, r1, c0, c1) in zip(det.masks, [(6, 25, 22, 61), (26, 45, 51, 70)]):
        want = np.zeros((h, w), bool)
        want[r0:r1 + 1, c0:c1 + 1] = True
        np.testing.assert_array_equal(m, want)


def test_tf1_frozen_graph_folder(tf1_graph):
    p = Predictor(tf1_graph, label_map=LABELS, score_threshold=0.0)
    assert p.kind == "frozen_graph"
    check_known(p(np.zeros((51, 101, 3), np.uint8)), 51, 101)


def test_tf1_frozen_graph_file_threshold_classes_and_unknown_names(tf1_graph):
    pb = tf1_graph / "frozen_inference_graph.pb"
    img = np.zeros((51, 101, 3), np.uint8)
    assert len(Predictor(pb, label_map=LABELS)(img)) == 1  # default threshold 0.5
    det = Predictor(pb, label_map=LABELS, score_threshold=0.0, classes=["nut"])(img)
    assert det.class_names == ["nut"]
    det = Predictor(pb, score_threshold=0.0)(img)  # no label map anywhere
    assert det.class_names == ["class_1", "class_2"]
    with pytest.raises(UserError, match="not in the label map"):
        Predictor(pb, label_map=LABELS, classes=["washer"])


def test_class_names_without_a_label_map_are_refused_ids_work(tf1_graph):
    pb = tf1_graph / "frozen_inference_graph.pb"
    with pytest.raises(UserError) as e:
        Predictor(pb, classes=["person", 2])  # no label map given, none beside the model
    msg = str(e.value)
    assert "['person']" in msg and str(pb) in msg and "label map" in msg and "ids" in msg
    img = np.zeros((51, 101, 3), np.uint8)
    assert Predictor(pb, score_threshold=0.0, classes=[2])(img).class_ids.tolist() == [2]
    assert Predictor(pb, score_threshold=0.0, classes=["1"])(img).class_ids.tolist() == [1]


def many_detections(n=100, seed=0):
    """OD API-style outputs of a detector that returns ``n`` rows, most of them low scores
    (as OD API models do): random boxes, descending scores, classes 1 and 2 alternating,
    random 8x8 box-relative mask probabilities."""
    rng = np.random.default_rng(seed)
    corners = np.sort(rng.uniform(0, 1, (n, 2, 2)), axis=1)  # [n, (min, max), (y, x)]
    boxes = np.concatenate([corners[:, 0], corners[:, 1]], axis=1).astype(np.float32)
    scores = np.linspace(0.99, 0.01, n).astype(np.float32)
    classes = np.where(np.arange(n) % 2 == 0, 1.0, 2.0).astype(np.float32)
    return boxes, scores, classes, rng.uniform(0, 1, (n, 8, 8)).astype(np.float32), n


def test_filters_before_pasting_and_gets_what_pasting_everything_gets(tmp_path, monkeypatch):
    import maskrcnn_toolkit.inference.predictor as predictor_module
    pb = write_tf1_graph(tmp_path / "many.pb", known=many_detections())
    pasted = []

    def counting_paste(box_masks, boxes_yxyx_norm, height, width):  # the real paste, rows counted
        pasted.append(len(box_masks))
        return paste_real(box_masks, boxes_yxyx_norm, height, width)
    paste_real = predictor_module.paste_box_masks
    monkeypatch.setattr(predictor_module, "paste_box_masks", counting_paste)
    img = np.zeros((60, 80, 3), np.uint8)
    everything = Predictor(pb, label_map=LABELS, score_threshold=0.0)(img)
    assert sum(pasted) == 100 and len(everything) == 100
    for threshold, classes in [(0.9, None), (0.9, ["nut"]), (0.5, [1]), (1.0, None)]:
        pasted.clear()
        det = Predictor(pb, label_map=LABELS, score_threshold=threshold, classes=classes)(img)
        want = everything.filter(threshold, classes)  # paste all, then filter
        assert sum(pasted) == len(want), (threshold, classes, pasted)  # kept rows only
        np.testing.assert_array_equal(det.boxes_yxyx_px, want.boxes_yxyx_px)
        np.testing.assert_array_equal(det.scores, want.scores)
        np.testing.assert_array_equal(det.class_ids, want.class_ids)
        assert det.class_names == want.class_names
        np.testing.assert_array_equal(det.masks, want.masks)
    assert len(want) == 0 and det.masks.shape == (0, 60, 80)


def test_odapi_saved_model(odapi_saved_model, tmp_path):
    lm = tmp_path / "label_map.pbtxt"
    write_label_map(lm, LABELS)
    p = Predictor(odapi_saved_model, label_map=str(lm), score_threshold=0.0)
    assert p.kind == "odapi_saved_model"
    check_known(p(np.zeros((51, 101, 3), np.uint8)), 51, 101)
    # Batch-1 signature: a batch runs one image at a time, sizes may differ.
    dets = p.predict_batch([np.zeros((51, 101, 3), np.uint8), np.zeros((40, 30, 3), np.uint8),
                            np.zeros((51, 101, 3), np.uint8)])
    assert [d.image_size for d in dets] == [(51, 101), (40, 30), (51, 101)]
    check_known(dets[1], 40, 30)
    # The saved_model folder itself works too.
    assert Predictor(odapi_saved_model / "saved_model").kind == "odapi_saved_model"


def test_folder_with_saved_model_and_frozen_graph(odapi_saved_model, tmp_path):
    """A TF1 model-zoo folder ships saved_model/ and frozen_inference_graph.pb: the frozen
    graph loads. Our export's saved_model/ + frozen_graph.pb loads the SavedModel."""
    zoo = tmp_path / "mask_rcnn_zoo"
    shutil.copytree(odapi_saved_model / "saved_model", zoo / "saved_model")
    write_tf1_graph(zoo / "frozen_inference_graph.pb")
    p = Predictor(zoo, label_map=LABELS, score_threshold=0.0)
    assert p.kind == "frozen_graph"
    check_known(p(np.zeros((51, 101, 3), np.uint8)), 51, 101)
    assert Predictor(zoo / "saved_model").kind == "odapi_saved_model"  # when asked for
    ours = tmp_path / "export_like"
    shutil.copytree(odapi_saved_model / "saved_model", ours / "saved_model")
    write_tf1_graph(ours / "frozen_graph.pb")
    assert Predictor(ours).kind == "odapi_saved_model"


@pytest.mark.slow  # tiny_export trains and exports a real Mask R-CNN (minutes)
def test_our_export_savedmodel_and_frozen_graph_agree(tiny_export, tiny_export_predictor):
    from tests.test_export import sample_image
    img = sample_image()
    p = copy.copy(tiny_export_predictor)  # Predictor(tiny_export, score_threshold=0.0)
    names = read_label_map(tiny_export / "label_map.pbtxt").names
    assert p.kind == "export" and p.label_map.names == names
    det = p(img)
    assert len(det) > 0 and det.masks.shape == (len(det), 100, 150)
    assert set(det.class_names) <= set(names)
    f = Predictor(tiny_export / "frozen_graph.pb", score_threshold=0.0)
    assert f.kind == "frozen_graph" and f.label_map.names == names  # found beside
    fdet = f(img)
    assert len(fdet) == len(det)
    np.testing.assert_allclose(fdet.boxes_yxyx_px, det.boxes_yxyx_px, atol=1e-3)
    np.testing.assert_allclose(fdet.scores, det.scores, atol=1e-5)
    assert (fdet.masks != det.masks).mean() < 1e-3
    # A batch of two sizes gives what single calls give.
    small = img[:64, :80].copy()
    b = p.predict_batch([img, small, img])
    np.testing.assert_allclose(b[0].boxes_yxyx_px, det.boxes_yxyx_px, atol=1e-3)
    np.testing.assert_allclose(b[1].scores, p(small).scores, atol=1e-5)
    # The score threshold on a real model.
    p.score_threshold = float(det.scores[0]) + 1e-6
    assert len(p(img)) == 0


def test_not_a_model_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError) as e:
        Predictor(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "notes.txt" in msg and "frozen_inference_graph.pb" in msg
    with pytest.raises(UserError, match="does not exist"):
        Predictor(tmp_path / "missing")


def test_graph_without_od_api_tensors_lists_what_it_has(tmp_path):
    pb = write_tf1_graph(tmp_path / "other.pb", names=False)
    with pytest.raises(UserError) as e:
        Predictor(pb)
    msg = str(e.value)
    assert str(pb) in msg and "image_tensor:0" in msg and "detection_boxes:0" in msg
    assert "'x'" in msg and "y_detection_boxes" in msg  # what it has instead
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x00\x01 not a graph" * 10)
    with pytest.raises(UserError, match="is not a TensorFlow GraphDef"):
        Predictor(junk)


def test_box_only_graph_gives_no_masks(tmp_path):
    pb = write_tf1_graph(tmp_path / "boxes.pb", with_masks=False)
    det = Predictor(pb, score_threshold=0.0)(np.zeros((20, 20, 3), np.uint8))
    assert det.masks is None and len(det) == 2


def test_bad_images(tf1_graph, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(UserError) as e:
        load_image(bad)
    assert str(bad) in str(e.value) and "expected a JPEG, PNG" in str(e.value)
    with pytest.raises(UserError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    p = Predictor(tf1_graph)
    with pytest.raises(UserError, match="dtype float64; expected uint8 RGB"):
        p(np.zeros((8, 8, 3)))
    with pytest.raises(UserError, match="expected uint8 RGB"):
        p(np.zeros((8, 8, 5), np.uint8))


def test_load_image_applies_exif_orientation(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(img).save(path, "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.shape == (20, 10, 3) and out.dtype == np.uint8
    assert out[:8].mean() > 200 and out[12:].mean() < 50  # the white half is now on top
    buf = io.BytesIO()
    Image.fromarray(img).convert("L").save(buf, "PNG")
    (tmp_path / "gray.png").write_bytes(buf.getvalue())
    assert load_image(tmp_path / "gray.png").shape == (10, 20, 3)
