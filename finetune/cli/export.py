"""`export RUN_DIR`: merge a LoRA run into a full model folder for transformers, vLLM and SGLang."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="merge a LoRA run into a full model (through the framework that trained it)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="where to write the model (default: RUN_DIR/merged); never overwritten")
    p.add_argument(
        "--unfinished",
        action="store_true",
        help="export a run that stopped or failed, from its newest complete checkpoint (refused otherwise)",
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from finetune.serving.export import export_run

    result = export_run(args.run_dir, args.out, unfinished=args.unfinished)
    print(f"merged {result.weights} into {result.out}")
    return 0
