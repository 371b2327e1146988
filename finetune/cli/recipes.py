"""`recipes` (alias `ls`), `show` and `validate`: the catalog and one recipe, resolved and checked."""

from __future__ import annotations

import argparse
import json
import sys

from finetune.cli.common import add_render_args, launch_request


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipes", aliases=["ls"], help="list recipes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--sync-headers", action="store_true", help="regenerate every recipe's comment header")
    p.add_argument(
        "--sync",
        action="store_true",
        help="write the recipes derived in recipes/variants.yaml, then every header and the README's rows",
    )
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("show", help="print one recipe, resolved (no checks run)")
    add_render_args(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("validate", help="check a recipe (with overrides) with the framework's own parser")
    add_render_args(p, recipe_optional=True)
    p.add_argument(
        "--all", action="store_true", help="check every recipe of the catalog (one framework import per framework)"
    )
    p.set_defaults(func=cmd_validate)


def catalog_rows() -> list[dict]:
    from finetune.frameworks import get_framework
    from finetune.recipes.generate import claims
    from finetune.recipes.recipe import all_recipes

    generated = claims()
    return [
        {
            "id": r.id,
            "path": str(r.path),
            "framework": r.framework,
            "model": r.meta.model,
            "method": r.meta.method,
            "nodes": r.meta.nodes,
            "gpus_per_node": r.meta.gpus_per_node,
            "gpu": r.meta.gpu,
            "seq_len": get_framework(r.framework).recipe_setup(r).max_length,
            "lora_adapts": r.meta.lora_adapts,
            "title": r.meta.title,
            "generated_from": generated.get(r.path),
        }
        for r in all_recipes()
    ]


def _sync_headers() -> None:
    from finetune.planner.headers import sync_header
    from finetune.recipes.recipe import all_recipes

    for recipe in all_recipes():
        if sync_header(recipe):
            print(f"updated {recipe.path}")


def _sync_derived() -> None:
    """Bodies first (a header is planned from its recipe), then every header, then the README's rows."""
    from finetune.recipes.generate import claims, write_derived
    from finetune.recipes.readme_table import README, sync_readme
    from finetune.recipes.variants import all_variants

    claimed = {f"{path.parent.name}/{path.stem}" for path in claims()}  # rows of files --sync may remove
    for change in write_derived():
        print(change)
    _sync_headers()
    if sync_readme(all_variants(), drop=claimed):
        print(f"updated {README}")


def cmd_recipes(args: argparse.Namespace) -> int:
    if args.sync:
        _sync_derived()
        return 0
    if args.sync_headers:
        _sync_headers()
        return 0
    rows = catalog_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Recipes")
    for col in ("id", "model", "method", "cluster", "seq len"):
        table.add_column(col, no_wrap=True)
    table.add_column("what it trains")
    for r in rows:
        cluster = f"{r['nodes']} x {r['gpus_per_node']} {r['gpu']}"
        table.add_row(r["id"], r["model"], r["method"], cluster, f"{r['seq_len']:,}", r["title"])
    Console(width=max(Console().width, 120)).print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from finetune.launch.plan import CONFIG_NAME, plan_launch

    plan = plan_launch(launch_request(args), check=False, preview=True)
    print(plan.recipe.header, end="")
    print(f"# resolved {plan.framework.display_name} config ({plan.recipe.path}):")
    print(plan.files[CONFIG_NAME].split("\n", 1)[1], end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from finetune.errors import FinetuneError
    from finetune.launch.plan import check_together, plan_launch
    from finetune.recipes.recipe import all_recipes

    if bool(args.recipe) == args.all:
        raise FinetuneError("validate: name one recipe, or pass --all for every recipe of the catalog.")
    request = launch_request(args)
    if not args.all:
        requests = [request]
    else:
        requests = [replace(request, recipe=recipe.id) for recipe in all_recipes()]
        check_together(requests)
    rejected = 0
    for req in requests:
        try:
            plan = plan_launch(req, preview=True)
        except FinetuneError as exc:
            if not args.all:
                raise
            rejected += 1
            print(f"error: {req.recipe}: {exc}", file=sys.stderr)
            continue
        for warning in plan.warnings:
            print(f"warning: {warning}")
        print(f"{plan.recipe.id}: {plan.framework.display_name} accepts the rendered config.")
    if rejected:
        print(f"{rejected} of {len(requests)} recipes rejected.", file=sys.stderr)
        return 1
    return 0
