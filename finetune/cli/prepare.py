"""`prepare`: turn the user's data into a dataset every recipe can name (`launch RECIPE --dataset NAME`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from finetune.errors import FinetuneError

if TYPE_CHECKING:
    from rich.console import Console

    from finetune.prepare.manifest import PlaceholderReport, TokenStats
    from finetune.prepare.options import SequenceLimit
    from finetune.prepare.pipeline import PrepareResult

EPILOG = """\
examples:
  python -m finetune prepare chats.jsonl --name support --val-ratio 0.05
  python -m finetune prepare data/*.parquet --name mix --skip-invalid --recipe llamafactory/glm45-air_lora_4xh100
  python -m finetune prepare pairs.json --name prefs --map question=prompt --map good=chosen --map bad=rejected
  python -m finetune prepare dialogs.jsonl --name bot --role HUMAN=user --role BOT=assistant
  python -m finetune prepare identity.jsonl --name me --var name=Ada --var author=Lab --strict

Layouts (detected per row): OpenAI messages (tool_calls, reasoning_content, tools), ShareGPT from/value,
Alpaca instruction/input/output, prompt/completion and prompt/chosen/rejected. Kinds (detected from the first
row): sft, preference (chosen/rejected), rl (prompts plus reference fields such as `solution`).
Writes <root>/NAME/: canonical/, llamafactory/ + dataset_info.json, swift/, manifest.json (and rejects.jsonl).
"""


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        src, sep, dst = value.partition("=")
        if not sep or not src or not dst:
            raise FinetuneError(f"{flag} {value}: write it as {flag} FROM=TO.")
        out[src] = dst
    return out


def _vars(values: list[str]) -> dict[str, str]:
    """--var NAME=VALUE, the value taken literally (it may be empty or hold `=`)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise FinetuneError(
                f"--var {value}: write it as --var NAME=VALUE, e.g. --var name=Ada to fill {{{{name}}}}."
            )
        if out.get(name, text) != text:
            raise FinetuneError(f"--var {name} is given twice ({out[name]!r} and {text!r}); give it once.")
        out[name] = text
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="validate and convert your data for every framework (prepared datasets)",
        description="Read JSONL, JSON, CSV, Parquet or `datasets` folders, validate every row, and write one "
        "canonical JSONL plus LLaMA-Factory's and SWIFT's formats, with a manifest and statistics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders, or hub ids (owner/name)")
    p.add_argument("--name", required=True, help="the dataset's name; recipes use it with --dataset NAME")
    p.add_argument(
        "--format",
        dest="layout",
        default="auto",
        choices=["auto", "openai", "sharegpt", "alpaca", "prompt"],
        help="input layout (default: per row)",
    )
    p.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "sft", "preference", "rl"],
        help="what the rows are (default: from the first row)",
    )
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="rename a column (or message key), e.g. --map dialog=messages --map answer=solution",
    )
    p.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="TAG=ROLE",
        help="map a custom role tag to system/user/assistant/tool, e.g. --role HUMAN=user",
    )
    p.add_argument("--val-ratio", type=float, default=0.0, help="fraction of rows for validation (by content hash)")
    p.add_argument("--seed", type=int, default=0, help="changes which rows the validation split takes")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="keep going past bad rows and write each, with its reason, to rejects.jsonl",
    )
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fill the template placeholder {{NAME}} with VALUE in every text, e.g. --var name=Ada",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse rows that still hold a template placeholder such as {{name}} (with --skip-invalid: reject them)",
    )
    p.add_argument("--dedupe", action="store_true", help="drop exact duplicate rows (always reported)")
    p.add_argument("--force", action="store_true", help="replace an existing dataset of the same name")
    p.add_argument("--out-root", type=Path, help="where datasets go (default: FINETUNE_DATA_ROOT or data/prepared)")
    p.add_argument("--split", help="split of a hub dataset or a DatasetDict folder (default: all / train)")
    p.add_argument(
        "--clear-thinking",
        choices=("true", "false"),
        default="true",
        help="false: the conversations keep earlier turns' reasoning in the context (GLM-4.7's preserved thinking, "
        "`clear_thinking=False`); training and serving then render them so (GLM-4.7 recipes only)",
    )
    g = p.add_argument_group("token statistics")
    g.add_argument(
        "--tokenizer",
        help="the model's folder or hub id, or a model name for its replica's tokenizer (default: the replica of "
        "the --recipe's model, else glm-4.5-air, offline)",
    )
    g.add_argument("--recipe", help="report rows longer than this recipe's sequence length")
    g.add_argument(
        "--no-token-stats",
        dest="token_stats",
        action="store_false",
        help="skip rendering every conversation with the tokenizer (fast for huge inputs)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)


def recipe_limit(recipe_id: str) -> SequenceLimit:
    """Recipe `recipe_id`'s length limit and what its framework does with longer rows, which token statistics count
    against."""
    from finetune.frameworks import get_framework
    from finetune.prepare.options import SequenceLimit
    from finetune.recipes.recipe import resolve_recipe

    recipe = resolve_recipe(recipe_id)
    policy = get_framework(recipe.framework).length_policy(recipe.config, recipe.meta)
    return SequenceLimit(recipe_id, policy, recipe.meta.model)


def cmd_prepare(args: argparse.Namespace) -> int:
    from finetune.prepare.pipeline import PrepareOptions, prepare

    options = PrepareOptions(
        inputs=args.inputs,
        name=args.name,
        out_root=args.out_root,
        layout=args.layout,
        kind=args.kind,
        columns=_pairs(args.map, "--map"),
        roles=_pairs(args.role, "--role"),
        vars=_vars(args.var),
        strict=args.strict,
        val_ratio=args.val_ratio,
        seed=args.seed,
        skip_invalid=args.skip_invalid,
        dedupe=args.dedupe,
        force=args.force,
        token_stats=args.token_stats,
        tokenizer=args.tokenizer,
        split=args.split,
        progress=not args.quiet,
        clear_thinking=args.clear_thinking == "true",
    )
    options.check()  # the options' own mistakes are reported before the recipe's
    if args.token_stats and args.recipe:
        options = dataclasses.replace(options, limit=recipe_limit(args.recipe))
    result = prepare(options)
    print_summary(result)
    return 0


def print_summary(result: PrepareResult) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=True)  # paths and messages stay whole for copying
    ds = result.dataset
    m = ds.manifest
    c = m.counts
    if result.status == "unchanged":
        console.print(f"[bold]{ds.name}[/]: already up to date (same input and options), nothing written: {ds.root}")
    elif result.status == "stats-updated":
        console.print(f"[bold]{ds.name}[/]: data unchanged; token statistics updated in {ds.root / 'manifest.json'}")
    else:
        verb = "replaced" if result.status == "replaced" else "written"
        console.print(f"[bold]{ds.name}[/] ({ds.kind}) {verb} in {result.seconds:.1f} s: {ds.root}")

    table = Table(title="rows", show_header=False, box=None, padding=(0, 2))
    table.add_row("read", f"{c.read:,}")
    table.add_row("kept", f"{c.kept:,}  (train {c.train:,}, validation {c.val:,})")
    rejected = f"{c.rejected:,}" + (f" (and {c.rejected_files:,} whole files)" if c.rejected_files else "")
    table.add_row("rejected", rejected + ("  -> rejects.jsonl" if c.rejected or c.rejected_files else ""))
    dup = f"{c.duplicates:,}" + (f" ({c.duplicates_dropped:,} dropped)" if c.duplicates_dropped else "")
    table.add_row("exact duplicates", dup)
    s = m.statistics
    table.add_row("layouts", ", ".join(f"{k} {v:,}" for k, v in s.layouts.items()))
    table.add_row("messages per row", str(s.messages_per_row))
    calls = f"({s.tool_calls:,} calls, {s.parallel_call_turns:,} parallel turns)"
    table.add_row("with tools / calling", f"{s.rows_with_tools:,} / {s.rows_calling_tools:,} {calls}")
    table.add_row("with reasoning", f"{s.rows_with_reasoning:,}")
    console.print(table)

    tokens = m.token_stats
    if tokens and tokens.lengths:
        _print_token_stats(console, tokens)
    _print_placeholders(console, m.placeholders)
    for example in result.rejected_examples:  # user text: escaped, rich would read `[...]` in it as markup
        console.print(f"[red]rejected[/] {escape(example)}", highlight=False)
    for example in result.duplicate_examples:
        console.print(f"[yellow]duplicate[/] {escape(example)}", highlight=False)
    for note in m.notes:
        console.print(f"[yellow]note[/] {escape(note)}", highlight=False)
    if result.status in ("written", "replaced"):
        console.print(f"use it: python -m finetune launch RECIPE --dataset {ds.name}")


def _print_placeholders(console: Console, report: PlaceholderReport) -> None:
    """What --var filled, and the placeholders left (user text escaped: rich would read `[...]` as markup)."""
    from rich.markup import escape

    filled = [f"{{{{{name}}}}} {count:,}" for name, count in report.filled.items() if count]
    if filled:
        console.print(f"[green]filled[/] placeholders: {', '.join(filled)}", highlight=False)
    if not report.rows:
        return
    console.print(
        f"[yellow]{_rows(report.rows)} {'holds' if report.rows == 1 else 'hold'} unfilled template placeholders[/] "
        "(fill them with --var NAME=VALUE, or refuse them with --strict):",
        highlight=False,
    )
    for name, rows in report.names.items():
        ex = report.examples[name]
        where = escape(f'{ex.location}: {ex.field}: "{ex.excerpt}"')
        console.print(f"  {{{{{name}}}}} in {_rows(rows)}, first at {where}", highlight=False)


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _print_token_stats(console: Console, tokens: TokenStats) -> None:
    from rich.markup import escape
    from rich.table import Table

    keys = ("min", "p50", "p90", "p99", "max", "mean")
    t = Table(title="tokens per row", padding=(0, 1))
    for key in keys:
        t.add_column(key, justify="right")
    t.add_row(*(f"{getattr(tokens.lengths, k):,}" for k in keys))
    console.print(t)
    console.print(f"tokenizer: {tokens.tokenizer}")
    if tokens.seq_len is not None:
        style = "yellow" if tokens.rows_over_seq_len else "green"
        over, rows = tokens.over_by_split or {}, tokens.rows_by_split or {}
        counts = ", ".join(f"{over.get(split, 0):,} of {n:,} {split}" for split, n in rows.items() if n)
        console.print(
            f"[{style}]{counts} rows are longer than {tokens.recipe}'s limit of {tokens.seq_len:,} tokens[/]",
            highlight=False,
        )
        if tokens.rows_over_seq_len:
            console.print(f"  {escape(tokens.handling or '')}", highlight=False)
        for example in tokens.examples_over_seq_len or []:
            console.print(f"  {escape(example)}", highlight=False)
