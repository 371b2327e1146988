"""`serve RUN_DIR --engine vllm|sglang`: the server command for a trained run (finetune.serving.serve);
`--run` starts it, waits until it answers and stops it on Ctrl-C (finetune.serving.server)."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune.cli.common import add_verbose_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="print (or --run) the vLLM / SGLang command that serves a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--engine", choices=("vllm", "sglang"), default="vllm")
    p.add_argument(
        "--gpus",
        type=int,
        help="tensor parallel size (default: the recipe's GPUs per node, at most the GPUs nvidia-smi lists)",
    )
    p.add_argument("--name", help="served model name (default: the run directory's name)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--max-model-len", type=int, help="longest prompt + reply the server accepts (default: the model's)")
    p.add_argument("--run", action="store_true", help="start the server instead of printing the command")
    p.add_argument(
        "--wait", type=float, default=900.0, help="seconds to wait for the server to answer before giving up (--run)"
    )
    add_verbose_arg(p, "stream the engine's own output (--run; it always goes to RUN_DIR/logs/serve-*.log)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import sys

    from finetune.serving.serve import ExpertAdapter, check_engine_args, plan_serve

    def make_plan():
        return plan_serve(
            args.run_dir,
            args.engine,
            gpus=args.gpus,
            name=args.name,
            host=args.host,
            port=args.port,
            max_model_len=args.max_model_len,
        )

    try:
        plan = make_plan()
    except ExpertAdapter as refused:  # never the adapter itself: its merged model, made once
        from finetune.serving.export import export_run

        print(f"note: {refused}; serving its merged model instead (finetune export {args.run_dir})", file=sys.stderr)
        merged = export_run(args.run_dir)
        print(f"note: merged into {merged.out}", file=sys.stderr)
        plan = make_plan()
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if plan.engine.installed:
        check_engine_args(plan)
    else:
        print(
            f"note: {args.engine} is not installed here (./setup.sh puts vLLM into .venvs/swift); the command is "
            "not checked against its argument parser",
            file=sys.stderr,
        )
    if not args.run:
        print(plan.command)
        return 0
    from finetune.serving.server import run_server, serve_log_path

    return run_server(plan, serve_log_path(args.run_dir.resolve(), args.engine), wait_s=args.wait, verbose=args.verbose)
