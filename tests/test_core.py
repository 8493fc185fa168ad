"""core/: label map, masks, atomic writes, detections, images, the CLI runner (drawing:
tests/test_draw.py)."""
import os

import numpy as np
import pytest

from maskrcnn_toolkit.core.atomic import (
    BACKUP_MARK,
    TMP_MARK,
    atomic_dir,
    atomic_write,
    refuse_existing,
    remove_stale_temporaries,
)
from maskrcnn_toolkit.core.detections import Detections
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import (
    LabelMap,
    parse_label_map,
    read_label_map,
    write_label_map,
)
from maskrcnn_toolkit.core.masks import (
    decode_mask_png,
    encode_mask_png,
    mask_box_xyxy_px,
    mask_to_rle,
    paste_box_masks,
    polygons_to_mask,
    rle_to_mask,
)


def test_label_map_roundtrip_and_od_api_variants(tmp_path):
    lm = LabelMap.from_names(["bolt", "nut's", "washer"])
    p = tmp_path / "label_map.pbtxt"
    write_label_map(p, lm)
    assert "item {\n  id: 1\n  name: 'bolt'\n}" in p.read_text()
    assert read_label_map(p) == lm
    text = ('# comment\nitem {\n name: "a" id: 7\n display_name: "A"\n}\n'
            'item { id: 2 display_name: "b" }')
    parsed = parse_label_map(text)
    assert parsed.names_by_id == {2: "b", 7: "a"}
    assert parsed.num_classes_with_background == 8


def test_label_map_keeps_non_ascii_names(tmp_path):
    lm = LabelMap.from_names(["Schraube_ä", "中文", "back\\slash", 'quo"te'])
    p = tmp_path / "label_map.pbtxt"
    write_label_map(p, lm)
    assert read_label_map(p) == lm
    # protobuf's own writer escapes UTF-8 bytes as octal; both forms read the same.
    assert parse_label_map(r"item { id: 1 name: '\303\244\n' }").names == ["ä\n"]


def test_label_map_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="id 1 is used by both"):
        parse_label_map("item { id: 1 name: 'a' } item { id: 1 name: 'b' }", "x.pbtxt")
    with pytest.raises(UserError, match="cannot read label map"):
        read_label_map(tmp_path / "missing.pbtxt")
    txt = tmp_path / "labels.txt"
    txt.write_text("__ignore__\n_background_\ncat\ndog\n")
    assert read_label_map(txt).names_by_id == {1: "cat", 2: "dog"}


def test_polygon_rle_png_roundtrip():
    m = polygons_to_mask([[2, 2, 10, 2, 10, 8, 2, 8]], 12, 16)
    assert m.dtype == np.uint8 and m.shape == (12, 16)
    assert m.sum() == 8 * 6
    assert mask_box_xyxy_px(m) == (2.0, 2.0, 10.0, 8.0)
    assert np.array_equal(rle_to_mask(mask_to_rle(m)), m)
    png = encode_mask_png(m)
    assert np.array_equal(decode_mask_png(png), m)
    # uncompressed RLE (list counts, column-major, starting with zeros)
    unc = {"size": [2, 3], "counts": [1, 2, 3]}
    assert rle_to_mask(unc).tolist() == [[0, 1, 0], [1, 0, 0]]


def test_png_mask_decodes_with_tensorflow():
    import tensorflow as tf
    rng = np.random.default_rng(0)
    m = (rng.random((37, 53)) > 0.5).astype(np.uint8)
    # Exactly 0/1 as decoded by TensorFlow: Model Garden's decoder does not binarize masks.
    dec = tf.io.decode_png(encode_mask_png(m), channels=1).numpy()[..., 0]
    assert dec.dtype == np.uint8 and np.array_equal(dec, m)
    dec = tf.io.decode_image(encode_mask_png(np.asfortranarray(m)), channels=1).numpy()[..., 0]
    assert np.array_equal(dec, m)


