"""`replica` and `demo`: the tiny stand-in of a catalog model, and the main job run on it end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune.catalog import DEFAULT_MODEL, MODELS
from finetune.cli.common import add_verbose_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replica", help="build the tiny replica of a model (real architecture, small shapes, its own chat template)"
    )
    p.add_argument("--model", default=DEFAULT_MODEL, choices=MODELS)
    p.add_argument("--out", type=Path, help="folder to build into (default: the cache; the path is printed)")
    p.set_defaults(func=cmd_replica)

    p = sub.add_parser("demo", help="train the GLM-4.5-Air LoRA recipe, shrunk to the replica, on the sample data")
    p.add_argument("--runs-root", type=Path, default=Path("runs"))
    p.add_argument("--steps", type=int, default=20)
    add_verbose_arg(p)
    p.set_defaults(func=cmd_demo)


def cmd_replica(args: argparse.Namespace) -> int:
    from finetune.replica.build import build_replica, replica_path

    print(build_replica(args.model, args.out or replica_path(args.model)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from finetune.launch.demo import run_demo

    return run_demo(args.runs_root, args.steps, verbose=args.verbose)
