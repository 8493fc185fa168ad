"""COCO, LabelMe and VIA readers on tiny hand-made files (one per quirk), plus optional checks
on the real samples in ../shared/data (skipped when it is absent)."""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.masks import mask_to_rle, polygons_to_mask, rle_to_mask
from maskrcnn_toolkit.dataset_tools.readers import ReaderOptions, read
from tests.conftest import SHARED_DATA

H, W = 20, 30


def _image(path: Path, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H), (10, 200, 30)).save(path, fmt)
    return path


def _json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _png_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ----------------------------------------------------------------------------------- COCO

def _coco(tmp_path: Path, annotations, categories=None, images=None, layout="flat") -> Path:
    if layout == "annotations":  # CVAT/Datumaro: annotations/instances_x.json + images/
        _image(tmp_path / "images" / "a.png")
        _image(tmp_path / "images" / "b.png")
        path = tmp_path / "annotations" / "instances_default.json"
    else:
        _image(tmp_path / "a.png")
        _image(tmp_path / "b.png")
        path = tmp_path / "coco.json"
    return _json(path, {
        "images": images if images is not None else [
            {"id": 7, "file_name": "a.png", "width": W, "height": H},
            {"id": 8, "file_name": "b.png", "width": W, "height": H}],
        "annotations": annotations,
        "categories": categories if categories is not None else [
            {"id": 3, "name": "bolt"}, {"id": 90001, "name": "nut"}]})


def test_coco_polygons_rle_crowd_and_names(tmp_path):
    rle_mask = np.zeros((H, W), np.uint8)
    rle_mask[2:5, 3:9] = 1
    compressed = mask_to_rle(rle_mask)
    # Uncompressed counts: column-major runs, starting with zeros (COCO's convention).
    counts, run, value = [], 0, 0
    for v in rle_mask.flatten(order="F"):
        if v != value:
            counts.append(run)
            run, value = 0, v
        run += 1
    counts.append(run)
    assert sum(counts) == H * W and len(counts) > 3
    src = _coco(tmp_path, [
        {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0, "bbox": [0, 0, 9, 9],
         "segmentation": [[1, 1, 8, 1, 8, 8, 1, 8], [10, 10, 14, 10, 12, 14]]},
        {"id": 2, "image_id": 7, "category_id": 90001, "iscrowd": 1,
         "segmentation": {"size": [H, W], "counts": compressed["counts"]}},
        {"id": 3, "image_id": 7, "category_id": 90001, "iscrowd": 1,
         "segmentation": {"size": [H, W], "counts": counts}},
        {"id": 4, "image_id": 7, "category_id": 3, "segmentation": [1, 1, 5, 1, 5, 5]},
    ])
    recs = list(read("coco", src))
    assert [r.file_name for r in recs] == ["a.png", "b.png"]
    a, b = recs
    assert (a.width, a.height) == (W, H) and a.error is None
    assert a.image_path == str((tmp_path / "a.png").resolve())
    assert [i.label for i in a.instances] == ["bolt", "nut", "nut", "bolt"]
    poly = a.instances[0]
    assert poly.polygons == [[1, 1, 8, 1, 8, 8, 1, 8], [10, 10, 14, 10, 12, 14]]
    assert not poly.is_crowd and poly.source == "coco.json annotation id 1"
    assert a.instances[1].is_crowd and a.instances[1].rle["counts"] == compressed["counts"]
    assert a.instances[2].rle["counts"] == counts
    for inst in a.instances[1:3]:  # both RLE forms decode to the same mask
        np.testing.assert_array_equal(rle_to_mask(inst.rle, H, W), rle_mask)
    assert a.instances[3].polygons == [[1, 1, 5, 1, 5, 5]]  # bare flat list = one polygon
    assert b.instances == [] and b.refusals == [] and b.error is None  # no annotations


