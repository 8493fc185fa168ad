"""Atomic outputs: write to a temporary sibling, then rename.

A crash or Ctrl-C at any point leaves either the old file (or nothing) or the complete new
one, never a half-written file: ``os.replace`` is atomic on POSIX within one filesystem,
so the temporary lives in the destination's own folder.

Permissions: ``tempfile`` creates private temporaries (files 0600, folders 0700), which the
rename would carry onto the output. Every temporary made here gets, at creation, the mode a
plain ``open()`` / ``mkdir()`` would give under the user's umask (0644 / 0755 with umask
022), so an export or a video on a shared server is usable by the others a umask allows.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

from maskrcnn_toolkit.core.errors import UserError

TMP_MARK = ".tmp-"
BACKUP_MARK = ".bak-"


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (``os.umask``
    can only be read by setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_temp_file(path: Path, suffix: str = "") -> tuple[int, str]:
    """``mkstemp`` beside ``path``, with a plain file's permissions (0666 & ~umask)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", suffix=suffix,
                               dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, tmp


def make_temp_dir(path: Path, mark: str = TMP_MARK) -> Path:
    """``mkdtemp`` beside ``path`` (named ``.NAME{mark}*``), with a plain folder's
    permissions (0777 & ~umask)."""
    tmp = tempfile.mkdtemp(prefix=f".{path.name}{mark}", dir=path.parent)
    os.chmod(tmp, 0o777 & ~current_umask())
    return Path(tmp)


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
    fd, tmp = _make_temp_file(path)
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
    fd, tmp = _make_temp_file(path, suffix=path.suffix)
    os.close(fd)
    return Path(tmp)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file or folder onto ``path`` (replacing a file or folder).

    A folder cannot be replaced in one atomic rename, so an existing one is first renamed
    to a backup sibling (``.NAME.bak-*``), then ``tmp`` is renamed to ``path``, then the
    backup is deleted. A kill between those steps leaves the old folder under the backup
    name, never neither: :func:`remove_stale_temporaries` (run by :func:`atomic_dir`) puts
    it back when ``path`` is missing and deletes it otherwise.
    """
    path = Path(path)
    if os.path.isdir(path) and not os.path.islink(path):
        backup = tempfile.mkdtemp(prefix=f".{path.name}{BACKUP_MARK}", dir=path.parent)
        os.rename(path, os.path.join(backup, "old"))
        try:
            os.replace(tmp, path)
        except BaseException:
            os.rename(os.path.join(backup, "old"), path)
            discard(backup)
            raise
        discard(backup)
        return
    os.replace(tmp, path)


def discard(tmp: str | os.PathLike) -> None:
    """Remove a temporary file or folder; missing is fine."""
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def check_replaceable(path: str | os.PathLike, overwrite: bool,
                      owned: Callable[[str], bool] | None = None, what: str = "output") -> None:
    """Refuse to replace an existing output folder that must not be replaced.

    Missing or empty: fine. A file where a folder belongs: refused. Not empty: refused
    unless ``overwrite``; with ``overwrite`` and an ``owned`` predicate, still refused when
    an entry's name is not ``owned`` (a file this tool did not write): the whole folder is
    replaced, and a user's other files in it must not vanish.

    Runs :func:`remove_stale_temporaries` first, so that a folder a killed run left under
    its backup name is back in place (and checked) before anything is decided.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    if not os.path.lexists(path):
        return
    if not path.is_dir() or path.is_symlink():
        raise UserError(f"{what} {str(path)!r} exists and is not a folder; choose a folder "
                        f"path")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return
    if not overwrite:
        raise UserError(f"{what} folder {str(path)!r} already exists and is not empty; pass "
                        f"--overwrite to replace it or choose another folder")
    foreign = [n for n in entries if owned is not None and not owned(n)]
    if foreign:
        raise UserError(f"{what} folder {str(path)!r} holds files this tool did not write "
                        f"({', '.join(foreign[:5])}); --overwrite replaces the whole folder, "
                        f"so move them away or choose another folder")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False,
               owned: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success move it onto ``path``.

    An existing ``path`` is checked first (:func:`check_replaceable`: refused when not empty
    unless ``overwrite``; with ``owned``, also when it holds entries whose names ``owned``
    rejects). Temporaries and backups of ``path`` left by a killed run are cleaned up
    first. On failure the temporary folder is removed and an existing ``path`` stays as it
    was.
    """
    path = Path(path)
    check_replaceable(path, overwrite, owned)  # also cleans up after a killed run
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def remove_stale_temporaries(path: str | os.PathLike) -> int:
    """Clean up after a run writing ``path`` that was killed with SIGKILL (no cleanup ran):
    delete its temporaries (``.NAME.tmp-*``) and its replace backups (``.NAME.bak-*``),
    except that a backup is renamed back to ``path`` when ``path`` is missing (the kill came
    between moving the old folder away and moving the new one in).

    Only ``path``'s own siblings are touched, never another output's temporaries. Returns
    how many entries were removed or restored.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return 0
    n = 0
    for b in sorted(path.parent.glob(f".{glob.escape(path.name)}{BACKUP_MARK}*")):
        old = b / "old"
        if not os.path.lexists(path) and os.path.lexists(old):
            os.rename(old, path)
        discard(b)
        n += 1
    for p in path.parent.glob(f".{glob.escape(path.name)}{TMP_MARK}*"):
        discard(p)
        n += 1
    return n
