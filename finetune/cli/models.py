"""`models`: the catalog's models, one row each (hub ids, architecture, size, chat format, parsers, context,
recipes), as a table, as Markdown, or written into docs/models.md."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models: hub ids, size, chat template, serving parsers, recipes")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print the table as Markdown (docs/models.md's)")
    out.add_argument("--sync", action="store_true", help="rewrite the table in docs/models.md")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from finetune.recipes import model_table

    if args.sync:
        changed = model_table.sync_doc()
        print(f"{'updated' if changed else 'unchanged'}: {model_table.DOC}")
        return 0
    rows = model_table.model_rows()
    if args.markdown:
        print(model_table.markdown_table(rows), end="")
        return 0
    width = max(len(column) for column in model_table.COLUMNS)
    for row in rows:  # one block per model: the table is too wide for a terminal
        name, *cells = (cell.replace("`", "") for cell in row.cells())
        print(name)
        for column, cell in zip(model_table.COLUMNS[1:], cells, strict=True):
            print(f"  {column:<{width}}  {cell}")
    return 0
