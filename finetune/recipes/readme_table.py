"""The README's Recipes table: a derived recipe's row is its base's row with the id and the model swapped.

The base rows are written by hand (cluster, method and sequence length in words); a derived recipe has the
base's cluster, method and lengths, so its row follows from the base's and sits right below it.
`finetune recipes --sync` rewrites the rows, and a test fails when the README's differ.
"""

from __future__ import annotations

import re
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.paths import REPO_ROOT
from finetune.recipes.models import get_model
from finetune.recipes.variants import Variant

README = REPO_ROOT / "README.md"
SECTION = "## Recipes"
ROW = re.compile(r"^\| `(?P<id>[^`]+)` \| (?P<model>[^|]+?) \|(?P<rest>.*)$")


def _table_span(lines: list[str]) -> tuple[int, int]:
    """[start, end) of the table rows of the Recipes section."""
    start = lines.index(SECTION) if SECTION in lines else -1
    rows = [i for i in range(start + 1, len(lines)) if ROW.match(lines[i])]
    if start < 0 or not rows:
        raise FinetuneError(f"{README}: no `{SECTION}` table with rows like | `framework/name` | model | ...")
    end = rows[0]
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return rows[0], end


def table_ids(text: str) -> list[str]:
    """The recipe ids of the Recipes table's rows, in order."""
    lines = text.split("\n")
    start, end = _table_span(lines)
    return [m["id"] for m in map(ROW.match, lines[start:end]) if m]


def with_derived_rows(text: str, variants: list[Variant], drop: set[str] = frozenset()) -> str:
    """`text` with every derived recipe's row right below its base's row (any old rows of derived recipes, and
    of the ids in `drop`, removed first)."""
    lines = text.split("\n")
    start, end = _table_span(lines)
    derived = {v.id for v in variants} | set(drop)
    rows = [line for line in lines[start:end] if ROW.match(line)["id"] not in derived]
    by_base = {row_id: [] for row_id in (ROW.match(line)["id"] for line in rows)}
    for variant in variants:
        if variant.base not in by_base:
            raise FinetuneError(f"{README}: the Recipes table has no row for {variant.base}, the base of {variant.id}")
        by_base[variant.base].append(variant)
    table = []
    for line in rows:
        base = ROW.match(line)
        table.append(line)
        for v in by_base[base["id"]]:
            table.append(f"| `{v.id}` | {get_model(v.model).display_name} |{base['rest']}")
    return "\n".join(lines[:start] + table + lines[end:])


def sync_readme(variants: list[Variant], drop: set[str] = frozenset(), readme: Path = README) -> bool:
    """Rewrite the README's derived rows; True when the file changed."""
    text = readme.read_text()
    new = with_derived_rows(text, variants, drop)
    if new != text:
        readme.write_text(new)
    return new != text
