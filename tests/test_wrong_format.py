"""convert with the wrong FORMAT: every reader names the format SRC looks like (COCO,
LabelMe, VIA, CVAT, VOC, and the ones no reader takes: YOLO, Label Studio, VOC boxes only,
COCO results...) and the command to use, with exit 2 and no traceback.

Each format is a tiny hand-made example written the way its tool writes it; the real exports
in ../shared/data are checked too when present."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from maskrcnn_toolkit.dataset_tools.__main__ import main
from maskrcnn_toolkit.dataset_tools.readers import FORMATS
from maskrcnn_toolkit.dataset_tools.readers.sniff import TAKES, sniff
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
H, W = 8, 10


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H), (90, 90, 90)).save(path)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _json(path: Path, obj) -> Path:
    return _write(path, json.dumps(obj))


# --------------------------------------------------------------- one example per format
def coco(d: Path) -> Path:
    _png(d / "images" / "a.png")
    return _json(d / "annotations" / "instances_default.json", {
        "licenses": [{"name": "", "id": 0, "url": ""}], "info": {},
        "categories": [{"id": 1, "name": "bolt", "supercategory": ""}],
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 8,
                         "segmentation": [[1, 1, 5, 1, 5, 5]], "bbox": [1, 1, 4, 4]}]})


def labelme(d: Path) -> Path:
    _png(d / "a.png")
    _json(d / "a.json", {"version": "5.4.1", "flags": {}, "imagePath": "a.png",
                         "imageData": None, "imageHeight": H, "imageWidth": W,
                         "shapes": [{"label": "bolt", "points": [[1, 1], [5, 1], [5, 5]],
                                     "shape_type": "polygon", "group_id": None,
                                     "flags": {}}]})
    return d


def labelme_file(d: Path) -> Path:
    return labelme(d) / "a.json"


def via(d: Path) -> Path:
    _png(d / "a.png")
    return _json(d / "via_region_data.json", {"a.png123": {
        "filename": "a.png", "size": 123, "file_attributes": {},
        "regions": {"0": {"shape_attributes": {"name": "polygon", "all_points_x": [1, 5, 5],
                                               "all_points_y": [1, 1, 5]},
                          "region_attributes": {}}}}})


def via2_project(d: Path) -> Path:
    _png(d / "a.png")
    return _json(d / "project.json", {
        "_via_settings": {"core": {"default_filepath": ""}}, "_via_attributes": {},
        "_via_img_metadata": {"a.png123": {"filename": "a.png", "size": 123, "regions": [],
                                           "file_attributes": {}}}})


def _cvat(d: Path, body: str) -> Path:
    return _write(d / "annotations.xml", '<?xml version="1.0" encoding="utf-8"?>\n'
                  "<annotations>\n<version>1.1</version>\n<meta><task><name>t</name></task>"
                  f"</meta>\n{body}\n</annotations>\n")


def cvat_images(d: Path) -> Path:
    _png(d / "images" / "a.png")
    return _cvat(d, f'<image id="0" name="a.png" width="{W}" height="{H}">'
                    '<polygon label="bolt" points="1,1;5,1;5,5" z_order="0"/></image>')


def cvat_video(d: Path) -> Path:
    _png(d / "images" / "frame_000000.png")
    return _cvat(d, '<track id="0" label="bolt" source="manual">'
                    '<polygon frame="0" outside="0" keyframe="1" points="1,1;5,1;5,5"/>'
                    "</track>")


def _voc_xml(d: Path) -> None:
    _write(d / "Annotations" / "a.xml",
           f"<annotation><filename>a.png</filename><size><width>{W}</width>"
           f"<height>{H}</height><depth>3</depth></size><object><name>bolt</name>"
           "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
           "</object></annotation>")
    _png(d / "JPEGImages" / "a.png")


def voc(d: Path) -> Path:
    _voc_xml(d)
    (d / "SegmentationObject").mkdir()
    Image.new("P", (W, H), 0).save(d / "SegmentationObject" / "a.png")
    _write(d / "ImageSets" / "Segmentation" / "train.txt", "a\n")
    return d


def voc_boxes(d: Path) -> Path:
    _voc_xml(d)
    _write(d / "ImageSets" / "Main" / "train.txt", "a\n")
    return d


def voc_xml(d: Path) -> Path:
    return voc(d) / "Annotations" / "a.xml"


def yolo(d: Path) -> Path:
    _png(d / "images" / "train" / "a.png")
    _write(d / "labels" / "train" / "a.txt", "0 0.1 0.1 0.5 0.1 0.5 0.6\n0 0.5 0.5 0.2 0.3\n")
    _write(d / "data.yaml", "path: .\ntrain: images/train\nval: images/train\nnames:\n"
                            "  0: bolt\n")
    return d


def label_studio(d: Path) -> Path:
    return _json(d / "export.json", [{
        "id": 1, "data": {"image": "/data/upload/1/a.png"},
        "annotations": [{"id": 1, "result": [{
            "type": "polygonlabels", "from_name": "label", "to_name": "image",
            "original_width": W, "original_height": H,
            "value": {"points": [[10, 10], [50, 10], [50, 60]], "polygonlabels": ["bolt"]}}]}]}])


def coco_results(d: Path) -> Path:
    return _json(d / "detections.json", [{"image_id": 1, "category_id": 1, "score": 0.9,
                                          "bbox": [1, 1, 4, 4]}])


def coco_panoptic(d: Path) -> Path:
    return _json(d / "panoptic.json", {"images": [], "categories": [], "annotations": [
        {"image_id": 1, "file_name": "a.png", "segments_info": []}]})


# (maker, FORMAT that reads it or None, SRC the message must name (relative to the folder
# the example is made in), words the message must hold)
KINDS = {
    "coco": (coco, "coco", "annotations/instances_default.json", "a COCO instances file"),
    "coco_folder": (lambda d: coco(d).parents[1], "coco", "annotations/instances_default.json",
                    "holds a COCO instances file"),
    "labelme": (labelme, "labelme", ".", "LabelMe"),
    "labelme_file": (labelme_file, "labelme", ".", "a LabelMe annotation"),
    "via": (via, "via", "via_region_data.json", "a VIA 1.x/2.x annotation file"),
    "via2_project": (via2_project, "via", "project.json", "a VIA 2 project"),
    "cvat_images": (cvat_images, "cvat", "annotations.xml", "a CVAT for images 1.1 XML"),
    "cvat_video": (cvat_video, "cvat", "annotations.xml", "a CVAT for video 1.1 XML"),
    "voc": (voc, "voc", ".", "a Pascal VOC dataset"),
    "voc_xml": (voc_xml, "voc", ".", "a Pascal VOC annotation XML"),
    "voc_boxes": (voc_boxes, "voc", ".", "--box-as-polygon"),
    "yolo": (yolo, None, None, "YOLO labels are not read"),
    "yolo_txt": (lambda d: yolo(d) / "labels" / "train" / "a.txt", None, None,
                 "a class id and coordinates in 0..1"),
    "label_studio": (label_studio, None, None, "export the project as COCO"),
    "coco_results": (coco_results, None, None, "evaluate.py --gt GT --detections FILE"),
    "coco_panoptic": (coco_panoptic, None, None, "give the COCO instances JSON"),
}


def _convert(fmt: str, src: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["convert", fmt, str(src), str(out)])
    return code, capsys.readouterr().err


# Every reader against every example, except the examples it reads as they are (a folder
# holding a COCO JSON and a single VOC XML are refused by their own reader too: it names the
# file, or the root, to give instead).
WRONG = [(fmt, kind) for fmt in FORMATS for kind in sorted(KINDS)
         if KINDS[kind][1] != fmt or kind in ("coco_folder", "voc_xml")]


@pytest.mark.parametrize("fmt, kind", WRONG)
def test_every_reader_names_the_format_and_the_command(fmt, kind, tmp_path, capsys):
    make, right, expect_src, words = KINDS[kind]
    d = tmp_path / "data"
    src = make(d)
    out = tmp_path / "out"
    code, err = _convert(fmt, src, out, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    if (fmt, kind) == ("coco", "coco_panoptic"):  # the COCO reader's own, sharper message
        assert "COCO panoptic file" in err and "give a COCO instances JSON" in err
        return
    assert str(src) in err and words in err
    if right is None:
        assert "use `python -m dataset_tools convert" not in err
    else:
        want = (d / expect_src) if expect_src != "." else d
        assert f"use `python -m dataset_tools convert {right} {os.path.normpath(want)} {out}" \
            in err, err
    if right != fmt:
        assert ", not " in err  # says which format it is not
    assert not out.exists()


def test_a_format_with_nothing_recognisable_keeps_the_readers_own_message(tmp_path, capsys):
    src = _json(tmp_path / "x.json", {"hello": 1})
    code, err = _convert("coco", src, tmp_path / "out", capsys)
    assert code == 2 and "missing 'images', 'annotations', 'categories'" in err
    assert "looks like" not in err
    code, err = _convert("labelme", tmp_path, tmp_path / "out", capsys)
    assert code == 2 and "none of its 1 .json files is a LabelMe annotation" in err


def test_labelme_folder_with_a_stray_coco_file_names_it_per_file(tmp_path):
    from maskrcnn_toolkit.dataset_tools.readers import read
    labelme(tmp_path)
    coco(tmp_path / "other")
    recs = {Path(r.annotation_file).name: r for r in read("labelme", tmp_path)}
    err = recs["instances_default.json"].error
    assert "not a LabelMe annotation" in err.reason
    assert "it looks like a COCO instances file" in err.reason and "skipped" in err.reason
    assert recs["a.json"].error is None


def test_sniff_returns_none_for_plain_files(tmp_path):
    assert sniff(_write(tmp_path / "notes.txt", "hello world\n")) is None
    assert sniff(_json(tmp_path / "x.json", [1, 2])) is None
    assert sniff(tmp_path / "missing") is None
    assert sniff(_write(tmp_path / "broken.xml", "<a><b>")) is None


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dataset_tools", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt, kind", [("labelme", "via"), ("labelme", "coco"),
                                       ("via", "coco"), ("coco", "cvat_images")])
def test_cli_the_first_hour_mistakes(fmt, kind, tmp_path):
    """A new user's first mistakes, through the real CLI: `convert labelme` on a VIA or
    COCO JSON and `convert via` on a COCO file used to say 'hold no labelled instances' or
    complain about 'licenses'."""
    make, right, expect_src, words = KINDS[kind]
    src = make(tmp_path / "data")
    out = tmp_path / "out"
    r = _cli("convert", fmt, src, out)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "licenses" not in r.stderr
    assert "no labelled instances" not in r.stderr
    assert r.stderr.startswith(f"error: {src} looks like {words} ("), r.stderr
    assert f", not {TAKES[fmt]}; " in r.stderr
    assert r.stderr.endswith(f"; use `python -m dataset_tools convert {right} {src} {out}`\n")
    assert not out.exists()


# ----------------------------------------------------------------- real samples (optional)
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")


@needs_data
@pytest.mark.parametrize("path, fmt", [
    ("balloon_via/balloon/train/via_region_data.json", "via"),
    ("multiformat_2label/datasets/coco1.0/annotations/instances_default.json", "coco"),
    ("multiformat_2label/datasets/cvat1.1/annotations.xml", "cvat"),
    ("multiformat_2label/datasets/voc1.1", "voc"),
    ("multiformat_2label/datasets/labelme", "labelme"),
    ("labelme_examples/examples/instance_segmentation/data_annotated", "labelme"),
    ("multiformat_2label/datasets/labelme3.0", None),
    ("multiformat_2label/datasets/via/via_region_data.csv", None),
])
def test_real_exports_are_recognised(path, fmt):
    guess = sniff(SHARED_DATA / path)
    assert guess is not None and guess.format == fmt, guess
