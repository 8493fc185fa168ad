"""Model Garden Mask R-CNN: user config -> pipeline config, checkpoints, training,
evaluation, export."""
from maskrcnn_toolkit import core  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
