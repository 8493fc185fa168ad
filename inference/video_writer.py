"""Writing video: RGB frames encoded in a background thread, the input's audio copied.

:class:`VideoWriter` encodes uint8 [H, W, 3] RGB frames (H.264 in MP4 by default), keeps
each frame's timestamp (variable frame rate survives) and copies the input's audio packets
unchanged (remuxed, not re-encoded). :func:`write_video` renders any frame iterable to a
video file atomically (the demo's synthetic conveyor clip); :func:`save_frame` saves one
frame of a video as PNG.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np

from maskrcnn_toolkit.core.atomic import (
    atomic_write,
    commit,
    discard,
    refuse_existing,
    temp_path_for,
)
from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.inference.video_reader import Position, VideoReader, ffmpeg_message

# Output containers we write; the encoder must fit the container (all of these take H.264).
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi")
# User-facing codec names -> FFmpeg encoders shipped in PyAV's wheels.
CODECS = {"h264": "libx264", "libx264": "libx264", "h265": "libx265", "hevc": "libx265",
          "libx265": "libx265", "mpeg4": "mpeg4", "mjpeg": "mjpeg"}
# Audio packets are muxed up to the time of the last video frame written (no lead), so the
# muxer's interleaving buffer stays small whatever the video length, and an output cut short
# (a partial output) can end its audio where its video ends (VideoWriter.close).
_AUDIO_LEAD_S = 0.0

_END = object()  # closes the encoding thread's queue


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
            # (8.9 vs 6.5 ms), CPU the model needs.
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
            raise UserError(f"cannot open {src!r} to copy its audio ({ffmpeg_message(e)}); "
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
                    f"into {Path(self.path).suffix or 'this'} output ({ffmpeg_message(e)}); "
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


def check_output_suffix(path: Path, what: str = "output video") -> None:
    """UserError unless ``path`` ends in one of :data:`OUTPUT_SUFFIXES` (the container)."""
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
    check_output_suffix(path)
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

    png_path = Path(png_path)
    refuse_existing(png_path, overwrite)
    with VideoReader(video) as reader:
        for frame in reader.frames(start=Position(index, "f")):
            with atomic_write(png_path) as f:
                Image.fromarray(frame.image).save(f, format="PNG")
            return png_path
    raise UserError(f"{os.fspath(video)!r} has no frame {index}")

