"""Template placeholders (`{{name}}`) left unfilled in the texts a row trains on or is prompted with.

Identity datasets are often templates (`You are {{name}}, made by {{author}}`) that users forget to fill; trained
as they are, the model learns to call itself `{{name}}`. `prepare` fills the names given with `--var` (before
validation, so the filled text is what is checked, hashed and written), counts what is left for the summary and
the manifest, and with `--strict` refuses a row that still holds one. Only the plain form is a placeholder:
`{{ x | upper }}`, `{{#if}}`, Handlebars' `{{{x}}}` and GitHub Actions' `${{ x }}` are code that code datasets
legitimately hold.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finetune.errors import suggest
from finetune.prepare.jsonio import dumps
from finetune.prepare.manifest import PlaceholderExample, PlaceholderReport
from finetune.prepare.problems import RowProblem, at

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
PLACEHOLDER = re.compile(r"(?<![{$])\{\{[ \t]*([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*\}\}(?!\})")
MESSAGE_TEXTS = ("content", "reasoning_content")
EXCERPT = 40
"""Characters of context either side of a placeholder in an example."""


@dataclass
class RowScan:
    """One row after filling: what was filled, and the first unfilled occurrence of each name left."""

    row: dict[str, Any]  # the row itself when nothing was filled, else a filled copy (the input is never changed)
    filled: Counter[str] = field(default_factory=Counter)
    left: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (field path, excerpt)


def fill_row(row: dict[str, Any], values: dict[str, str]) -> RowScan:
    """Fill `values` into every text of the canonical row once (a value is never filled again), and find the rest."""
    scan = RowScan(row)
    if not _may_hold_braces(row):
        return scan

    def visit(path: str, text: str) -> str:
        if "{{" not in text:
            return text
        if values:
            text = _fill(text, values, scan.filled)
        for match in PLACEHOLDER.finditer(text):
            scan.left.setdefault(match.group(1), (path, _excerpt(text, match)))
        return text

    scan.row = map_texts(row, visit)
    return scan


def _may_hold_braces(row: dict[str, Any]) -> bool:
    """False when no string of the row holds `{{` (in JSON text only a string can): far cheaper than the walk."""
    try:
        return b"{{" in dumps(row)
    except ValueError:  # not valid Unicode: walked, and refused later
        return True


def _fill(text: str, values: dict[str, str], filled: Counter[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        filled[name] += 1
        return values[name]

    return PLACEHOLDER.sub(replace, text)


def _excerpt(text: str, match: re.Match[str]) -> str:
    """The placeholder with up to EXCERPT characters either side, cut at whole words, on one line."""
    before, after = text[: match.start()], text[match.end() :]
    if len(before) > EXCERPT:
        before = "…" + re.sub(r"^\S*\s", "", before[-EXCERPT:])
    if len(after) > EXCERPT:
        after = re.sub(r"\s\S*$", "", after[:EXCERPT]) + "…"
    return " ".join((before + match.group(0) + after).split())


# -- the texts of a canonical row ---------------------------------------------------------------------------------

Visit = Callable[[str, str], str]


def map_texts(row: dict[str, Any], visit: Visit) -> dict[str, Any]:
    """`row` with `visit(path, text)` applied to every text trained on or prompted with: message content and
    reasoning, tool-call argument strings, tool results, chosen / rejected. Parts are copied only where a text
    changed. RL reference fields and tool schemas are not conversation text and are left alone."""
    out = dict(row)
    out["messages"] = _same_or(
        row["messages"], [_message(m, f"messages[{i}]", visit) for i, m in enumerate(row["messages"])]
    )
    for key in ("chosen", "rejected"):
        if isinstance(row.get(key), dict):
            out[key] = _message(row[key], key, visit)
    changed = any(out[k] is not row[k] for k in out)
    return out if changed else row


def _message(msg: dict[str, Any], where: str, visit: Visit) -> dict[str, Any]:
    out = dict(msg)
    for key in MESSAGE_TEXTS:
        if isinstance(msg.get(key), str):
            out[key] = visit(at(where, key), msg[key])
    if msg.get("tool_calls"):
        calls = [_call(c, f"{where}.tool_calls[{j}]", visit) for j, c in enumerate(msg["tool_calls"])]
        out["tool_calls"] = _same_or(msg["tool_calls"], calls)
    return out if any(out[k] is not msg[k] for k in out) else msg


def _call(call: dict[str, Any], where: str, visit: Visit) -> dict[str, Any]:
    function = call.get("function")
    if not isinstance(function, dict) or "arguments" not in function:
        return call
    args = _value(function["arguments"], f"{where}.function.arguments", visit)
    if args is function["arguments"]:
        return call
    return {**call, "function": {**function, "arguments": args}}


def _value(value: Any, where: str, visit: Visit) -> Any:
    """Strings anywhere inside a JSON value (tool-call arguments), keys untouched."""
    if isinstance(value, str):
        return visit(where, value)
    if isinstance(value, dict):
        out = {k: _value(v, at(where, k), visit) for k, v in value.items()}
        return out if any(out[k] is not value[k] for k in out) else value
    if isinstance(value, list):
        return _same_or(value, [_value(v, f"{where}[{i}]", visit) for i, v in enumerate(value)])
    return value


def _same_or(old: list[Any], new: list[Any]) -> list[Any]:
    return old if all(a is b for a, b in zip(old, new, strict=True)) else new


# -- one run ------------------------------------------------------------------------------------------------------


class Placeholders:
    """A run's filling and tally: `fill` every row, `refuse` (under --strict), `count` the rows written."""

    def __init__(self, values: dict[str, str], strict: bool) -> None:
        self.values = values
        self.strict = strict
        self.seen: set[str] = set()  # every name met in any row that converted, filled or not
        self.rows = 0
        self.names: Counter[str] = Counter()
        self.examples: dict[str, PlaceholderExample] = {}
        self.filled: Counter[str] = Counter()

    def fill(self, row: dict[str, Any]) -> RowScan:
        scan = fill_row(row, self.values)
        self.seen.update(scan.filled, scan.left)
        return scan

    def refuse(self, scan: RowScan) -> None:
        """Under --strict, the row's first unfilled placeholder as a row problem."""
        if not self.strict or not scan.left:
            return
        name, (path, excerpt) = next(iter(scan.left.items()))
        others = [n for n in scan.left if n != name]
        also = f" (also {', '.join(_braced(n) for n in others)})" if others else ""
        fills = " ".join(f"--var {n}=VALUE" for n in (name, *others))
        raise RowProblem(
            path,
            f'an unfilled template placeholder {_braced(name)}{also} in "{excerpt}" (--strict refuses them)',
            f"Fill {'them' if others else 'it'} with `{fills}`, or write the text it stands for into the data.",
        )

    def count(self, location: str, scan: RowScan) -> None:
        """Tally a row that is written."""
        self.filled.update(scan.filled)
        if not scan.left:
            return
        self.rows += 1
        for name, (path, excerpt) in scan.left.items():
            self.names[name] += 1
            self.examples.setdefault(name, PlaceholderExample(location, path, excerpt))

    def report(self) -> PlaceholderReport:
        names = dict(sorted(self.names.items(), key=lambda item: (-item[1], item[0])))
        return PlaceholderReport(
            rows=self.rows,
            names=names,
            examples={name: self.examples[name] for name in names},
            filled={name: self.filled[name] for name in sorted(self.values)},
        )

    def notes(self) -> list[str]:
        """A `--var` whose name no row holds: most likely a typo of one that is there."""
        notes, seen = [], sorted(self.seen)
        for name in sorted(set(self.values) - self.seen):
            notes.append(f"--var {name} matched no placeholder: no {_braced(name)} in the data.{suggest(name, seen)}")
        return notes


def _braced(name: str) -> str:
    return f"`{{{{{name}}}}}`"
