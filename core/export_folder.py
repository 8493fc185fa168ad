"""The export folder ``export.py`` writes: the one place its file names are spelled out.

    EXPORT/
      saved_model/        TF2 SavedModel (signatures: docs/export.md)
      frozen_graph.pb     TF1-style frozen GraphDef (OD API tensor names)
      label_map.pbtxt     class ids 1..N and names
      metadata.json       classes, input size, score threshold, checkpoint, versions
"""
from __future__ import annotations

SAVED_MODEL = "saved_model"
FROZEN_GRAPH = "frozen_graph.pb"
LABEL_MAP = "label_map.pbtxt"
METADATA = "metadata.json"
FILES = (SAVED_MODEL, FROZEN_GRAPH, LABEL_MAP, METADATA)


def is_export_file(name: str) -> bool:
    """Whether ``name`` is an entry ``export.py`` writes into its folder (``--overwrite``
    replaces a folder only when it holds nothing else)."""
    return name in FILES
