"""Every CLI handles SIGTERM (a ``kill``, a batch scheduler, a preempted VM) like Ctrl-C
(core/cli.py): the real command in a subprocess on tiny data, SIGTERM once it is visibly
mid-run (its temporary output, its progress bar, or its scoring library loaded), then exit
code 130, exactly one ``interrupted`` line on stderr, no traceback, and nothing partial left:
no output, no ``.tmp-`` file; training leaves a complete checkpoint named after its stored
step, which restores into a fresh model.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.conftest import ROOT


class Running:
    """A CLI in a subprocess, its stdout and stderr read as they come (tqdm redraws its bar
    with carriage returns, so there may be no newline to wait for)."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=dict(os.environ),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._chunks = {"out": [], "err": []}
        self._readers = [threading.Thread(target=self._read, args=(f, self._chunks[k]),
                                          daemon=True)
                         for k, f in (("out", self.proc.stdout), ("err", self.proc.stderr))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(f, chunks: list[bytes]) -> None:
        while chunk := os.read(f.fileno(), 65536):
            chunks.append(chunk)

    @property
    def out(self) -> str:
        return b"".join(self._chunks["out"]).decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return b"".join(self._chunks["err"]).decode("utf-8", "replace")

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``ready`` until it holds; fail if the command ends or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"exited {self.proc.returncode} before {what}:\n{self.err[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not {what} after {timeout} s:\n{self.err[-3000:]}")
            time.sleep(0.01)

    def sigterm(self, timeout: float = 300) -> int:
        """Send SIGTERM to the still-running command; its exit code once it has ended."""
        assert self.proc.poll() is None, f"finished before the signal:\n{self.err[-3000:]}"
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def running(args: list[str]):
    """``with running([...]) as r``: the command is killed if the test fails midway."""
    class _Ctx:
        def __enter__(self):
            self.r = Running(args)
            return self.r

        def __exit__(self, *exc):
            self.r.kill()
    return _Ctx()


def assert_interrupted(code: int, err: str) -> None:
    """Exit 130, one ``interrupted`` line (alone on its line, after any progress bar), no
    traceback."""
    assert code == 130, f"exit {code}:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in re.split(r"[\r\n]", err) if "interrupted" in ln]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err[-3000:]


def temporaries(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp-" in p.name]


def progress_at(desc: str, r: Running, done: int = 1) -> Callable[[], bool]:
    """True once ``desc``'s tqdm bar on stderr shows at least ``done`` units done."""
    pattern = re.compile(rf"{re.escape(desc)}:[^\r\n]*\|\s*(\d+)/\d+")
    return lambda: any(int(n) >= done for n in pattern.findall(r.err))


# ------------------------------------------------------------------------- no model needed

def test_convert_sigterm(tmp_path):
    """convert with 2 workers, signalled once its first shard is in the temporary folder."""
    from tests.test_convert import _coco, _image, _square
    ds = tmp_path / "src"
    _image(ds / "big.jpg", 1024, 768, 0)
    images = [{"id": i, "file_name": "big.jpg", "width": 1024, "height": 768}
              for i in range(1, 401)]
    anns = [{"image_id": i, "category_id": 10, "segmentation": [_square(5 * k, 7 * k, 30)]}
            for i in range(1, 401) for k in range(1, 31)]
    src = _coco(ds / "annotations.json", images, anns)
    out = tmp_path / "out"
    with running(["-m", "dataset_tools", "convert", "coco", str(src), str(out),
                  "--workers", "2"]) as r:
        r.wait_until(lambda: bool(list(tmp_path.glob(".out.tmp-*/train-*"))),
                     "writing its first shard", timeout=120)
        code = r.sigterm()
    assert_interrupted(code, r.err)
    assert "interrupted: nothing was written" in r.err
    assert not out.exists() and temporaries(tmp_path) == []


def test_evaluate_files_sigterm(tmp_path):
    """evaluate.py --gt/--detections, signalled while it scores 30,000 instances (~3 s
    here): once faster-coco-eval's extension is loaded, which happens only when scoring
    starts."""
    from maskrcnn_toolkit.core.masks import mask_to_rle
    from tests.test_evaluation import dataset, square
    rng = np.random.default_rng(0)
    rles: dict[tuple[int, int], dict] = {}  # 30x30 squares, each position encoded once

    def rle(x: int, y: int) -> dict:
        if (x, y) not in rles:
            rles[x, y] = mask_to_rle(square(x, y, 30))
        return rles[x, y]

    anns, dets = [], []
    for img in range(1, 5001):
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, 60, 2))
            cat = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cat,
                         "bbox": [x, y, 30, 30], "area": 900, "iscrowd": 0,
                         "segmentation": rle(x, y)})
            dets.append({"image_id": img, "category_id": cat, "score": float(rng.random()),
                         "bbox": [x + 1, y, 30, 30], "segmentation": rle(x + 1, y)})
    (tmp_path / "gt.json").write_text(json.dumps(dataset(5000, anns, ("a", "b", "c"))))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    out = tmp_path / "metrics.json"

    with running([str(ROOT / "evaluate.py"), "--gt", str(tmp_path / "gt.json"),
                  "--detections", str(tmp_path / "dt.json"), "--out", str(out)]) as r:
        maps = Path(f"/proc/{r.proc.pid}/maps")
        r.wait_until(lambda: "faster_coco_eval" in maps.read_text(), "scoring", timeout=120)
        code = r.sigterm()
    assert_interrupted(code, r.err)
    assert "interrupted: no output was left half-written" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dt.json", "gt.json"]


