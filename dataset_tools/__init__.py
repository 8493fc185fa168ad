"""Annotation formats -> validated, sharded TFRecords + label map + COCO ground truth."""
from maskrcnn_toolkit import core  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
