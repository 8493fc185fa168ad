"""annotate.py: mistakes are answered before the model loads; one image can be written as
one image file; images annotated with --gt score directly with evaluate.py --gt.

The early checks run the real CLI in a fresh interpreter (``probe`` of test_early_checks)
on a model folder whose model file is garbage: a check that came after loading the model
would end in "cannot load SavedModel" instead, and the probe also reports whether
TensorFlow was imported at all.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from maskrcnn_toolkit import annotate, evaluate
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import LabelMap
from maskrcnn_toolkit.dataset_tools.__main__ import main as dataset_tools_main
from maskrcnn_toolkit.inference.ground_truth import match_ground_truth
from tests.test_early_checks import probe
from tests.test_video import (
    clip_frame,
    make_clip,
    od_model,  # noqa: F401  (the fixture, shared with test_video)
    square_at,
)

LABELS = "item {\n  id: 1\n  name: 'red'\n}\nitem {\n  id: 2\n  name: 'blue'\n}\n"
LAYOUTS = ("export", "od_api_saved_model", "frozen_graph")


def fake_model(root: Path, layout: str) -> Path:
    """A model path in one of the layouts Predictor recognizes, with the label map where
    Predictor looks for it; the model file itself is not a model."""
    root.mkdir(parents=True)
    (root / "label_map.pbtxt").write_text(LABELS)
    if layout == "export":  # export.py / exporter_main_v2.py: DIR/saved_model/ + label map
        (root / "saved_model").mkdir()
        (root / "saved_model" / "saved_model.pb").write_bytes(b"not a model")
        return root
    if layout == "od_api_saved_model":
        (root / "saved_model.pb").write_bytes(b"not a model")
        return root
    (root / "frozen_inference_graph.pb").write_bytes(b"not a model")
    return root / "frozen_inference_graph.pb"


@pytest.fixture
def inputs(tmp_path) -> Path:
    """tmp_path/in: photos/{a.jpg, b.png}, clip.mp4 (12 frames, 1.2 s), clip.mkv (no frame
    count, 1.2 s), gt.json (COCO, a.jpg and b.png, classes 'bolt' and 'nut')."""
    d = tmp_path / "in"
    (d / "photos").mkdir(parents=True)
    Image.fromarray(clip_frame(0)).save(d / "photos" / "a.jpg")
    Image.fromarray(clip_frame(3)).save(d / "photos" / "b.png")
    make_clip(d / "clip.mp4", n=12)
    make_clip(d / "clip.mkv", n=12, audio=False)
    (d / "gt.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg", "height": 64, "width": 96},
                   {"id": 9, "file_name": "b.png", "height": 64, "width": 96}],
        "annotations": [],
        "categories": [{"id": 1, "name": "bolt"}, {"id": 2, "name": "nut"}]}))
    return d


def run_probe(tmp_path: Path, model: Path, src: Path, *args, expect: list[str]) -> None:
    """annotate.py exits 2 with one ``error:`` line holding ``expect``, without importing
    TensorFlow and without writing anything."""
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    r = probe("annotate", model, src, *args, "--quiet")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    for text in expect:
        assert text in r.stderr
    assert "tensorflow imported: False" in r.stdout
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unknown_class_is_answered_from_the_label_map_beside_the_model(tmp_path, inputs,
                                                                       layout):
    model = fake_model(tmp_path / "model", layout)
    for src, out in ((inputs / "photos", tmp_path / "o"), (inputs / "clip.mp4",
                                                            tmp_path / "o.mp4")):
        run_probe(tmp_path, model, src, "--out", out, "--classes", "red,bolt",
                  expect=["classes ['bolt'] are not in the label map",
                          "'red' (1), 'blue' (2)"])


def test_unknown_class_is_answered_from_the_label_map_option(tmp_path, inputs):
    model = fake_model(tmp_path / "model", "export")
    lm = tmp_path / "other.pbtxt"
    lm.write_text("item {\n  id: 1\n  name: 'nut'\n}\nitem {\n  id: 2\n  name: 'bolt'\n}\n")
    run_probe(tmp_path, model, inputs / "photos", "--out", tmp_path / "o", "--label-map", lm,
              "--classes", "red", expect=["classes ['red']", "'nut' (1), 'bolt' (2)"])


@pytest.mark.parametrize("video,args,expect", [
    ("clip.mp4", ["--start", "5", "--end", "2"], ["--start 5 s is not before --end 2 s"]),
    ("clip.mp4", ["--start", "30f", "--end", "20f"], ["--start frame 30 is not before"]),
    ("clip.mp4", ["--start", "12f"], ["--start frame 12 is past the end of", "12 frames"]),
    ("clip.mp4", ["--start", "1.2"], ["--start 1.2 s is past the end of", "1.20 s"]),
    # MKV declares no frame count: its duration says where the video ends.
    ("clip.mkv", ["--start", "3s"], ["--start 3 s is past the end of", "(1.20 s)"]),
    ("clip.mkv", ["--start", "40f", "--end", "50f"], ["--start frame 40 is past the end"]),
])
def test_empty_range_is_refused_before_the_model_loads(tmp_path, inputs, video, args,
                                                       expect):
    model = fake_model(tmp_path / "model", "export")
    run_probe(tmp_path, model, inputs / video, "--out", tmp_path / "o.mp4", *args,
              expect=expect)


def test_outputs_are_checked_before_the_model_loads(tmp_path, inputs):
    model = fake_model(tmp_path / "model", "export")
    clip, photos = inputs / "clip.mp4", inputs / "photos"
    run_probe(tmp_path, model, clip, "--out", tmp_path / "o.gif",
              expect=["has suffix '.gif'", ".mp4, .m4v, .mov, .mkv, .avi"])
    run_probe(tmp_path, model, clip, "--out", tmp_path / "o.mp4", "--crf", "20",
              "--codec", "mjpeg", expect=["--crf applies to h264/h265 only"])
    for existing in ("o.mp4", "o.jsonl", "coco.json"):
        (tmp_path / existing).write_bytes(b"")
        run_probe(tmp_path, model, clip, "--out", tmp_path / "o.mp4", "--coco-results",
                  tmp_path / "coco.json",
                  expect=[f"{str(tmp_path / existing)!r} already exists", "--overwrite"])
        (tmp_path / existing).unlink()
    (tmp_path / "folder").mkdir()
    run_probe(tmp_path, model, photos, "--out", tmp_path / "folder",
              expect=["already exists", "--overwrite"])
    run_probe(tmp_path, model, photos, "--out", tmp_path / "o.jpg",
              expect=["names one image file, but the input holds 2 images",
                      "give a folder"])
    run_probe(tmp_path, model, photos / "a.jpg", "--out", tmp_path / "o.gif",
              expect=["not written as .gif", ".png"])
    run_probe(tmp_path, model, photos, "--out", tmp_path / "o.json",
              expect=["looks like a JSON file", "give a folder name"])
    (tmp_path / "o.png").write_bytes(b"")
    run_probe(tmp_path, model, photos / "a.jpg", "--out", tmp_path / "o.png",
              expect=["o.png' already exists", "--overwrite"])


def test_gt_mistakes_are_answered_before_the_model_loads(tmp_path, inputs):
    model = fake_model(tmp_path / "model", "od_api_saved_model")
    gt = inputs / "gt.json"
    run_probe(tmp_path, model, inputs / "photos", "--out", tmp_path / "o", "--gt", gt,
              expect=["the label map's classes and the categories of the ground truth",
                      "only in the label map: ['red', 'blue']",
                      "only in the ground truth: ['bolt', 'nut']", "--label-map"])
    run_probe(tmp_path, model, inputs / "clip.mp4", "--out", tmp_path / "o.mp4", "--gt", gt,
              expect=["--gt applies to images only"])
    lm = tmp_path / "parts.pbtxt"
    lm.write_text("item {\n  id: 1\n  name: 'nut'\n}\nitem {\n  id: 2\n  name: 'bolt'\n}\n")
    run_probe(tmp_path, model, inputs / "photos", "--out", tmp_path / "o.jpg", "--gt", gt,
              "--label-map", lm, expect=["--gt writes detections.json", "give a folder"])
    run_probe(tmp_path, model, inputs / "photos", "--out", tmp_path / "o", "--gt", gt,
              "--label-map", lm, "--classes", "nut",
              expect=["--classes keeps ['nut'], but the ground truth", "['bolt']"])
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(clip_frame(1)).save(other / "z.jpg")
    run_probe(tmp_path, model, other, "--out", tmp_path / "o", "--gt", gt, "--label-map", lm,
              expect=["none of the 1 input images is in the ground truth", "a.jpg, b.png",
                      "z.jpg"])


# ------------------------------------------------------------------ matching a ground truth

def _gt(tmp_path: Path, images: list[str], categories: dict[str, int]) -> Path:
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({
        "images": [{"id": 100 + k, "file_name": f, "height": 4, "width": 4}
                   for k, f in enumerate(images)],
        "annotations": [],
        "categories": [{"id": i, "name": n} for n, i in categories.items()]}))
    return p


def test_match_by_file_name_and_classes_by_name(tmp_path):
    gt = _gt(tmp_path, ["val/a.jpg", "val/b.jpg", "val/c.jpg"], {"nut": 7, "bolt": 3})
    paths = [Path("photos/a.jpg"), Path("photos/c.jpg"), Path("photos/x.jpg")]
    m = match_ground_truth(gt, paths, LabelMap.from_names(["bolt", "nut"]))
    assert m.image_ids == {Path("photos/a.jpg"): 100, Path("photos/c.jpg"): 102}
    assert m.paths == [Path("photos/a.jpg"), Path("photos/c.jpg")]
    assert m.category_ids == {1: 3, 2: 7}  # label-map id -> the ground truth's id, by name
    assert m.categories == [{"id": 3, "name": "bolt"}, {"id": 7, "name": "nut"}]
    assert m.not_in_gt == [Path("photos/x.jpg")] and m.not_given == ["val/b.jpg"]
    skipped, missing = m.warnings()
    assert "1 input images are not in the ground truth" in skipped and "x.jpg" in skipped
    assert "skipped" in skipped
    assert "val/b.jpg" in missing and "will count as missed" in missing
    # --classes may keep every class by id or name: the same match.
    m2 = match_ground_truth(gt, paths, LabelMap.from_names(["bolt", "nut"]), [1, "nut"])
    assert m2.category_ids == m.category_ids


def test_same_file_name_in_two_folders(tmp_path):
    gt = _gt(tmp_path, ["cam1/001.jpg", "cam2/001.jpg"], {"nut": 1})
    lm = LabelMap.from_names(["nut"])
    m = match_ground_truth(gt, [tmp_path / "data" / "cam2" / "001.jpg"], lm)
    assert list(m.image_ids.values()) == [101]
    with pytest.raises(UserError, match="several images named '001.jpg'"):
        match_ground_truth(gt, [tmp_path / "photos" / "001.jpg"], lm)


def test_gt_refusals(tmp_path):
    gt = _gt(tmp_path, ["a.jpg"], {"nut": 1, "bolt": 2})
    with pytest.raises(UserError, match="the model has no label map"):
        match_ground_truth(gt, [Path("a.jpg")], LabelMap({}))
    with pytest.raises(UserError, match=r"only in the label map: \['washer'\]; only in the "
                                        r"ground truth: \['bolt'\]"):
        match_ground_truth(gt, [Path("a.jpg")], LabelMap.from_names(["nut", "washer"]))
    (tmp_path / "bad.json").write_text('[{"image_id": 1}]')
    with pytest.raises(UserError, match="not a COCO ground truth"):
        match_ground_truth(tmp_path / "bad.json", [Path("a.jpg")], LabelMap.from_names(["x"]))


# ------------------------------------------------------------------ through the model

@pytest.mark.parametrize("name,magic", [("one.png", b"\x89PNG"), ("one.jpg", b"\xff\xd8"),
                                        ("one.webp", b"RIFF")])
def test_one_image_to_one_image_file(od_model, tmp_path, capsys, name, magic):
    src = tmp_path / "a.png"
    Image.fromarray(clip_frame(2)).save(src)
    out = tmp_path / "sub" / name
    assert annotate.main([str(od_model), str(src), "--out", str(out), "--quiet"]) == 0
    assert out.is_file() and out.read_bytes().startswith(magic)
    assert "annotated 1 images (1 through the model, 1 detections)" in capsys.readouterr().out
    drawn = Image.open(out)
    assert drawn.size == (clip_frame(2).shape[1], clip_frame(2).shape[0])
    assert sorted(p.name for p in out.parent.iterdir()) == [name]  # no temporaries left
    # An existing file is replaced only with --overwrite.
    assert annotate.main([str(od_model), str(src), "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert annotate.main([str(od_model), str(src), "--out", str(out), "--quiet",
                          "--overwrite"]) == 0


@pytest.fixture(scope="module")
def synthetic_converted(tmp_path_factory) -> tuple[Path, Path]:
    """(images folder, converted dataset) from ``dataset_tools synth`` + ``convert``: 6
    images, 3 in val, whose COCO image ids are the converter's (not 0..2)."""
    d = tmp_path_factory.mktemp("synthetic")
    assert dataset_tools_main(["synth", str(d / "syn"), "--images", "6", "--size", "96",
                               "96"]) == 0
    assert dataset_tools_main(["convert", "coco", str(d / "syn" / "annotations.json"),
                               str(d / "data"), "--val-fraction", "0.5"]) == 0
    return d / "syn" / "images", d / "data"