def test_paste_box_masks_matches_tf_crop_and_resize():
    import tensorflow as tf
    rng = np.random.default_rng(1)
    box_masks = rng.random((3, 7, 7)).astype(np.float32)
    boxes = np.array([[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.55, 0.7]],
                     np.float32)
    h, w = 20, 30
    y0, x0, y1, x1 = boxes.T
    bh, bw = y1 - y0, x1 - x0
    rev = np.stack([-y0 / bh, -x0 / bw, (1 - y0) / bh, (1 - x0) / bw], axis=1)
    ref = tf.image.crop_and_resize(box_masks[..., None], rev, tf.range(3), [h, w],
                                   extrapolation_value=0.0).numpy()[..., 0]
    np.testing.assert_array_equal(paste_box_masks(box_masks, boxes, h, w), ref > 0.5)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    p = tmp_path / "out.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(p) as f:
            f.write(b"half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    with atomic_write(p) as f:
        f.write(b"whole")
    assert p.read_bytes() == b"whole"
    with pytest.raises(UserError, match="--overwrite"):
        refuse_existing(p, overwrite=False)
    d = tmp_path / "export"
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as tmp:
            (tmp / "a").write_text("x")
            raise RuntimeError("boom")
    assert not d.exists() and os.listdir(tmp_path) == ["out.bin"]


def test_atomic_dir_guards_foreign_files_and_survives_a_kill_mid_replace(tmp_path):
    d = tmp_path / "data"
    with atomic_dir(d) as tmp:
        (tmp / "ours.txt").write_text("1")
    with pytest.raises(UserError, match="already exists and is not empty"):
        with atomic_dir(d, owned=lambda n: n == "ours.txt"):
            pass
    (d / "mine.txt").write_text("user")
    with pytest.raises(UserError, match="holds files this tool did not write .mine.txt"):
        with atomic_dir(d, overwrite=True, owned=lambda n: n == "ours.txt"):
            pass
    assert sorted(os.listdir(d)) == ["mine.txt", "ours.txt"]
    # A kill after the old folder was moved to its backup and before the new one was moved
    # in: the next run puts the old folder back before it starts.
    backup = tmp_path / f".data{BACKUP_MARK}x"
    backup.mkdir()
    os.rename(d, backup / "old")
    (tmp_path / f".data{TMP_MARK}y").mkdir()  # the killed run's half-written folder
    # The next run restores it first, so the guard still sees the user's file.
    with pytest.raises(UserError, match="holds files this tool did not write .mine.txt"):
        with atomic_dir(d, overwrite=True, owned=lambda n: n == "ours.txt"):
            pass
    assert sorted(os.listdir(tmp_path)) == ["data"]
    assert sorted(os.listdir(d)) == ["mine.txt", "ours.txt"]
    assert remove_stale_temporaries(d) == 0
    # With overwrite and no owner check, the replace goes through and leaves no backup.
    with atomic_dir(d, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("2")
    assert os.listdir(d) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["data"]


def test_detections_filter_and_coco():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 2:5, 3:8] = True
    masks[1, 0:2, 0:2] = True
    d = Detections([[2, 3, 5, 8], [0, 0, 2, 2]], [0.9, 0.3], [1, 2], ["bolt", "nut"], (10, 10),
                   masks)
    assert len(d.filter(score_threshold=0.5)) == 1
    assert d.filter(classes=["nut"]).class_ids.tolist() == [2]
    assert d.filter(classes=[1]).class_names == ["bolt"]
    coco = d.to_coco(image_id=7)
    assert coco[0]["bbox"] == [3.0, 2.0, 5.0, 3.0] and coco[0]["image_id"] == 7
    assert np.array_equal(rle_to_mask(coco[0]["segmentation"]), masks[0])
    with pytest.raises(ValueError):
        Detections([[0, 0, 1, 1]], [0.5], [1], ["a"], (4, 4), np.zeros((1, 3, 3)))


def test_to_rgb_one_rule_for_every_mode():
    from PIL import Image

    from maskrcnn_toolkit.core.images import to_rgb
    deep = Image.fromarray(np.array([[0, 255, 256, 65535]], np.uint16))
    assert np.asarray(to_rgb(deep))[0, :, 0].tolist() == [0, 0, 1, 255]  # high byte
    rgba = Image.fromarray(np.array([[[200, 100, 50, 0], [200, 100, 50, 255]]], np.uint8))
    assert np.asarray(to_rgb(rgba)).tolist() == [[[0, 0, 0], [200, 100, 50]]]  # over black
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.asarray(to_rgb(f))[0, :, 0].tolist() == [0, 128, 255]
    assert to_rgb(Image.new("CMYK", (2, 2))).mode == "RGB"


def test_cli_runner_sigterm_is_ctrl_c_and_handlers_are_restored(capsys):
    """core.cli.run: SIGTERM mid-work unwinds the work like Ctrl-C (its cleanup runs), prints
    one line and returns 130; a UserError is one `error:` line and 2; the signal handlers
    are the caller's again afterwards."""
    import os
    import signal
    import time

    from maskrcnn_toolkit.core.cli import run
    from maskrcnn_toolkit.core.errors import UserError

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    cleaned = []

    def work():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # Python runs the handler here at the latest
            return 0
        finally:
            cleaned.append(True)

    assert run(work, interrupted="nothing was written") == 130
    assert cleaned == [True]
    assert capsys.readouterr().err == "interrupted: nothing was written\n"

    def bad():
        raise UserError("file 'x.json': no images; convert it first")

    assert run(bad) == 2
    assert capsys.readouterr().err == "error: file 'x.json': no images; convert it first\n"
    assert run(lambda: None) == 0 and run(lambda: 3) == 3

    def saved():  # the work's own account of what it left (training: step and checkpoint)
        raise KeyboardInterrupt("at step 3; saved run/ckpt-3")

    assert run(saved, interrupted="nothing was written") == 130
    assert capsys.readouterr().err == "interrupted: at step 3; saved run/ckpt-3\n"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
