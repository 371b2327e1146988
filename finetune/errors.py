"""One exception type for every user-facing problem, so the CLI can print it without a traceback; and the one way
to say what a long step is doing."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


class FinetuneError(Exception):
    """A problem the user can fix; the message says what is wrong, where, and how to fix it."""


def say(message: str) -> None:
    """A line about what a long step is doing, on stderr (stdout stays the command's own output)."""
    print(message, file=sys.stderr, flush=True)


def suggest(word: str, choices: Iterable[str]) -> str:
    """' Did you mean `x`?' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean `{match[0]}`?" if match else ""
