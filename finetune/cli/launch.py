"""`launch` (alias `run`): render a recipe into a fresh run directory and start torchrun on this node."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune.catalog import GPUS, JOIN_TIMEOUT_S
from finetune.cli.common import add_render_args, add_topology_args, add_verbose_arg, launch_request
from finetune.cli.tracking import add_tracking_args


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
    add_verbose_arg(p)
    p.set_defaults(func=cmd_launch)


def cmd_launch(args: argparse.Namespace) -> int:
    from finetune.errors import FinetuneError
    from finetune.launch.dry_run import format_dry_run
    from finetune.launch.plan import plan_launch
    from finetune.launch.run import LaunchOptions, check_memory, run

    if (args.recipe is None) == (args.resume is None):
        raise FinetuneError("Name a recipe to start a run, or --resume RUN_DIR to continue one (not both).")
    options = LaunchOptions(
        gpu=args.gpu, force=args.force, skip_format_check=args.skip_format_check, verbose=args.verbose
    )
    plan = plan_launch(launch_request(args))
    check_memory(plan, options)
    if args.dry_run:
        print(format_dry_run(plan))
        return 0
    return run(plan, options)
