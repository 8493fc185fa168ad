"""The synthetic parts generator: a real COCO dataset whose masks are the drawn pixels."""
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.masks import polygons_to_mask
from maskrcnn_toolkit.dataset_tools import synthetic
from maskrcnn_toolkit.dataset_tools.synthetic import (
    CLASSES,
    conveyor_frames,
    generate,
    render_scene,
)

N_IMAGES = 16


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "parts"
    generate(out, N_IMAGES, seed=4)
    return out


@pytest.fixture(scope="module")
def coco(synth_set):
    return COCO(str(synth_set / "annotations.json"))


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path):
    a = generate(tmp_path / "a", 3, seed=7)
    b = generate(tmp_path / "b", 3, seed=7)
    c = generate(tmp_path / "c", 3, seed=8)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert sorted(fa) == ["annotations.json", "images/000001.jpg", "images/000002.jpg",
                          "images/000003.jpg"]
    assert fa == fb
    assert fa["images/000001.jpg"] != fc["images/000001.jpg"]


def test_output_is_a_valid_coco_dataset(synth_set, coco):
    raw = json.loads((synth_set / "annotations.json").read_text())
    assert [c["name"] for c in raw["categories"]] == list(CLASSES)
    assert [c["id"] for c in raw["categories"]] == [1, 2, 3, 4, 5]
    assert len(coco.getImgIds()) == N_IMAGES
    for img in coco.loadImgs(coco.getImgIds()):
        assert (synth_set / "images" / img["file_name"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert 1 <= len(anns) <= synthetic.MAX_PARTS
        union = np.zeros((img["height"], img["width"]), np.uint8)
        for a in anns:
            assert a["iscrowd"] == 0
            m = coco.annToMask(a)
            assert m.shape == (img["height"], img["width"])
            assert m.sum() == a["area"] > 0
            x, y, w, h = a["bbox"]
            ys, xs = np.nonzero(m)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
            # Visible masks of one image never overlap: occluded parts keep only what shows.
            assert not (union & m).any()
            union |= m


def test_all_classes_and_both_segmentation_kinds_appear(coco):
    anns = coco.loadAnns(coco.getAnnIds())
    names = {coco.cats[a["category_id"]]["name"] for a in anns}
    assert names == set(CLASSES)
    kinds = {type(a["segmentation"]).__name__ for a in anns}
    assert kinds == {"list", "dict"}  # polygons for whole parts, RLE for occluded ones


def test_holes_are_not_in_the_masks(coco):
    checked = 0
    for a in coco.loadAnns(coco.getAnnIds()):
        name = coco.cats[a["category_id"]]["name"]
        if name in ("nut", "washer") and isinstance(a["segmentation"], list):
            # A whole nut/washer is point-symmetric: its box center is the hole's center.
            x, y, w, h = a["bbox"]
            m = coco.annToMask(a)
            assert m[int(y + h / 2), int(x + w / 2)] == 0
            assert len(a["segmentation"]) >= 2  # hole-free pieces whose union is the ring
            checked += 1
    assert checked >= 3


def test_masks_are_exactly_the_drawn_pixels():
    """Same scene drawn with and without the parts: the pixels that change are the masks."""
    for i in range(6):
        with_parts, parts = render_scene(np.random.default_rng([11, i]), 256, 256)
        without, parts2 = render_scene(np.random.default_rng([11, i]), 256, 256,
                                       paint_parts=False)
        assert len(parts) == len(parts2) >= synthetic.MIN_PARTS
        changed = np.any(with_parts != without, axis=2)
        union = np.zeros(changed.shape, bool)
        for placed, visible in parts:
            v = visible.astype(bool)
            assert not (union & v).any()
            union |= v
            assert changed[v].mean() > 0.9, placed.name
            # A whole part's polygons, as stored in the JSON, rasterize to its mask.
            assert np.array_equal(polygons_to_mask(placed.polygons, 256, 256), placed.mask)
            # Occlusion only removes pixels, and never too many.
            assert not (v & ~placed.mask.astype(bool)).any()
            assert v.sum() >= synthetic.MIN_VISIBLE_FRACTION * placed.mask.sum()
        assert not changed[~union].any()


def test_part_differs_from_its_surroundings(synth_set, coco):
    from PIL import Image
    diffs = []
    for a in coco.loadAnns(coco.getAnnIds()):
        img = coco.imgs[a["image_id"]]
        rgb = np.asarray(Image.open(synth_set / "images" / img["file_name"]), np.float32)
        m = coco.annToMask(a).astype(bool)
        ring = np.zeros_like(m)
        for dy in (-3, 0, 3):
            for dx in (-3, 0, 3):
                ring |= np.roll(np.roll(m, dy, 0), dx, 1)
        ring &= ~m
        if ring.sum() > 20:
            diffs.append(np.abs(rgb[m].mean(0) - rgb[ring].mean(0)).max())
    assert np.median(diffs) > 15


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    out = generate(tmp_path / "s", 1, seed=0)
    with pytest.raises(UserError, match="already exists"):
        generate(out, 1, seed=0)
    generate(out, 2, seed=0, overwrite=True)
    assert len(list((out / "images").iterdir())) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporaries left behind
    # --overwrite replaces the whole folder: a folder holding the user's files is refused.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files this tool did not write.*notes.txt"):
        generate(out, 1, seed=0, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_image_count_is_a_user_error(tmp_path, bad):
    with pytest.raises(UserError, match="--images"):
        generate(tmp_path / "x", bad)
    assert not (tmp_path / "x").exists()


def test_conveyor_frames_move_continuously():
    frames = list(conveyor_frames(30, seed=2, size=(128, 160), fps=10))
    assert len(frames) == 30
    assert all(f.shape == (128, 160, 3) and f.dtype == np.uint8 for f in frames)
    # Continuous motion to the right: each frame is the previous one shifted right by a few
    # pixels (the belt speed), up to the parts entering and sensor noise.
    for a, b in zip(frames, frames[1:]):
        a, b = a.astype(np.int16), b.astype(np.int16)
        residual = [np.abs(b[20:-20, 8 + s:] - a[20:-20, 8:a.shape[1] - s]).mean()
                    for s in range(8)]
        best = int(np.argmin(residual))
        assert 1 <= best <= 5
        assert residual[best] < 0.6 * residual[0]
        assert residual[best] < 4
    again = list(conveyor_frames(5, seed=2, size=(128, 160), fps=10))
    assert all(np.array_equal(a, b) for a, b in zip(again, frames))


def test_conveyor_frames_show_parts_passing():
    frames = np.stack(list(conveyor_frames(40, seed=0, size=(128, 128), fps=10)))
    # Parts are brighter than the dark belt: bright pixels appear at the left first and at
    # the right later.
    bright = frames.max(axis=3) > 120
    belt = bright[:, 20:-20]
    left, right = belt[:, :, :40].sum((1, 2)), belt[:, :, -40:].sum((1, 2))
    first_left = int(np.argmax(left > 30))
    first_right = int(np.argmax(right > 30))
    assert left.max() > 30 and right.max() > 30
    assert first_left < first_right


def test_interrupted_generation_leaves_old_output_and_no_temporaries(tmp_path, monkeypatch):
    out = generate(tmp_path / "s", 2, seed=0)
    before = _files(out)
    calls = []
    real = synthetic.render_scene

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_scene", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(out, 5, seed=1, overwrite=True)
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


@pytest.mark.parametrize("name", ["nut", "washer", "bracket"])
def test_holes_are_cut_out_exactly_and_pieces_leave_no_seam(name):
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(5)
    for _ in range(8):
        part = synthetic.MAKERS[name](rng)
        angle = rng.uniform(0, 2 * np.pi)
        mask = polygons_to_mask(part.world_polygons(128.0, 128.0, angle), 256, 256)
        assert len(part.holes) >= 1
        # Background reachable from outside the part's box is "outside"; what stays
        # enclosed are holes. (Cropped to the box + 1 px: PIL's flood fill is Python.)
        ys, xs = np.nonzero(mask)
        y0, x0 = ys.min() - 1, xs.min() - 1
        crop = np.ascontiguousarray(mask[y0:ys.max() + 2, x0:xs.max() + 2]) * 255
        im = Image.fromarray(crop).copy()  # a writable image
        ImageDraw.floodfill(im, (0, 0), 128)
        enclosed = np.argwhere(np.asarray(im) == 0) + [y0, x0]  # [n, 2] (y, x)
        c, s = np.cos(angle), np.sin(angle)
        centers = np.array([(128 + c * u - s * v, 128 + s * u + c * v) for u, v, _ in part.holes])
        radii = np.array([r for _, _, r in part.holes])
        # Every enclosed pixel belongs to a designed hole (a seam between the pieces would
        # show up as enclosed pixels elsewhere)...
        d = np.hypot(enclosed[:, None, 1] + 0.5 - centers[None, :, 0],
                     enclosed[:, None, 0] + 0.5 - centers[None, :, 1])
        assert (d <= radii[None, :] + 1.0).any(axis=1).all()
        # ...and every designed hole is open at its center and closed all round (a cut
        # between two pieces that gapes would join the hole to the outside).
        filled = np.asarray(im)
        for (x, y) in centers:
            assert filled[int(y) - y0, int(x) - x0] == 0


@pytest.mark.parametrize("kwargs", [{"num_frames": -1}, {"num_frames": 3, "fps": 0},
                                    {"num_frames": 3, "size": (32, 32)}])
def test_conveyor_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserError, match="conveyor"):
        next(conveyor_frames(**kwargs))
