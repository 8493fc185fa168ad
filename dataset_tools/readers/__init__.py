"""Annotation readers: one small module per format behind one registry.

Each reader module defines ``read(src: Path, options: ReaderOptions) -> Iterator[ImageRecord]``.
A reader only parses: it turns its format into :class:`~dataset_tools.records.ImageRecord`
(image location, declared size, instances of label + polygons / RLE / box + is_crowd) and
records what it could not use as :class:`~dataset_tools.records.Refusal` with a reason.
Regions whose label names no class (``__ignore__``, ``_background_``) are reported as
ignored, not refused, in every format (readers/_common.ignored_label).
Opening images, clipping, label checks and writing are the converter's job (validate.py),
so every format gets the same checks.
A broken annotation file (bad JSON/XML, missing required fields) raises ``UserError``
naming the file, the value and the fix. What several readers need (finding an image,
shapes as polygons, boxes, exact duplicates) is in readers/_common.py, done one way.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.dataset_tools.records import ImageRecord

FORMATS = ("coco", "labelme", "via", "cvat", "voc")
DEFAULT_LABEL = "object"  # the class of regions that name none, unless --default-label


@dataclass
class ReaderOptions:
    """Options a user can pass to any reader (each reader uses the ones that apply).

    images_dir: look for images here instead of where the format's tool puts them.
    via_attribute: the VIA region attribute holding the class name.
    default_label: class name for regions with no class (VIA regions without attributes,
      as in the balloon dataset).
    box_as_polygon: turn box-only annotations (COCO with empty ``segmentation``, CVAT/VOC
      boxes without masks) into rectangle polygons instead of refusing them.
    voc_image_set: which Pascal VOC image list to read: a name such as ``train`` (looked up
      as ``ImageSets/Segmentation/train.txt``, then ``ImageSets/Main/train.txt``), a path
      relative to ``ImageSets`` such as ``Main/train``, or a .txt file. None reads every
      image listed in ``ImageSets/Segmentation/*.txt`` (see readers/voc.py for fallbacks).
    """

    images_dir: Path | None = None
    via_attribute: str | None = None
    default_label: str = DEFAULT_LABEL
    box_as_polygon: bool = False
    voc_image_set: str | None = None


def get_reader(fmt: str):
    """The ``read`` function of a format; a bad name lists the valid ones."""
    if fmt not in FORMATS:
        raise UserError(f"unknown annotation format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return importlib.import_module(f"maskrcnn_toolkit.dataset_tools.readers.{fmt}").read


def read(fmt: str, src: str | os.PathLike, options: ReaderOptions | None = None
         ) -> Iterator[ImageRecord]:
    src = Path(src)
    if not src.exists():
        raise UserError(f"annotation source {str(src)!r} does not exist; give the {fmt} "
                        f"annotation file or folder")
    options = options or ReaderOptions()
    # Checked once here for every format: else every image would be "not found".
    if options.images_dir is not None and not Path(options.images_dir).is_dir():
        raise UserError(f"--images {str(options.images_dir)!r} is not a folder; give the "
                        f"folder that holds the images")
    return get_reader(fmt)(src, options)
