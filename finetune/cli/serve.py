"""`serve RUN_DIR --engine vllm|sglang`: the server command for a trained run (finetune.serving.serve);
`--run` starts it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="print (or --run) the vLLM / SGLang command that serves a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--engine", choices=("vllm", "sglang"), default="vllm")
    p.add_argument("--gpus", type=int, help="tensor parallel size (default: the GPUs nvidia-smi lists, else 8)")
    p.add_argument("--name", help="served model name (default: the run directory's name)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--run", action="store_true", help="start the server instead of printing the command")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import sys

    from finetune.serving.serve import plan_serve

    plan = plan_serve(args.run_dir, args.engine, gpus=args.gpus, name=args.name, host=args.host, port=args.port)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.run:
        print(plan.command)
        return 0
    program = plan.argv[0] if plan.argv[0] != "python" else sys.executable
    os.execvp(program, [program, *plan.argv[1:]])
    return 0  # not reached
