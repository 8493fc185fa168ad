"""Annotating image files: :func:`find_images` resolves the input (an image, a folder, a
glob), :func:`annotate_images` writes the annotated copies, COCO results and an index into
one output folder, atomically (or one input image into one image file);
:func:`check_image_outputs` checks the output before a model loads. With a
:class:`~maskrcnn_toolkit.inference.ground_truth.GroundTruthMatch`, the COCO results use the
ground truth's image and category ids.

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

from maskrcnn_toolkit.core.atomic import (
    atomic_dir,
    atomic_write,
    check_replaceable,
    refuse_existing,
)
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.inference.frames import annotate_frames
from maskrcnn_toolkit.inference.ground_truth import GroundTruthMatch
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


def check_image_outputs(paths: Sequence[Path], out: str | os.PathLike, *,
                        overwrite: bool = False, gt: GroundTruthMatch | None = None
                        ) -> str | None:
    """What :func:`annotate_images` checks before it writes, callable before a model loads
    (``annotate.py`` does). Touches no file.

    ``out`` with an image suffix (``.jpg .png ...``) names one annotated image: allowed for
    exactly one input image (not with ``gt``, whose detections.json needs a folder), in a
    format Pillow writes. Any other ``out`` is a folder (``.json`` / ``.jsonl`` and video
    suffixes are refused: they name files). An existing ``out`` is refused unless
    ``overwrite``; the output names inside a folder must not collide.

    Returns the Pillow format of the single output image, or None for a folder. Raises
    UserError naming ``out`` and the fix.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        raise UserError(f"--out {str(out)!r} looks like a video file, but the input is "
                        f"images; give a folder for the annotated images")
    if suffix in (".json", ".jsonl"):
        raise UserError(f"--out {str(out)!r} looks like a {suffix[1:].upper()} file, but "
                        f"images are written into a folder (the annotated images, "
                        f"detections.json and images.json); give a folder name")
    if suffix in IMAGE_SUFFIXES:
        if gt is not None:
            raise UserError(f"--out {str(out)!r} names one image file, but --gt writes "
                            f"detections.json beside the images; give a folder (e.g. "
                            f"--out {str(out.with_suffix(''))!r})")
        if len(paths) != 1:
            raise UserError(f"--out {str(out)!r} names one image file, but the input holds "
                            f"{len(paths)} images; give a folder for several images (e.g. "
                            f"--out {str(out.with_suffix(''))!r})")
        fmt = _WRITE_FORMATS.get(suffix)
        if fmt is None:
            raise UserError(f"--out {str(out)!r}: annotated images are not written as "
                            f"{suffix}; use one of {', '.join(_WRITE_FORMATS)}")
        if out.is_dir():
            raise UserError(f"--out {str(out)!r} is a folder, not an image file; remove it "
                            f"or choose another name")
        refuse_existing(out, overwrite)
        return fmt
    refuse_existing(out, overwrite)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {str(out)!r} exists and is not a folder; choose a folder "
                        f"path")
    # --overwrite replaces the whole folder: one holding files annotate did not write is
    # refused (the user's own photos must not vanish with it).
    check_replaceable(out, overwrite, owned=owned_names(out, paths), what="output")
    return None


