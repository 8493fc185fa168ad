"""convert: records decode with Model Garden's decoder pixel-exact, COCO GT is consistent,
every refusal / fix is reported with its reason, outputs are atomic."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from maskrcnn_toolkit.core.dataset_folder import DatasetFolder
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import LabelMap, read_label_map
from maskrcnn_toolkit.core.masks import polygons_to_mask, rle_to_mask
from maskrcnn_toolkit.dataset_tools.convert import convert
from maskrcnn_toolkit.dataset_tools.split import split_records

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "dataset_tools", *map(str, args)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=timeout)


def _records(folder: Path, split: str) -> list[bytes]:
    import tensorflow as tf
    return list(tf.data.TFRecordDataset([str(p) for p in DatasetFolder(folder).shards(split)])
                .as_numpy_iterator())


class _Decoded(NamedTuple):
    file_name: str
    image: np.ndarray  # uint8 [H, W, 3]; [0, 0, 3] when not decoded
    class_ids: list[int]  # label-map ids


def _decode_example(serialized: bytes, decode_image: bool = True) -> _Decoded:
    """One record as TensorFlow's own ``tf.train.Example`` parser reads it."""
    import tensorflow as tf
    f = tf.train.Example.FromString(serialized).features.feature
    image = np.zeros((0, 0, 3), np.uint8)
    if decode_image:
        with Image.open(io.BytesIO(f["image/encoded"].bytes_list.value[0])) as im:
            image = np.asarray(im.convert("RGB"))
    return _Decoded(f["image/filename"].bytes_list.value[0].decode("utf-8"), image,
                    list(f["image/object/class/label"].int64_list.value))


def _no_temporaries(parent: Path) -> list[str]:
    return [p.name for p in parent.rglob("*") if ".tmp-" in p.name]


# ------------------------------------------------------------------ hand-made COCO datasets
def _image(path: Path, w: int, h: int, seed: int, mode: str = "RGB", fmt: str = "JPEG",
           exif_orientation: int | None = None) -> None:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    if mode != "RGB":
        im = im.convert(mode)
    kw = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)


def _square(x, y, s):
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def _coco(path: Path, images: list[dict], anns: list[dict], names=("bolt", "nut")) -> Path:
    for k, a in enumerate(anns, start=1):
        a.setdefault("id", k)
        a.setdefault("iscrowd", 0)
        a.setdefault("bbox", [0, 0, 1, 1])
        a.setdefault("area", 1)
    cats = [{"id": 10 * (i + 1), "name": n} for i, n in enumerate(names)]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