# ------------------------------------------------------------------------- a tiny model

@pytest.mark.slow
def test_train_sigterm_leaves_a_complete_checkpoint_named_after_its_step(tiny_dataset,
                                                                        tmp_path):
    """train.py, signalled once its progress bar shows a finished step: the checkpoint it
    saves on the way out is the latest, complete (it restores every variable of a fresh
    model), and named after the global step it stores."""
    import tensorflow as tf

    from maskrcnn_toolkit.modeling.config import load_run
    from maskrcnn_toolkit.modeling.model import build_model, find_checkpoint, restore
    from maskrcnn_toolkit.modeling.training import checkpoint_step
    from tests.fixtures.model import write_tiny_config
    config = write_tiny_config(tmp_path, tiny_dataset, tmp_path / "run", steps=1000)
    with running([str(ROOT / "train.py"), "--config", str(config)]) as r:
        r.wait_until(progress_at("train", r, done=2), "training", timeout=600)
        # A step of this model takes ~0.3 s, nearly all of it inside step_fn, where an
        # interrupt lands one step ahead of the loop's count (modeling/training.py).
        time.sleep(0.1)
        code = r.sigterm()
    assert_interrupted(code, r.err)
    run_dir = tmp_path / "run"
    prefix = tf.train.latest_checkpoint(str(run_dir))
    assert prefix is not None, r.out
    m = re.search(rf"interrupted: at step (\d+); saved {re.escape(prefix)}\.", r.err)
    assert m, r.err
    step = int(m[1])
    assert Path(prefix).name == f"ckpt-{step}" and checkpoint_step(prefix) == step >= 1
    assert not [p.name for p in run_dir.rglob("*") if "temp" in p.name or ".tmp-" in p.name]
    run = load_run(config)
    assert restore(build_model(run), find_checkpoint(run)) == prefix


@pytest.mark.slow
def test_export_sigterm(tiny_run, tmp_path):
    """export.py, signalled once the SavedModel is in its temporary folder (while the
    frozen graph is made)."""
    out = tmp_path / "export"
    with running([str(ROOT / "export.py"), "--config", str(tiny_run.config_path),
                  "--out", str(out)]) as r:
        r.wait_until(lambda: bool(list(tmp_path.glob(".export.tmp-*/saved_model/*.pb"))),
                     "writing the SavedModel", timeout=600)
        code = r.sigterm()
    assert_interrupted(code, r.err)
    assert f"interrupted: no export written ({str(out)!r} is as it was before)" in r.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_annotate_video_sigterm(tiny_export, tmp_path):
    """annotate.py on a 300-frame clip, signalled once its progress bar shows frames done."""
    import av
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(300):
            img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())
    out = tmp_path / "out.mp4"
    with running([str(ROOT / "annotate.py"), str(tiny_export), str(clip), "--out",
                  str(out), "--coco-results", str(tmp_path / "coco.json")]) as r:
        r.wait_until(progress_at("clip.mp4", r), "annotating frames", timeout=600)
        code = r.sigterm()
    assert_interrupted(code, r.err)
    assert "interrupted: no output written" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
