"""Rules across rows: a column keeps one type in every row.

Both frameworks load the files with Arrow, which needs one type per column; a `tools` column that is a list in
one row and JSON text in the next, or a reference field that is a string here and a number there, breaks the
load (or a reward function) long after `prepare` ran. Types are compared with the first accepted row, so a
broken first row cannot set them.
"""

from __future__ import annotations

from typing import Any

from finetune.prepare.problems import RowProblem
from finetune.prepare.readers import RawRow


def _described(typed: str) -> str:
    return "JSON text" if typed == "string" else "a list"


class ColumnTypes:
    """The type of `tools` (per input file) and of every RL reference field, as the first accepted row set it."""

    def __init__(self) -> None:
        self.tools_types: dict[int, tuple[str, str]] = {}
        self.reference_types: dict[str, tuple[str, str]] = {}

    def check_tools(self, raw: RawRow, typed: str | None) -> None:
        if typed is None:
            return
        first = self.tools_types.setdefault(raw.source_index, (typed, raw.location))
        if first[0] != typed:
            raise RowProblem(
                "tools",
                f"tools is {_described(typed)} here but {_described(first[0])} at {first[1]}: typed differently "
                "across rows",
                "Give `tools` one type in every row of a file (a list of tool schemas is best); mixed types break "
                "the Arrow loaders both frameworks use.",
            )

    def check_references(self, raw: RawRow, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key in ("messages", "tools") or value is None:
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            typed = "number" if number else type(value).__name__
            first = self.reference_types.setdefault(key, (typed, raw.location))
            if first[0] != typed:
                raise RowProblem(
                    key,
                    f"`{key}` is a {typed} here but a {first[0]} at {first[1]}: typed differently across rows",
                    f"Give `{key}` one type in every row; reward functions and Arrow loaders expect that.",
                )
