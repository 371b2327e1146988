"""`launch` (alias `run`): render a recipe into a fresh run directory and start torchrun on this node."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune.catalog import GPUS, JOIN_TIMEOUT_S, MAX_DROPPED_ROWS
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
        "--resume-existing",
        action="store_true",
        help="when --run-dir already holds a run of this recipe, resume it (a finished one: do nothing) instead of "
        "refusing: what a restarted pod or node command wants",
    )
    p.add_argument(
        "--join-timeout",
        type=float,
        default=JOIN_TIMEOUT_S,
        help=f"seconds every node has to arrive before the job is abandoned (default {JOIN_TIMEOUT_S:g})",
    )
    p.add_argument("--max-restarts", type=int, default=0, help="torchrun's elastic restarts of failed workers")
    p.add_argument(
        "--nvme-path",
        type=Path,
        metavar="DIR",
        help="where DeepSpeed swaps to NVMe (recipes with zero3_nvme.json): a folder on fast local NVMe on every node",
    )
    p.add_argument(
        "--stop-grace",
        type=float,
        metavar="SECONDS",
        help="after SIGTERM/SIGINT, how long the trainers may take to finish the step and checkpoint before they "
        "are stopped at once (default: as long as they take; the cluster's own kill timer still applies)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the command and environment; change nothing")
    p.add_argument(
        "--gpu",
        choices=tuple(GPUS),
        help="GPU type of this cluster, for the memory check (default: what nvidia-smi reports, else the recipe's)",
    )
    p.add_argument(
        "--force", action="store_true", help="launch even when the planner says the recipe does not fit this cluster"
    )
    p.add_argument(
        "--skip-format-check",
        action="store_true",
        help="launch without checking that training renders conversations as GLM-4.5 does",
    )
    p.add_argument(
        "--max-dropped-rows",
        type=_share,
        default=MAX_DROPPED_ROWS,
        metavar="SHARE",
        help="the share of training rows the framework may delete for being over its length limit before the "
        f"launch is refused (default {MAX_DROPPED_ROWS:g}, i.e. {MAX_DROPPED_ROWS:.0%}; 1 allows any)",
    )
    add_verbose_arg(p)
    p.set_defaults(func=cmd_launch)


def _share(text: str) -> float:
    problem = argparse.ArgumentTypeError(f"{text!r}: give a share between 0 and 1 (0.05) or a percentage (5%)")
    try:
        value = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise problem from None
    if not 0.0 <= value <= 1.0:
        raise problem
    return value


def cmd_launch(args: argparse.Namespace) -> int:
    from finetune.errors import FinetuneError
    from finetune.launch.dry_run import format_dry_run
    from finetune.launch.plan import plan_launch
    from finetune.launch.run import LaunchOptions, check_memory, run

    if args.resume_existing:
        if args.recipe is None or args.run_dir is None:
            raise FinetuneError("--resume-existing needs a recipe and --run-dir (the run it starts or continues).")
        from finetune.launch.resume import existing_run

        run_dir = args.run_dir.expanduser().resolve()
        found = existing_run(run_dir, args.recipe)
        if found == "finished":
            print(f"{run_dir} holds a finished run of {args.recipe}; nothing to do.")
            return 0
        if found == "resume":
            print(f"{run_dir} holds a run of {args.recipe}: resuming it (its own recipe settings apply)")
            args.recipe, args.resume = None, run_dir
    if (args.recipe is None) == (args.resume is None):
        raise FinetuneError("Name a recipe to start a run, or --resume RUN_DIR to continue one (not both).")
    options = LaunchOptions(
        gpu=args.gpu,
        force=args.force,
        skip_format_check=args.skip_format_check,
        verbose=args.verbose,
        stop_grace=args.stop_grace,
        max_dropped_rows=args.max_dropped_rows,
    )
    plan = plan_launch(launch_request(args))
    check_memory(plan, options)
    if args.dry_run:
        print(format_dry_run(plan))
        return 0
    return run(plan, options)
