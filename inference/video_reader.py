"""Reading video: a file decoded (FFmpeg, through PyAV) into :class:`Frame` records.

Each frame's ``image`` is uint8 [H, W, 3] RGB **as displayed** (the stream's rotation
metadata is applied to the pixels), with its ``index`` (0-based, presentation order,
counted from the start of the file), its presentation ``time`` in seconds and its ``pts``.
A file that stops decoding before its end raises :class:`VideoDecodeError` after the frames
before the failure (see docs/DESIGN_NOTES.md, Video and annotate: corrupt or truncated
video).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from maskrcnn_toolkit.core.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts",
                  ".wmv", ".flv", ".3gp")


def is_video(path: str | os.PathLike) -> bool:
    """True when ``path``'s suffix is one of :data:`VIDEO_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


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
    the container declares (0 when it does not say, as in MKV). ``start_time_s`` is the
    stream's first presentation time in seconds (frame times count from it; 0 when unknown,
    and for AVI, which is timed by frame index).
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
    start_time_s: float = 0.0

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
            raise UserError(f"cannot open video {self.path!r} ({ffmpeg_message(e)}); "
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
            else None, start_time_s=self._start_time(s))

    def _start_time(self, s) -> float:
        if self._container.format.name == "avi" or s.start_time is None or not s.time_base:
            return 0.0  # frames() times AVI by index, from 0
        return max(0.0, float(s.start_time * s.time_base))

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
                f"decoding {self.path!r} failed at frame {index} ({ffmpeg_message(e)}); the "
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


def ffmpeg_message(e: BaseException) -> str:
    """FFmpeg's own text for an error raised by PyAV, for our messages."""
    return getattr(e, "strerror", None) or str(e)

