"""What a model evaluation leaves behind, and the ``--gt`` mode's metrics file.

- :func:`side_by_side`: one validation image, ground truth | predictions, for a person to
  look at (``images/<image_id>.png``).
- :func:`write_outputs`: ``detections.json``, ``metrics.json`` and ``images/`` written as one
  step (temporaries renamed together; an interruption leaves the previous outputs).
- :func:`write_scalars`: the stats and per-class APs as TensorBoard scalars.
- :func:`write_json` / :func:`default_metrics_path`: ``evaluate.py --gt``'s metrics file.

TensorBoard, PIL and the drawing code are imported only by the functions that use them:
the ``--gt`` mode must not pay for TensorFlow.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from maskrcnn_toolkit.core.atomic import (
    TMP_MARK,
    atomic_write,
    discard,
    make_temp_dir,
    temp_path_for,
)
from maskrcnn_toolkit.modeling.scoring import STAT_KEYS, EvalReport

VISUAL_THRESHOLD = 0.5  # what the side-by-side images show; scoring uses every detection


def gt_instances_for_drawing(gt: dict, image_id: int, height: int, width: int):
    """(boxes_yxyx_px float32 [N, 4] (ymin, xmin, ymax, xmax) pixels, from COCO's
    [x, y, w, h]; class ids; names; masks uint8 [N, H, W]) of one image's ground truth, for
    the side-by-side pictures."""
    from maskrcnn_toolkit.core.boxes import xywh_to_yxyx
    from maskrcnn_toolkit.core.masks import polygons_to_mask, rle_to_mask
    names = {c["id"]: str(c["name"]) for c in gt["categories"]}
    anns = [a for a in gt["annotations"] if a["image_id"] == image_id]
    boxes_yxyx_px = xywh_to_yxyx(np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
                                 ).astype(np.float32)
    masks = np.zeros((len(anns), height, width), np.uint8)
    for k, a in enumerate(anns):
        seg = a.get("segmentation")
        if isinstance(seg, dict):
            masks[k] = rle_to_mask(seg)
        elif seg:
            masks[k] = polygons_to_mask(seg, height, width)
    ids = [a["category_id"] for a in anns]
    labels = [names.get(i, f"class_{i}") + (" (crowd)" if a["iscrowd"] else "")
              for i, a in zip(ids, anns)]
    return boxes_yxyx_px, ids, labels, masks


def side_by_side(image: np.ndarray, gt: dict, image_id: int, dets) -> np.ndarray:
    """uint8 [H, 2W + 8, 3]: ground truth on the left, predictions with score >= 0.5 on
    the right, drawn with core.draw.draw_instances (same class, same color).

    ``image`` is uint8 [H, W, 3] RGB; ``gt`` a COCO ground truth holding at least this
    image's annotations and the categories; ``dets`` the image's ``Detections``."""
    from maskrcnn_toolkit.core.draw import draw_instances
    h, w = image.shape[:2]
    boxes_yxyx_px, ids, labels, masks = gt_instances_for_drawing(gt, image_id, h, w)
    left = draw_instances(image, boxes_yxyx_px, ids, labels, masks)
    shown = dets.filter(score_threshold=VISUAL_THRESHOLD)
    right = draw_instances(image, shown.boxes_yxyx_px, shown.class_ids,
                           [f"{n} {s:.2f}" for n, s in zip(shown.class_names, shown.scores)],
                           shown.masks)
    gap = np.full((h, 8, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image
    with atomic_write(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")


def write_outputs(out_dir: Path, results_text: str, report: EvalReport,
                  pictures: list[tuple[int, np.ndarray]], report_html: str | None = None
                  ) -> None:
    """Write detections.json (``results_text``, as is), metrics.json, report.html
    (``report_html``; without it a previous report.html is removed: it would describe
    another evaluation) and images/ (one
    ``<image_id>.png`` per (image_id, uint8 [H, W, 3] RGB) picture) as one step: all into
    temporaries first, then renamed into place; on any failure (Ctrl-C included) the
    temporaries are removed and the previous outputs stay. The previous images/ folder is
    moved aside and removed only once the new one is in place, so no stale picture survives
    a re-run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_results = temp_path_for(out_dir / "detections.json")
    tmp_metrics = temp_path_for(out_dir / "metrics.json")
    tmp_report = None if report_html is None else temp_path_for(out_dir / "report.html")
    tmp_images = make_temp_dir(out_dir / "images")
    old_images = None
    try:
        tmp_results.write_text(results_text)
        tmp_metrics.write_text(json.dumps(report.to_json(), indent=1) + "\n")
        if report_html is not None:
            tmp_report.write_text(report_html, encoding="utf-8")
        for image_id, picture in pictures:
            _save_png(tmp_images / f"{image_id}.png", picture)
        images = out_dir / "images"
        if images.exists():
            old_images = Path(tempfile.mkdtemp(prefix=f".images-old{TMP_MARK}", dir=out_dir))
            os.replace(images, old_images / "images")
        os.replace(tmp_images, images)
        os.replace(tmp_results, out_dir / "detections.json")
        os.replace(tmp_metrics, out_dir / "metrics.json")
        if report_html is not None:
            os.replace(tmp_report, out_dir / "report.html")
        else:
            (out_dir / "report.html").unlink(missing_ok=True)
    except BaseException:
        for t in (tmp_results, tmp_metrics, tmp_report, tmp_images):
            if t is not None:
                discard(t)
        if old_images is not None and not (out_dir / "images").exists():
            os.replace(old_images / "images", out_dir / "images")  # put the old set back
        raise
    finally:
        if old_images is not None:
            shutil.rmtree(old_images, ignore_errors=True)


def write_scalars(out_dir: Path, report: EvalReport, step: int) -> None:
    """TensorBoard scalars into ``out_dir``, at ``step``: ``{iou_type}/{stat}`` for the 12
    stats and ``{iou_type}_per_class/{name}`` for each class with ground truth (AP != -1)."""
    import tensorflow as tf
    writer = tf.summary.create_file_writer(str(out_dir))
    with writer.as_default():
        for t, m in report.metrics.items():
            for k in STAT_KEYS:
                tf.summary.scalar(f"{t}/{k}", m[k], step=step)
            for r in m["per_class"]:
                if r["AP"] != -1:
                    tf.summary.scalar(f"{t}_per_class/{r['name']}", r["AP"], step=step)
    writer.flush()
    writer.close()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write JSON (full float precision: floats round-trip exactly)."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def default_metrics_path(dt_path: str | os.PathLike) -> Path:
    """``DT.json`` -> ``DT.metrics.json`` beside it."""
    p = Path(dt_path)
    stem = p.name[:-5] if p.name.endswith(".json") else p.name
    return p.with_name(stem + ".metrics.json")
