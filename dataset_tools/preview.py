"""``preview``: decode a converted dataset's TFRecords exactly as training reads them and
draw masks, boxes and class names into one grid image.

Decoding goes through tf.data and Model Garden's own ``TfExampleDecoder(include_mask=True)``
(the decoder the Mask R-CNN input pipeline uses), so the grid shows what the model will
see, not what the annotation files say. Each mask has its own shade of its class color and
an outline (core.draw, ``instance_colors``), so touching objects of one class stay apart;
boxes and names keep the class color. The grid is written in the format its suffix names.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from maskrcnn_toolkit.core.atomic import atomic_write, refuse_existing
from maskrcnn_toolkit.core.boxes import denormalize_yxyx
from maskrcnn_toolkit.core.dataset_folder import MADE_BY, DatasetFolder
from maskrcnn_toolkit.core.draw import draw_instances
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.label_map import read_label_map


def decoded_examples(data, split: str = "train", n: int | None = None):
    """Yield Model Garden-decoded examples of ``split`` as numpy dicts.

    Each dict: image uint8 [H, W, 3]; boxes_yxyx_px float32 [N, 4] (ymin, xmin, ymax, xmax)
    in pixels, from Model Garden's normalized ``groundtruth_boxes``; classes int64 [N];
    is_crowd bool [N]; masks bool [N, H, W]; source_id str.
    """
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    data = Path(data)
    files = DatasetFolder(data).shards(split)
    if not files:
        raise UserError(f"{str(data)!r} has no {split}-*.tfrecord shards; give a folder written "
                        f"by '{MADE_BY}' (and a split it has)")
    decoder = TfExampleDecoder(include_mask=True)
    ds = tf.data.TFRecordDataset([str(f) for f in files])
    if n is not None:
        ds = ds.take(n)
    for ex in ds.map(decoder.decode):
        h, w = int(ex["height"]), int(ex["width"])
        yield {
            "source_id": ex["source_id"].numpy().decode(),
            "image": ex["image"].numpy(),
            "boxes_yxyx_px": denormalize_yxyx(ex["groundtruth_boxes"].numpy(), h, w),
            "classes": ex["groundtruth_classes"].numpy(),
            "is_crowd": ex["groundtruth_is_crowd"].numpy(),
            "masks": ex["groundtruth_instance_masks"].numpy() > 0,
        }


def _fit(image: np.ndarray, boxes_yxyx_px: np.ndarray, masks: np.ndarray, cell: int):
    """Scale an image (bilinear), its pixel boxes and bool masks (nearest) to fit a
    ``cell`` square, before drawing, so that lines and text keep a readable size:
    (image, boxes_yxyx_px, masks) scaled."""
    h, w = image.shape[:2]
    s = cell / max(h, w)
    if abs(s - 1) < 1e-6:
        return image, boxes_yxyx_px, masks
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    masks = np.stack([np.asarray(Image.fromarray(m.astype(np.uint8)).resize((nw, nh),
                                                                           Image.NEAREST))
                      for m in masks]).astype(bool) if len(masks) else \
        np.zeros((0, nh, nw), bool)
    return image, boxes_yxyx_px * np.float32(s), masks


GRID_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
JPEG_QUALITY = 90


def grid_format(out) -> str:
    """The PIL format the grid file ``out`` is written in, from its suffix ("PNG" or
    "JPEG"); a UserError with the fix for any other suffix. Cheap: the CLI checks it before
    importing TensorFlow."""
    out = Path(out)
    fmt = GRID_FORMATS.get(out.suffix.lower())
    if fmt is None:
        what = f"suffix {out.suffix!r}" if out.suffix else "no suffix"
        raise UserError(f"--out {str(out)!r} has {what}; the grid is written as PNG (.png) or "
                        f"JPEG (.jpg, .jpeg): give e.g. {str(out.with_suffix('.png'))!r}")
    return fmt


def preview(data, out, n: int = 16, split: str = "train", overwrite: bool = False,
            cell: int = 320) -> Path:
    """Write a grid of up to ``n`` decoded images of ``split`` (each fitted into a
    ``cell`` x ``cell`` tile) with ground-truth overlays to ``out`` (.png: PNG, .jpg/.jpeg:
    JPEG). Returns ``out``."""
    out = Path(out)
    fmt = grid_format(out)
    if n < 1:
        raise UserError(f"--n {n} must be at least 1")
    refuse_existing(out, overwrite)
    lm_path = DatasetFolder(data).label_map
    names = read_label_map(lm_path).names_by_id if lm_path.exists() else {}
    tiles = []
    for ex in decoded_examples(data, split, n):
        labels = [names.get(int(c), f"class_{int(c)}") + (" (crowd)" if crowd else "")
                  for c, crowd in zip(ex["classes"], ex["is_crowd"])]
        image, boxes_yxyx_px, masks = _fit(ex["image"], ex["boxes_yxyx_px"], ex["masks"], cell)
        tiles.append(Image.fromarray(draw_instances(image, boxes_yxyx_px, ex["classes"], labels,
                                                    masks, instance_colors=True)))
    if not tiles:
        raise UserError(f"{data}: the {split} shards hold no records")
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = Image.new("RGB", (cols * cell, rows * cell), (32, 32, 32))
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid.paste(t, (c * cell + (cell - t.width) // 2, r * cell + (cell - t.height) // 2))
    with atomic_write(out) as f:
        grid.save(f, fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
    print(f"preview: {len(tiles)} {split} images -> {out}")
    return out
