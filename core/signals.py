"""SIGTERM handled like Ctrl-C, for the CLIs.

A preempted job (a cloud VM, a batch scheduler, ``kill``) gets SIGTERM, which by default
ends Python at once: no ``finally``, no cleanup. Raising KeyboardInterrupt instead runs the
same path as Ctrl-C: temporaries are discarded, and training saves a checkpoint first.
"""
from __future__ import annotations

import signal


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_keyboard_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread (call it from a CLI's main)."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
