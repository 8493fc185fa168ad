"""The one place that loads models: our exports, OD API SavedModels, TF1 frozen graphs; and
what runs them over images and video.

    from maskrcnn_toolkit.inference import Predictor, load_image, annotate_video

- ``predictor``: :class:`Predictor`, a callable from uint8 [H, W, 3] RGB to ``Detections``.
- ``images``: :func:`load_image` (EXIF orientation applied), :func:`check_image`.
- ``video_reader``: :class:`VideoReader` (frames as displayed, exact timestamps).
- ``video_writer``: :class:`VideoWriter` (threaded encode, audio copied), :func:`write_video`,
  :func:`save_frame`.
- ``frames``: :func:`annotate_frames`, the threaded decode ▸ predict ▸ draw pipeline.
- ``video``: :func:`annotate_video` (a video file to annotated video + JSONL + COCO).
- ``image_annotation``: :func:`find_images`, :func:`annotate_images`.
- ``ground_truth``: :func:`match_ground_truth` (images and classes in a COCO ground truth's
  ids, for ``annotate.py --gt``).
- ``run_summary``: :class:`RunSummary`, what a run did.

Importing this package does not import TensorFlow (``Predictor`` imports it when a model
loads).
"""
from maskrcnn_toolkit import core  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from maskrcnn_toolkit.inference.frames import AnnotatedFrame, annotate_frames, draw_detections
from maskrcnn_toolkit.inference.ground_truth import GroundTruthMatch, match_ground_truth
from maskrcnn_toolkit.inference.image_annotation import annotate_images, find_images
from maskrcnn_toolkit.inference.images import check_image, load_image
from maskrcnn_toolkit.inference.predictor import Predictor
from maskrcnn_toolkit.inference.run_summary import RunSummary
from maskrcnn_toolkit.inference.video import annotate_video
from maskrcnn_toolkit.inference.video_reader import (
    Frame,
    Position,
    VideoDecodeError,
    VideoInfo,
    VideoReader,
    parse_position,
)
from maskrcnn_toolkit.inference.video_writer import VideoWriter, save_frame, write_video

__all__ = [
    "AnnotatedFrame", "Frame", "GroundTruthMatch", "Position", "Predictor", "RunSummary",
    "VideoDecodeError", "VideoInfo", "VideoReader", "VideoWriter", "annotate_frames",
    "annotate_images", "annotate_video", "check_image", "draw_detections", "find_images",
    "load_image", "match_ground_truth", "parse_position", "save_frame", "write_video",
]
