"""The one way every command-line tool of this project runs (``train.py``, ``evaluate.py``,
``export.py``, ``annotate.py``, ``python -m dataset_tools``): :func:`run`.

- A :class:`~maskrcnn_toolkit.core.errors.UserError` prints one line, ``error: MESSAGE``,
  on stderr and exits 2: the message names the file, the value and the fix, so a traceback
  would only hide it.
- Ctrl-C (SIGINT) and SIGTERM take the same path. SIGTERM is what a ``kill``, a batch
  scheduler or a preempted cloud VM sends; by default it ends Python at once, with no
  ``finally`` and no cleanup, so :func:`run` turns it into ``KeyboardInterrupt``. The
  interrupt unwinds the work (temporaries are discarded, training saves a checkpoint), then
  one line ``interrupted: ...`` is printed and the exit code is 130. What it says is the
  ``KeyboardInterrupt``'s own text when the work gave one (training: the step and the
  checkpoint it saved), else the CLI's ``interrupted`` text.
- Anything else is a bug in this project and keeps its traceback.
- TensorFlow's start-up noise is kept off stderr (``core/quiet.py``);
  ``MASKRCNN_TOOLKIT_VERBOSE=1`` shows everything.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.core.quiet import quiet_tensorflow

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(body: Callable[[], int | None],
        interrupted: str | Callable[[], str] = "nothing was written") -> int:
    """Run a CLI's work and return its exit code (``sys.exit(run(...))``).

    Args:
      body: the work; returns an exit code, or None for 0.
      interrupted: what the one line after Ctrl-C / SIGTERM says (after ``interrupted: ``),
        or a callable giving it (called after the work has unwound).
    """
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous_int = signal.getsignal(signal.SIGINT)
        previous_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with quiet_tensorflow():
            code = body()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:
        if in_main:  # a second Ctrl-C / SIGTERM must not cut the one line short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            text = str(e) or (interrupted() if callable(interrupted) else interrupted)
            print(f"interrupted: {text}" if text else "interrupted", file=sys.stderr)
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous_int)
        return EXIT_INTERRUPTED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous_term)
    return 0 if code is None else int(code)
