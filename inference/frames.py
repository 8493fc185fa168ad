"""The threaded frame pipeline: frames in, annotated frames out, in order.

:func:`annotate_frames` is a generator over any iterable of frames (a
:class:`~maskrcnn_toolkit.inference.video_reader.VideoReader`'s, a list of images): it
pulls frames in a background thread, predicts batches in the caller's thread and draws
(and serializes) in a second background thread, through bounded queues, so memory does not
grow with the video. The predictor is any callable and the pipeline a generator, so the
caller keeps the file I/O (annotate_video, annotate_images, a user's own loop); see
docs/DESIGN_NOTES.md, Video and annotate, for why threads and not processes.

Boxes are ``Detections.boxes_yxyx_px``: (ymin, xmin, ymax, xmax) in pixels of the displayed
frame; the JSONL's ``"boxes"`` holds them rounded to 0.01 px.
"""
from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from maskrcnn_toolkit.core.detections import Detections
from maskrcnn_toolkit.core.draw import draw_instances
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.inference.video_reader import Frame, VideoDecodeError

FILL_MODES = ("last", "none")

_END = object()  # ends a queue between the pipeline's threads


class _Failure:
    """An exception raised in a worker thread, carried to the caller's thread."""

    def __init__(self, exc: BaseException):
        self.exc = exc


@dataclass
class AnnotatedFrame:
    """One frame out of :func:`annotate_frames`.

    image: uint8 [H, W, 3] RGB with the detections drawn (or the untouched frame).
    detections: this frame's own Detections when the model ran on it (``processed``),
      else None.
    """

    index: int
    time: float | None
    pts: int | None
    image: np.ndarray
    detections: Detections | None
    processed: bool
    json_line: str | None = None     # with serialize=True: the JSONL line (no newline)
    coco: list | None = None         # with serialize=True: COCO results, image_id = index
    coco_json: list | None = None    # with coco_json=True: ``coco``'s entries as JSON text


def frame_record(index: int, time_s: float | None, det: Detections) -> dict:
    """The JSONL record of one processed frame: ``frame_index``, ``time`` (seconds),
    then :meth:`Detections.to_json` (image_size, boxes as (ymin, xmin, ymax, xmax) pixels,
    scores, class_ids, class_names, masks as COCO RLE)."""
    return {"frame_index": int(index),
            "time": None if time_s is None else round(float(time_s), 6), **det.to_json()}


