"""Mistakes are answered before anything slow: evaluate.py and export.py check the run's
checkpoints (and their other cheap inputs) before TensorFlow is even imported, and the
messages say what is wrong and what to do (issue "the first hour": a run dir before
training is not "not found", it is "train first")."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.model import make_tiny_dataset, write_tiny_config

ROOT = Path(__file__).resolve().parents[1]

# Runs a CLI's main() in a fresh interpreter and reports whether TensorFlow got imported.
PROBE = """
import sys
from maskrcnn_toolkit import {cli}
code = {cli}.main(sys.argv[1:])
print("tensorflow imported:", "tensorflow" in sys.modules)
sys.exit(code)
"""


def probe(cli: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE.format(cli=cli), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A valid config whose run has not been trained: the run dir does not exist yet."""
    d = tmp_path_factory.mktemp("fresh")
    data = make_tiny_dataset(d / "data", num_train=2, num_val=1, size=64)
    return write_tiny_config(d, data, d / "runs" / "fresh")


@pytest.mark.parametrize("cli,extra", [("evaluate", []), ("export", ["--out", "EXPORT"])])
def test_before_training_says_train_first_without_importing_tensorflow(fresh, cli, extra):
    extra = [str(fresh.parent / "exported") if a == "EXPORT" else a for a in extra]
    r = probe(cli, "--config", fresh, *extra)
    assert r.returncode == 2, r.stderr
    run_dir = fresh.parent / "runs" / "fresh"
    assert r.stderr == (f"error: no checkpoint in {str(run_dir)!r} yet: train first with "
                        f"`python train.py --config {fresh}`\n")
    assert "tensorflow imported: False" in r.stdout
    assert not (fresh.parent / "exported").exists()


def test_a_wrong_checkpoint_lists_the_ones_that_exist(fresh, tmp_path):
    run_dir = tmp_path / "run"
    fresh = write_tiny_config(tmp_path, fresh.parent / "data", run_dir)
    run_dir.mkdir()
    for step in (250, 1000, 500):  # empty files are enough: only names are looked at
        (run_dir / f"ckpt-{step}.index").write_bytes(b"")
    for cli, extra in (("evaluate", []), ("export", ["--out", fresh.parent / "exported"])):
        r = probe(cli, "--config", fresh, "--checkpoint", run_dir / "ckpt-750", *extra)
        assert r.returncode == 2, r.stderr
        assert f"checkpoint {str(run_dir / 'ckpt-750')!r} not found" in r.stderr
        assert "holds ckpt-250, ckpt-500, ckpt-1000" in r.stderr
        assert f"--checkpoint {run_dir / 'ckpt-1000'}" in r.stderr
        assert "tensorflow imported: False" in r.stdout


def test_export_overwrite_refuses_a_folder_with_other_files(fresh, tmp_path):
    """--overwrite replaces a whole export folder: one that holds a file export did not
    write is refused, before TensorFlow is imported, and the file stays."""
    out = tmp_path / "exported"
    out.mkdir()
    (out / "metadata.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    r = probe("export", "--config", fresh, "--out", out, "--overwrite")
    assert r.returncode == 2, r.stderr
    assert "holds files this tool did not write (notes.txt)" in r.stderr
    assert "tensorflow imported: False" in r.stdout
    assert (out / "notes.txt").read_text() == "mine"
