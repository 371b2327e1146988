"""`python -m finetune`: list, show, validate and launch recipes, and the commands around them.

Each command lives in a module of `finetune.cli` that registers its own subparser; heavy imports stay
inside the command functions so that `--help`, `recipes` and `launch --dry-run` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from finetune.errors import FinetuneError

COMMAND_MODULES = (
    "finetune.cli.recipes",
    "finetune.cli.launch",
    "finetune.cli.replica",
    "finetune.cli.export",
    "finetune.cli.doctor",
    "finetune.cli.prepare",
    "finetune.cli.plan",
    "finetune.cli.bench",
    "finetune.cli.tracking",
    "finetune.cli.check_format",
    "finetune.cli.serve",
    "finetune.cli.chat",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune", description="Fine-tune GLM-4.5 and GLM-4.5-Air with LLaMA-Factory or ms-swift."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FinetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
