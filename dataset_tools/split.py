"""Deterministic train/val split of image records.

Each image gets a key ``blake2b(f"{seed}:{file_name}")``; the ``round(fraction * n)`` images
with the smallest keys go to validation. Why a hash and not ``random.shuffle``: the result
depends only on the seed and each image's own name, so it is identical on every machine
and Python version, and adding images to a dataset moves few existing images across the
split (a shuffle would reshuffle everything and leak old val images into train).
"""
from __future__ import annotations

import hashlib
from typing import Sequence, TypeVar

from maskrcnn_toolkit.core.errors import UserError

T = TypeVar("T")


def split_key(seed: int, name: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{name}".encode("utf-8"), digest_size=16).digest()


def num_val(n: int, fraction: float) -> int:
    """How many of ``n`` images go to validation: round(fraction * n), but at least one
    image on each side when ``0 < fraction`` and there are >= 2 images."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"--val-fraction {fraction} is out of range; use a number in [0, 1), "
                        f"e.g. 0.2 (0 puts every image in train)")
    if fraction == 0 or n == 0:
        return 0
    if n == 1:
        return 0
    return min(max(1, round(fraction * n)), n - 1)


def split_records(records: Sequence[T], fraction: float, seed: int,
                  name=lambda r: r.file_name) -> tuple[list[T], list[T]]:
    """Split ``records`` into (train, val), each keeping the input order.

    Args:
      records: items with a stable name (``name(r)``, default ``r.file_name``).
      fraction: share of images for validation, in [0, 1).
      seed: any int; the same seed and names always give the same split.
    """
    k = num_val(len(records), fraction)
    if k == 0:
        return list(records), []
    # Index breaks ties between identical names (two records naming the same file).
    order = sorted(range(len(records)), key=lambda i: (split_key(seed, name(records[i])), i))
    val_idx = set(order[:k])
    train = [r for i, r in enumerate(records) if i not in val_idx]
    val = [r for i, r in enumerate(records) if i in val_idx]
    return train, val
