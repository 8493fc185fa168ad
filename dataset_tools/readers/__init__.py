"""Annotation readers: one small module per format behind one registry.

Each reader module defines ``read(src: Path, options: ReaderOptions) -> Iterator[ImageRecord]``.
A reader only parses: it turns its format into :class:`~dataset_tools.records.ImageRecord`
(image location, declared size, instances of label + polygons / RLE / box + is_crowd) and
records what it could not use as :class:`~dataset_tools.records.Refusal` with a reason.
Opening images, clipping, label checks and writing are the converter's job (validate.py),
so every format gets the same checks.
A broken annotation file (bad JSON/XML, missing required fields) raises ``UserError``
naming the file, the value and the fix.
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
    default_label: str = "object"
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


def _is_file(path: Path) -> bool:
    """Path.is_file that says False, not raises, for names the OS cannot even look up
    (too long, NUL bytes): such a name is simply "not found"."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _lexical(path: Path) -> Path:
    """Absolute path with ``.``/``..`` collapsed, symlinks not followed."""
    return Path(os.path.normpath(os.path.abspath(path)))


def resolve_image(name: str, search_dirs: list[Path], root: Path) -> tuple[Path | None, str]:
    """Find the image a record names.

    Args:
      name: the path as the annotation writes it (relative or absolute, / or \\ separators).
      search_dirs: folders to try in order (e.g. [images_dir] or [ann_dir / "images", ann_dir]).
      root: the dataset root; a path outside every search dir and the root is refused.
    Returns:
      (absolute, normalized path, "") when found inside the root, else (None, reason).

    "Inside" is decided on the path as written (``..`` collapsed, symlinks not followed):
    ``../../etc/x.jpg`` escapes and is refused, while an image inside the root that is a
    symlink into a store elsewhere (a common way to share one image folder) is accepted.
    """
    name = name.replace("\\", "/")
    candidates = [Path(name)] if os.path.isabs(name) else []
    for d in search_dirs:
        candidates.append(d / name)
        candidates.append(d / Path(name).name)  # tools often store a path from another machine
    bases = [root, *search_dirs]
    # The roots as given and with their own symlinks resolved (an absolute image path may
    # name either form of the same folder).
    roots = {_lexical(b) for b in bases} | {b.resolve() for b in bases}
    escaped = None  # an existing file outside the roots: refused only if nothing else matches
    for c in candidates:
        if _is_file(c):
            r = _lexical(c)
            if not any(r == base or base in r.parents for base in roots):
                escaped = escaped or r
                continue
            return r, ""
    if escaped is not None:
        return None, (f"image path {name!r} resolves to {str(escaped)!r}, outside the dataset "
                      f"root {str(root)!r}; move the image under the root or pass "
                      f"--images DIR")
    tried = ", ".join(sorted({str(c.parent) for c in candidates}))
    return None, f"image {name!r} not found (looked in: {tried}); pass --images DIR"
