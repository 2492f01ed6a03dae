"""One exception type for every user-facing failure.

A `LatentrmError` carries a one-line message that names the file, row or value
and the fix. The CLI prints it as `error: <message>` and exits non-zero,
without a traceback. Library users catch it like any exception.
"""

from __future__ import annotations


class LatentrmError(Exception):
    """A user-facing error: one line, naming what is wrong and how to fix it."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
