"""preview draws decoded records into a grid; inspect counts what the records hold."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn_toolkit.core.draw import PALETTE
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.dataset_tools.inspect import format_tables, inspect_dataset
from maskrcnn_toolkit.dataset_tools.preview import preview


def test_preview_grid(tiny_dataset, tmp_path):
    out = preview(tiny_dataset, tmp_path / "grid.png", n=4, split="val", cell=96)
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * 96, 2 * 96, 3)  # 3 val images -> a 2x2 grid
    # Box outlines are drawn in the label map's palette colors.
    colors = {tuple(c) for c in grid.reshape(-1, 3)}
    assert len(colors & {tuple(int(v) for v in c) for c in PALETTE[:5]}) >= 2
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        preview(tiny_dataset, out, n=4, split="val")
    with pytest.raises(UserError, match="has no train-\\*.tfrecord shards"):
        preview(tmp_path, tmp_path / "g2.png")


def test_preview_writes_what_the_suffix_says_with_a_shade_per_instance(tiny_dataset,
                                                                         tmp_path):
    from maskrcnn_toolkit.core.draw import instance_color
    png = preview(tiny_dataset, tmp_path / "grid.png", n=4, split="val", cell=96)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    jpg = preview(tiny_dataset, tmp_path / "grid.jpg", n=4, split="val", cell=96)
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"
    with Image.open(jpg) as im:
        assert im.format == "JPEG" and im.size == (2 * 96, 2 * 96)
    assert preview(tiny_dataset, tmp_path / "g.JPEG", n=1, split="val", cell=96
                   ).read_bytes()[:2] == b"\xff\xd8"
    # Second instances of a class are outlined in their own shade (opaque, so exact in PNG).
    colors = {tuple(c) for c in np.asarray(Image.open(png)).reshape(-1, 3)}
    assert colors & {instance_color(c, 1) for c in range(1, 6)}
    for bad in ("grid.gif", "grid"):
        with pytest.raises(UserError, match=r"the grid is written as PNG \(\.png\) or JPEG "
                                            r"\(\.jpg, \.jpeg\): give e\.g\. '.*grid\.png'"):
            preview(tiny_dataset, tmp_path / bad, n=1)
        assert not (tmp_path / bad).exists()


def test_preview_cli_refuses_an_unknown_suffix_before_importing_tensorflow(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "dataset_tools", "preview",
                        str(tmp_path), "--out", str(tmp_path / "grid.gif")], cwd=root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[-1] == (f"error: --out '{tmp_path / 'grid.gif'}' has suffix '.gif'; the grid "
                         f"is written as PNG (.png) or JPEG (.jpg, .jpeg): give e.g. "
                         f"'{tmp_path / 'grid.png'}'")
    assert not any(ln.rstrip().endswith("| tensorflow") for ln in lines)


def test_inspect_matches_ground_truth(tiny_dataset, capsys):
    stats = inspect_dataset(tiny_dataset)
    for split in ("train", "val"):
        gt = json.loads((tiny_dataset / f"{split}_annotations.json").read_text())
        names = {c["id"]: c["name"] for c in gt["categories"]}
        s = stats["splits"][split]
        assert s["images"] == len(gt["images"])
        assert s["instances"] == len(gt["annotations"])
        want = {n: 0 for n in names.values()}
        for a in gt["annotations"]:
            want[names[a["category_id"]]] += 1
        assert s["per_class"] == want
        assert sum(s["instances_per_image"].values()) == s["images"]
        assert sum(s["mask_area"].values()) == s["instances"]
    text = format_tables(stats)
    assert "bolt" in text and "mask area (px)" in text and "instances/image" in text

    from maskrcnn_toolkit.dataset_tools.__main__ import main
    assert main(["inspect", str(tiny_dataset), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stats
    assert main(["inspect", str(tiny_dataset.parent)]) == 2
    assert "has no label_map.pbtxt" in capsys.readouterr().err
