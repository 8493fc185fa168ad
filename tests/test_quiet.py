"""core/quiet.py: TensorFlow's C++ and Python start-up noise is kept off stderr in a real CLI
run (fd 2 filtered), everything else passes through unchanged and in order;
MASKRCNN_TOOLKIT_VERBOSE=1 shows everything. Real TensorFlow writes the noise here, in a
subprocess, through the same core.cli.run the commands use."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

NOISE_LINES = [
    b"2026-12-03 19:25:05.994751: E external/local_xla/xla/stream_executor/cuda/"
    b"cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed call to "
    b"cuInit: UNKNOWN ERROR (303)\n",
    b"WARNING: All log messages before absl::InitializeLog() is called are written to "
    b"STDERR\n",
    b"W0000 00:00:1796325928.366868   18278 op_level_cost_estimator.cc:699] Error in "
    b"PredictCost() for the op: op: \"CropAndResize\" attr { key: \"T\" value { type: "
    b"DT_FLOAT } }" + b" x" * 700 + b"\n",
    b"I0000 00:00:1796326746.869165   32381 devices.cc:67] Number of eligible GPUs (core "
    b"count >= 8, compute capability >= 0.0): 0\n",
]
KEPT = [
    b"\rtrain:   0%|          | 0/2 [00:00<?, ?step/s]",  # tqdm: no newline, passes at once
    b"W0000 00:00:1796325928.366868   18278 some_kernel.cc:12] a warning we do not know\n",
    b"2026-12-03 19:25:05.994751: E tensorflow/core/framework/op_kernel.cc:1] a real error\n",
]

SCRIPT = r"""
import os, sys, logging
from maskrcnn_toolkit.core.cli import run
noise, kept = eval(sys.argv[1]), eval(sys.argv[2])
def body():
    for n, k in zip(noise, kept + [b""]):
        os.write(2, n)
        os.write(2, k)
    os.write(2, noise[-1][:30])  # noise split across two writes is still recognised
    os.write(2, noise[-1][30:])
    logging.getLogger("tensorflow").warning("From deprecation.py: calling map_fn_v2 ...")
    import warnings
    warnings.warn("old API", DeprecationWarning)
    print("the one summary line")
    sys.stderr.write("error-ish line from our code\n")
run(body)
"""


def run_script(verbose: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MASKRCNN_TOOLKIT_VERBOSE", None)
    if verbose:
        env["MASKRCNN_TOOLKIT_VERBOSE"] = "1"
    # The tensorflow logger needs a handler to print, as TensorFlow installs one on import.
    script = "import logging; logging.basicConfig()\n" + SCRIPT
    return subprocess.run([sys.executable, "-W", "default", "-c", script,
                           repr(NOISE_LINES), repr(KEPT)], capture_output=True, env=env)


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="cuInit is kept on a GPU machine")
def test_noise_is_dropped_and_the_rest_passes_in_order():
    r = run_script(verbose=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"the one summary line\n"
    assert r.stderr == b"".join(KEPT) + b"error-ish line from our code\n"


def test_verbose_shows_everything():
    r = run_script(verbose=True)
    assert r.returncode == 0
    for line in NOISE_LINES:
        assert line in r.stderr
    assert b"map_fn_v2" in r.stderr and b"old API" in r.stderr
