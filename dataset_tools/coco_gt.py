"""COCO ground-truth JSON, exactly consistent with the TFRecords.

Each annotation is computed from the very mask that is PNG-encoded into the record
(:func:`annotation_from_rle`, with the RLE that mask was decoded from): ``segmentation``
is that mask's compressed RLE, ``bbox`` its tight box, ``area`` its pixel count. Image ids
are the records' ``image/source_id``;
category ids are label-map ids. Evaluation against this file therefore scores the model on
exactly what it was trained to reproduce.

The writer streams images and annotations to line files in the (temporary) output folder
and assembles the JSON at the end, so memory stays flat however large the dataset is.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from pycocotools import mask as mask_utils

from maskrcnn_toolkit.core.label_map import LabelMap


def annotation_from_rle(rle: dict, category_id: int, is_crowd: bool) -> dict:
    """COCO annotation fields (no ``id`` / ``image_id`` yet) of a compressed RLE with str
    ``counts`` (core.masks.mask_to_rle / polygons_to_rle).

    ``bbox`` is [x, y, w, h] in pixel edges (a mask covering column 0 only has w = 1) and
    ``area`` the pixel count, both computed from the runs by pycocotools (C): the same
    numbers as core.masks.mask_bbox / the pixel count of the decoded mask, without two more
    passes over H x W. The mask must not be empty.
    """
    c_rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    x, y, w, h = (float(v) for v in mask_utils.toBbox(c_rle))
    return {"category_id": int(category_id),
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]},
            "area": float(mask_utils.area(c_rle)),
            "bbox": [x, y, w, h],
            "iscrowd": int(bool(is_crowd))}


def categories(label_map: LabelMap) -> list[dict]:
    return [{"id": i, "name": n, "supercategory": "object"}
            for i, n in label_map.names_by_id.items()]


class CocoGtWriter:
    """Collects images and annotations of one split on disk; :meth:`finish` writes the JSON."""

    def __init__(self, folder: str | Path, split: str):
        self._img_path = Path(folder) / f".{split}-images.jsonl"
        self._ann_path = Path(folder) / f".{split}-annotations.jsonl"
        self._img = open(self._img_path, "w", encoding="utf-8")
        self._ann = open(self._ann_path, "w", encoding="utf-8")
        self.num_images = 0
        self.num_annotations = 0

    def add(self, image_id: int, file_name: str, width: int, height: int,
            annotations: list[dict], first_annotation_id: int) -> int:
        """Add one image and its annotations (from :func:`annotation_from_rle`).

        Returns the next free annotation id (ids are unique across splits when the caller
        threads the counter through both writers).
        """
        self._img.write(json.dumps({"id": int(image_id), "file_name": file_name,
                                    "width": int(width), "height": int(height)}) + "\n")
        ann_id = first_annotation_id
        for a in annotations:
            self._ann.write(json.dumps({"id": ann_id, "image_id": int(image_id), **a}) + "\n")
            ann_id += 1
        self.num_images += 1
        self.num_annotations += len(annotations)
        return ann_id

    def finish(self, path: str | Path, label_map: LabelMap) -> None:
        """Write ``{"images", "annotations", "categories"}`` to ``path`` and remove the line
        files. ``path`` lies in the temporary output folder, so a plain write is enough."""
        self._img.close()
        self._ann.close()
        with open(path, "w", encoding="utf-8") as out:
            out.write('{"info": {"description": "written by python -m dataset_tools convert"}')
            for key, src in (("images", self._img_path), ("annotations", self._ann_path)):
                out.write(f', "{key}": [')
                with open(src, encoding="utf-8") as f:
                    for i, line in enumerate(f):
                        out.write(("," if i else "") + line.rstrip("\n"))
                out.write("]")
            out.write(', "categories": ' + json.dumps(categories(label_map)) + "}\n")
        self.discard()

    def discard(self) -> None:
        for f in (self._img, self._ann):
            f.close()
        for p in (self._img_path, self._ann_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
