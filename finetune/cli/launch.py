"""`launch` (alias `run`): render a recipe into a fresh run directory and start torchrun on this node."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from finetune.catalog import GPUS, JOIN_TIMEOUT_S
from finetune.cli.common import add_render_args, add_topology_args, launch_request
from finetune.cli.tracking import add_tracking_args

if TYPE_CHECKING:
    from finetune.launch.plan import LaunchPlan


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("launch", aliases=["run"], help="render a recipe into a run directory and start torchrun")
    add_render_args(p, recipe_optional=True)
    add_topology_args(p)
    add_tracking_args(p)
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue RUN_DIR from its newest complete checkpoint (recipe and settings come from it)",
    )
    p.add_argument(
        "--join-timeout",
        type=float,
        default=JOIN_TIMEOUT_S,
        help=f"seconds every node has to arrive before the job is abandoned (default {JOIN_TIMEOUT_S:g})",
    )
    p.add_argument("--max-restarts", type=int, default=0, help="torchrun's elastic restarts of failed workers")
    p.add_argument("--dry-run", action="store_true", help="print the command and environment; change nothing")
    p.add_argument(
        "--gpu", choices=tuple(GPUS), help="GPU type of this cluster, for the memory check (default: the recipe's)"
    )
    p.add_argument(
        "--force", action="store_true", help="launch even when the planner says the recipe does not fit this cluster"
    )
    p.add_argument(
        "--skip-format-check",
        action="store_true",
        help="launch without checking that training renders conversations as GLM-4.5 does",
    )
    p.set_defaults(func=cmd_launch)


def cmd_launch(args: argparse.Namespace) -> int:
    from finetune.errors import FinetuneError
    from finetune.launch.dry_run import format_dry_run
    from finetune.launch.execute import execute
    from finetune.launch.plan import plan_launch

    if (args.recipe is None) == (args.resume is None):
        raise FinetuneError("Name a recipe to start a run, or --resume RUN_DIR to continue one (not both).")
    plan = plan_launch(launch_request(args))
    _check_memory(plan, args)
    if args.dry_run:
        print(format_dry_run(plan))
        return 0
    _check_format(plan, args)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if plan.resume_from is not None:
        for skipped in plan.skipped_checkpoints:
            print(f"skipping incomplete {skipped.path.name}: {skipped.reason}", flush=True)
        print(f"resuming from {plan.resume_from} (attempt {plan.attempt})", flush=True)
    print(f"run directory: {plan.run_dir}\ncommand: {plan.command}", flush=True)
    code = execute(plan)
    status = "finished" if code == 0 else f"failed with exit code {code}"
    print(f"{plan.recipe.id} {status}; run directory: {plan.run_dir}", flush=True)
    return code


def _check_memory(plan: LaunchPlan, args: argparse.Namespace) -> None:
    """Refuse (before anything starts, dry runs too) a recipe the planner says does not fit this cluster."""
    from finetune.errors import FinetuneError
    from finetune.planner import check_fits

    try:
        fit = check_fits(plan, gpu=args.gpu)
    except FinetuneError as exc:
        if not args.force:
            raise
        print(f"warning: --force: launching although the planner says it does not fit:\n{exc}", file=sys.stderr)
        return
    if fit is not None:  # None: a local model of other shapes (the replica), which the planner does not size
        print(
            f"memory: {fit.required_gib:.1f} of {fit.capacity_gib:.1f} GiB per GPU (planner); "
            f"longest sequence {fit.max_seq_len:,} tokens",
            file=sys.stderr,
        )


def _check_format(plan: LaunchPlan, args: argparse.Namespace) -> None:
    """Refuse a run whose trained tokens differ from GLM-4.5's own format (finetune check-format)."""
    from finetune.errors import FinetuneError
    from finetune.glm.format_check import check_format

    if args.skip_format_check:
        print("warning: --skip-format-check: the training format was NOT compared with GLM-4.5's", file=sys.stderr)
        return
    report = check_format(plan.recipe, plan.config)
    if report.trained_mismatch:
        raise FinetuneError(report.summary() + "\n(--skip-format-check launches anyway)")
    print(report.summary(), file=sys.stderr)
