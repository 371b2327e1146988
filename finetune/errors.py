"""One exception type for every user-facing problem, so the CLI can print it without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FinetuneError(Exception):
    """A problem the user can fix; the message says what is wrong, where, and how to fix it."""


def suggest(word: str, choices: Iterable[str]) -> str:
    """' Did you mean `x`?' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean `{match[0]}`?" if match else ""
