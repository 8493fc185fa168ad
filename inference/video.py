"""Frames through a predictor: decode ▸ batched predict ▸ draw ▸ encode, for videos and images.

The pieces, from the bottom up (STYLE 8: a predictor is a callable, video is a generator):

- :class:`VideoReader` decodes a video file (through FFmpeg, with PyAV) into :class:`Frame`
  records: ``image`` uint8 [H, W, 3] RGB **as displayed** (the stream's rotation metadata is
  applied to the pixels), the frame ``index`` (0-based, presentation order, counted from the
  start of the file), its presentation ``time`` in seconds and its ``pts``.
- :func:`annotate_frames` is a generator: frames in, :class:`AnnotatedFrame` out, in order.
  It pulls frames in a background thread, predicts batches in the caller's thread and draws
  in another background thread, with bounded queues (memory does not grow with the video).
- :class:`VideoWriter` encodes RGB frames in its own thread (H.264 in MP4 by default), keeps
  each frame's timestamp (variable frame rate survives) and copies the input's audio packets
  unchanged (remuxed, not re-encoded).
- :func:`annotate_video` / :func:`annotate_images` wire those together with atomic outputs,
  a tqdm bar and a :class:`RunSummary`; ``annotate.py`` only parses arguments and calls them.
- :func:`write_video` renders any frame iterable to a video file atomically (the demo's
  synthetic conveyor clip); :func:`save_frame` saves one frame of a video as PNG.

Boxes are (ymin, xmin, ymax, xmax) in pixels of the displayed frame (core.detections).
"""
from __future__ import annotations

import contextlib
import glob
import itertools
import json
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import av
import numpy as np

from maskrcnn_toolkit.core.atomic import commit, discard, refuse_existing, temp_path_for
from maskrcnn_toolkit.core.detections import Detections
from maskrcnn_toolkit.core.draw import draw_instances
from maskrcnn_toolkit.core.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts",
                  ".wmv", ".flv", ".3gp")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Output containers we write; the encoder must fit the container (all of these take H.264).
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi")
# User-facing codec names -> FFmpeg encoders shipped in PyAV's wheels.
CODECS = {"h264": "libx264", "libx264": "libx264", "h265": "libx265", "hevc": "libx265",
          "libx265": "libx265", "mpeg4": "mpeg4", "mjpeg": "mjpeg"}
FILL_MODES = ("last", "none")
# Audio packets are muxed up to the time of the last video frame written (no lead), so the
# muxer's interleaving buffer stays small whatever the video length, and an output cut short
# (a partial output) can end its audio where its video ends (VideoWriter.close).
_AUDIO_LEAD_S = 0.0


class VideoDecodeError(UserError):
    """The input video could not be decoded to its end.

    ``frame_index`` is the index of the first frame that could not be decoded (the number
    of frames decoded before it); ``declared`` the frame count the container announces
    (0 when unknown).
    """

    def __init__(self, message: str, frame_index: int, declared: int = 0):
        super().__init__(message)
        self.frame_index = frame_index
        self.declared = declared


# --------------------------------------------------------------------------------- reading

@dataclass
class Frame:
    """One decoded frame.

    image: uint8 [H, W, 3] RGB as displayed (rotation applied).
    index: 0-based position in presentation order from the start of the source.
    time: presentation time in seconds (None for images).
    pts: presentation timestamp in the source stream's ``time_base`` (None for images).
    """

    index: int
    image: np.ndarray
    time: float | None = None
    pts: int | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What :class:`VideoReader` knows before decoding.

    width/height are the coded size; the displayed size swaps them when ``rotation`` is
    ±90 (see :attr:`display_size`). fps is the stream's average rate; ``num_frames`` is what
    the container declares (0 when it does not say, as in MKV).
    """

    path: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    num_frames: int
    duration_s: float | None
    codec: str
    rotation: int
    audio_codec: str | None

    @property
    def display_size(self) -> tuple[int, int]:
        """(H, W) of the frames as displayed."""
        if self.rotation % 180:
            return self.width, self.height
        return self.height, self.width


@dataclass(frozen=True)
class Position:
    """A --start/--end value: a time in seconds (``unit == "s"``) or a frame index (``"f"``)."""

    value: float
    unit: str

    def before(self, frame: Frame) -> bool:
        """True when ``frame`` comes before this position."""
        if self.unit == "f":
            return frame.index < self.value
        return (frame.time or 0.0) < self.value - 1e-6

    def __str__(self) -> str:
        return f"frame {int(self.value)}" if self.unit == "f" else f"{self.value:g} s"


def parse_position(text: str, option: str = "--start") -> Position:
    """Parse ``12.5`` / ``12.5s`` (seconds) or ``300f`` (frame index)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([sf]?)\s*", str(text))
    if not m:
        raise UserError(f"{option} {text!r} is not a position; give seconds (12.5 or 12.5s) "
                        f"or a frame index (300f)")
    value, unit = float(m.group(1)), m.group(2) or "s"
    if unit == "f" and not value.is_integer():
        raise UserError(f"{option} {text!r}: a frame index must be a whole number")
    return Position(value, unit)