def annotate_frames(predictor, frames: Iterable[Frame | np.ndarray], *, batch_size: int = 1,
                    every: int = 1, fill: str = "last",
                    classes: Sequence[int | str] | None = None, draw: bool = True,
                    serialize: bool = False, coco_json: bool = False,
                    prefetch: int | None = None) -> Iterator[AnnotatedFrame]:
    """Run ``predictor`` over ``frames`` and yield :class:`AnnotatedFrame` in input order.

    Args:
      predictor: has ``predict_batch(list of uint8 [H, W, 3]) -> list[Detections]``
        (inference.predictor.Predictor), or is a plain callable on one image.
      frames: :class:`Frame` records or bare uint8 [H, W, 3] RGB arrays (indexed 0, 1, ...).
      batch_size: frames per ``predict_batch`` call.
      every: run the model on every ``every``-th frame, counting from the first frame given
        (which is always processed).
      fill: for the frames in between, ``"last"`` draws the last processed frame's
        detections, ``"none"`` leaves them untouched.
      classes: keep only these class ids or names (None keeps all).
      draw: False yields the frames untouched (detections only).
      serialize: also fill ``json_line`` / ``coco`` of processed frames (in the drawing
        thread: RLE-encoding masks costs as much as drawing them, and the caller's thread
        should stay free for the model). Each mask is RLE-encoded once, for both.
      coco_json: with ``serialize``, also fill ``coco_json`` (each COCO entry as JSON
        text, dumped in the drawing thread too).

    Threads: iterating ``frames`` (decoding) runs in a background thread, prediction in the
    caller's thread, drawing in a second background thread. At most ~``batch_size * every``
    + a few frames are held at once, whatever the length of ``frames``. An exception in
    ``frames`` (KeyboardInterrupt included) or in drawing is re-raised here, after the
    frames before it have been yielded; closing the generator early stops the threads.
    """
    if batch_size < 1 or every < 1:
        raise UserError(f"--batch-size ({batch_size}) and --every ({every}) must be >= 1")
    if fill not in FILL_MODES:
        raise UserError(f"fill {fill!r} must be one of {FILL_MODES}")
    predict = _batch_function(predictor)
    prefetch = prefetch or 2 * batch_size * every + 2
    max_in_flight = batch_size * every + 2 * batch_size + 2
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=prefetch)
    q_draw: queue.Queue = queue.Queue()   # bounded by max_in_flight
    q_out: queue.Queue = queue.Queue()

    def decode():
        try:
            for item in frames:
                if not _put(q_in, item, stop):
                    return
            _put(q_in, _END, stop)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            _put(q_in, _Failure(e), stop)

    def render():
        try:
            while True:
                item = q_draw.get()
                if item is _END:
                    return
                frame, shown, own = item
                image = frame.image
                if draw and shown is not None and len(shown):
                    image = draw_detections(image, shown)
                a = AnnotatedFrame(frame.index, frame.time, frame.pts, image, own,
                                   own is not None)
                if serialize and own is not None:
                    record = frame_record(frame.index, frame.time, own)
                    a.json_line = json.dumps(record)
                    # One conversion: Detections.to_coco, reusing the JSONL's RLEs.
                    a.coco = own.to_coco(frame.index, rles=record["masks"]) if len(own) else []
                    if coco_json:
                        a.coco_json = [json.dumps(e) for e in a.coco]
                q_out.put(a)
        except BaseException as e:  # noqa: BLE001
            q_out.put(_Failure(e))

    workers = [threading.Thread(target=decode, name="frames-decode", daemon=True),
               threading.Thread(target=render, name="frames-draw", daemon=True)]
    for w in workers:
        w.start()
    in_flight, failure, position = 0, None, 0
    chunk: list[tuple[Frame, bool]] = []
    last: Detections | None = None

    def take():
        out = q_out.get()
        if isinstance(out, _Failure):
            raise out.exc
        return out

    try:
        ended = False
        while not ended:
            item = q_in.get()
            if item is _END:
                ended = True
            elif isinstance(item, _Failure):
                if not isinstance(item.exc, VideoDecodeError):
                    raise item.exc
                # A decode error ends the input: finish the frames before it, then raise.
                failure, ended = item.exc, True
            else:
                frame = item if isinstance(item, Frame) else Frame(position, item)
                chunk.append((frame, position % every == 0))
                position += 1
            n_process = sum(p for _, p in chunk)
            if not (n_process == batch_size or (ended and chunk)):
                continue
            results = iter(predict([f.image for f, p in chunk if p]) if n_process else [])
            for frame, process in chunk:
                own = None
                if process:
                    own = next(results)
                    if classes is not None:
                        own = own.filter(classes=classes)
                    last = own
                shown = own if process else (last if fill == "last" else None)
                q_draw.put((frame, shown, own))
                in_flight += 1
            chunk = []
            # Hand back what is drawn; wait only when too much is in flight (memory bound).
            while in_flight and (in_flight > max_in_flight or not q_out.empty()):
                yield take()
                in_flight -= 1
        q_draw.put(_END)
        while in_flight:
            yield take()
            in_flight -= 1
        if failure is not None:
            raise failure
    finally:
        stop.set()
        q_draw.put(_END)
        for w in workers:
            w.join(timeout=5)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _batch_function(predictor) -> Callable[[list], list]:
    if hasattr(predictor, "predict_batch"):
        return predictor.predict_batch
    if callable(predictor):
        return lambda images: [predictor(im) for im in images]
    raise TypeError(f"{predictor!r} is not a predictor (needs predict_batch or __call__)")


def draw_detections(image: np.ndarray, det: Detections) -> np.ndarray:
    """Draw ``det`` on a copy of ``image`` (uint8 [H, W, 3] RGB): masks, boxes, "name 0.93"."""
    labels = [f"{n} {s:.2f}" for n, s in zip(det.class_names, det.scores)]
    return draw_instances(image, det.boxes_yxyx_px, det.class_ids, labels, det.masks)