def test_annotated_synthetic_images_score_in_the_converters_ids(od_model, synthetic_converted,
                                                               tmp_path, capsys):
    images, data = synthetic_converted
    gt_path = data / "val_annotations.json"
    gt = json.loads(gt_path.read_text())
    val_ids = {im["file_name"]: im["id"] for im in gt["images"]}
    assert len(val_ids) == 3 and sorted(val_ids.values()) != [0, 1, 2]
    capsys.readouterr()
    out = tmp_path / "val_pred"
    # All six photos are given: the three the ground truth does not list are skipped.
    assert annotate.main([str(od_model), str(images), "--out", str(out), "--quiet",
                          "--gt", str(gt_path), "--label-map", str(data / "label_map.pbtxt"),
                          "--score-threshold", "0"]) == 0
    printed = capsys.readouterr().out
    assert "warning: 3 input images are not in the ground truth" in printed
    assert "annotated 3 images" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        list(val_ids) + ["detections.json", "images.json"])
    index = json.loads((out / "images.json").read_text())
    assert {im["file_name"]: im["id"] for im in index["images"]} == val_ids
    assert index["categories"] == [{"id": c["id"], "name": c["name"]}
                                   for c in gt["categories"]]
    dets = json.loads((out / "detections.json").read_text())
    assert dets and {d["image_id"] for d in dets} == set(val_ids.values())
    assert evaluate.main(["--gt", str(gt_path), "--detections", str(out / "detections.json"),
                          "--no-report", "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert f"scored {len(dets)} detections on 3 images" in printed
    assert "not in the ground truth" not in printed


@pytest.fixture(scope="module")
def squares_converted(tmp_path_factory) -> tuple[Path, Path]:
    """(images folder, converted dataset) of frames the test model gets right: one square
    each, labelled 'red' (yellow square: red > blue, as the model decides) or 'blue'. The
    source's category ids are blue 1, red 2: the model's label map says red 1, blue 2."""
    d = tmp_path_factory.mktemp("squares")
    (d / "src" / "images").mkdir(parents=True)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": 1, "name": "blue"}, {"id": 2, "name": "red"}]}
    for k in range(8):
        blue = k % 2 == 1
        img = clip_frame(k, color=(60, 80, 250) if blue else (250, 240, 60))
        Image.fromarray(img).save(d / "src" / "images" / f"sq{k}.png")
        y0, x0, y1, x1 = square_at(k)
        coco["images"].append({"id": k + 1, "file_name": f"sq{k}.png",
                               "height": img.shape[0], "width": img.shape[1]})
        coco["annotations"].append({
            "id": k + 1, "image_id": k + 1, "category_id": 1 if blue else 2, "iscrowd": 0,
            "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]], "area": (x1 - x0) * (y1 - y0),
            "bbox": [x0, y0, x1 - x0, y1 - y0]})
    (d / "src" / "annotations.json").write_text(json.dumps(coco))
    assert dataset_tools_main(["convert", "coco", str(d / "src" / "annotations.json"),
                               str(d / "data"), "--val-fraction", "0.5"]) == 0
    return d / "src" / "images", d / "data"


def test_annotated_images_score_against_the_converters_ground_truth(od_model,
                                                                    squares_converted,
                                                                    tmp_path, capsys):
    """Image ids and category ids both come from the ground truth (by file name, by class
    name), so a model that finds every square scores AP 1 on the ground truth as it is."""
    images, data = squares_converted
    gt_path = data / "val_annotations.json"
    gt = json.loads(gt_path.read_text())
    gt_cat = {c["name"]: c["id"] for c in gt["categories"]}
    assert gt_cat != {"red": 1, "blue": 2}  # the model's label map numbers them otherwise
    val_ids = {im["file_name"]: im["id"] for im in gt["images"]}
    out = tmp_path / "val_pred"
    assert annotate.main([str(od_model), str(images), "--out", str(out), "--quiet",
                          "--gt", str(gt_path)]) == 0
    dets = json.loads((out / "detections.json").read_text())
    by_image = {d["image_id"]: d for d in dets}
    assert len(dets) == len(by_image) == len(val_ids)
    for name, image_id in val_ids.items():
        k = int(name[2:-4])
        assert by_image[image_id]["category_id"] == gt_cat["blue" if k % 2 else "red"]
    capsys.readouterr()
    assert evaluate.main(["--gt", str(gt_path), "--detections", str(out / "detections.json"),
                          "--no-report", "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "not in the ground truth" not in printed and "category ids" not in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["bbox"]["AP"] == metrics["segm"]["AP"] == 1.0


def test_overwrite_keeps_a_folder_that_holds_the_users_own_files(tmp_path):
    """--overwrite replaces an earlier annotate output folder, but refuses (before any model
    loads) one that holds files annotate did not write."""
    from maskrcnn_toolkit.core.errors import UserError
    from maskrcnn_toolkit.inference.image_annotation import check_image_outputs
    photos = [tmp_path / "a.png", tmp_path / "b.jpg"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"x")
    (out / "old.jpg").write_bytes(b"x")  # an earlier run's image, listed in its images.json
    (out / "images.json").write_text('{"images": [{"file_name": "old.jpg"}]}')
    assert check_image_outputs(photos, out, overwrite=True) is None
    (out / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(UserError, match="holiday.jpg"):
        check_image_outputs(photos, out, overwrite=True)
    assert (out / "holiday.jpg").read_bytes() == b"mine"
