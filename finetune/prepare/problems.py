"""What is wrong with one input row: the field, the problem and how to fix it.

Conversion and validation raise `RowProblem` without knowing where the row came from; the pipeline adds the
`file:line` and either stops with a `FinetuneError` or writes the row and the reason to the rejects file.
"""

from __future__ import annotations


class RowProblem(Exception):
    """One thing wrong with one row (or with a whole input file, when `field` is `<file>`)."""

    def __init__(self, field: str, what: str, fix: str) -> None:
        super().__init__(f"{field}: {what}")
        self.field = field
        self.what = what.rstrip(".")
        self.fix = fix

    def describe(self, location: str) -> str:
        """`path:line: field: what is wrong. How to fix.` (no field for problems with a whole line or file)."""
        field = "" if self.field.startswith("<") else f"{self.field}: "
        return f"{location}: {field}{self.what}. {self.fix}"


def at(prefix: str, field: str) -> str:
    """Join field paths: at('messages[2]', 'content') -> 'messages[2].content'."""
    if not prefix:
        return field
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"