def _rotation_of(frame: av.VideoFrame) -> int:
    # PyAV: degrees the display matrix rotates the picture counter-clockwise, in [-180, 180].
    try:
        return int(round(frame.rotation or 0)) % 360
    except (AttributeError, TypeError):  # older PyAV without display-matrix support
        return 0


class VideoReader:
    """Decode a video file frame by frame (PyAV / FFmpeg).

    Use as a context manager; :meth:`frames` is a generator of :class:`Frame`. Raises
    :class:`UserError` when the file is missing, not a video, or has no video stream, and
    :class:`VideoDecodeError` (a UserError) from :meth:`frames` when decoding stops before
    the end: FFmpeg reports an error, or fewer frames decode than the container declares
    (a truncated file).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise UserError(f"video {self.path!r} does not exist")
        try:
            self._container = av.open(self.path)
        except av.error.FFmpegError as e:
            raise UserError(f"cannot open video {self.path!r} ({_ffmpeg_message(e)}); "
                            f"expected a video file FFmpeg can read (mp4, avi, mov, mkv with "
                            f"H.264, H.265, MPEG-4 or MJPEG); a truncated MP4 whose index "
                            f"(moov atom) is missing cannot be opened at all") from None
        if not self._container.streams.video:
            self._container.close()
            raise UserError(f"{self.path!r} has no video stream")
        s = self._container.streams.video[0]
        # Let FFmpeg decode with its own threads (frame + slice): decoding stays far cheaper
        # than the model, and the decode thread of annotate_frames overlaps it anyway.
        s.thread_type = "AUTO"
        self._stream = s
        fps = s.average_rate or s.guessed_rate or s.base_rate or Fraction(25)
        audio = self._container.streams.audio
        dur = _video_duration(s)
        self.info = VideoInfo(
            path=self.path, width=s.codec_context.width, height=s.codec_context.height,
            fps=Fraction(fps), time_base=Fraction(s.time_base or Fraction(1, 1000)),
            num_frames=int(s.frames or 0), duration_s=dur, codec=s.codec_context.name,
            rotation=self._probe_rotation(), audio_codec=audio[0].codec_context.name if audio
            else None)

    def _probe_rotation(self) -> int:
        # The display matrix arrives with decoded frames: look at the first one in a second
        # handle, so the main one starts decoding from a clean state.
        try:
            with av.open(self.path) as c:
                return _rotation_of(next(c.decode(c.streams.video[0])))
        except (StopIteration, av.error.FFmpegError):
            return 0

    def frames(self, start: Position | None = None, end: Position | None = None
               ) -> Iterator[Frame]:
        """Yield the frames with ``start <= position < end`` (each end optional).

        Decodes from the beginning and drops frames before ``start``, so frame indices and
        timestamps are exact (a seek lands on a keyframe, not on the requested frame).
        """
        fps, tb = self.info.fps, self.info.time_base
        index, last_pts, gap_at, last_time, first_time = 0, None, None, None, None
        nominal = 1 / fps
        step = max(1, round(nominal / tb))
        # AVI stores decode times only: with B-frames the pts FFmpeg attaches come out of
        # order (vtest.avi: 1, 4, 3, 5, 2, ...). AVI is constant-rate, so time by index.
        by_index = self._container.format.name == "avi"
        try:
            for f in self._container.decode(self._stream):
                pts = f.pts
                if by_index or pts is None:
                    pts = index * step
                elif last_pts is not None and pts <= last_pts:
                    pts = last_pts + step  # encoders and players need increasing timestamps
                if (gap_at is None and last_pts is not None and nominal
                        and (pts - last_pts) * tb > 1.5 * nominal and self.info.num_frames):
                    gap_at = index
                last_pts = pts
                frame = Frame(index, None, float(pts * tb), pts)  # image decoded only if kept
                last_time = frame.time
                if first_time is None:
                    first_time = frame.time
                index += 1
                if start is not None and start.before(frame):
                    continue
                if end is not None and not end.before(frame):
                    return
                img = f.to_ndarray(format="rgb24")
                rot = _rotation_of(f)
                if rot:
                    img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
                frame.image = img
                yield frame
        except av.error.FFmpegError as e:
            raise VideoDecodeError(
                f"decoding {self.path!r} failed at frame {index} ({_ffmpeg_message(e)}); the "
                f"file is corrupt or truncated", index, self.info.num_frames) from None
        declared = self.info.num_frames
        dur = self.info.duration_s
        # The time the decoded frames cover, against the stream's declared duration.
        covered = (None if last_time is None
                   else last_time - (first_time or 0.0) + float(nominal))
        short_in_time = bool(dur) and (covered is None
                                       or covered < dur - max(2.5 / float(fps), 0.25))
        # The declared count counts packets: an MP4 cut with an edit list (`ffmpeg -ss X -c
        # copy`) declares the packets before X that FFmpeg decodes but does not show, so a
        # count shortfall is truncation only when frames are missing in the middle (a pts
        # gap) or the declared duration is not covered either (or is unknown).
        if declared and index < declared and (short_in_time or not dur or gap_at):
            where = f" (frames are missing after frame {gap_at - 1})" if gap_at else ""
            raise VideoDecodeError(
                f"{self.path!r} declares {declared} frames but only {index} could be decoded"
                f"{where}; the file is corrupt or truncated at frame {gap_at or index}",
                gap_at or index, declared)
        # No frame count (MKV): a video that stops well before its declared duration was cut.
        if not declared and short_in_time and last_time is not None:
            raise VideoDecodeError(
                f"{self.path!r} declares a {dur:.1f} s video stream but decoding stopped after "
                f"frame {index - 1} at {last_time:.2f} s; the file is corrupt or truncated "
                f"at frame {index}", index, declared)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _video_duration(s) -> float | None:
    """The video stream's own duration in seconds (not the container's, which may be the
    audio's): the stream header, else Matroska's DURATION tag; None when unknown."""
    if s.duration and s.time_base:
        return float(s.duration * s.time_base)
    m = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", (s.metadata or {}).get("DURATION", ""))
    if m:
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def _ffmpeg_message(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e)


# --------------------------------------------------------------------------------- writing

_END = object()


class _Failure:
    """An exception raised in a worker thread, carried to the caller's thread."""

    def __init__(self, exc: BaseException):
        self.exc = exc


