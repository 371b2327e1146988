"""`check-format RECIPE`: does the recipe train its model on the text it is served with? (finetune.glm.format_check)"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-format", help="compare a recipe's training text and loss mask with its model's official rendering"
    )
    p.add_argument("recipe", help="recipe id, e.g. llamafactory/glm45-air_lora_4xh100")
    p.add_argument("--dataset", help="a prepared dataset to check (default: conversations covering the format)")
    p.add_argument("--model", type=Path, help="model folder whose chat template is the reference (default: replica)")
    p.add_argument("--rows", type=int, default=64, help="rows of --dataset to check (default 64)")
    p.add_argument("--no-cache", action="store_true", help="render again even when an answer is cached")
    p.set_defaults(func=cmd_check_format)


def cmd_check_format(args: argparse.Namespace) -> int:
    from finetune.glm.format_check import check_format
    from finetune.prepare.datasets import resolve_dataset
    from finetune.recipes.recipe import resolve_recipe

    recipe = resolve_recipe(args.recipe)
    dataset = resolve_dataset(args.dataset) if args.dataset else None
    report = check_format(
        recipe, dataset=dataset, tokenizer_dir=args.model, limit=args.rows, use_cache=not args.no_cache
    )
    print(report.summary())
    if not report.skipped:
        print(report.verdict())  # the last line says it, whatever came before
    return 1 if report.trained_mismatch else 0
