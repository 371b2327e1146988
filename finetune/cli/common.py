"""Arguments shared by the commands that render a recipe (show, validate, launch, plan, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from finetune.catalog import JOIN_TIMEOUT_S

if TYPE_CHECKING:
    from finetune.launch.plan import LaunchRequest


def add_render_args(p: argparse.ArgumentParser, *, recipe_optional: bool = False) -> None:
    p.add_argument(
        "recipe",
        nargs="?" if recipe_optional else None,
        help="recipe id (see `recipes`), unique name, or path to a recipe file",
    )
    p.add_argument("--model", help="local checkpoint folder or hub id (default: the recipe model's hub id)")
    p.add_argument("--dataset", help="dataset name registered in data/ (default: the recipe's sample dataset)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a framework config key (repeatable); KEY=null drops the key",
    )


def add_verbose_arg(
    p: argparse.ArgumentParser,
    help: str = "show the frameworks' full output (default: progress lines; the whole output is in RUN_DIR/logs/)",
) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help=help)


def add_topology_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "cluster (defaults: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, NPROC_PER_NODE, then the recipe)"
    )
    g.add_argument("--nnodes", type=int)
    g.add_argument("--node-rank", type=int)
    g.add_argument("--master-addr")
    g.add_argument("--master-port", type=int)
    g.add_argument("--nproc-per-node", type=int)
    p.add_argument("--run-dir", type=Path, help="run directory (default: runs/<recipe>-<time>); never overwritten")
    p.add_argument("--runs-root", type=Path, default=Path("runs"), help="where default run directories go")


def launch_request(args: argparse.Namespace) -> LaunchRequest:
    """The LaunchRequest an argparse namespace describes (topology fields are optional)."""
    from finetune.cli.tracking import tracking_flags
    from finetune.launch.plan import LaunchRequest

    return LaunchRequest(
        recipe=args.recipe,
        model=args.model,
        dataset=args.dataset,
        overrides=tuple(args.overrides),
        run_dir=getattr(args, "run_dir", None),
        runs_root=getattr(args, "runs_root", Path("runs")),
        nnodes=getattr(args, "nnodes", None),
        node_rank=getattr(args, "node_rank", None),
        master_addr=getattr(args, "master_addr", None),
        master_port=getattr(args, "master_port", None),
        nproc_per_node=getattr(args, "nproc_per_node", None),
        resume=getattr(args, "resume", None),
        join_timeout=getattr(args, "join_timeout", JOIN_TIMEOUT_S),
        max_restarts=getattr(args, "max_restarts", 0),
        nvme_path=getattr(args, "nvme_path", None),
        tracking=tracking_flags(args),
    )