class VideoWriter:
    """Encode uint8 [H, W, 3] RGB frames to a video file in a background thread.

    The container follows ``path``'s suffix (.mp4, .m4v, .mov, .mkv, .avi). The video
    stream is created at the first frame, with that frame's size (so rotated inputs come out
    upright, without rotation metadata). Frames keep the timestamps given to :meth:`write`
    (``pts`` in ``time_base``), so a variable-frame-rate input keeps its timing; without
    ``pts`` frames are spaced at ``1 / fps``.

    Audio: with ``audio_from`` (a file path), its first audio stream's packets are copied
    unchanged (remuxed, never re-encoded) for times in [``audio_start``, ``audio_end``),
    shifted by ``audio_start`` when given. Video pts are shifted by ``pts_offset``; pass the
    same instant for both so they stay in sync.

    :meth:`close` finishes the file and re-raises any error of the encoding thread;
    :meth:`abort` stops without finishing (the caller deletes the file).
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, *,
                 time_base: Fraction | None = None, codec: str = "h264",
                 crf: float | None = None, preset: str = "veryfast",
                 audio_from: str | os.PathLike | None = None,
                 audio_start: float | None = None, audio_end: float | None = None,
                 pts_offset: int = 0, queue_size: int = 8):
        self.path = os.fspath(path)
        self.fps = Fraction(fps).limit_denominator(100000)
        if self.fps <= 0:
            raise UserError(f"frame rate {fps!r} must be positive")
        self.time_base = Fraction(time_base) if time_base else 1 / self.fps
        self.encoder = encoder_name(codec)
        self.crf, self.preset = crf, preset
        self.pts_offset = pts_offset
        self.frames_written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._stream = None
        self._sized = False
        self._last_pts = None
        self._container = av.open(self.path, "w")
        self._add_video_stream()  # before audio: players and tools expect video as stream 0
        self._audio_in = self._audio_out = self._audio_packets = None
        self._pending_audio = None
        self._audio_start, self._audio_end = audio_start, audio_end
        if audio_from is not None:
            try:
                self._open_audio(os.fspath(audio_from))
            except BaseException:
                with contextlib.suppress(Exception):
                    self._container.close()
                raise
        self._thread = threading.Thread(target=self._run, name="video-encode", daemon=True)
        self._thread.start()

    # -- caller's side
    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Queue one uint8 [H, W, 3] RGB frame; blocks when the encoder is behind."""
        self._raise_if_failed()
        while True:
            try:
                self._queue.put((image, pts), timeout=0.2)
                return
            except queue.Full:
                self._raise_if_failed()

    def close(self, audio_until: float | None = None) -> None:
        """Flush the encoder, copy the remaining audio, finish the file.

        ``audio_until`` (seconds, source time): copy no audio from that time on; for an
        output cut short (a partial output), pass the last frame's time + one frame.
        """
        if audio_until is not None:
            # Safe to set from here: the encoding thread has copied audio only up to the
            # frames written so far, all before audio_until.
            self._audio_end = (audio_until if self._audio_end is None
                               else min(self._audio_end, audio_until))
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Stop encoding and close the file without finishing it (the caller discards it)."""
        self._error = self._error or _Aborted()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_END)
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._container.close()
        if self._audio_in is not None:
            with contextlib.suppress(Exception):
                self._audio_in.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _raise_if_failed(self) -> None:
        if self._error is not None and not isinstance(self._error, _Aborted):
            raise self._error

    # -- encoding thread
    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _END or self._error is not None:
                    break
                self._encode(*item)
            if self._error is None:
                if self._sized:
                    self._mux(self._stream.encode(), video=True)  # flush delayed frames
                self._copy_audio(until=None)
                self._container.close()
                if self._audio_in is not None:
                    self._audio_in.close()
        except BaseException as e:  # noqa: BLE001 - carried to the caller's thread
            self._error = e

    def _encode(self, image: np.ndarray, pts: int | None) -> None:
        if not self._sized:
            self._set_size(image.shape[0], image.shape[1])
        if pts is None:
            pts = round(self.frames_written / self.fps / self.time_base)
        else:
            pts -= self.pts_offset
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders refuse non-increasing timestamps
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        self._mux(self._stream.encode(frame), video=True)
        self.frames_written += 1
        self._copy_audio(until=float(pts * self.time_base) + _AUDIO_LEAD_S)

    def _add_video_stream(self) -> None:
        s = self._container.add_stream(self.encoder, rate=self.fps)
        s.codec_context.time_base = self.time_base
        opts = {}
        if self.encoder in ("libx264", "libx265"):
            opts["preset"] = self.preset
            if self.crf is not None:
                opts["crf"] = f"{self.crf:g}"
        if self.encoder == "libx264":
            # x264's own threads: one per 4 cores. The encoder already runs beside the model
            # in its own thread, and on 2 cores x264's default (1.5 x cores + lookahead)
            # cost 37% more CPU per 640x480 frame than one thread for the same file size
            # (8.9 vs 6.5 ms), CPU the model needs (issue 7 benchmark).
            opts["threads"] = str(max(1, (os.cpu_count() or 1) // 4))
        if self.encoder == "libx265":
            opts["x265-params"] = "log-level=error"
        s.options = opts
        self._stream = s

    def _set_size(self, height: int, width: int) -> None:
        # The size comes from the first frame (rotated inputs come out upright); the
        # encoder opens at the first encode, so it is not too late to set it here.
        s = self._stream
        s.pix_fmt = pixel_format(self.encoder, height, width, "the frames are")
        s.width, s.height = width, height
        self._sized = True

    def _open_audio(self, src: str) -> None:
        try:
            self._audio_in = av.open(src)
        except av.error.FFmpegError as e:
            # Not silent: the user asked for the audio (the default) and would get none.
            raise UserError(f"cannot open {src!r} to copy its audio ({_ffmpeg_message(e)}); "
                            f"pass --no-audio to write the video without audio") from None
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None
            return
        a_in = self._audio_in.streams.audio[0]
        try:
            self._audio_out = self._container.add_stream_from_template(a_in)
        except ValueError as e:  # PyAV checks the codec against the container up front
            raise UserError(
                f"cannot copy the audio stream ({a_in.codec_context.name}) into "
                f"{Path(self.path).suffix} output ({e}); pass --no-audio, or write .mkv "
                f"which holds any codec") from None
        self._audio_shift = (round(self._audio_start / a_in.time_base)
                             if self._audio_start else 0)
        self._audio_packets = self._audio_in.demux(a_in)

    def _copy_audio(self, until: float | None) -> None:
        """Mux source audio packets whose time is before ``until`` seconds (all if None)."""
        if self._audio_packets is None:
            return
        for pkt in itertools.chain([self._pending_audio] if self._pending_audio else [],
                                   self._audio_packets):
            self._pending_audio = None
            if pkt.dts is None and pkt.pts is None:
                continue  # the demuxer's end-of-stream marker
            t = float((pkt.pts if pkt.pts is not None else pkt.dts) * pkt.time_base)
            if self._audio_end is not None and t >= self._audio_end:
                self._audio_packets = None
                return
            if until is not None and t - (self._audio_start or 0.0) >= until:
                self._pending_audio = pkt
                return
            if self._audio_start is not None and t < self._audio_start - 1e-6:
                continue
            if self._audio_shift:
                if pkt.pts is not None:
                    pkt.pts -= self._audio_shift
                if pkt.dts is not None:
                    pkt.dts -= self._audio_shift
            pkt.stream = self._audio_out
            self._mux([pkt], video=False)
        self._audio_packets = None

    def _mux(self, packets, video: bool) -> None:
        try:
            self._container.mux(packets)
        except av.error.FFmpegError as e:
            if not video and self._audio_out is not None:
                raise UserError(
                    f"cannot copy the audio stream ({self._audio_out.codec_context.name}) "
                    f"into {Path(self.path).suffix or 'this'} output ({_ffmpeg_message(e)}); "
                    f"pass --no-audio, or write .mkv which holds any codec") from None
            raise


class _Aborted(Exception):
    pass


def pixel_format(encoder: str, height: int, width: int, what: str = "the frames are") -> str:
    """The pixel format ``encoder`` (an FFmpeg encoder name, see CODECS) gets for frames of
    ``height`` x ``width``; ``what`` starts the error message ("the frames are").

    4:2:0 needs even sizes: x264/x265 keep an odd size exactly with 4:4:4 (rather than crop
    or pad); MJPEG takes any size; FFmpeg's mpeg4 encoder takes 4:2:0 only, so an odd size
    is refused (UserError) before anything is encoded.
    """
    if encoder == "mjpeg":
        return "yuvj420p"
    if not (width % 2 or height % 2):
        return "yuv420p"
    if encoder == "mpeg4":
        raise UserError(f"{what} {width}x{height} (W x H, odd) but codec mpeg4 encodes "
                        f"even sizes only; use --codec h264 (default), h265 or mjpeg, "
                        f"which keep the odd size")
    return "yuv444p"


def encoder_name(codec: str) -> str:
    """The FFmpeg encoder for a user-facing codec name (``h264`` -> ``libx264``)."""
    name = CODECS.get(str(codec).lower())
    if name is None:
        raise UserError(f"unknown video codec {codec!r}; choose one of: "
                        f"{', '.join(sorted(CODECS))}")
    return name


def _check_output_suffix(path: Path, what: str = "output video") -> None:
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"{what} {str(path)!r} has suffix {path.suffix!r}; use one of "
                        f"{', '.join(OUTPUT_SUFFIXES)} (the suffix picks the container)")


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float, *,
                codec: str = "h264", crf: float | None = None, overwrite: bool = False) -> int:
    """Encode uint8 [H, W, 3] RGB frames to ``path`` atomically (temp file + rename).

    Frames are spaced at ``1 / fps``. Returns the number of frames written. Used by the demo
    to render the synthetic conveyor clip::

        write_video(conveyor_frames(120, seed=0, size=256, fps=10), "conveyor.mp4", fps=10)
    """
    path = Path(path)
    _check_output_suffix(path)
    refuse_existing(path, overwrite)
    tmp = temp_path_for(path)
    try:
        writer = VideoWriter(tmp, fps, codec=codec, crf=crf)
        try:
            for img in frames:
                writer.write(np.asarray(img, np.uint8))
            writer.close()
        except BaseException:
            writer.abort()
            raise
        if writer.frames_written == 0:
            raise UserError(f"no frames to write to {str(path)!r}")
        commit(tmp, path)
        return writer.frames_written
    finally:
        discard(tmp)


def save_frame(video: str | os.PathLike, index: int, png_path: str | os.PathLike,
               overwrite: bool = False) -> Path:
    """Save frame ``index`` (0-based) of ``video``, as displayed, to a PNG file (atomic)."""
    from PIL import Image

    from maskrcnn_toolkit.core.atomic import atomic_write
    png_path = Path(png_path)
    refuse_existing(png_path, overwrite)
    with VideoReader(video) as reader:
        for frame in reader.frames(start=Position(index, "f")):
            with atomic_write(png_path) as f:
                Image.fromarray(frame.image).save(f, format="PNG")
            return png_path
    raise UserError(f"{os.fspath(video)!r} has no frame {index}")


# ------------------------------------------------------------------------------- pipeline

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
    return draw_instances(image, det.boxes, det.class_ids, labels, det.masks)


# ------------------------------------------------------------------------- whole runs

@dataclass
class RunSummary:
    """What a run did: the CLI prints :meth:`line` and exits with :attr:`exit_code`."""

    frames: int = 0
    processed: int = 0
    detections: int = 0
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None      # set when the input could not be read to its end

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 3 if self.error else 0

    def line(self, what: str = "frames") -> str:
        outs = ", ".join(str(p) for p in self.outputs)
        core = (f"{self.frames} {what} ({self.processed} through the model, {self.detections} "
                f"detections) in {self.seconds:.1f} s ({self.fps:.1f} {what}/s) -> {outs}")
        if self.error:
            return f"INCOMPLETE: {core}; {self.error}"
        return f"annotated {core}"


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
    next to them and renamed at the end: an exception or Ctrl-C leaves none of them. When
    the input fails to decode part-way, what was processed is kept under ``*.partial.*``
    names and the summary carries the error (exit code 3).
    """
    src, out = Path(src), Path(out)
    _check_output_suffix(out)
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
    t0 = time.perf_counter()
    summary = RunSummary()
    with VideoReader(src) as reader:
        info = reader.info
        pixel_format(encoder_name(codec), *info.display_size,
                     f"video {str(src)!r} is, as displayed,")
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
                bar = _progress(total, progress, src.name)
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


def _progress(total: int | None, enabled: bool, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, unit="frame", desc=desc, disable=not enabled, dynamic_ncols=True,
                leave=False)


# --------------------------------------------------------------------------------- images

def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


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
    from PIL import Image

    from maskrcnn_toolkit.core.atomic import atomic_dir
    from maskrcnn_toolkit.inference.images import load_image

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
        bar = _progress(len(paths), progress, "images")
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
