"""`finetune` (or `python -m finetune`): list, show, validate and launch recipes, and the commands around them.

The argparse front only: each command lives in a module of this package that registers its own subparser and
calls into the package that does the work; heavy imports stay inside the command functions so that `--help`,
`recipes`, `plan` and `launch --dry-run` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from finetune.errors import FinetuneError

COMMAND_MODULES = (
    "finetune.cli.recipes",
    "finetune.cli.models",
    "finetune.cli.launch",
    "finetune.cli.status",
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
        prog="finetune", description="Fine-tune GLM-4.5 and GLM-4.5-Air with LLaMA-Factory or ms-swift."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from finetune.cli.bench import legacy_argv

    args = build_parser().parse_args(legacy_argv(sys.argv[1:] if argv is None else list(argv)))
    try:
        return args.func(args)
    except FinetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