def test_coco_box_only_refusals_and_unknown_ids(tmp_path):
    anns = [
        {"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 3, 4, 5], "segmentation": []},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [1, 1, 2, 2]},  # no segmentation
        {"id": 3, "image_id": 7, "category_id": 999, "segmentation": [[1, 1, 5, 1, 5, 5]]},
        {"id": 4, "image_id": 12345, "category_id": 3, "segmentation": [[1, 1, 5, 1, 5, 5]]},
        {"id": 5, "image_id": 7, "category_id": 3, "segmentation": [[1, 1, 5, 1, 5]]},
        {"id": 6, "image_id": 7, "category_id": 3,
         "segmentation": {"size": [H, W], "counts": [5, 3]}},
        {"id": 7, "image_id": 7, "category_id": 3, "segmentation": [[]]},  # no bbox either
    ]
    src = _coco(tmp_path, anns)
    a, b, orphan = list(read("coco", src))
    assert [i.box_xywh_px for i in a.instances] == [(2.0, 3.0, 4.0, 5.0), (1.0, 1.0, 2.0, 2.0)]
    assert all(i.polygons is None and i.rle is None for i in a.instances)
    reasons = {r.item: r.reason for r in a.refusals}
    assert "not in 'categories'" in reasons["annotation id 3"]
    assert "odd number of coordinates" in reasons["annotation id 5"]
    assert "sum to 8" in reasons["annotation id 6"]
    assert "neither a segmentation nor a valid bbox" in reasons["annotation id 7"]
    assert orphan.error is not None and orphan.file_name == "(unknown image_id 12345)"
    assert "annotation id 4" in orphan.error.item and "not in 'images'" in orphan.error.reason

    a2 = next(iter(read("coco", src, ReaderOptions(box_as_polygon=True))))
    assert a2.instances[0].polygons == [[2, 3, 6, 3, 6, 8, 2, 8]]
    assert a2.instances[0].box_xywh_px is None


def test_coco_duplicate_category_names(tmp_path):
    seg = [[1, 1, 5, 1, 5, 5]]
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "segmentation": seg},
            {"id": 2, "image_id": 7, "category_id": 2, "segmentation": [[2, 2, 6, 2, 6, 6]]}]
    src = _coco(tmp_path, anns, categories=[{"id": 1, "name": "bolt", "supercategory": "p"},
                                            {"id": 2, "name": "bolt", "supercategory": "p"}])
    a = next(iter(read("coco", src)))
    assert [i.label for i in a.instances] == ["bolt", "bolt"]  # merged under one name
    src = _coco(tmp_path, anns, categories=[{"id": 1, "name": "head", "supercategory": "person"},
                                            {"id": 2, "name": "head", "supercategory": "screw"}])
    with pytest.raises(UserError, match="'head'.*Rename one"):
        read("coco", src)


def test_coco_image_locations(tmp_path):
    src = _coco(tmp_path, [], layout="annotations")
    recs = list(read("coco", src))
    assert recs[0].image_path == str((tmp_path / "images" / "a.png").resolve())
    other = _image(tmp_path / "elsewhere" / "a.png")
    rec = next(iter(read("coco", src, ReaderOptions(images_dir=tmp_path / "elsewhere"))))
    assert rec.image_path == str(other.resolve())
    with pytest.raises(UserError, match="--images .* is not a folder"):
        read("coco", src, ReaderOptions(images_dir=tmp_path / "nope"))
    src = _coco(tmp_path / "x", [], images=[{"id": 1, "file_name": "missing.png"},
                                            {"id": 2, "file_name": "../outside.png"},
                                            {"id": 3, "file_name": "x" * 5000 + "\x00.png"}])
    _image(tmp_path / "outside.png")
    missing, outside, absurd = list(read("coco", src))
    assert absurd.error and "not found" in absurd.error.reason
    assert missing.error and "not found" in missing.error.reason
    assert (missing.width, missing.height) == (None, None)
    assert outside.error and "outside the dataset root" in outside.error.reason


