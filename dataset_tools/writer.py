"""Sharded TFRecord writing.

Shards are named ``{split}-{i:05d}-of-{n:05d}.tfrecord`` (Model Garden's own naming) and
records go round-robin, so every shard gets a similar mix and size. The writer writes into
the converter's temporary output folder, which is renamed onto OUT only when everything
succeeded (see convert.py): a crash or Ctrl-C never leaves a partial shard in OUT.

The TFRecord framing (TensorFlow's ``tsl/lib/io/record_writer.cc``) is written here, so that
the converter never imports TensorFlow (~5 s of start-up; docs/DESIGN_NOTES.md, Convert):
each record is
  uint64 length, uint32 masked_crc32c(length bytes), data, uint32 masked_crc32c(data)
(little-endian; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8). TensorFlow's readers verify
both checksums. CRC-32C is computed with numpy (no C extension is available without a new
dependency): the record is cut into 64-byte lanes whose CRCs advance together, 4 bytes per
step through 16-bit tables, and the lane CRCs are then folded pairwise with "advance over
2^k zero bytes" tables (CRC linearity). ~0.5 ms for an 85 kB record, computed in the worker
processes (:func:`frame_record`).
"""
from __future__ import annotations

import functools
import math
import struct
from pathlib import Path

import numpy as np

from maskrcnn_toolkit.core.dataset_folder import shard_name

SHARD_BYTES = 100 * 1024 * 1024  # ~100 MB per shard: large sequential reads, parallel tf.data


def auto_num_shards(estimated_bytes: int, num_images: int) -> int:
    """About one shard per 100 MB, at least 1, never more shards than images."""
    n = max(1, math.ceil(estimated_bytes / SHARD_BYTES))
    return max(1, min(n, num_images))


# ----------------------------------------------------------------------------- CRC-32C
_CRC32C_POLY = 0x82F63B78  # Castagnoli, bit-reflected
_LANE_WORDS = 16  # 64-byte lanes


def _apply(basis: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Apply the GF(2)-linear map given by the images of the 32 unit vectors to uint32 v."""
    out = np.zeros_like(v)
    for j in range(32):
        out ^= basis[j] * ((v >> np.uint32(j)) & np.uint32(1))
    return out


@functools.cache
def _crc_tables():
    """(byte table [256], zero-advance byte tables [41, 4, 256] for 2^k bytes, 16-bit
    tables lo/hi [65536] advancing 4 bytes). Built once per process (~50 ms)."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> np.uint32(1)) ^ np.uint32(_CRC32C_POLY), t >> np.uint32(1))
    t = t.astype(np.uint32)
    unit = np.uint32(1) << np.arange(32, dtype=np.uint32)
    zeros = [t[unit & 0xFF] ^ (unit >> np.uint32(8))]  # advance over 1 zero byte
    for _ in range(40):
        zeros.append(_apply(zeros[-1], zeros[-1]))  # 2^(k+1) = 2^k twice
    b = np.arange(256, dtype=np.uint32)
    by_byte = np.stack([np.stack([_apply(z, b << np.uint32(8 * j)) for j in range(4)])
                        for z in zeros])
    x = np.arange(65536, dtype=np.uint32)
    return t.tolist(), by_byte, _apply(zeros[2], x), _apply(zeros[2], x << np.uint32(16))


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (as TensorFlow's ``crc32c::Value``)."""
    table, by_byte, lo, hi = _crc_tables()
    n = len(data)
    if n < 1024:
        crc = 0xFFFFFFFF
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    lane = 4 * _LANE_WORDS
    pad = (-n) % lane
    # Leading zero bytes leave a CRC started from 0 unchanged; the standard start value
    # 0xFFFFFFFF is the same as starting from 0 with the first 4 data bytes inverted.
    buf = np.zeros(pad + n, np.uint8)
    buf[pad:] = np.frombuffer(data, np.uint8)
    buf[pad:pad + 4] ^= 0xFF
    words = buf.view("<u4").reshape(-1, _LANE_WORDS).T.copy()  # [16, lanes]
    c = np.zeros(words.shape[1], np.uint32)
    t1, t2 = np.empty_like(c), np.empty_like(c)
    for k in range(_LANE_WORDS):  # every lane advances 4 bytes per step
        np.bitwise_xor(c, words[k], out=c)
        np.bitwise_and(c, 0xFFFF, out=t1)
        np.right_shift(c, 16, out=t2)
        np.take(lo, t1, out=c)
        np.take(hi, t2, out=t1)
        np.bitwise_xor(c, t1, out=c)
    size = 1 << (c.size - 1).bit_length()  # zero lanes in front change nothing
    c = np.concatenate([np.zeros(size - c.size, np.uint32), c])
    k = lane.bit_length() - 1  # lanes cover 2^k bytes
    while c.size > 1:  # crc(A + B) = advance(crc(A), len(B)) ^ crc(B)
        left, t = c[0::2], by_byte[k]
        c = (t[0][left & 0xFF] ^ t[1][(left >> 8) & 0xFF] ^ t[2][(left >> 16) & 0xFF]
             ^ t[3][left >> 24] ^ c[1::2])
        k += 1
    return int(c[0]) ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
    c = crc32c(data)
    return struct.pack("<I", (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame_record(data: bytes) -> bytes:
    """One TFRecord record holding ``data`` (a serialized tf.Example), ready for
    :meth:`ShardedWriter.write`."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


class ShardedWriter:
    """Writes TFRecord records (:func:`frame_record`) round-robin into ``num_shards`` files.

    Use as a context manager; ``close`` is idempotent. Files are created in ``folder``
    (a temporary folder: atomicity comes from renaming the folder, not each file).
    """

    def __init__(self, folder: str | Path, split: str, num_shards: int):
        self.paths = [Path(folder) / shard_name(split, i, num_shards)
                      for i in range(num_shards)]
        self._writers = [open(p, "wb") for p in self.paths]
        self.count = 0
        self.bytes = 0

    def write(self, record: bytes) -> None:
        """Append one framed record (:func:`frame_record`)."""
        self._writers[self.count % len(self._writers)].write(record)
        self.count += 1
        self.bytes += len(record)

    def close(self) -> None:
        for w in self._writers:
            w.close()
        self._writers = []

    def __enter__(self) -> "ShardedWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

