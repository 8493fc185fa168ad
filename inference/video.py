"""Annotating a video file: :func:`annotate_video` wires reader ▸ pipeline ▸ writer.

It reads with :class:`~maskrcnn_toolkit.inference.video_reader.VideoReader`, runs
:func:`~maskrcnn_toolkit.inference.frames.annotate_frames` and encodes with
:class:`~maskrcnn_toolkit.inference.video_writer.VideoWriter`, and writes the annotated
video, its JSONL detections and optionally COCO results atomically (temporary siblings,
renamed at the end), with a progress bar and a
:class:`~maskrcnn_toolkit.inference.run_summary.RunSummary`; ``annotate.py`` only parses
arguments and calls it. An input that fails to decode part-way leaves its outputs under
``*.partial.*`` names (docs/DESIGN_NOTES.md, Video and annotate).

Boxes are ``Detections.boxes_yxyx_px``: (ymin, xmin, ymax, xmax) in pixels of the displayed
frame; the JSONL's ``"boxes"`` holds them rounded to 0.01 px.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from maskrcnn_toolkit.core.atomic import (
    commit,
    discard,
    refuse_existing,
    remove_stale_temporaries,
    temp_path_for,
)
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.inference.frames import annotate_frames
from maskrcnn_toolkit.inference.run_summary import RunSummary, progress_bar
from maskrcnn_toolkit.inference.video_reader import (
    Frame,
    Position,
    VideoDecodeError,
    VideoInfo,
    VideoReader,
)
from maskrcnn_toolkit.inference.video_writer import (
    VideoWriter,
    check_output_suffix,
    encoder_name,
    pixel_format,
)


def partial_path(path: Path) -> Path:
    """``out.mp4`` -> ``out.partial.mp4``: where outputs of an input that failed to decode go."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def jsonl_path_for(video_out: Path) -> Path:
    """The detections file that goes with an output video: ``out.mp4`` -> ``out.jsonl``."""
    return video_out.with_suffix(".jsonl")


class _JsonArrayWriter:
    """Stream a JSON array to a file one element at a time (memory flat in video length)."""

    def __init__(self, f):
        self.f, self.n = f, 0
        f.write("[")

    def extend(self, items: Iterable[dict | str]) -> None:
        """Append ``items``: dicts, or their JSON text already dumped (``coco_json``)."""
        for it in items:
            self.f.write(("," if self.n else "") + "\n"
                         + (it if isinstance(it, str) else json.dumps(it)))
            self.n += 1

    def close(self) -> None:
        self.f.write("\n]\n")


def annotate_video(predictor, src: str | os.PathLike, out: str | os.PathLike, *,
                   coco_results: str | os.PathLike | None = None,
                   batch_size: int = 1, every: int = 1, fill: str = "last",
                   classes: Sequence[int | str] | None = None,
                   start: Position | None = None, end: Position | None = None,
                   codec: str = "h264", crf: float | None = None, audio: bool = True,
                   overwrite: bool = False, progress: bool = True) -> RunSummary:
    """Annotate a video file: ``out`` (video), ``out.jsonl`` and optionally ``coco_results``.

    ``out`` has the displayed resolution of ``src``, its frames (those in
    [``start``, ``end``)) with their timestamps, and its first audio stream copied unchanged
    (unless ``audio`` is False). The JSONL has one line per processed frame::

        {"frame_index": 12, "time": 1.2, "image_size": [H, W], "boxes": [[ymin, xmin, ymax,
         xmax], ...], "scores": [...], "class_ids": [...], "class_names": [...],
         "masks": [{"size": [H, W], "counts": "..."}, ...]}

    COCO results use ``image_id = frame_index``. All outputs are written to temporaries
    next to them and renamed at the end: an exception or Ctrl-C leaves none of them, and
    the temporaries of these outputs that a killed run (SIGKILL: no cleanup) left behind are
    removed once the checks have passed, before anything is written. When
    the input fails to decode part-way, what was processed is kept under ``*.partial.*``
    names and the summary carries the error (exit code 3).
    """
    src, out = Path(src), Path(out)
    targets = check_video_outputs(src, out, coco_results=coco_results, codec=codec, crf=crf,
                                  overwrite=overwrite)
    t0 = time.perf_counter()
    summary = RunSummary()
    with VideoReader(src) as reader:
        info = reader.info
        pixel_format(encoder_name(codec), *info.display_size,
                     f"video {str(src)!r} is, as displayed,")
        check_video_range(start, end, info)
        for p in targets:  # a run killed with SIGKILL left its temporaries behind
            remove_stale_temporaries(p)
        tmps = [temp_path_for(p) for p in targets]
        writer = None
        try:
            with open(tmps[1], "w", encoding="utf-8") as jl, \
                    (open(tmps[2], "w", encoding="utf-8") if coco_results
                     else contextlib.nullcontext()) as cf:
                coco = _JsonArrayWriter(cf) if cf else None
                frames = reader.frames(start, end)
                first = _first_frame(frames)
                if first is None:
                    raise UserError(f"{str(src)!r} has no frame in the range "
                                    f"[{start or 'start'}, {end or 'end'})")
                shift = start is not None
                writer = VideoWriter(
                    tmps[0], info.fps, time_base=info.time_base, codec=codec, crf=crf,
                    audio_from=src if audio else None,
                    audio_start=first.time if shift else None,
                    audio_end=None if end is None else _end_time(end, info),
                    pts_offset=first.pts if shift else 0)
                total = _frames_in_range(info, start, end)
                bar = progress_bar(total, progress, src.name)
                stream = annotate_frames(predictor, itertools.chain([first], frames),
                                         batch_size=batch_size, every=every, fill=fill,
                                         classes=classes, serialize=True,
                                         coco_json=coco is not None)
                last_time = None
                try:
                    for a in stream:
                        writer.write(a.image, a.pts)
                        last_time = a.time
                        summary.frames += 1
                        if a.processed:
                            summary.processed += 1
                            summary.detections += len(a.detections)
                            jl.write(a.json_line + "\n")
                            if coco:
                                coco.extend(a.coco_json)
                        bar.update(1)
                except VideoDecodeError as e:
                    summary.error = str(e)
                finally:
                    stream.close()  # stops the pipeline threads before the reader closes
                    bar.close()
                if coco:
                    coco.close()
            # A partial output's audio stops where its video does (one frame after the last).
            writer.close(audio_until=(last_time + 1 / float(info.fps))
                         if summary.error and last_time is not None else None)
            writer = None
            finals = [partial_path(p) if summary.error else p for p in targets]
            for tmp, final in zip(tmps, finals):
                commit(tmp, final)
            if not summary.error:  # a complete run supersedes partial outputs of an old one
                for p in targets:
                    discard(partial_path(p))
            summary.outputs = finals
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            for tmp in tmps:
                discard(tmp)
    summary.seconds = time.perf_counter() - t0
    return summary


