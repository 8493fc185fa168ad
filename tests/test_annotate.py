"""annotate.py: images, folders, globs and videos through the CLI; clean errors (exit 2);
Ctrl-C leaves nothing behind, and a re-run cleans up after a killed one. The model is the
OD API-format SavedModel of test_video."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskrcnn_toolkit import annotate
from tests.test_video import (
    SQ,
    H,
    W,
    clip_frame,
    decode_all,
    make_clip,
    od_model,  # noqa: F401  (the fixture, shared with test_video)
    read_jsonl,
    square_at,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for i, name in [(2, "b.png"), (0, "a.jpg"), (5, "c.png")]:
        Image.fromarray(clip_frame(i)).save(d / name, quality=98)
    (d / "notes.txt").write_text("not an image")
    return d


def test_folder_of_images(od_model, photos, tmp_path, capsys):
    out = tmp_path / "annotated"
    assert annotate.main([str(od_model), str(photos), "--out", str(out), "--quiet",
                          "--score-threshold", "0.2"]) == 0
    assert "annotated 3 images" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.png", "c.png",
                                                     "detections.json", "images.json"]
    index = json.loads((out / "images.json").read_text())
    # Image ids are positions in sorted path order, from 0.
    assert [(im["id"], im["file_name"]) for im in index["images"]] == [
        (0, "a.jpg"), (1, "b.png"), (2, "c.png")]
    assert index["images"][0]["width"] == W and index["images"][0]["height"] == H
    assert index["categories"] == [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]
    dets = json.loads((out / "detections.json").read_text())
    assert [d["image_id"] for d in dets] == [0, 1, 2]
    for d, i in zip(dets, [0, 2, 5]):
        y0, x0, _, _ = square_at(i)
        assert d["bbox"] == pytest.approx([x0, y0, SQ, SQ], abs=1.5)
        assert d["category_id"] == 1 and d["segmentation"]["size"] == [H, W]
    drawn = np.asarray(Image.open(out / "b.png"))
    assert drawn.shape == (H, W, 3) and not np.array_equal(drawn, clip_frame(2))
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_gif_keeps_its_name_beside_a_png(od_model, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(clip_frame(0)).save(d / "a.png")
    Image.fromarray(clip_frame(4)).save(d / "a.gif")
    out = tmp_path / "out"
    assert annotate.main([str(od_model), str(d), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.gif.png", "a.png", "detections.json",
                                                     "images.json"]
    index = json.loads((out / "images.json").read_text())
    assert [im["file_name"] for im in index["images"]] == ["a.gif.png", "a.png"]
    # Each annotated file is its own input's (the square is at a different place).
    for name, i in [("a.gif.png", 4), ("a.png", 0)]:
        y0, x0, y1, x1 = square_at(i)
        drawn = np.asarray(Image.open(out / name).convert("RGB")).astype(int)
        assert np.abs(drawn[y0 + 4:y1 - 4, x0 + 4:x1 - 4] - clip_frame(i)[y0 + 4:y1 - 4,
                      x0 + 4:x1 - 4]).mean() > 20


def test_glob_and_class_filter(od_model, photos, tmp_path):
    out = tmp_path / "only_blue"
    assert annotate.main([str(od_model), str(photos / "*.png"), "--out", str(out), "--quiet",
                          "--classes", "blue"]) == 0
    index = json.loads((out / "images.json").read_text())
    assert [im["file_name"] for im in index["images"]] == ["b.png", "c.png"]
    assert json.loads((out / "detections.json").read_text()) == []  # every square is red
    assert np.array_equal(np.asarray(Image.open(out / "b.png")), clip_frame(2))


def test_video_cli(od_model, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mov", n=6)
    out = tmp_path / "out.mkv"
    assert annotate.main([str(od_model), str(clip), "--out", str(out), "--quiet",
                          "--coco-results", str(tmp_path / "coco.json"), "--every", "2",
                          "--batch-size", "2"]) == 0
    line = capsys.readouterr().out
    assert "annotated 6 frames (3 through the model" in line and str(out) in line
    frames, fps, kinds = decode_all(out)
    assert len(frames) == 6 and kinds == ["video", "audio"]
    assert [ln["frame_index"] for ln in read_jsonl(tmp_path / "out.jsonl")] == [0, 2, 4]
    assert [d["image_id"] for d in json.loads((tmp_path / "coco.json").read_text())] == [0, 2, 4]


def test_truncated_video_exit_code_3(od_model, tmp_path, capsys):
    src = make_clip(tmp_path / "long.avi", n=40, codec="mpeg4", audio=False, noise=True)
    bad = tmp_path / "cut.avi"
    bad.write_bytes(src.read_bytes()[:src.stat().st_size // 2])
    out = tmp_path / "out.mp4"
    assert annotate.main([str(od_model), str(bad), "--out", str(out), "--quiet"]) == 3
    line = capsys.readouterr().out
    assert line.startswith("INCOMPLETE") and "out.partial.mp4" in line and "at frame" in line
    assert (tmp_path / "out.partial.mp4").exists() and not out.exists()


def test_rerun_removes_temporaries_of_a_killed_run(od_model, photos, tmp_path):
    """A run killed with SIGKILL (no cleanup) leaves ``.OUT.tmp-*`` temporaries beside its
    outputs; the next run removes those of its own outputs, and only those."""
    clip = make_clip(tmp_path / "clip.mp4", n=4)
    stale = [".out.mp4.tmp-xyz.mp4", ".out.mp4.tmp-xyz", ".out.jsonl.tmp-abc.jsonl",
             ".coco.json.tmp-def.json"]
    others = [".other.mp4.tmp-xyz.mp4", ".other.jsonl.tmp-abc.jsonl", ".out.mkv.tmp-ghi.mkv"]
    for name in stale + others:
        (tmp_path / name).write_bytes(b"half-written")
    out = tmp_path / "out.mp4"
    assert annotate.main([str(od_model), str(clip), "--out", str(out), "--quiet",
                          "--coco-results", str(tmp_path / "coco.json")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["clip.mp4", "out.mp4", "out.jsonl", "coco.json", "photos"] + others)
    frames, _, kinds = decode_all(out)
    assert len(frames) == 4 and kinds == ["video", "audio"]
    assert [ln["frame_index"] for ln in read_jsonl(tmp_path / "out.jsonl")] == [0, 1, 2, 3]
    assert [d["image_id"] for d in json.loads((tmp_path / "coco.json").read_text())] == [
        0, 1, 2, 3]

    # Images: the output folder's temporary folder, left by a killed run.
    (tmp_path / ".annotated.tmp-abc").mkdir()
    (tmp_path / ".annotated.tmp-abc" / "a.jpg").write_bytes(b"half-written")
    (tmp_path / ".annotated2.tmp-abc").mkdir()
    assert annotate.main([str(od_model), str(photos), "--out", str(tmp_path / "annotated"),
                          "--quiet"]) == 0
    assert ".annotated.tmp-abc" not in {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / ".annotated2.tmp-abc").is_dir()
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == [
        "a.jpg", "b.png", "c.png", "detections.json", "images.json"]


@pytest.mark.parametrize("case,match", [
    ("missing_input", "does not exist"),
    ("not_a_model", "is not a model folder"),
    ("text_file", "neither a video"),
    ("video_option_on_images", "apply to videos only"),
    ("fill_on_images", "--fill apply to videos only"),
    ("codec_crf_on_images", "--codec, --crf apply to videos only"),
    ("every_1_on_images", "--every apply to videos only"),
    ("name_collision", "would both be written as 'a.gif.png'"),
    ("mpeg4_odd_size", "mpeg4 encodes even sizes only"),
    ("bad_start", "is not a position"),
    ("bad_codec", "unknown video codec"),
    ("bad_suffix", "suffix"),
    ("existing_out", "--overwrite"),
    ("corrupt_image", "cannot decode image"),
    ("unknown_class", "not in the label map"),
    ("broken_video", "cannot open video"),
    ("zero_every", "at least 1"),
])
def test_bad_inputs_exit_2(od_model, photos, tmp_path, capsys, case, match):
    clip = make_clip(tmp_path / "clip.mp4", n=2, audio=False)
    model, src, out, extra = str(od_model), str(photos), str(tmp_path / "o"), []
    if case == "missing_input":
        src = str(tmp_path / "nope")
    elif case == "not_a_model":
        model = str(photos)
    elif case == "text_file":
        src = str(photos / "notes.txt")
    elif case == "video_option_on_images":
        extra = ["--start", "2"]
    elif case == "fill_on_images":
        extra = ["--fill", "none"]
    elif case == "codec_crf_on_images":
        extra = ["--codec", "mpeg4", "--crf", "20"]
    elif case == "every_1_on_images":
        extra = ["--every", "1"]  # its default value, but given: refused, not ignored
    elif case == "name_collision":
        Image.fromarray(clip_frame(1)).save(photos / "a.gif")
        Image.fromarray(clip_frame(1)).save(photos / "a.gif.png")
    elif case == "mpeg4_odd_size":
        from maskrcnn_toolkit.inference import write_video
        write_video([clip_frame(0, w=W + 1)], tmp_path / "odd.mkv", fps=5)
        src, out, extra = str(tmp_path / "odd.mkv"), str(tmp_path / "o.avi"), [
            "--codec", "mpeg4"]
    elif case == "bad_start":
        src, out, extra = str(clip), str(tmp_path / "o.mp4"), ["--start", "two"]
    elif case == "bad_codec":
        src, out, extra = str(clip), str(tmp_path / "o.mp4"), ["--codec", "vp9000"]
    elif case == "bad_suffix":
        src, out = str(clip), str(tmp_path / "o.gif")
    elif case == "existing_out":
        (tmp_path / "o").mkdir()
    elif case == "corrupt_image":
        (photos / "z.jpg").write_bytes(b"\xff\xd8 broken")
    elif case == "unknown_class":
        extra = ["--classes", "bolt"]
    elif case == "broken_video":
        (tmp_path / "broken.mp4").write_bytes(b"garbage" * 100)
        src, out = str(tmp_path / "broken.mp4"), str(tmp_path / "o.mp4")
    elif case == "zero_every":
        src, out, extra = str(clip), str(tmp_path / "o.mp4"), ["--every", "0"]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert annotate.main([model, src, "--out", out, "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_sigint_leaves_no_output(od_model, tmp_path):
    """Ctrl-C on the real CLI: exit 130, no video, no JSONL, no temporaries."""
    clip = make_clip(tmp_path / "clip.mp4", n=1000, audio=True)  # long enough to interrupt
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, str(ROOT / "annotate.py"), str(od_model),
                             str(clip), "--out", str(out), "--quiet"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
            if any(p.suffix == ".jsonl" and p.stat().st_size > 0 for p in temps):
                break  # frames are flowing through the pipeline
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
