"""What convert tells a user about their data beyond fixed/refused: a conversion that can
write nothing still prints and saves its reasons; labels that look like typos of each other;
regions named by --default-label; VOC images outside the chosen image set; __ignore__
regions ignored (not refused) in every format. Through the real CLI where the message and
the exit code are the point."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from maskrcnn_toolkit.core.dataset_folder import DatasetFolder
from maskrcnn_toolkit.dataset_tools.label_checks import _how_similar
from maskrcnn_toolkit.dataset_tools.readers import ReaderOptions, read
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
H, W = 8, 10
TRI = [[1, 1], [5, 1], [5, 5]]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dataset_tools", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _png(path: Path, shade: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H), (shade, shade, shade)).save(path)


def _json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _coco(d: Path, anns, names=("bolt",)) -> Path:
    images = []
    for i in range(1, 3):
        _png(d / f"{i}.png", shade=40 * i)
        images.append({"id": i, "file_name": f"{i}.png", "width": W, "height": H})
    return _json(d / "coco.json", {
        "images": images, "categories": [{"id": k, "name": n} for k, n in enumerate(names, 1)],
        "annotations": [{"id": k, "iscrowd": 0, "bbox": [1, 1, 4, 4], **a}
                        for k, a in enumerate(anns, 1)]})


def _labelme(d: Path, name: str, labels: list[str], shade: int = 90) -> None:
    _png(d / f"{name}.png", shade)
    _json(d / f"{name}.json", {
        "version": "5.4.1", "flags": {}, "imagePath": f"{name}.png", "imageData": None,
        "imageHeight": H, "imageWidth": W,
        "shapes": [{"label": lb, "points": [[1 + k, 1], [5 + k, 1], [5 + k, 5]],
                    "shape_type": "polygon", "group_id": None, "flags": {}}
                   for k, lb in enumerate(labels)]})


# ------------------------------------------------------------- everything refused (item 6)
def test_every_instance_refused_by_the_reader_keeps_the_reasons(tmp_path):
    src = _coco(tmp_path, [
        {"image_id": 1, "category_id": 7, "segmentation": [[1, 1, 5, 1, 5, 5]]},
        {"image_id": 2, "category_id": 1, "segmentation": [[1, 1, float("nan"), 1, 5, 5]]}])
    out = tmp_path / "out"
    r = _cli("convert", "coco", src, out)
    assert r.returncode == 2, r.stderr
    report = tmp_path / "out.report.json"
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: no instance is left to train on: 2 instances refused")
    assert f"Nothing was written to {out}; every finding is listed above and in {report}" \
        in r.stderr
    # The summary is printed before the error, as after a successful run.
    assert "validation: 2 refused" in r.stdout
    assert "annotation id 1: category id is not in 'categories' (value: category_id=7)" \
        in r.stdout
    assert "annotation id 2: polygon has a bad coordinate: nan" in r.stdout
    saved = json.loads(report.read_text())
    assert sorted(f["item"] for f in saved["findings"]) == ["annotation id 1", "annotation id 2"]
    assert saved["summary"]["instances_refused"] == 2 and "error" in saved
    assert not out.exists()


def test_every_image_refused_by_validation_keeps_the_reasons(tmp_path):
    outside = [[100, 100, 150, 100, 150, 150]]
    src = _coco(tmp_path, [{"image_id": 1, "category_id": 1, "segmentation": outside},
                           {"image_id": 2, "category_id": 1, "segmentation": outside}])
    out = tmp_path / "out"
    r = _cli("convert", "coco", src, out, "--val-fraction", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    report = DatasetFolder(out).failed_report
    err = r.stderr.splitlines()[-1]  # after the progress bar
    assert err.startswith("error: no training image survived validation (2 of 2 images and 2 "
                          "instances refused); most common: 2x polygon has zero area")
    assert err.endswith(f"every finding is listed above and in {report}")
    assert not out.exists()
    assert "polygon has zero area after clipping to the 10x8 image" in r.stdout
    saved = json.loads(report.read_text())
    assert saved["summary"]["images_refused"] == 2
    assert sum(f["severity"] == "refused" for f in saved["findings"]) == 4

    # Fixed data: the conversion succeeds and the stale report beside OUT goes away.
    _coco(tmp_path, [{"image_id": i, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]}
                     for i in (1, 2)])
    from maskrcnn_toolkit.dataset_tools.convert import convert
    convert("coco", src, out, val_fraction=0, progress=False, verbose=False)
    assert DatasetFolder(out).report.is_file() and not report.exists()


def test_a_label_map_that_names_no_label_writes_nothing(tmp_path):
    src = _coco(tmp_path, [{"image_id": i, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]}
                           for i in (1, 2)])
    (tmp_path / "labels.txt").write_text("nut\n")
    out = tmp_path / "out"
    r = _cli("convert", "coco", src, out, "--label-map", tmp_path / "labels.txt",
             "--val-fraction", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    err = r.stderr.splitlines()[-1]
    assert err.startswith("error: no instance survived validation (2 refused; the 2 images "
                          "left would be negative examples only); most common: 2x label")
    assert "label 'bolt' is not in the label map" in r.stdout
    assert DatasetFolder(out).failed_report.is_file() and not out.exists()


def test_no_annotations_at_all_is_still_the_plain_message(tmp_path, capsys):
    """Nothing refused, nothing annotated: no report to write, the message says so."""
    src = _coco(tmp_path, [])
    from maskrcnn_toolkit.dataset_tools.__main__ import main
    assert main(["convert", "coco", str(src), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == ("error: the annotations hold no labelled instances, so "
                                       "there is no class to train; check the annotation "
                                       "files (or pass --label-map FILE)\n")
    assert not DatasetFolder(tmp_path / "out").failed_report.exists()


# -------------------------------------------------------------- typos become classes (7)
@pytest.mark.parametrize("a, b, how", [
    ("persn", "person", "by 1 letter"),
    ("Person", "person", "only by case"),
    ("traffic light", "traffic_light", "only by case, spaces, underscores"),
    ("motorbike", "motorbkie", "by 2 letters"),
    ("cat", "car", None),  # short names: one letter is a real difference
    ("part1", "part2", None),  # numbered classes
    ("bolt", "washer", None),
    ("screw", "screws", "by 1 letter"),
])
def test_how_similar(a, b, how):
    got = _how_similar(a, b)
    assert (got is None) if how is None else (how in got), got


def test_typo_labels_are_warned_with_both_names_counts_and_files(tmp_path):
    d = tmp_path / "photos"
    _labelme(d, "a", ["person", "person", "cat"], 10)
    _labelme(d, "b", ["person", "car"], 20)
    _labelme(d, "c", ["persn"], 30)
    r = _cli("convert", "labelme", d, tmp_path / "out", "--val-fraction", "0")
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stdout.splitlines() if "labels 'persn' and 'person'" in ln]
    assert len(warn) == 1, r.stdout
    assert str(d / "c.json") in warn[0]
    assert ("label 'persn' (1 instance, e.g. c.json shapes[0]) differs from 'person' (3, e.g. "
            "a.json shapes[0]) by 1 letter; they are two classes now") in warn[0]
    assert "'cat'" not in r.stdout.split("labels")[0]  # cat / car: no warning
    assert not any("'car'" in ln and "labels" in ln for ln in r.stdout.splitlines())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [f["item"] for f in report["findings"] if f["item"].startswith("labels ")] == [
        "labels 'persn' and 'person'"]


def test_default_label_is_said_in_the_summary(tmp_path):
    _png(tmp_path / "a.png")
    region = {"shape_attributes": {"name": "polygon", "all_points_x": [1, 5, 5],
                                   "all_points_y": [1, 1, 5]}, "region_attributes": {}}
    src = _json(tmp_path / "via_region_data.json", {"a.png1": {
        "filename": "a.png", "size": 1, "file_attributes": {}, "regions": {"0": region}}})
    r = _cli("convert", "via", src, tmp_path / "out", "--val-fraction", "0")
    assert r.returncode == 0, r.stderr
    assert "all 1 regions named 'object' by --default-label" in r.stdout.splitlines()[-1]
    assert ("no region has a class attribute, so all 1 were named 'object', the default of "
            "--default-label; pass --default-label NAME") in r.stdout
    r = _cli("convert", "via", src, tmp_path / "out2", "--val-fraction", "0",
             "--default-label", "balloon")
    assert "all 1 regions named 'balloon' by --default-label" in r.stdout.splitlines()[-1]
    assert "no region has a class attribute" not in r.stdout  # the user named it


# ------------------------------------------------------- skipped VOC images are counted (8)
def test_voc_images_outside_the_image_set_are_counted_with_the_fix(tmp_path):
    for k, name in enumerate(("a", "b", "c", "d")):
        _png(tmp_path / "JPEGImages" / f"{name}.png", 30 * k)
        (tmp_path / "Annotations").mkdir(exist_ok=True)
        (tmp_path / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><object><name>bolt</name><bndbox>"
            f"<xmin>2</xmin><ymin>2</ymin><xmax>6</xmax><ymax>6</ymax></bndbox></object>"
            f"</annotation>")
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main").mkdir()
    (tmp_path / "ImageSets" / "Segmentation" / "default.txt").write_text("a\n")
    (tmp_path / "ImageSets" / "Main" / "default.txt").write_text("a\nb\nc\nd\n")
    r = _cli("convert", "voc", tmp_path, tmp_path / "out", "--box-as-polygon",
             "--val-fraction", "0")
    assert r.returncode == 0, r.stderr
    assert ("3 images of this dataset (3 with an Annotations XML, 3 with a file in "
            "JPEGImages/) are not in the image set read (Segmentation/default.txt), so they "
            "were not converted: b, c, d; ImageSets/Main/default.txt lists 3 of them: pass "
            "--voc-image-set Main/default to read that list instead") in r.stdout
    assert "converted 1 images" in r.stdout
    r = _cli("convert", "voc", tmp_path, tmp_path / "out2", "--box-as-polygon",
             "--val-fraction", "0", "--voc-image-set", "Main/default")
    assert "converted 4 images" in r.stdout and "not in the image set" not in r.stdout


# ------------------------------------------------- __ignore__ is ignored, not refused (8)
def _ignore_sources(d: Path) -> dict[str, Path]:
    """The same image with a 'bolt' and an '__ignore__' region, in each format."""
    _png(d / "a.png")
    poly = [1, 1, 5, 1, 5, 5]
    coco = _json(d / "c.json", {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "bolt"}, {"id": 2, "name": "__ignore__"}],
        "annotations": [{"id": i, "image_id": 1, "category_id": i, "iscrowd": 0,
                         "segmentation": [poly], "bbox": [1, 1, 4, 4]} for i in (1, 2)]})
    _labelme(d / "labelme", "a", ["bolt", "__ignore__"])
    region = {"shape_attributes": {"name": "polygon", "all_points_x": [1, 5, 5],
                                   "all_points_y": [1, 1, 5]}}
    via = _json(d / "via.json", {"a.png1": {"filename": "a.png", "size": 1, "regions": [
        {**region, "region_attributes": {"class": "bolt"}},
        {**region, "region_attributes": {"class": "__ignore__"}}]}})
    cvat = d / "annotations.xml"
    cvat.write_text(f'<annotations><image id="0" name="a.png" width="{W}" height="{H}">'
                    '<polygon label="bolt" points="1,1;5,1;5,5"/>'
                    '<polygon label="__ignore__" points="2,2;6,2;6,6"/></image></annotations>')
    voc = d / "voc"
    _png(voc / "JPEGImages" / "a.png")
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename>" + "".join(
            f"<object><name>{n}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>6</xmax>"
            f"<ymax>6</ymax></bndbox></object>" for n in ("bolt", "__ignore__"))
        + "</annotation>")
    return {"coco": coco, "labelme": d / "labelme", "via": via, "cvat": cvat, "voc": voc}


@pytest.mark.parametrize("fmt", ["coco", "labelme", "via", "cvat", "voc"])
def test_ignore_labels_are_ignored_in_every_reader(fmt, tmp_path):
    src = _ignore_sources(tmp_path)[fmt]
    rec, = read(fmt, src, ReaderOptions(box_as_polygon=True))
    assert [i.label for i in rec.instances] == ["bolt"]
    assert [(r.severity, r.value) for r in rec.refusals] == [("ignored", "label='__ignore__'")]
    assert "not an object class" in rec.refusals[0].reason


def test_strict_passes_with_ignore_regions(tmp_path):
    src = _ignore_sources(tmp_path)["labelme"]
    r = _cli("convert", "labelme", src, tmp_path / "out", "--strict", "--val-fraction", "0")
    assert r.returncode == 0, r.stderr
    assert "validation: 0 refused, 0 fixed, 0 warnings, 1 ignored" in r.stdout
    assert "1 ignored" in r.stdout.splitlines()[-1]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["ignored"] == 1 and report["summary"]["instances_refused"] == 0


# ----------------------------------------------------------------- real samples (optional)
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")


@needs_data
def test_real_labelme_example_passes_strict(tmp_path):
    src = (SHARED_DATA / "labelme_examples" / "examples" / "instance_segmentation"
           / "data_annotated")
    r = _cli("convert", "labelme", src, tmp_path / "out", "--strict")
    assert r.returncode == 0, r.stderr
    assert "2 ignored" in r.stdout.splitlines()[-1]


@needs_data
def test_real_voc_export_counts_the_images_it_leaves_out(tmp_path):
    r = _cli("convert", "voc", SHARED_DATA / "multiformat_2label" / "datasets" / "voc1.1",
             tmp_path / "out")
    assert "3 images of this dataset" in r.stdout and "--voc-image-set Main/default" in r.stdout


@needs_data
def test_real_balloon_names_its_class_in_the_summary(tmp_path):
    src = SHARED_DATA / "balloon_via" / "balloon" / "val" / "via_region_data.json"
    r = _cli("convert", "via", src, tmp_path / "out", "--default-label", "balloon")
    assert "all 50 regions named 'balloon' by --default-label" in r.stdout


def test_similar_labels_finds_every_pair_the_pairwise_rule_finds():
    """The symmetric-delete shortcut misses no pair that comparing every two labels finds."""
    import itertools
    import random

    from maskrcnn_toolkit.dataset_tools.label_checks import similar_labels
    from maskrcnn_toolkit.dataset_tools.records import ImageRecord, Instance
    rng = random.Random(0)
    names = sorted({"".join(rng.choices("abcde_ ", k=rng.randint(3, 11))).strip() or "x"
                    for _ in range(300)})
    brute = {(a, b) for a, b in itertools.combinations(names, 2) if _how_similar(a, b)}
    rec = ImageRecord("a.png", "a.json", instances=[Instance(label=n) for n in names])
    found = {tuple(sorted(f.item[len("labels '"):-1].split("' and '")))
             for f in similar_labels([rec])}
    assert brute and found == brute
