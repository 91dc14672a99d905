"""The error a command raises when a file it was given cannot be used.

Commands that read user-supplied files (WFDB records, annotation files, data packs) raise
:class:`InputFileError` with a message naming the file and what is wrong with it; the
``streamdx`` CLI prints that message and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

__all__ = ["InputFileError"]


class InputFileError(ValueError):
    """An input file is missing, unreadable or malformed (the message names it and says why)."""
