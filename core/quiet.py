"""TensorFlow's start-up and tracing noise, kept off the terminal by default.

A plain run of any of our commands used to print ~11 lines before its own output: a
``failed call to cuInit`` error on every machine without a GPU, Keras and ``map_fn``
deprecation warnings from Model Garden's code, absl's "All log messages before
absl::InitializeLog()" banner and ~1.5 KB ``PredictCost()`` dumps from TensorFlow's graph
optimizer, and absl INFO lines when an export freezes its graph. None of it is something a
user can act on; real errors still reach the user as exceptions (or as TensorFlow's own
error lines, which stay).

Two layers, because the noise comes from two places:
- Python: the ``tensorflow`` logger is set to ERROR, and DeprecationWarnings are ignored.
- C++ (TensorFlow and absl write straight to file descriptor 2, past Python): fd 2 is
  routed through a pipe and a thread that drops the lines matching :data:`NOISE` and
  passes everything else through unchanged and at once (progress bars included).

``MASKRCNN_TOOLKIT_VERBOSE=1`` turns all of this off: everything is shown.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from typing import Iterator

VERBOSE_ENV = "MASKRCNN_TOOLKIT_VERBOSE"


def _has_nvidia_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.isdir("/proc/driver/nvidia")


# Each pattern matches one whole noise line, its newline included. The cuInit line is noise
# only where there is no NVIDIA driver: on a GPU machine it says the GPU is unusable.
_PATTERNS = [
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR\n",
    # absl's informational lines (grappler's "Number of eligible GPUs", "Starting new
    # session" when the export freezes its graph): INFO is never a problem to act on.
    rb"I\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] [^\n]*\n",
    rb"W\d{4} [\d:.]+ +\d+ op_level_cost_estimator\.cc:\d+\] Error in PredictCost\(\)[^\n]*\n",
]
if not _has_nvidia_gpu():
    _PATTERNS.append(rb"[\d-]+ [\d:.]+: E [^\n]*cuda_platform\.cc:\d+\] failed call to "
                     rb"cuInit[^\n]*\n")
NOISE = re.compile(b"|".join(_PATTERNS))
# The start of a line that may become noise once its newline arrives: held back until then.
_MAYBE_NOISE = re.compile(rb"(WARNING: All log|[IW]\d{4} |[\d-]{10} [\d:.]+: E )")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class _Fd2Filter:
    """Route fd 2 through a pipe; a thread writes what is not noise to the original fd 2."""

    def __init__(self):
        self._original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self._thread = threading.Thread(target=self._pump, name="stderr-filter", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        while True:
            chunk = os.read(self._read_end, 65536)
            if not chunk:
                break
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            done, pending = NOISE.sub(b"", pending[:cut]), pending[cut:]
            m = _MAYBE_NOISE.search(pending)
            held = pending[m.start():] if m else b""
            out, pending = done + pending[:len(pending) - len(held)], held
            if out:
                os.write(self._original, out)
        if pending:
            os.write(self._original, pending)
        os.close(self._read_end)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(self._original, 2)  # closes the pipe's write end: the thread sees EOF
        self._thread.join(timeout=5)
        os.close(self._original)


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """Keep TensorFlow's noise off stderr for the duration (see the module docstring);
    does nothing under ``MASKRCNN_TOOLKIT_VERBOSE=1``. The fd-level filter is used only
    when ``sys.stderr`` is the process's fd 2 (a real CLI run, not a captured test)."""
    if verbose():
        yield
        return
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    fd_filter = None
    try:
        if sys.stderr is not None and sys.stderr.fileno() == 2:
            fd_filter = _Fd2Filter()
    except (AttributeError, OSError, ValueError):  # no real fd behind sys.stderr
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        tf_logger.setLevel(level)
        if fd_filter is not None:
            fd_filter.close()
