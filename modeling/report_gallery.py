"""The report's galleries: for each class, the images with the most errors at the
operating point, ground truth beside prediction, each error marked by its kind.

- :func:`select_images`: which images (per class, most errors of that class first).
- :func:`draw_errors`: one picture, uint8 [H, 2W + gap, 3] RGB: left the ground truth
  (missed objects outlined in the "missed" color), right the detections kept at the
  threshold (false positives outlined in the color of their TIDE kind, with its name).
- :func:`images_from_folder`: the pictures of ``evaluate.py --gt --images DIR``.

The kinds are :mod:`maskrcnn_toolkit.modeling.tide`'s, at IoU 0.5, against the ground
truth taken by the detections above the threshold. Boxes drawn are (ymin, xmin, ymax, xmax)
pixels, from COCO's [x, y, w, h].
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maskrcnn_toolkit.modeling.report_plots import KIND_COLORS
from maskrcnn_toolkit.modeling.tide import FP_KINDS

GAP = 8  # white pixels between ground truth and prediction
MIN_SIDE = 384  # smaller pictures are enlarged (nearest neighbour) so the marks can be read


def image_errors(m, score_threshold: float) -> dict:
    """The errors of every image at ``score_threshold``, from an
    ``error_analysis.Matches`` ``m``: {"kept": bool [D] (drawn), "fp_kind": {det position:
    kind name}, "fn": bool [G] (missed ground truth)}."""
    kept = (m.det_score >= score_threshold) & ~m.ignored
    used = m.used_by(kept)
    fp = np.flatnonzero(kept & (m.match < 0))
    kind, _ = m.classify(fp, used)
    return {"kept": kept, "fp_kind": {int(d): FP_KINDS[k] for d, k in zip(fp, kind)},
            "fn": ~used}


def select_images(m, errors: dict, categories: dict[int, str], per_class: int = 4
                  ) -> dict[str, list[tuple[int, int]]]:
    """{class name: [(image position, errors of that class)]}: the ``per_class`` images
    with the most errors (false positives predicted as the class, plus its missed ground
    truth), most first, then in image order; images without such errors are left out."""
    n_img = len(m.image_ids)
    fp = np.array(sorted(errors["fp_kind"]), np.int64)
    out = {}
    for cid, name in categories.items():
        count = np.bincount(m.det_img[fp][m.det_cls[fp] == cid], minlength=n_img)
        count = count + np.bincount(m.gt_img[errors["fn"] & (m.gt_cls == cid)],
                                    minlength=n_img)
        order = np.argsort(-count, kind="stable")[:per_class]
        out[name] = [(int(k), int(count[k])) for k in order if count[k] > 0]
    return out


def _box_yxyx(xywh) -> list[float]:
    x, y, w, h = xywh
    return [y, x, y + h, x + w]


def _mark(draw, box_yxyx, color, text: str, scale: int, font) -> None:
    y0, x0, y1, x1 = (v * scale for v in box_yxyx)
    width = max(2, scale + 1)
    draw.rectangle([x0 - 2, y0 - 2, x1 + 2, y1 + 2], outline=color, width=width)
    tx, ty = x0 - 2, max(0, y1 + 3)
    x_0, y_0, x_1, y_1 = draw.textbbox((tx, ty), text, font=font)
    draw.rectangle([x_0 - 1, y_0 - 1, x_1 + 1, y_1 + 1], fill=color)
    draw.text((tx, ty), text, fill=(0, 0, 0), font=font)


def draw_errors(image: np.ndarray, m, k: int, errors: dict, gt: dict, dets: list,
                iou_type: str) -> np.ndarray:
    """The picture of image position ``k`` (``image`` uint8 [H, W, 3] RGB); see the module
    docstring. ``gt``, ``dets``: the scored COCO ground truth and results."""
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    from maskrcnn_toolkit.core.draw import _font, draw_instances
    from maskrcnn_toolkit.modeling.error_analysis import det_rle, segm_rle
    h, w = image.shape[:2]
    names = {c["id"]: str(c["name"]) for c in gt["categories"]}
    g_pos = np.flatnonzero(m.gt_img == k)
    d_pos = np.flatnonzero((m.det_img == k) & errors["kept"])
    anns = [gt["annotations"][i] for i in m.gt_index[g_pos]]
    found = [dets[i] for i in m.det_index[d_pos]]

    def masks(items, to_rle):
        if iou_type != "segm" or not items:
            return None
        return np.stack([mask_utils.decode(to_rle(x)) for x in items]).astype(bool)

    left = draw_instances(image, np.array([_box_yxyx(a["bbox"]) for a in anns]).reshape(-1, 4),
                          [a["category_id"] for a in anns],
                          [names.get(a["category_id"], "?") for a in anns],
                          masks(anns, lambda a: a.get("rle") if isinstance(a.get("rle"), dict)
                                else segm_rle(a["segmentation"], h, w)))
    right = draw_instances(image, np.array([_box_yxyx(d["bbox"]) for d in found]).reshape(-1, 4),
                           [d["category_id"] for d in found],
                           [f"{names.get(d['category_id'], '?')} {d['score']:.2f}"
                            for d in found],
                           masks(found, lambda d: det_rle(d, h, w)))
    scale = max(1, -(-MIN_SIDE // max(1, min(h, w))))
    pics = []
    for pic, marks in (
            (left, [(_box_yxyx(a["bbox"]), "missed") for a, p in zip(anns, g_pos)
                    if errors["fn"][p]]),
            (right, [(_box_yxyx(d["bbox"]), errors["fp_kind"][int(p)])
                     for d, p in zip(found, d_pos) if int(p) in errors["fp_kind"]])):
        im = Image.fromarray(pic)
        if scale > 1:
            im = im.resize((w * scale, h * scale), Image.NEAREST)
        draw = ImageDraw.Draw(im)
        font = _font(max(11, 6 * scale))
        for box, kind in marks:
            _mark(draw, box, KIND_COLORS[kind], kind, scale, font)
        pics.append(np.asarray(im))
    gap = np.full((h * scale, GAP, 3), 255, np.uint8)
    return np.concatenate([pics[0], gap, pics[1]], axis=1)


def images_from_folder(folder: str | os.PathLike, gt: dict):
    """A loader for the galleries: [image id] -> {image id: uint8 [H, W, 3] RGB read from
    ``folder`` / the image's ``file_name`` (else its base name), or None when the file is
    missing or its size is not the ground truth's}."""
    from PIL import Image, ImageOps
    by_id = {im["id"]: im for im in gt["images"]}
    root = Path(folder)

    def load(image_id: int):
        im = by_id.get(image_id)
        if im is None:
            return None
        name = str(im.get("file_name", ""))
        for p in (root / name, root / Path(name).name):
            if name and p.is_file():
                with Image.open(p) as f:
                    # EXIF orientation, as convert applies it
                    pic = np.asarray(ImageOps.exif_transpose(f).convert("RGB"))
                if pic.shape[:2] == (im["height"], im["width"]):
                    return pic
                return None
        return None
    return lambda ids: {i: load(i) for i in ids}
