"""The run behind an evaluation, for the report's last section (``evaluate.py --config``):

- :func:`read_scalars`: the run's TensorBoard scalars (``RUN_DIR/train``: ``loss/*``,
  ``learning_rate``; ``RUN_DIR/eval``: ``coco/*`` of the in-training evaluations and
  ``segm/*``, ``bbox/*`` of evaluate.py), read with TensorFlow's own event-file reader.
- :func:`dataset_health`: the converted dataset's ``report.json`` (what convert fixed,
  refused, warned about) and, from the COCO ground truth each split's records were written
  with, the instances per class and their areas.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maskrcnn_toolkit.core.dataset_folder import SPLITS, DatasetFolder
from maskrcnn_toolkit.core.json_files import read_json


def read_scalars(run_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)] by step} from every event file under ``run_dir``/train and
    ``run_dir``/eval; a tag written twice at one step keeps the later file's value.
    Unreadable (truncated) files end where they break."""
    import tensorflow as tf
    out: dict[str, dict[int, float]] = {}
    for sub in ("train", "eval"):
        for path in sorted(Path(run_dir, sub).glob("events.out.tfevents.*"),
                           key=lambda p: p.stat().st_mtime):
            try:
                for event in tf.compat.v1.train.summary_iterator(str(path)):
                    for v in event.summary.value:
                        if v.HasField("simple_value"):
                            value = float(v.simple_value)
                        elif v.HasField("tensor") and not v.tensor.tensor_shape.dim:
                            value = float(tf.make_ndarray(v.tensor))
                        else:
                            continue  # images, histograms
                        out.setdefault(v.tag, {})[int(event.step)] = value
            except tf.errors.DataLossError:
                continue  # a file still being written
    return {tag: sorted(points.items()) for tag, points in sorted(out.items())}


def dataset_health(data_dir: str | os.PathLike) -> dict:
    """{"report": report.json's "summary" (or None when there is none), "findings":
    [the first 20 of report.json's findings], "per_class": {class: {split: instances}},
    "areas": {split: float [N] instance areas in pixels}, "crowd": {split: crowd regions}}.
    Splits whose ground-truth file is missing are left out."""
    folder = DatasetFolder(data_dir)
    report = None
    findings = []
    if folder.report.is_file():
        data = read_json(folder.report, "the JSON report `python -m dataset_tools convert` "
                                        "writes")
        if isinstance(data, dict):
            report = data.get("summary")
            findings = list(data.get("findings") or [])[:20]
    per_class: dict[str, dict[str, int]] = {}
    areas, crowd = {}, {}
    for split in SPLITS:
        path = folder.ground_truth(split)
        if not path.is_file():
            continue
        gt = read_json(path, "the COCO ground truth `python -m dataset_tools convert` writes")
        names = {c["id"]: str(c["name"]) for c in gt.get("categories", [])}
        for name in names.values():
            per_class.setdefault(name, {})[split] = 0
        regular = [a for a in gt.get("annotations", []) if not a.get("iscrowd")]
        for a in regular:
            name = names.get(a["category_id"], f"class_{a['category_id']}")
            per_class.setdefault(name, {}).setdefault(split, 0)
            per_class[name][split] += 1
        areas[split] = np.array([a.get("area", 0) for a in regular], np.float64)
        crowd[split] = sum(1 for a in gt.get("annotations", []) if a.get("iscrowd"))
    return {"report": report, "findings": findings, "per_class": per_class, "areas": areas,
            "crowd": crowd}
