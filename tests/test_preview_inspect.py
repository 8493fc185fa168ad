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