def test_coco_bom_and_odd_ids(tmp_path):
    _image(tmp_path / "a.png")
    doc = {"images": [{"id": "img-1", "file_name": "a.png", "width": float("inf"),
                       "height": "20"}],
           "annotations": [{"id": 1, "image_id": "img-1", "category_id": 2.0,
                            "segmentation": [[1, 1, 5, 1, 5, 5]]},
                           {"id": 2, "image_id": [1], "category_id": 2}],
           "categories": [{"id": 2, "name": " bolt "}]}
    src = tmp_path / "bom.json"
    src.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode())  # Windows tools write a BOM
    rec, orphan = list(read("coco", src))
    assert [i.label for i in rec.instances] == ["bolt"]  # 2.0 == 2, name stripped
    assert (rec.width, rec.height) == (None, None)  # Infinity and "20" are not sizes
    assert orphan.error and "image_id='[1]'" == orphan.error.value


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "top level is a JSON list"),
    ('{"images": [], "categories": []}', "missing 'annotations'"),
    ('{"images": {}, "annotations": [], "categories": []}', "'images' is a dict"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}', "file_name"),
    ('{"images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}],'
     ' "annotations": [], "categories": []}', "must be unique"),
])
def test_coco_broken_files(tmp_path, content, match):
    src = tmp_path / "bad.json"
    src.write_text(content)
    with pytest.raises(UserError, match=match) as e:
        read("coco", src)
    assert "bad.json" in str(e.value)


# -------------------------------------------------------------------------------- LabelMe

def _shape(label, points, shape_type="polygon", group_id=None, **extra):
    return {"label": label, "points": points, "shape_type": shape_type, "group_id": group_id,
            "flags": {}, **extra}


def _labelme(path: Path, shapes, image_path="img.png", image_data=None, size=(H, W)) -> Path:
    return _json(path, {"version": "5.4.1", "flags": {}, "shapes": shapes,
                        "imagePath": image_path, "imageData": image_data,
                        "imageHeight": size[0], "imageWidth": size[1]})


def test_labelme_shapes(tmp_path):
    _image(tmp_path / "img.png")
    patch = np.zeros((4, 5), np.uint8)
    patch[1:3, 1:4] = 1
    _labelme(tmp_path / "img.json", [
        _shape("bolt", [[1, 1], [9, 1], [9, 9]]),
        _shape("bolt", [[12, 15], [4, 2]], "rectangle"),  # corners in any order
        _shape("nut", [[15, 10], [15, 14]], "circle"),  # center, point on the circle: r = 4
        _shape("nut", [[10.4, 6.6], [14.4, 9.6]], "mask", mask=_png_b64(patch * 255)),
        _shape("washer", [[3, 3]], "point"),
        _shape("washer", [[1, 1], [5, 5]], "line"),
        _shape("washer", [[1, 1], [5, 5], [8, 2]], "linestrip"),
        _shape("__ignore__", [[1, 1], [5, 1], [5, 5]]),
        _shape("bolt", [[1, 1], [9, 1], [9, 9]], None),  # null shape_type = polygon
    ])
    rec = next(iter(read("labelme", tmp_path)))
    assert rec.image_path == str((tmp_path / "img.png").resolve()) and rec.embedded is None
    assert (rec.width, rec.height) == (W, H) and rec.file_name == "img.png"
    labels = [i.label for i in rec.instances]
    assert labels == ["bolt", "bolt", "nut", "nut"]
    poly, rect, circle, mask = rec.instances
    assert poly.polygons == [[1, 1, 9, 1, 9, 9]] and poly.source == "img.json shapes[0]"
    assert rect.polygons == [[4, 2, 12, 2, 12, 15, 4, 15]]
    pts = np.array(circle.polygons[0]).reshape(-1, 2)
    assert len(pts) >= 16
    np.testing.assert_allclose(np.hypot(pts[:, 0] - 15, pts[:, 1] - 10), 4.0)
    full = rle_to_mask(mask.rle, H, W)
    expected = np.zeros((H, W), np.uint8)
    # Pasted at the truncated corner (10, 6), as labelme's np.asarray(points).astype(int).
    expected[6 + 1:6 + 3, 10 + 1:10 + 4] = 1
    np.testing.assert_array_equal(full, expected)
    reasons = {r.item: (r.value, r.reason) for r in rec.refusals}
    assert "has no area" in reasons["shapes[4]"][1] and "point" in reasons["shapes[4]"][0]
    assert "has no area" in reasons["shapes[5]"][1]
    assert "has no area" in reasons["shapes[6]"][1]
    assert "not an object class" in reasons["shapes[7]"][1]
    severities = {r.item: r.severity for r in rec.refusals}
    assert severities["shapes[7]"] == "ignored" and severities["shapes[4]"] == "refused"
    # shapes[8] repeats shapes[0] exactly: kept once, refused with a reason
    assert "exact duplicate of shapes[0]" in reasons["shapes[8]"][1]


