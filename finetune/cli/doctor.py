"""`doctor [RECIPE]`: check this node before a long job (environments, GPUs, network, storage, disk)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check this node before a long job and say how to fix what is wrong")
    p.add_argument("recipe", nargs="?", help="the recipe you are about to run (sizes the GPU and disk checks)")
    p.add_argument("--runs-root", type=Path, default=Path("runs"), help="where the run directories will go")
    p.add_argument("--nnodes", type=int, default=1, help="nodes in the job (for the shared-storage check)")
    p.add_argument(
        "--nvme-path", type=Path, help="the NVMe folder a zero3_nvme recipe will swap to (launch --nvme-path)"
    )
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from finetune.launch.doctor import run_checks
    from finetune.recipes.recipe import resolve_recipe

    recipe = resolve_recipe(args.recipe) if args.recipe else None
    findings = run_checks(recipe, args.runs_root.resolve(), args.nnodes, nvme_path=args.nvme_path)
    table = Table(title=f"finetune doctor{f' for {recipe.id}' if recipe else ''}")
    for column in ("check", "status", "what was found", "how to fix"):
        table.add_column(column)
    style = {"ok": "green", "warn": "yellow", "fail": "red"}
    for f in findings:
        table.add_row(f.check, f"[{style[f.status]}]{f.status}[/]", f.detail, f.fix)
    Console(width=max(Console().width, 140)).print(table)
    return 1 if any(f.status == "fail" for f in findings) else 0
