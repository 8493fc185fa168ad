"""The converted dataset folder: the one place its layout is spelled out.

``python -m dataset_tools convert`` writes it; training, evaluation, preview and inspect
read it. Everything that names a file in it goes through :class:`DatasetFolder`::

    DATA/
      train-00000-of-00004.tfrecord ...   training shards (Model Garden's own naming)
      val-00000-of-00001.tfrecord         validation shards
      label_map.pbtxt                     class ids 1..N and names
      train_annotations.json              COCO ground truth of each split, image ids =
      val_annotations.json                  the records' image/source_id
      report.json                         what validation fixed, refused and warned about
    DATA.report.json                      beside DATA, only when a conversion could write
                                          nothing (every image refused): its report, while
                                          DATA itself is left as it was
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val")
LABEL_MAP = "label_map.pbtxt"
REPORT = "report.json"
SHARD_RE = re.compile(r"^(train|val)-\d{5}-of-\d{5}\.tfrecord$")
# How the user is told to make one, in every "this is not a dataset folder" message.
MADE_BY = "python -m dataset_tools convert"


def shard_name(split: str, index: int, num_shards: int) -> str:
    """``{split}-{index:05d}-of-{num_shards:05d}.tfrecord`` (index from 0)."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def ground_truth_name(split: str) -> str:
    """``{split}_annotations.json``."""
    return f"{split}_annotations.json"


def is_dataset_file(name: str) -> bool:
    """Whether ``name`` is a file the converter writes (a shard or one of the fixed files)."""
    return (bool(SHARD_RE.match(name)) or name in (LABEL_MAP, REPORT)
            or name in {ground_truth_name(s) for s in SPLITS})


@dataclass(frozen=True)
class DatasetFolder:
    """Paths inside one converted dataset folder (nothing is read or checked here)."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @property
    def label_map(self) -> Path:
        return self.root / LABEL_MAP

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def failed_report(self) -> Path:
        """``DATA.report.json`` beside the folder: the report of a conversion that wrote
        nothing (the folder is not created half-made just to hold it)."""
        root = Path(os.path.abspath(self.root))
        return root.with_name(f"{root.name}.{REPORT}")

    def ground_truth(self, split: str) -> Path:
        return self.root / ground_truth_name(split)

    def shard_pattern(self, split: str) -> str:
        """The glob a TFRecord reader is given for a split (Model Garden's and the OD API's
        ``input_path``), as a string."""
        return str(self.root / f"{split}-*.tfrecord")

    def shards(self, split: str) -> list[Path]:
        """The split's shards that exist, in order (only names the converter writes)."""
        return sorted(p for p in self.root.glob(f"{split}-*-of-*.tfrecord")
                      if SHARD_RE.match(p.name))
