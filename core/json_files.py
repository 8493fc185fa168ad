"""The one way this project reads a JSON file it did not write itself: :func:`read_json`.

UTF-8 with or without a byte-order mark (``utf-8-sig``): Windows tools and Notepad write
one, and plain ``utf-8`` rejects it, so the same file would be accepted by one command and
refused by another.
"""
from __future__ import annotations

import json
import os
from typing import Any

from maskrcnn_toolkit.core.errors import UserError


def read_json(path: str | os.PathLike, expected: str) -> Any:
    """Parse the JSON file ``path``.

    Args:
      expected: what the file should be, for the message (e.g. "a COCO instances JSON").
    Raises:
      UserError: naming the file, where it broke and what was expected, when the file is
        missing or unreadable, not UTF-8 or not valid JSON.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column "
                        f"{e.colno}); expected {expected}. Fix or re-export the file.") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected "
                        f"{expected}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror}); expected {expected}") from None
