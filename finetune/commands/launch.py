"""`launch` (alias `run`): render a recipe into a fresh run directory and start torchrun on this node."""

from __future__ import annotations

import argparse
import sys

from finetune.commands.common import add_render_args, add_topology_args, launch_request


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("launch", aliases=["run"], help="render a recipe into a run directory and start torchrun")
    add_render_args(p)
    add_topology_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the command and environment; change nothing")
    p.set_defaults(func=cmd_launch)


def cmd_launch(args: argparse.Namespace) -> int:
    from finetune.launch import execute, format_dry_run, plan_launch

    plan = plan_launch(launch_request(args))
    if args.dry_run:
        print(format_dry_run(plan))
        return 0
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"run directory: {plan.run_dir}\ncommand: {plan.command}", flush=True)
    code = execute(plan)
    status = "finished" if code == 0 else f"failed with exit code {code}"
    print(f"{plan.recipe.id} {status}; run directory: {plan.run_dir}", flush=True)
    return code
