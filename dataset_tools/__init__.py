"""Annotation formats -> validated, sharded TFRecords + label map + COCO ground truth."""
import core  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
