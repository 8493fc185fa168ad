"""Atomic outputs: write to a temporary sibling, then rename.

A crash or Ctrl-C at any point leaves either the old file (or nothing) or the complete new
one, never a half-written file: ``os.replace`` is atomic on POSIX within one filesystem,
so the temporary lives in the destination's own folder.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from core.errors import UserError

TMP_MARK = ".tmp-"


def refuse_existing(path: str | os.PathLike, overwrite: bool, what: str = "output") -> None:
    """Raise a :class:`UserError` when ``path`` exists and ``overwrite`` is False."""
    if os.path.lexists(path) and not overwrite:
        raise UserError(
            f"{what} {os.fspath(path)!r} already exists; pass --overwrite to replace it "
            f"or choose another path")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success fsync and rename it to ``path``.

    On any exception (KeyboardInterrupt included) the temporary is removed and ``path`` is
    left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_path_for(path: str | os.PathLike) -> Path:
    """A fresh temporary path next to ``path`` for writers that need a file name
    (``tf.io.TFRecordWriter``, video encoders). Pair with :func:`commit` / :func:`discard`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    return Path(tmp)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file or folder onto ``path`` (replacing a file)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def discard(tmp: str | os.PathLike) -> None:
    """Remove a temporary file or folder; missing is fine."""
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success move it onto ``path``.

    An existing ``path`` is refused unless ``overwrite``; on failure the temporary folder is
    removed and an existing ``path`` stays as it was.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent))
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporaries left by a process that was killed with SIGKILL (no cleanup ran).

    Returns how many were removed.
    """
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.iterdir():
        if p.name.startswith(".") and TMP_MARK in p.name:
            discard(p)
            n += 1
    return n