def owned_names(out: Path, paths: Sequence[Path]):
    """Which entries of an existing output folder ``out`` annotate may replace: what this
    run writes, and what an earlier run wrote there (the ``file_name`` entries of its
    ``images.json``). Returns a predicate over entry names."""
    names = {"detections.json", "images.json"} | {n for n, _ in annotated_image_names(paths)}
    try:
        with open(out / "images.json", encoding="utf-8") as f:
            names |= {str(im["file_name"]) for im in json.load(f)["images"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no earlier run's list: only this run's names are ours
    return names.__contains__


def annotate_images(predictor, paths: Sequence[Path], out: str | os.PathLike, *,
                    batch_size: int = 1, classes: Sequence[int | str] | None = None,
                    overwrite: bool = False, progress: bool = True,
                    gt: GroundTruthMatch | None = None) -> RunSummary:
    """Annotate image files into the folder ``out`` (written atomically as a whole), or,
    when ``out`` has an image suffix and there is one input image, into that one file
    (format from the suffix; :func:`check_image_outputs` says what is refused).

    A folder gets ``out/<name>`` for each input (same file name and format; JPEG at quality
    95; GIF goes to PNG as ``<name>.gif.png``; two inputs with the same output name are a
    UserError before anything is written), ``out/detections.json`` (COCO results: ``bbox``
    [x, y, w, h] pixels, ``segmentation`` RLE at image size; ``image_id`` = position of the
    image in sorted path order, from 0) and ``out/images.json`` (``{"images": [{"id",
    "file_name", "path", "width", "height"}], "categories": [{"id", "name"}]}``, the COCO
    ``images`` / ``categories`` that go with the results).

    ``gt`` (:func:`~maskrcnn_toolkit.inference.ground_truth.match_ground_truth`): only the
    inputs the ground truth lists are annotated, ``image_id`` and ``category_id`` are the
    ground truth's, only the label map's classes it matched are kept, and an image whose
    size differs from the ground truth's is a UserError.
    """
    out = Path(out)
    if gt is not None:
        paths = [p for p in paths if p in gt.image_ids]
        classes = list(gt.category_ids)  # label-map ids whose names the ground truth has
    single = check_image_outputs(paths, out, overwrite=overwrite, gt=gt)
    t0 = time.perf_counter()
    summary = RunSummary()
    frames = (Frame(i, load_image(p)) for i, p in enumerate(paths))
    stream = annotate_frames(predictor, frames, batch_size=batch_size, classes=classes,
                             serialize=single is None)
    try:
        if single is not None:
            a = next(stream)
            with atomic_write(out) as f:
                _save(a.image, f, single)
            _count(summary, a)
        else:
            _write_folder(predictor, stream, paths, out, overwrite, progress, summary, gt)
    finally:
        stream.close()  # stops the pipeline threads, also after an error
    summary.seconds = time.perf_counter() - t0
    summary.outputs = [out]
    return summary


def _write_folder(predictor, stream, paths, out: Path, overwrite: bool, progress: bool,
                  summary: RunSummary, gt: GroundTruthMatch | None) -> None:
    outputs = annotated_image_names(paths)
    ids = [gt.image_ids[p] for p in paths] if gt is not None else list(range(len(paths)))
    results, images = [], []
    with atomic_dir(out, overwrite=overwrite, owned=owned_names(out, paths)) as tmp:
        bar = progress_bar(len(paths), progress, "images")
        try:
            for a in stream:
                src = paths[a.index]
                name, fmt = outputs[a.index]
                h, w = a.image.shape[:2]
                if gt is not None and gt.sizes[src] not in (None, (h, w)):
                    raise UserError(
                        f"image {str(src)!r} is {h}x{w} (H x W) but the ground truth "
                        f"{gt.path!r} gives its file name {gt.sizes[src][0]}x"
                        f"{gt.sizes[src][1]}; is it the same image? evaluate.py would "
                        f"refuse its masks")
                _save(a.image, tmp / name, fmt)
                images.append({"id": ids[a.index], "file_name": name, "path": str(src),
                               "width": w, "height": h})
                for d in a.coco:
                    d["image_id"] = ids[a.index]
                    if gt is not None:
                        d["category_id"] = gt.category_ids[d["category_id"]]
                results.extend(a.coco)
                _count(summary, a)
                bar.update(1)
        finally:
            bar.close()
        if gt is not None:
            cats = gt.categories
        else:
            label_map = getattr(predictor, "label_map", None)
            cats = ([{"id": i, "name": n} for i, n in label_map.names_by_id.items()]
                    if label_map is not None else [])
        with open(tmp / "detections.json", "w", encoding="utf-8") as f:
            json.dump(results, f)
        with open(tmp / "images.json", "w", encoding="utf-8") as f:
            json.dump({"images": images, "categories": cats}, f, indent=1)


def _save(image, dest, fmt: str) -> None:
    """Write uint8 [H, W, 3] RGB ``image`` to a path or an open binary file as ``fmt``."""
    Image.fromarray(image).save(dest, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def _count(summary: RunSummary, a) -> None:
    summary.frames += 1
    summary.processed += 1
    summary.detections += len(a.detections)