def check_video_outputs(src: str | os.PathLike, out: str | os.PathLike, *,
                        coco_results: str | os.PathLike | None = None, codec: str = "h264",
                        crf: float | None = None, overwrite: bool = False) -> list[Path]:
    """What :func:`annotate_video` checks before it writes, callable before a model loads
    (``annotate.py`` does): the output's suffix is a container we write, the codec is
    known and takes ``crf``, the outputs differ from each other and from ``src``, and none
    of them (nor its ``*.partial.*`` name) exists unless ``overwrite``. Touches no file.

    Returns the outputs: [``out``, its ``.jsonl``, ``coco_results`` when given]. Raises
    UserError naming the output and the fix.
    """
    src, out = Path(src), Path(out)
    check_output_suffix(out)
    encoder_name(codec)
    if crf is not None and encoder_name(codec) not in ("libx264", "libx265"):
        raise UserError(f"--crf applies to h264/h265 only, not to codec {codec!r}")
    targets = [out, jsonl_path_for(out)] + ([Path(coco_results)] if coco_results else [])
    if len({p.resolve() for p in targets + [src]}) != len(targets) + 1:
        raise UserError(f"outputs {[str(p) for p in targets]} must differ from each other and "
                        f"from the input {str(src)!r}")
    for p in targets:
        refuse_existing(p, overwrite)
        refuse_existing(partial_path(p), overwrite, "partial output")
    return targets


def check_video_range(start: Position | None, end: Position | None, info: VideoInfo) -> None:
    """UserError when [``start``, ``end``) cannot hold a frame of the video ``info``
    describes: ``start`` not before ``end``, or ``start`` at or past the video's end (its
    declared frame count or duration; a video that declares neither is not checked here,
    and decoding finds the range empty instead).

    Frame indices and seconds are compared through the frame rate (frame i is at
    ``start_time_s + i / fps``); with mixed units, a start within half a frame of the end
    passes here, as variable-rate timing makes the conversion approximate.
    """
    fps = float(info.fps)
    src = repr(info.path)
    if start is not None and end is not None:
        if start.unit == end.unit:
            empty = start.value >= end.value
        else:
            empty = _seconds(start, info) >= _seconds(end, info) + 0.5 / fps
        if empty:
            raise UserError(f"--start {start} is not before --end {end}: the range holds no "
                            f"frame of {src}; give an --end after the --start")
    if start is None:
        return
    n, dur = info.num_frames, info.duration_s
    if start.unit == "f":
        limit = n or (round(dur * fps) if dur else None)
        past = limit is not None and start.value >= limit
    else:
        end_s = (info.start_time_s + dur) if dur else (
            info.start_time_s + n / fps if n else None)
        past = end_s is not None and start.value >= end_s - 1e-6
    if past:
        length = ", ".join(x for x in (f"{n} frames" if n else "",
                                       f"{info.start_time_s + dur:.2f} s" if dur else "") if x)
        raise UserError(f"--start {start} is past the end of {src} ({length}); give a start "
                        f"inside the video")


def _seconds(p: Position, info: VideoInfo) -> float:
    return p.value if p.unit == "s" else info.start_time_s + p.value / float(info.fps)


def _first_frame(frames: Iterator[Frame]) -> Frame | None:
    return next(frames, None)


def _end_time(end: Position, info: VideoInfo) -> float:
    return end.value / float(info.fps) if end.unit == "f" else end.value


def _frames_in_range(info: VideoInfo, start: Position | None, end: Position | None
                     ) -> int | None:
    if not info.num_frames:
        return None
    fps = float(info.fps)
    a = 0 if start is None else int(start.value if start.unit == "f" else round(start.value * fps))
    b = info.num_frames if end is None else min(
        info.num_frames, int(end.value if end.unit == "f" else round(end.value * fps)))
    return max(0, b - a)

