"""`plan`: does a recipe fit a cluster, up to which sequence length, with how much host RAM, how fast."""

from __future__ import annotations

import argparse

from finetune.catalog import GPUS
from finetune.cli.common import add_render_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="per-GPU memory, verdict, longest sequence and speed of a recipe on a cluster")
    add_render_args(p)
    g = p.add_argument_group("cluster (default: the recipe's own)")
    g.add_argument("--nodes", type=int, help="number of nodes")
    g.add_argument("--gpus-per-node", type=int, help="GPUs per node")
    g.add_argument("--gpu", choices=tuple(GPUS), help="GPU type")
    p.add_argument("--seq-len", type=int, help="plan this sequence length instead of the recipe's")
    p.add_argument("--tokens", type=float, help="training tokens (e.g. 2e9): hours at the throughput range")
    p.add_argument(
        "--reserve",
        type=float,
        default=1.2,
        help="reserve factor on activations and logits for the verdict (default 1.2)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from finetune.planner import plan_recipe
    from finetune.planner.report import render_json, render_text

    plan = plan_recipe(
        args.recipe,
        args.overrides,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        gpu=args.gpu,
        seq_len=args.seq_len,
        reserve=args.reserve,
        tokens=args.tokens,
        model=args.model,
        dataset=args.dataset,
    )
    print(render_json(plan) if args.json else render_text(plan), end="\n" if args.json else "")
    return 0
