"""Outputs get the permissions a plain open()/mkdir() gives under the user's umask, not
tempfile's private 0600/0700 (core/atomic.py): an export, a video or a dataset written on a
shared server must be usable by whoever the umask lets in."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskrcnn_toolkit.core.atomic import atomic_dir, atomic_write, commit, temp_path_for

ROOT = Path(__file__).resolve().parents[1]


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_atomic_outputs_follow_the_umask(tmp_path, umask):
    with atomic_write(tmp_path / "a.json", "w") as f:
        f.write("{}")
    tmp = temp_path_for(tmp_path / "b.mp4")
    tmp.write_bytes(b"x")
    commit(tmp, tmp_path / "b.mp4")
    with atomic_dir(tmp_path / "export") as d:
        (d / "inner.txt").write_text("x")
    # What open() and mkdir() give under this umask, made the plain way beside them.
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "plain_dir").mkdir()
    assert mode(tmp_path / "a.json") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert mode(tmp_path / "b.mp4") == 0o666 & ~umask
    assert mode(tmp_path / "export") == mode(tmp_path / "plain_dir") == 0o777 & ~umask
    assert mode(tmp_path / "export" / "inner.txt") == 0o666 & ~umask


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_synth_and_convert_outputs_follow_the_umask(tmp_path, mask):
    """The real CLIs in a process started with that umask: every folder and file of the
    synthetic set and of the converted dataset."""
    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "dataset_tools", *map(str, args)], cwd=ROOT,
                           capture_output=True, text=True, preexec_fn=lambda: os.umask(mask))
        assert r.returncode == 0, r.stderr
    cli("synth", tmp_path / "synth", "--images", "6", "--size", "96", "96")
    cli("convert", "coco", tmp_path / "synth" / "annotations.json", tmp_path / "data",
        "--val-fraction", "0.34")
    for top in (tmp_path / "synth", tmp_path / "data"):
        paths = [top, *top.rglob("*")]
        assert len(paths) > 3
        for p in paths:
            want = (0o777 if p.is_dir() else 0o666) & ~mask
            assert mode(p) == want, f"{p}: {oct(mode(p))} != {oct(want)}"


def test_written_video_follows_the_umask(tmp_path, umask):
    from maskrcnn_toolkit.inference import write_video
    frames = (np.full((32, 32, 3), i * 20, np.uint8) for i in range(4))
    write_video(frames, tmp_path / "v.mp4", fps=5)
    assert mode(tmp_path / "v.mp4") == 0o666 & ~umask
