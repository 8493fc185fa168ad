"""One exception type for every problem a user can fix.

CLIs catch :class:`UserError` and print its message without a traceback; anything else
is a bug in this project and keeps its traceback.
"""


class UserError(Exception):
    """Bad input that the user can fix. The message names the file, the value and the fix."""