@pytest.fixture(scope="module")
def bad_source(tmp_path_factory) -> Path:
    """A COCO set exercising every fix and refusal. Images 64x48 (W x H)."""
    root = tmp_path_factory.mktemp("bad")
    ds = root / "ds"
    ds.mkdir()
    W, H = 64, 48
    files = {"ok.jpg": {}, "exif.jpg": {"exif_orientation": 6}, "gray.jpg": {"mode": "L"},
             "rgba.png": {"mode": "RGBA", "fmt": "PNG"}, "pal.png": {"mode": "P", "fmt": "PNG"},
             "cmyk.jpg": {"mode": "CMYK"}, "declared.jpg": {}, "negative.jpg": {},
             "allbad.jpg": {}}
    for seed, (name, kw) in enumerate(files.items()):
        _image(ds / name, W, H, seed, **kw)
    (ds / "dup.jpg").write_bytes((ds / "ok.jpg").read_bytes())
    (ds / "text.jpg").write_text("this is not an image")
    ok_bytes = (ds / "ok.jpg").read_bytes()
    (ds / "corrupt.jpg").write_bytes(ok_bytes[:len(ok_bytes) // 2])  # truncated
    _image(root / "outside.jpg", W, H, 99)
    names = ["ok.jpg", "missing.jpg", "corrupt.jpg", "text.jpg", "dup.jpg", "exif.jpg",
             "gray.jpg", "rgba.png", "pal.png", "cmyk.jpg", "declared.jpg", "negative.jpg",
             "allbad.jpg", "../outside.jpg"]
    images = [{"id": i, "file_name": n, "width": W, "height": H}
              for i, n in enumerate(names, start=1)]
    images[5].update(width=H, height=W)  # exif.jpg: annotated as displayed (rotated)
    images[10].update(width=80, height=60)  # declared.jpg: wrong declared size
    ok = 1
    anns = [
        {"id": 1, "image_id": ok, "category_id": 10, "segmentation": [_square(4, 4, 10)]},
        {"id": 2, "image_id": ok, "category_id": 20, "segmentation": [_square(20, 4, 10)],
         "iscrowd": 1},
        {"id": 3, "image_id": ok, "category_id": 10, "segmentation": [_square(56, 30, 20)]},
        {"id": 4, "image_id": ok, "category_id": 30, "segmentation": [[1, 1, 5, 5]]},  # ghost
        # Same square as id 1, vertices listed from another corner: the same mask.
        {"id": 5, "image_id": ok, "category_id": 10,
         "segmentation": [_square(4, 4, 10)[2:] + _square(4, 4, 10)[:2]]},
        # Matches declared.jpg's declared size (80x60), not its file (64x48).
        {"id": 6, "image_id": 11, "category_id": 20,
         "segmentation": {"size": [60, 80], "counts": [0, 4800]}},
        {"id": 7, "image_id": ok, "category_id": 20, "segmentation": [], "bbox": [2, 2, 5, 5]},
        {"id": 8, "image_id": ok, "category_id": 20, "segmentation": [_square(100, 100, 9)]},
        {"id": 9, "image_id": 13, "category_id": 10, "segmentation": [[1, 1, 5, 5]]},
    ]
    for img in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14):
        anns.append({"image_id": img, "category_id": 10, "segmentation": [_square(8, 8, 12)]})
    for k, a in enumerate(anns, start=1):
        a["id"] = k
    return _coco(ds / "annotations.json", images, anns, names=("bolt", "nut", "ghost"))


@pytest.fixture(scope="module")
def bad_converted(bad_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad_out") / "data"
    summary = convert("coco", bad_source, out, val_fraction=0, workers=1, progress=False,
                      verbose=False)
    return summary, out, json.loads((out / "report.json").read_text())


EXPECTED = [  # (image file or annotation id, severity, text the reason must contain)
    ("missing.jpg", "refused", "not found"),
    ("corrupt.jpg", "refused", "corrupt or truncated image"),
    ("text.jpg", "refused", "not an image file"),
    ("dup.jpg", "refused", "duplicate image: same bytes as 'ok.jpg'"),
    ("outside.jpg", "refused", "outside the dataset root"),
    ("allbad.jpg", "refused", "every instance of this image was refused"),
    ("exif.jpg", "fixed", "EXIF orientation applied"),
    ("gray.jpg", "fixed", "converted L to RGB"),
    ("rgba.png", "fixed", "converted RGBA to RGB"),
    ("pal.png", "fixed", "converted P to RGB"),
    ("cmyk.jpg", "fixed", "converted CMYK to RGB"),
    ("declared.jpg", "fixed", "differs from the size the annotation declares"),
    ("negative.jpg", "warning", "kept as a negative example"),
    ("annotation id 3", "fixed", "vertices outside the 64x48 image clipped"),
    ("annotation id 4", "refused", "a polygon needs at least 3"),
    ("annotation id 5", "refused", "exact duplicate (same label and mask) of"),
    ("annotation id 6", "refused", "RLE size [60, 80] differs from the image size [48, 64]"),
    ("annotation id 7", "refused", "box-only annotation"),
    ("annotation id 8", "refused", "zero area after clipping"),
    ("ghost", "warning", "class 'ghost' has no instances after validation"),
]


@pytest.mark.parametrize("what,severity,text", EXPECTED, ids=[e[0] for e in EXPECTED])
def test_every_problem_is_reported_with_its_reason(bad_converted, what, severity, text):
    _, _, report = bad_converted
    hits = [f for f in report["findings"]
            if (f["item"].endswith(what) or f["value"].endswith(what))]
    assert hits, f"no finding for {what}: {report['findings']}"
    assert any(f["severity"] == severity and text in f["reason"] for f in hits), hits


def test_bad_dataset_writes_the_good_part(bad_converted):
    summary, out, report = bad_converted
    # written: ok, exif, gray, rgba, pal, cmyk, declared, negative
    assert summary.train_images == 8 and summary.val_images == 0
    assert summary.images_refused == 6
    gt = json.loads((out / "train_annotations.json").read_text())
    by_name = {im["file_name"]: im for im in gt["images"]}
    assert set(by_name) == {"ok.jpg", "exif.jpg", "gray.jpg", "rgba.png", "pal.png",
                            "cmyk.jpg", "declared.jpg", "negative.jpg"}
    assert (by_name["exif.jpg"]["width"], by_name["exif.jpg"]["height"]) == (48, 64)
    assert (by_name["declared.jpg"]["width"], by_name["declared.jpg"]["height"]) == (64, 48)
    ok_anns = [a for a in gt["annotations"] if a["image_id"] == by_name["ok.jpg"]["id"]]
    assert sorted(a["iscrowd"] for a in ok_anns) == [0, 0, 1]  # ids 1, 2 (crowd), 3 (clipped)
    clipped = max(ok_anns, key=lambda a: a["bbox"][0])
    assert clipped["bbox"] == [56, 30, 8, 18]  # clipped to the 64x48 image
    assert report["classes"]["ghost"] == {"id": 2, "train": 0, "val": 0}  # sorted names
    # Pass-through: the untouched JPEG's bytes are in the record; re-encoded ones are RGB.
    recs = {d.file_name: d for d in map(_decode_example, _records(out, "train"))}
    assert recs["cmyk.jpg"].image.shape == (48, 64, 3)
    import tensorflow as tf
    raw = {tf.train.Example.FromString(r).features.feature["image/filename"].bytes_list
           .value[0].decode(): tf.train.Example.FromString(r) for r in _records(out, "train")}
    enc = raw["ok.jpg"].features.feature["image/encoded"].bytes_list.value[0]
    assert enc == (Path(report["command"]["src"]).parent / "ok.jpg").read_bytes()
    assert raw["rgba.png"].features.feature["image/format"].bytes_list.value[0] == b"png"
    assert Image.open(io.BytesIO(raw["pal.png"].features.feature["image/encoded"]
                                 .bytes_list.value[0])).mode == "RGB"


def test_records_decode_pixel_exact_with_model_garden(tiny_dataset):
    """Model Garden's own decoder reads our records; masks equal the COCO GT RLE and what
    the source annotation rasterizes to, pixel for pixel."""
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    src = json.loads((tiny_dataset.parent / "synth" / "annotations.json").read_text())
    src_images = {im["file_name"]: im for im in src["images"]}
    src_cats = {c["id"]: c["name"] for c in src["categories"]}
    src_anns = {}
    for a in src["annotations"]:
        src_anns.setdefault(a["image_id"], []).append(a)
    lm = read_label_map(tiny_dataset / "label_map.pbtxt")
    assert lm.names == sorted(src_cats.values())
    decoder = TfExampleDecoder(include_mask=True)
    seen_ids = set()
    for split in ("train", "val"):
        gt = json.loads((tiny_dataset / f"{split}_annotations.json").read_text())
        assert {c["id"]: c["name"] for c in gt["categories"]} == lm.names_by_id
        gt_images = {im["id"]: im for im in gt["images"]}
        gt_anns = {}
        for a in gt["annotations"]:
            gt_anns.setdefault(a["image_id"], []).append(a)
        records = _records(tiny_dataset, split)
        assert len(records) == len(gt_images) > 0
        decoded = tf.data.Dataset.from_tensor_slices(records).map(decoder.decode)
        for raw, ex in zip(records, decoded):
            image_id = int(ex["source_id"].numpy())
            assert image_id not in seen_ids
            seen_ids.add(image_id)
            h, w = int(ex["height"]), int(ex["width"])
            masks = ex["groundtruth_instance_masks"].numpy()
            # Values exactly 0.0 / 1.0: Model Garden's decoder does not binarize by default,
            # so any other value would become the mask training target.
            assert set(np.unique(masks).tolist()) <= {0.0, 1.0}
            masks = masks == 1.0
            anns = gt_anns.get(image_id, [])
            assert masks.shape == (len(anns), h, w)
            file_name = gt_images[image_id]["file_name"]
            source = src_anns[src_images[file_name]["id"]]
            assert len(source) == len(anns)
            np.testing.assert_array_equal(ex["groundtruth_classes"].numpy(),
                                          [a["category_id"] for a in anns])
            for m, a, s in zip(masks, anns, source):
                np.testing.assert_array_equal(m, rle_to_mask(a["segmentation"], h, w) > 0)
                seg = s["segmentation"]
                want = (rle_to_mask(seg, h, w) if isinstance(seg, dict)
                        else polygons_to_mask(seg, h, w))
                np.testing.assert_array_equal(m, want > 0)
                assert lm.name(a["category_id"]) == src_cats[s["category_id"]]
                assert a["area"] == m.sum()
                ys, xs = np.nonzero(m)
                assert a["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                                     ys.max() + 1 - ys.min()]
            boxes = ex["groundtruth_boxes"].numpy() * [h, w, h, w]
            want_boxes = [[a["bbox"][1], a["bbox"][0], a["bbox"][1] + a["bbox"][3],
                           a["bbox"][0] + a["bbox"][2]] for a in anns]
            np.testing.assert_allclose(boxes.reshape(-1, 4), np.reshape(want_boxes, (-1, 4)),
                                       atol=1e-3)
            # JPEG bytes pass through untouched.
            enc = tf.train.Example.FromString(raw).features.feature["image/encoded"]
            assert enc.bytes_list.value[0] == (tiny_dataset.parent / "synth" / "images"
                                               / file_name).read_bytes()


def test_split_is_deterministic(tiny_dataset):
    names = [f"{i:06d}.jpg" for i in range(1, 13)]
    a = split_records(names, 0.25, 0, name=lambda n: n)
    assert a == split_records(names, 0.25, 0, name=lambda n: n)
    assert len(a[1]) == 3
    assert a != split_records(names, 0.25, 1, name=lambda n: n)
    val = json.loads((tiny_dataset / "val_annotations.json").read_text())
    assert sorted(im["file_name"] for im in val["images"]) == sorted(a[1])
    with pytest.raises(UserError, match="--val-fraction 1.5 is out of range"):
        split_records(names, 1.5, 0)


def _small_source(root: Path, names, labels, seed=0) -> Path:
    images, anns = [], []
    for i, n in enumerate(names, start=1):
        _image(root / n, 32, 32, seed + i)
        images.append({"id": i, "file_name": n, "width": 32, "height": 32})
        anns.append({"image_id": i, "category_id": 10 * (1 + i % len(labels)),
                     "segmentation": [_square(2 + i, 3, 9)]})
    return _coco(root / "annotations.json", images, anns, names=labels)


def test_val_source_label_map_ids_and_overwrite(tmp_path):
    train = _small_source(tmp_path / "a", ["a1.jpg", "a2.jpg", "a3.jpg"], ("bolt", "nut"))
    val = _small_source(tmp_path / "b", ["b1.jpg", "b2.jpg"], ("nut", "washer"), seed=50)
    (tmp_path / "labels.pbtxt").write_text(
        "item { id: 7 name: 'nut' }\nitem { id: 3 name: 'bolt' }\n")
    out = tmp_path / "out"
    s = convert("coco", train, out, val=val, label_map=tmp_path / "labels.pbtxt",
                num_shards=2, progress=False, verbose=False)
    # b1's only object is a 'washer', left out of the label map: b1 stays as a negative.
    assert (s.train_images, s.val_images) == (3, 2)
    report = json.loads((out / "report.json").read_text())
    assert any("label 'washer' is not in the label map" in f["reason"]
               for f in report["findings"])
    assert any(f["item"] == "b1.jpg" and f["severity"] == "warning"
               and "only of classes outside the label map" in f["reason"]
               for f in report["findings"])
    assert [p.name for p in DatasetFolder(out).shards("train")] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    gt_t = json.loads((out / "train_annotations.json").read_text())
    gt_v = json.loads((out / "val_annotations.json").read_text())
    assert [im["file_name"] for im in gt_v["images"]] == ["b1.jpg", "b2.jpg"]
    assert [a["image_id"] for a in gt_v["annotations"]] == [gt_v["images"][1]["id"]]
    assert {c["id"]: c["name"] for c in gt_t["categories"]} == {3: "bolt", 7: "nut"}
    assert not {i["id"] for i in gt_t["images"]} & {i["id"] for i in gt_v["images"]}
    assert {a["category_id"] for a in gt_t["annotations"] + gt_v["annotations"]} == {3, 7}
    assert read_label_map(out / "label_map.pbtxt") == LabelMap({3: "bolt", 7: "nut"})
    assert sorted(int(c) for r in _records(out, "train")
                  for c in _decode_example(r, decode_image=False).class_ids) == [3, 7, 7]

    with pytest.raises(UserError, match="already exists and is not empty; pass --overwrite"):
        convert("coco", train, out, val_fraction=0, progress=False, verbose=False)
    # --overwrite with another shard count leaves no stale shard of the first run.
    convert("coco", train, out, val_fraction=0, num_shards=1, overwrite=True, progress=False,
            verbose=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "label_map.pbtxt", "report.json", "train-00000-of-00001.tfrecord",
        "train_annotations.json"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files this tool did not write"):
        convert("coco", train, out, overwrite=True, progress=False, verbose=False)
    with pytest.raises(UserError, match="--val and --val-fraction both given"):
        convert("coco", train, tmp_path / "x", val=val, val_fraction=0.2)
    assert not _no_temporaries(tmp_path)


def test_workers_give_identical_output(tmp_path):
    src = _small_source(tmp_path / "s", [f"{i}.jpg" for i in range(10)], ("bolt", "nut"))
    for w in (1, 2):
        convert("coco", src, tmp_path / f"w{w}", val_fraction=0.2, workers=w, progress=False,
                verbose=False)
    for name in ("train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord",
                 "train_annotations.json", "val_annotations.json"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def test_cli_errors_exit_2_without_traceback(bad_source, tmp_path, capsys):
    r = _cli("convert", "yolo", bad_source, tmp_path / "o")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: unknown annotation format 'yolo'; valid formats: coco")
    assert "Traceback" not in r.stderr
    # --strict: the first refusal is the error, and nothing is written. (The CLI's main()
    # in-process: the same code path as the subprocess, without a second TF import.)
    from maskrcnn_toolkit.dataset_tools.__main__ import main
    out = tmp_path / "strict"
    code = main(["convert", "coco", str(bad_source), str(out), "--strict",
                 "--val-fraction", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: " in err and "--strict: any refusal is an error; nothing was written" in err
    assert "annotation id 4" in err and "a polygon needs at least 3" in err
    assert "Traceback" not in err
    assert not out.exists() and not _no_temporaries(tmp_path)


def test_sigint_mid_run_leaves_nothing(tmp_path):
    """Ctrl-C during a conversion (2 workers): exit 130, no output, no temporary."""
    ds = tmp_path / "big"
    _image(ds / "big.jpg", 1024, 768, 0)
    images = [{"id": i, "file_name": "big.jpg", "width": 1024, "height": 768}
              for i in range(1, 401)]
    anns = [{"image_id": i, "category_id": 10, "segmentation": [_square(5 * k, 7 * k, 30)]}
            for i in range(1, 401) for k in range(1, 31)]
    src = _coco(ds / "annotations.json", images, anns)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "dataset_tools", "convert", "coco",
                             str(src), str(out), "--workers", "2"], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(tmp_path.glob(".out.tmp-*/train-*")):
            time.sleep(0.1)
        assert list(tmp_path.glob(".out.tmp-*/train-*")), "conversion never started"
        time.sleep(1.0)
        assert proc.poll() is None, "conversion finished before the interrupt"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert not _no_temporaries(tmp_path)


def test_cli_converts_polygons_and_rle_with_deprecation_warnings_as_errors(tmp_path):
    """Every mask path of convert (polygons, compressed and uncompressed RLE, crowd) under
    ``-W error::DeprecationWarning``, in the parent and in its forked workers: pycocotools'
    ``decode`` under numpy 2.4 warns there (core/masks.py decodes RLE itself)."""
    from maskrcnn_toolkit.core.masks import mask_to_rle
    images, anns = [], []
    for i in range(1, 7):
        _image(tmp_path / "src" / f"{i}.jpg", 64, 48, i)
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48})
        blob = np.zeros((48, 64), np.uint8)
        blob[5 + i:20 + i, 10:30 + i] = 1
        rle = mask_to_rle(blob)
        anns += [{"image_id": i, "category_id": 10, "segmentation": [_square(2, 2, 10 + i)]},
                 {"image_id": i, "category_id": 20, "segmentation": rle},
                 {"image_id": i, "category_id": 20, "iscrowd": 1, "segmentation":
                  {"size": [48, 64], "counts": [40 + i, 3, 48 * 64 - 43 - i]}}]
    src = _coco(tmp_path / "src" / "annotations.json", images, anns)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-m",
                        "dataset_tools", "convert", "coco", str(src), str(out),
                        "--workers", "2", "--val-fraction", "0.34"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr
    assert "converted 6 images (4 train, 2 val), 18 instances; refused 0 images" in r.stdout
    gt = [a for split in ("train", "val")
          for a in json.loads((out / f"{split}_annotations.json").read_text())["annotations"]]
    assert sorted(a["area"] for a in gt if a["iscrowd"]) == [3.0] * 6


def test_image_modes_mpo_16bit_and_multipart_polygons(tmp_path):
    """MPO passes through byte for byte; a 16-bit PNG gives the record the same pixels as
    inference's load_image; a degenerate part of a multi-part polygon is dropped (fixed),
    the instance kept; an instance with no usable part is refused."""
    from maskrcnn_toolkit.inference.images import load_image
    ds = tmp_path / "ds"
    ds.mkdir()
    frames = [Image.fromarray(np.random.default_rng(k).integers(0, 256, (48, 64, 3), np.uint8))
              for k in range(2)]
    frames[0].save(ds / "phone.jpg", "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(ds / "phone.jpg").format == "MPO"
    deep = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21 % 65536).astype(np.uint16)
    Image.fromarray(deep).save(ds / "deep.png")
    _image(ds / "multi.jpg", 64, 48, 5)
    images = [{"id": i, "file_name": n, "width": 64, "height": 48}
              for i, n in enumerate(["phone.jpg", "deep.png", "multi.jpg"], start=1)]
    anns = [{"image_id": 1, "category_id": 10, "segmentation": [_square(4, 4, 10)]},
            {"image_id": 2, "category_id": 10, "segmentation": [_square(4, 4, 10)]},
            {"image_id": 3, "category_id": 10,  # part 1: 2 points; part 2: outside the image
             "segmentation": [_square(4, 4, 10), [1, 1, 5, 5], _square(90, 90, 5)]},
            {"image_id": 3, "category_id": 20, "segmentation": [[1, 1, 5, 5], [2, 2, 6, 6]]}]
    src = _coco(ds / "annotations.json", images, anns)
    out = tmp_path / "out"
    summary = convert("coco", src, out, val_fraction=0, progress=False, verbose=False)
    report = json.loads((out / "report.json").read_text())
    assert summary.train_images == 3 and summary.instances_refused == 1
    import tensorflow as tf
    raw = {}
    for r in _records(out, "train"):
        f = tf.train.Example.FromString(r).features.feature
        raw[f["image/filename"].bytes_list.value[0].decode()] = f
    assert raw["phone.jpg"]["image/encoded"].bytes_list.value[0] == \
        (ds / "phone.jpg").read_bytes()
    assert raw["phone.jpg"]["image/format"].bytes_list.value[0] == b"jpeg"
    assert not [f for f in report["findings"] if f["item"] == "phone.jpg"]
    recs = {d.file_name: d for d in map(_decode_example, _records(out, "train"))}
    np.testing.assert_array_equal(recs["deep.png"].image, load_image(ds / "deep.png"))
    assert recs["deep.png"].image[..., 0].max() > 200  # scaled, not clipped to white
    assert len(recs["multi.jpg"].class_ids) == 1
    gt = json.loads((out / "train_annotations.json").read_text())
    multi = [a for a in gt["annotations"] if a["image_id"] == 3]
    assert [a["area"] for a in multi] == [100]
    fixed = [f["reason"] for f in report["findings"] if f["severity"] == "fixed"]
    assert any("part 1 of 3 has 2 point(s)" in r and "dropped" in r for r in fixed), fixed
    assert any("part 2 of 3 has zero area" in r for r in fixed), fixed
    refused = [f["reason"] for f in report["findings"] if f["severity"] == "refused"]
    assert any("none of the 2 parts" in r for r in refused), refused


def test_cvat_tags_are_warnings_not_refused_instances(tmp_path):
    """An image with only a <tag> is a negative example, even with --strict."""
    for seed, n in enumerate(("a.jpg", "b.jpg")):
        _image(tmp_path / "images" / n, 32, 32, seed)
    (tmp_path / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>\n'
        '<image id="0" name="a.jpg" width="32" height="32"><tag label="day"/></image>\n'
        '<image id="1" name="b.jpg" width="32" height="32">'
        '<polygon label="bolt" points="2,2;20,2;20,20"/><tag label="day"/></image>\n'
        '</annotations>\n')
    out = tmp_path / "out"
    summary = convert("cvat", tmp_path / "annotations.xml", out, val_fraction=0, strict=True,
                      progress=False, verbose=False)
    assert summary.train_images == 2 and summary.images_refused == 0
    assert summary.instances_refused == 0 and summary.instances == 1
    report = json.loads((out / "report.json").read_text())
    tags = [f for f in report["findings"] if "tag labels the whole image" in f["reason"]]
    assert len(tags) == 2 and {f["severity"] for f in tags} == {"warning"}
    assert any(f["item"] == "a.jpg" and "negative example" in f["reason"]
               for f in report["findings"])
