"""Bottom layer: pieces every other layer shares. Imports nothing of ours (docs/development.md).

Importing any of our packages sets the TensorFlow environment this project runs in, before
TensorFlow itself is imported: Model Garden 2.20 needs Keras 2 (``tf-keras``), selected by
``TF_USE_LEGACY_KERAS=1`` (docs/DESIGN_NOTES.md, decision 1).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
