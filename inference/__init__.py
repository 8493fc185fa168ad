"""The one place that loads models: our exports, OD API SavedModels, TF1 frozen graphs."""
from maskrcnn_toolkit import core  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
