"""``inspect``: what a converted dataset holds, read from its TFRecords (not from the
annotation files): instances per class and split, instances per image, mask areas."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from maskrcnn_toolkit.core.dataset_folder import LABEL_MAP, MADE_BY, SPLITS, DatasetFolder
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import read_label_map

# Mask-area bins in pixels: COCO's small/medium/large limits (32^2, 96^2) split further.
AREA_BINS = [(0, 16 ** 2), (16 ** 2, 32 ** 2), (32 ** 2, 64 ** 2), (64 ** 2, 96 ** 2),
             (96 ** 2, 192 ** 2), (192 ** 2, float("inf"))]
PER_IMAGE_BINS = [0, 1, 2, 3, 4, 5, 10, 20]  # lower edges; the last bin is "20+"


def _area_label(lo, hi) -> str:
    side = lambda v: f"{int(round(v ** 0.5))}^2"  # noqa: E731
    return f"< {side(hi)}" if lo == 0 else (f">= {side(lo)}" if hi == float("inf")
                                             else f"{side(lo)}..{side(hi)}")


def _per_image_label(k: int) -> str:
    lo = PER_IMAGE_BINS[k]
    if k + 1 == len(PER_IMAGE_BINS):
        return f"{lo}+"
    hi = PER_IMAGE_BINS[k + 1] - 1
    return str(lo) if hi == lo else f"{lo}-{hi}"


def inspect_dataset(data) -> dict:
    """Statistics of a converted dataset folder, JSON-ready.

    Returns {"splits": {split: {"images", "instances", "crowd", "per_class": {name: n},
    "instances_per_image": {bin: images}, "mask_area": {bin: instances}}}}. Areas are the
    records' ``image/object/area`` (mask pixel counts).
    """
    import tensorflow as tf

    data = Path(data)
    folder = DatasetFolder(data)
    lm_path = folder.label_map
    if not lm_path.exists():
        raise UserError(f"{str(data)!r} has no {LABEL_MAP}; give a folder written by "
                        f"'{MADE_BY}'")
    lm = read_label_map(lm_path)
    out = {"label_map": {str(i): n for i, n in lm.names_by_id.items()}, "splits": {}}
    for split in SPLITS:
        files = folder.shards(split)
        if not files:
            continue
        per_class = Counter({n: 0 for n in lm.names})
        per_image = Counter()
        areas = Counter()
        images = instances = crowd = 0
        for raw in tf.data.TFRecordDataset([str(f) for f in files]).as_numpy_iterator():
            f = tf.train.Example.FromString(raw).features.feature
            labels = f["image/object/class/label"].int64_list.value
            images += 1
            instances += len(labels)
            crowd += sum(f["image/object/is_crowd"].int64_list.value)
            for c in labels:
                per_class[lm.name(c)] += 1
            k = max(i for i, lo in enumerate(PER_IMAGE_BINS) if len(labels) >= lo)
            per_image[_per_image_label(k)] += 1
            for a in f["image/object/area"].float_list.value:
                for lo, hi in AREA_BINS:
                    if lo <= a < hi:
                        areas[_area_label(lo, hi)] += 1
                        break
        out["splits"][split] = {
            "images": images, "instances": instances, "crowd": crowd,
            "per_class": dict(per_class),
            "instances_per_image": {_per_image_label(k): per_image[_per_image_label(k)]
                                    for k in range(len(PER_IMAGE_BINS))},
            "mask_area": {_area_label(lo, hi): areas[_area_label(lo, hi)]
                          for lo, hi in AREA_BINS},
        }
    if not out["splits"]:
        raise UserError(f"{str(data)!r} has no train-/val-*.tfrecord shards")
    return out


def _table(title: str, rows: dict, splits: dict, key: str) -> list[str]:
    names = list(rows)
    width = max([len(title)] + [len(str(n)) for n in names])
    head = f"{title:<{width}}" + "".join(f"{s:>10}" for s in splits)
    lines = [head, "-" * len(head)]
    for n in names:
        lines.append(f"{str(n):<{width}}" + "".join(f"{splits[s][key].get(n, 0):>10}"
                                                     for s in splits))
    return lines


def format_tables(stats: dict) -> str:
    """The statistics as three text tables (one column per split)."""
    splits = stats["splits"]
    lines = ["  ".join(f"{s}: {v['images']} images, {v['instances']} instances "
                       f"({v['crowd']} crowd)" for s, v in splits.items()), ""]
    first = next(iter(splits.values()))
    lines += _table("class", first["per_class"], splits, "per_class") + [""]
    lines += _table("instances/image", first["instances_per_image"], splits,
                    "instances_per_image") + [""]
    lines += _table("mask area (px)", first["mask_area"], splits, "mask_area")
    return "\n".join(lines)