def test_labelme_group_id_merging(tmp_path):
    _image(tmp_path / "img.png")
    a, b, c = [[1, 1], [4, 1], [4, 4]], [[6, 6], [9, 6], [9, 9]], [[11, 1], [14, 1], [14, 4]]
    _labelme(tmp_path / "img.json", [
        _shape("sofa", a, group_id=1), _shape("person", b), _shape("sofa", b, group_id=1),
        _shape("chair", c, group_id=1),  # same group_id, other label: its own instance
        _shape("person", c),  # group_id null: each shape alone
    ])
    rec = next(iter(read("labelme", tmp_path)))
    got = [(i.label, i.polygons, i.source) for i in rec.instances]
    flat = lambda p: [v for xy in p for v in xy]  # noqa: E731
    assert got == [
        ("sofa", [flat(a), flat(b)], "img.json shapes[0,2] (group_id 1)"),
        ("person", [flat(b)], "img.json shapes[1]"),
        ("chair", [flat(c)], "img.json shapes[3] (group_id 1)"),
        ("person", [flat(c)], "img.json shapes[4]"),
    ]


def test_labelme_mask_and_polygon_in_one_group(tmp_path):
    _image(tmp_path / "img.png")
    patch = np.full((2, 2), 255, np.uint8)
    _labelme(tmp_path / "img.json", [
        _shape("bolt", [[0, 0], [1, 1]], "mask", group_id=4, mask=_png_b64(patch)),
        _shape("bolt", [[10, 10], [14, 10], [14, 14], [10, 14]], group_id=4)])
    inst, = next(iter(read("labelme", tmp_path))).instances
    full = rle_to_mask(inst.rle, H, W)
    assert full[0:2, 0:2].all() and full[11:13, 11:13].all() and full[5, 5] == 0
    assert inst.source == "img.json shapes[0,1] (group_id 4)"


