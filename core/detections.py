"""``Detections``: what every model in this project returns, whatever loaded it.

Coordinates: ``boxes_yxyx_px`` are (ymin, xmin, ymax, xmax) in pixels of the image that was
passed in (not of the model's resized input), float32, edges not centers (a box covering the
whole W x H image is (0, 0, H, W)). This is TensorFlow's order; COCO's (x, y, w, h) is
produced only by :meth:`Detections.to_coco` (core/boxes.py has the conversions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from maskrcnn_toolkit.core.boxes import yxyx_to_xywh
from maskrcnn_toolkit.core.masks import box_mask_to_rle


@dataclass
class Detections:
    """Detections for one image.

    Attributes:
      boxes_yxyx_px: float32 [N, 4], (ymin, xmin, ymax, xmax) in input-image pixels.
      scores: float32 [N], in [0, 1], sorted descending by the model.
      class_ids: int32 [N], label-map ids (1..N; 0 is never a detection).
      class_names: N strings from the label map (``class_<id>`` when the map lacks the id).
      masks: bool [N, H, W] at full image size, or None for a box-only model.
      image_size: (H, W) of the input image.
    """

    boxes_yxyx_px: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    masks: np.ndarray | None = None

    def __post_init__(self):
        self.boxes_yxyx_px = np.asarray(self.boxes_yxyx_px, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, np.int32).reshape(-1)
        self.class_names = list(self.class_names)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        n = len(self.scores)
        if not (len(self.boxes_yxyx_px) == len(self.class_ids) == len(self.class_names) == n):
            raise ValueError("boxes_yxyx_px, scores, class_ids and class_names must have the "
                             "same length")
        if self.masks is not None:
            self.masks = np.asarray(self.masks).astype(bool, copy=False)
            if self.masks.shape != (n, *self.image_size):
                raise ValueError(f"masks must be [N, H, W] = {(n, *self.image_size)}, "
                                 f"got {self.masks.shape}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, image_size: tuple[int, int], with_masks: bool = True) -> "Detections":
        h, w = image_size
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), [], (h, w),
                   np.zeros((0, h, w), bool) if with_masks else None)

    def select(self, keep: np.ndarray) -> "Detections":
        """A new Detections with the rows where ``keep`` (bool [N] or indices) holds."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, int)
        return Detections(self.boxes_yxyx_px[idx], self.scores[idx], self.class_ids[idx],
                          [self.class_names[i] for i in idx], self.image_size,
                          None if self.masks is None else self.masks[idx])

    def filter(self, score_threshold: float | None = None,
               classes: Iterable[int | str] | None = None) -> "Detections":
        """Keep detections with score >= ``score_threshold`` and whose class id or name is in
        ``classes`` (None keeps all)."""
        keep = np.ones(len(self), bool)
        if score_threshold is not None:
            keep &= self.scores >= score_threshold
        if classes is not None:
            wanted = {str(c) for c in classes}
            keep &= np.array([str(i) in wanted or n in wanted
                              for i, n in zip(self.class_ids, self.class_names)], bool)
        return self.select(keep)

    def to_coco(self, image_id: int, rles: Sequence[dict] | None = None) -> list[dict]:
        """COCO results entries: ``bbox`` as [x, y, w, h] pixels, ``segmentation`` as RLE.

        ``rles``: the masks already RLE-encoded (e.g. ``to_json()["masks"]``), so a caller
        that writes both formats encodes each mask once; None encodes them here.
        """
        out = []
        if rles is not None and len(rles) != len(self):
            raise ValueError(f"rles has {len(rles)} entries for {len(self)} detections")
        if rles is None and self.masks is not None:
            rles = self.mask_rles()
        # w = xmax - xmin in float64, where the difference of two float32 values is exact;
        # only the rounding to 0.01 px below is lossy.
        boxes_xywh_px = yxyx_to_xywh(self.boxes_yxyx_px.astype(np.float64))
        for i in range(len(self)):
            d = {"image_id": int(image_id), "category_id": int(self.class_ids[i]),
                 "bbox": [round(float(v), 2) for v in boxes_xywh_px[i]],
                 "score": round(float(self.scores[i]), 5)}
            if self.masks is not None:
                d["segmentation"] = rles[i]
            out.append(d)
        return out

    def to_json(self) -> dict:
        """A JSON-ready dict (masks as COCO RLE) for JSONL outputs: ``"boxes"`` holds
        ``boxes_yxyx_px`` rounded to 0.01 px (the key is the file format's, unchanged)."""
        return {
            "image_size": list(self.image_size),
            "boxes": [[round(float(v), 2) for v in b] for b in self.boxes_yxyx_px],
            "scores": [round(float(s), 5) for s in self.scores],
            "class_ids": [int(c) for c in self.class_ids],
            "class_names": self.class_names,
            "masks": None if self.masks is None else self.mask_rles(),
        }

    def mask_rles(self) -> list[dict]:
        """Each mask as compressed COCO RLE (``{"size": [H, W], "counts": str}``), exactly
        ``core.masks.mask_to_rle``'s, encoded from its box's window
        (``core.masks.box_mask_to_rle``).
        """
        if self.masks is None:
            raise ValueError("these detections have no masks")
        return [box_mask_to_rle(m, b) for m, b in zip(self.masks, self.boxes_yxyx_px)]
