"""wandb tracking on the command line: the `launch` flags, and `sync RUN_DIR` for runs logged offline."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finetune.tracking.settings import TrackingFlags


def add_tracking_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "wandb tracking (defaults: WANDB_PROJECT, WANDB_ENTITY, WANDB_RUN_GROUP, WANDB_TAGS, WANDB_MODE, "
        "WANDB_NAME, then the user config file; see docs/tracking.md)"
    )
    g.add_argument("--wandb-project", metavar="P", help="track the run in this wandb project (turns tracking on)")
    g.add_argument("--wandb-entity", metavar="E", help="wandb team or user")
    g.add_argument("--wandb-group", metavar="G", help="wandb group (default: the run directory's name)")
    g.add_argument("--wandb-tags", metavar="A,B", help="comma-separated wandb tags")
    g.add_argument(
        "--wandb-mode",
        choices=("online", "offline", "disabled"),
        help="offline: log to RUN_DIR/wandb only, upload later with `finetune sync RUN_DIR`",
    )
    g.add_argument("--run-name", metavar="N", help="wandb run name (default: <model>-<method>-<dataset>-<time>)")
    g.add_argument("--no-wandb", action="store_true", help="no wandb at all, whatever the environment says")


def tracking_flags(args: argparse.Namespace) -> TrackingFlags:
    """The TrackingFlags an argparse namespace holds (commands without the flags give none)."""
    from finetune.tracking.settings import TrackingFlags

    return TrackingFlags(
        project=getattr(args, "wandb_project", None),
        entity=getattr(args, "wandb_entity", None),
        group=getattr(args, "wandb_group", None),
        tags=getattr(args, "wandb_tags", None),
        run_name=getattr(args, "run_name", None),
        mode=getattr(args, "wandb_mode", None),
        disabled=getattr(args, "no_wandb", False),
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sync", help="upload a run's offline wandb data (runs launched with --wandb-mode offline)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; upload nothing")
    p.add_argument("--all", action="store_true", help="also upload runs already synced")
    p.set_defaults(func=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    from finetune.tracking.sync import runs_to_sync, sync_command, wandb_executable

    runs = runs_to_sync(args.run_dir, include_synced=args.all)
    if not runs:
        print(f"{args.run_dir}: every offline run is already synced (--all uploads them again).")
        return 0
    for run in runs:
        state = "synced" if run.synced else "not synced"
        print(f"{run.path.name}: {run.project}/{run.id} `{run.name}`, {run.rows} history rows, {state}")
    command = sync_command(wandb_executable(args.run_dir), runs, dry_run=args.dry_run, include_synced=args.all)
    print("running: " + " ".join(command), flush=True)
    return subprocess.run(command).returncode