def test_labelme_images_embedded_relative_and_skipped(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (W, H)).save(buf, "JPEG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    tri = [_shape("bolt", [[1, 1], [9, 1], [9, 9]])]
    _labelme(tmp_path / "tut" / "tutorial.json", tri, "tutorial.json", b64)  # points at itself
    _image(tmp_path / "photos" / "sub" / "p.png")
    _labelme(tmp_path / "ann" / "win.json", tri, "..\\photos\\sub\\p.png")  # Windows path
    _labelme(tmp_path / "ann" / "gone.json", tri, "gone.png")
    _json(tmp_path / "ann" / "coco.json", {"images": [], "annotations": []})
    recs = {r.annotation_file: r for r in read("labelme", tmp_path)}
    assert len(recs) == 4
    tut = recs[str(tmp_path / "tut" / "tutorial.json")]
    assert tut.embedded == (str((tmp_path / "tut" / "tutorial.json").resolve()), "imageData")
    assert tut.image_path is None and tut.file_name == "tut/tutorial.jpg"
    win = recs[str(tmp_path / "ann" / "win.json")]
    assert win.image_path == str((tmp_path / "photos" / "sub" / "p.png").resolve())
    assert win.file_name == "photos/sub/p.png" and win.error is None
    gone = recs[str(tmp_path / "ann" / "gone.json")]
    assert gone.error and "not found" in gone.error.reason
    skipped = recs[str(tmp_path / "ann" / "coco.json")]
    assert skipped.error and "not a LabelMe annotation" in skipped.error.reason
    assert "skipped" in skipped.error.reason
    # --images overrides where images are looked for (even over embedded data)
    _image(tmp_path / "over" / "tutorial.json")  # odd name, still an image
    one = next(iter(read("labelme", tmp_path / "tut" / "tutorial.json",
                         ReaderOptions(images_dir=tmp_path / "over"))))
    assert one.image_path == str((tmp_path / "over" / "tutorial.json").resolve())
    assert one.embedded is None


def test_labelme_broken_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .json files"):
        read("labelme", tmp_path / "empty")
    bad = tmp_path / "bad" / "x.json"
    bad.parent.mkdir()
    bad.write_text('{"shapes": [')
    with pytest.raises(UserError, match=r"x\.json: not valid JSON"):
        list(read("labelme", bad.parent))
    _image(tmp_path / "ok" / "img.png")
    _labelme(tmp_path / "ok" / "img.json", [
        _shape("bolt", [[1, "a"], [2, 2], [3, 1]]), _shape("bolt", [[1, 1]], "circle"),
        _shape("", [[1, 1], [2, 2], [3, 1]]), _shape("bolt", [[1, 1], [2, 2]], "cuboid")])
    rec = next(iter(read("labelme", tmp_path / "ok")))
    assert rec.instances == []
    assert [r.item for r in rec.refusals] == [f"shapes[{i}]" for i in range(4)]
    assert "points must be" in rec.refusals[0].reason
    assert "circle needs 2 points" in rec.refusals[1].reason
    assert "no label" in rec.refusals[2].reason
    assert "unsupported" in rec.refusals[3].reason


# ------------------------------------------------------------------------------------ VIA

def _region(shape, **attrs):
    return {"shape_attributes": shape, "region_attributes": attrs}


POLY = {"name": "polygon", "all_points_x": [1, 8, 8], "all_points_y": [1, 1, 8]}


def test_via_1x_balloon_style_default_label(tmp_path):
    _image(tmp_path / "a.jpg", "JPEG")
    src = _json(tmp_path / "via_region_data.json", {"a.jpg1234": {
        "fileref": "", "size": 1234, "filename": "a.jpg", "base64_img_data": "",
        "file_attributes": {}, "regions": {"0": _region(POLY), "1": _region(
            {"name": "polygon", "all_points_x": [2, 9, 9, 2], "all_points_y": [2, 2, 9, 2]})}}})
    rec, = read("via", src, ReaderOptions(default_label="balloon"))
    assert [i.label for i in rec.instances] == ["balloon", "balloon"]
    assert rec.instances[0].polygons == [[1, 1, 8, 1, 8, 8]]
    assert rec.instances[1].source == "via_region_data.json 'a.jpg' regions[1]"
    assert rec.image_path == str((tmp_path / "a.jpg").resolve())
    assert (rec.width, rec.height) == (None, None)


def test_via_2x_shapes_and_attribute(tmp_path):
    _image(tmp_path / "imgs" / "a.png")
    regions = [
        _region({"name": "rect", "x": 2, "y": 3, "width": 4, "height": 5}, cls="bolt"),
        _region({"name": "circle", "cx": 10, "cy": 10, "r": 3}, cls="nut"),
        _region({"name": "ellipse", "cx": 10, "cy": 8, "rx": 6, "ry": 2,
                 "theta": math.pi / 2}, cls="nut"),
        _region({"name": "polyline", "all_points_x": [1, 5, 5], "all_points_y": [1, 1, 5]},
                cls="washer"),
        _region({"name": "polyline", "all_points_x": [1, 5], "all_points_y": [1, 1]},
                cls="washer"),
        _region({"name": "point", "cx": 3, "cy": 3}, cls="bolt"),
        _region(POLY, cls=""),
        _region(POLY, cls={"bolt": True, "nut": False}),  # checkbox, one checked
        _region(POLY, cls={"bolt": True, "nut": True}),
    ]
    src = _json(tmp_path / "project.json", {
        "_via_settings": {"core": {"default_filepath": "imgs/", "filepath": {}}},
        "_via_img_metadata": {"a.png-1": {"filename": "a.png", "size": -1, "regions": regions,
                                          "file_attributes": {}}},
        "_via_attributes": {"region": {"cls": {"type": "text"}}, "file": {}}})
    rec, = read("via", src)  # one attribute with values: used without --via-attribute
    assert rec.image_path == str((tmp_path / "imgs" / "a.png").resolve())  # default_filepath
    assert [i.label for i in rec.instances] == ["bolt", "nut", "nut", "washer", "bolt"]
    rect, circle, ellipse, polyline, checkbox = rec.instances
    assert rect.polygons == [[2, 3, 6, 3, 6, 8, 2, 8]]
    pts = np.array(circle.polygons[0]).reshape(-1, 2)
    np.testing.assert_allclose(np.hypot(pts[:, 0] - 10, pts[:, 1] - 10), 3.0)
    e = np.array(ellipse.polygons[0]).reshape(-1, 2)
    # theta = 90 degrees turns the long (rx = 6) axis from x to y (y down).
    np.testing.assert_allclose(e[0], [10, 14], atol=1e-9)
    np.testing.assert_allclose(((e[:, 0] - 10) / 2) ** 2 + ((e[:, 1] - 8) / 6) ** 2, 1.0)
    assert polyline.polygons == [[1, 1, 5, 1, 5, 5]]  # closed into a polygon
    assert checkbox.polygons == [[1, 1, 8, 1, 8, 8]]
    reasons = {r.item.split()[-1]: r.reason for r in rec.refusals}
    assert ">= 3 points" in reasons["regions[4]"]
    assert "no area" in reasons["regions[5]"]
    assert "no value for the class attribute 'cls'" in reasons["regions[6]"]
    assert "2 options are checked" in reasons["regions[8]"]


def test_via_attribute_choice(tmp_path):
    _image(tmp_path / "a.png")
    data = {"a.png10": {"filename": "a.png", "size": 10, "file_attributes": {}, "regions": [
        _region(POLY, type="bolt", name="left one"), _region(POLY, type="bolt")]}}
    src = _json(tmp_path / "v.json", data)
    with pytest.raises(UserError, match=r"'name' \(1 regions\), 'type' \(2 regions\).*"
                                        r"--via-attribute"):
        read("via", src)
    rec, = read("via", src, ReaderOptions(via_attribute="type"))
    assert [i.label for i in rec.instances] == ["bolt"]  # the second is an exact duplicate
    assert "exact duplicate" in rec.refusals[0].reason
    with pytest.raises(UserError, match="'kind'.*'name', 'type'"):
        read("via", src, ReaderOptions(via_attribute="kind"))


@pytest.mark.parametrize("content, match", [
    ("{oops", "not valid JSON"),
    ("[]", "top level is a JSON list"),
    ("{}", "holds no images"),
    ('{"x": {"size": 1}}', "no 'filename'"),
    ('{"project": {}, "file": {}, "metadata": {}}', "VIA 3 project"),
])
def test_via_broken_files(tmp_path, content, match):
    src = tmp_path / "via.json"
    src.write_text(content)
    with pytest.raises(UserError, match=match) as e:
        read("via", src)
    assert "via.json" in str(e.value)


# ----------------------------------------------------------------- real samples (optional)

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")


@needs_data
@pytest.mark.parametrize("split, images, polygons", [("train", 61, 255), ("val", 13, 50)])
def test_real_balloon_via(split, images, polygons):
    src = SHARED_DATA / "balloon_via" / "balloon" / split / "via_region_data.json"
    recs = list(read("via", src, ReaderOptions(default_label="balloon")))
    assert len(recs) == images and all(r.error is None for r in recs)
    assert sum(len(r.instances) for r in recs) == polygons
    assert all(r.refusals == [] for r in recs)
    assert {i.label for r in recs for i in r.instances} == {"balloon"}


@needs_data
def test_real_labelme_matches_labelmes_own_coco_conversion():
    """labelme's examples/instance_segmentation: our instances are exactly the annotations
    labelme2coco wrote (same labels, same parts, same vertices), __ignore__ ignored."""
    base = SHARED_DATA / "labelme_examples" / "examples" / "instance_segmentation"
    coco = json.loads((base / "data_dataset_coco" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    theirs = {}
    for im in coco["images"]:
        stem = Path(im["file_name"]).stem
        theirs[stem] = sorted((names[a["category_id"]], a["segmentation"])
                              for a in coco["annotations"] if a["image_id"] == im["id"])
    recs = list(read("labelme", base / "data_annotated"))
    ours = {Path(r.file_name).stem: sorted((i.label, i.polygons) for i in r.instances)
            for r in recs}
    assert ours == theirs
    assert sum(len(v) for v in ours.values()) == 12
    ignored = [(f.severity, f.value) for r in recs for f in r.refusals]
    assert ignored == [("ignored", "label='__ignore__'")] * 2
    # labelme's own COCO file read back by the COCO reader gives the same instances
    back = {Path(r.file_name).stem: sorted((i.label, i.polygons) for i in r.instances)
            for r in read("coco", base / "data_dataset_coco" / "annotations.json")}
    assert back == theirs


@needs_data
def test_real_labelme_tutorial_and_primitives():
    ex = SHARED_DATA / "labelme_examples" / "examples"
    tut, = read("labelme", ex / "tutorial")
    assert tut.embedded is not None and len(tut.instances) == 4
    prim, = read("labelme", ex / "primitives")
    assert [i.label for i in prim.instances] == ["rectangle", "circle", "rectangle", "polygon",
                                                 "octagon"]
    assert sorted(r.value.split()[0] for r in prim.refusals) == [
        "shape_type='line'", "shape_type='linestrip'", "shape_type='point'"]
    # labelme's own rasterization of the mask shape: the decoded patch at its rounded corner
    octagon = rle_to_mask(prim.instances[4].rle, 450, 560)
    assert octagon[:, :417].sum() == 0 and octagon[:305].sum() == 0 and octagon.sum() > 5000
    circle = polygons_to_mask(prim.instances[1].polygons, 450, 560)
    r = math.hypot(225 - 195, 125 - 84)
    assert circle.sum() == pytest.approx(math.pi * r * r, rel=0.02)


@needs_data
def test_real_multiformat_sets():
    d = SHARED_DATA / "multiformat_2label" / "datasets"
    coco = list(read("coco", d / "coco1.0" / "annotations" / "instances_default.json"))
    assert len(coco) == 4 and all(r.error is None for r in coco)
    insts = [i for r in coco for i in r.instances]
    assert len(insts) == 23
    assert sum(i.box_xywh_px is not None for i in insts) == 18  # CVAT boxes: empty segmentation
    assert sum(i.rle is not None and i.is_crowd for i in insts) == 2  # ellipses as crowd RLE

    lm = {r.file_name: r for r in read("labelme", d / "labelme")}
    assert sorted(lm) == ["birds.jpg", "crack.jpeg", "shapes.jpg", "strawberry.jpg"]
    assert all(r.embedded is not None for r in lm.values())
    assert sum(len(r.instances) for r in lm.values()) == 23
    assert [f.value for f in lm["crack.jpeg"].refusals] == ["shape_type='linestrip' "
                                                           "label='crack'"]

    via = {r.file_name: r for r in read("via", d / "via" / "via_region_data.json")}
    assert len(via["strawberry.jpg"].instances) == 17  # every box is in the file twice
    assert len(via["strawberry.jpg"].refusals) == 17
    assert [i.label for i in via["shapes.jpg"].instances] == [
        "rectangle", "triangle", "ellipse", "circle", "line"]

    grapes = list(read("labelme", d / "grapes"))
    assert len(grapes) == 11 and sum(len(r.instances) for r in grapes) == 39
    assert {i.label for r in grapes for i in r.instances} == {"green_grape", "black_grape"}


def test_resolve_image_is_lexical_symlinks_inside_root_are_fine(tmp_path):
    from maskrcnn_toolkit.dataset_tools.readers._common import resolve_image
    store = tmp_path / "store"  # images shared from outside the dataset
    store.mkdir()
    (store / "a.jpg").write_bytes(b"x")
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    try:
        (root / "images" / "a.jpg").symlink_to(store / "a.jpg")
    except OSError:
        pytest.skip("this filesystem cannot make symlinks")
    found, reason = resolve_image("images/a.jpg", [root], root)
    assert reason == "" and found == root / "images" / "a.jpg"
    # A "../" escape is still refused, even though the file exists.
    found, reason = resolve_image("../store/a.jpg", [root], root)
    assert found is None and "outside the dataset root" in reason
