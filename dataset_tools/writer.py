"""Sharded TFRecord writing.

Shards are named ``{split}-{i:05d}-of-{n:05d}.tfrecord`` (Model Garden's own naming) and
records go round-robin, so every shard gets a similar mix and size. The writer writes into
the converter's temporary output folder, which is renamed onto OUT only when everything
succeeded (see convert.py): a crash or Ctrl-C never leaves a partial shard in OUT.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

SHARD_BYTES = 100 * 1024 * 1024  # ~100 MB per shard: large sequential reads, parallel tf.data
SHARD_RE = re.compile(r"^(train|val)-\d{5}-of-\d{5}\.tfrecord$")


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def auto_num_shards(estimated_bytes: int, num_images: int) -> int:
    """About one shard per 100 MB, at least 1, never more shards than images."""
    n = max(1, math.ceil(estimated_bytes / SHARD_BYTES))
    return max(1, min(n, num_images))


class ShardedWriter:
    """Writes serialized tf.Examples round-robin into ``num_shards`` TFRecord files.

    Use as a context manager; ``close`` is idempotent. Files are created in ``folder``
    (a temporary folder: atomicity comes from renaming the folder, not each file).
    """

    def __init__(self, folder: str | Path, split: str, num_shards: int):
        import tensorflow as tf
        self.paths = [Path(folder) / shard_name(split, i, num_shards)
                      for i in range(num_shards)]
        self._writers = [tf.io.TFRecordWriter(str(p)) for p in self.paths]
        self.count = 0
        self.bytes = 0

    def write(self, serialized: bytes) -> None:
        self._writers[self.count % len(self._writers)].write(serialized)
        self.count += 1
        self.bytes += len(serialized)

    def close(self) -> None:
        for w in self._writers:
            w.close()
        self._writers = []

    def __enter__(self) -> "ShardedWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shard_paths(folder: str | Path, split: str) -> list[Path]:
    """The shards of one split in a converted dataset folder, in order."""
    return sorted(p for p in Path(folder).glob(f"{split}-*-of-*.tfrecord")
                  if SHARD_RE.match(p.name))
