"""Annotating image files: :func:`find_images` resolves the input (an image, a folder, a
glob), :func:`annotate_images` writes the annotated copies, COCO results and an index into
one output folder, atomically.

Images go through the same :func:`~maskrcnn_toolkit.inference.frames.annotate_frames`
pipeline as video frames, read by :func:`~maskrcnn_toolkit.inference.images.load_image`
(EXIF orientation applied). Output names are checked for collisions before a model is
loaded (docs/DESIGN_NOTES.md, Video and annotate: images).
"""
from __future__ import annotations

import glob
import json
import os
import time
from pathlib import Path
from typing import Sequence

from PIL import Image

from maskrcnn_toolkit.core.atomic import atomic_dir, refuse_existing
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.inference.frames import annotate_frames
from maskrcnn_toolkit.inference.images import load_image
from maskrcnn_toolkit.inference.run_summary import RunSummary, progress_bar
from maskrcnn_toolkit.inference.video_reader import VIDEO_SUFFIXES, Frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def find_images(spec: str) -> list[Path]:
    """An image file, a folder (its images, not recursive) or a glob → sorted image paths."""
    p = Path(spec)
    if p.is_dir():
        paths = [q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES]
        if not paths:
            raise UserError(f"folder {spec!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
    elif p.is_file():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"{spec!r} is neither a video ({', '.join(VIDEO_SUFFIXES)}) nor an "
                            f"image ({', '.join(IMAGE_SUFFIXES)}); give a video, an image, a "
                            f"folder of images or a glob such as 'photos/*.jpg'")
        paths = [p]
    elif glob.has_magic(spec):
        paths = [Path(q) for q in glob.glob(spec) if Path(q).is_file()
                 and Path(q).suffix.lower() in IMAGE_SUFFIXES]
        if not paths:
            raise UserError(f"glob {spec!r} matches no image files")
    else:
        raise UserError(f"input {spec!r} does not exist; give a video, an image, a folder of "
                        f"images or a quoted glob such as 'photos/*.jpg'")
    paths = sorted(paths)
    names = [q.name for q in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"input {spec!r} holds several images named {dup[:3]} in different "
                        f"folders; annotated images are written side by side in one folder, "
                        f"so annotate each folder separately")
    annotated_image_names(paths)  # output names collide: fail before a model is loaded
    return paths


_WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP",
                  ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}


def annotated_image_name(path: Path) -> tuple[str, str]:
    """(file name, Pillow format) of the annotated copy of image ``path``: the same name and
    format, or for formats not written back (GIF) the full name + ``.png`` (``a.gif`` ->
    ``a.gif.png``, so it cannot take the name of an ``a.png`` beside it)."""
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    return (path.name, fmt) if fmt else (path.name + ".png", "PNG")


def annotated_image_names(paths: Sequence[Path]) -> list[tuple[str, str]]:
    """:func:`annotated_image_name` of each path; UserError when two would share a name
    (compared case-insensitively: ``a.PNG`` and ``a.png`` collide on macOS and Windows)."""
    outputs = [annotated_image_name(Path(p)) for p in paths]
    seen: dict[str, Path] = {}
    for p, (name, _) in zip(paths, outputs):
        other = seen.setdefault(name.lower(), p)
        if other != p:
            raise UserError(f"{str(other)!r} and {str(p)!r} would both be written as "
                            f"{name!r} in the output folder; rename one of them, or "
                            f"annotate them in separate runs")
    return outputs


def annotate_images(predictor, paths: Sequence[Path], out_dir: str | os.PathLike, *,
                    batch_size: int = 1, classes: Sequence[int | str] | None = None,
                    overwrite: bool = False, progress: bool = True) -> RunSummary:
    """Annotate image files into the folder ``out_dir`` (written atomically as a whole).

    Writes ``out_dir/<name>`` for each input (same file name and format; JPEG at quality
    95; GIF goes to PNG as ``<name>.gif.png``; two inputs with the same output name are a
    UserError before anything is written), ``out_dir/detections.json`` (COCO results;
    ``image_id`` = position of the image in sorted path order, from 0) and
    ``out_dir/images.json`` (``{"images": [{"id", "file_name", "path", "width",
    "height"}], "categories": [{"id", "name"}]}``, the COCO ``images`` / ``categories``
    that go with the results).
    """
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() in VIDEO_SUFFIXES:
        raise UserError(f"--out {str(out_dir)!r} looks like a video file, but the input is "
                        f"images; give a folder for the annotated images")
    refuse_existing(out_dir, overwrite)
    outputs = annotated_image_names(paths)
    t0 = time.perf_counter()
    summary = RunSummary()
    frames = (Frame(i, load_image(p)) for i, p in enumerate(paths))
    results, images = [], []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        bar = progress_bar(len(paths), progress, "images")
        try:
            for a in annotate_frames(predictor, frames, batch_size=batch_size,
                                     classes=classes, serialize=True):
                src = paths[a.index]
                name, fmt = outputs[a.index]
                Image.fromarray(a.image).save(tmp / name, format=fmt,
                                              **({"quality": 95} if fmt == "JPEG" else {}))
                h, w = a.image.shape[:2]
                images.append({"id": a.index, "file_name": name, "path": str(src),
                               "width": w, "height": h})
                results.extend(a.coco)
                summary.frames += 1
                summary.processed += 1
                summary.detections += len(a.detections)
                bar.update(1)
        finally:
            bar.close()
        label_map = getattr(predictor, "label_map", None)
        cats = ([{"id": i, "name": n} for i, n in label_map.names_by_id.items()]
                if label_map is not None else [])
        with open(tmp / "detections.json", "w", encoding="utf-8") as f:
            json.dump(results, f)
        with open(tmp / "images.json", "w", encoding="utf-8") as f:
            json.dump({"images": images, "categories": cats}, f, indent=1)
    summary.seconds = time.perf_counter() - t0
    summary.outputs = [out_dir]
    return summary
