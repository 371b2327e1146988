"""`export RUN_DIR`: merge a LoRA run into a full model folder for transformers, vLLM and SGLang; or, with
--adapter-format, write its adapter on the routed experts in the layout an engine loads."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune.serving.expert_adapter import LAYOUTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="merge a LoRA run into a full model (through the framework that trained it)")
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--out",
        type=Path,
        help="where to write the model (default: RUN_DIR/merged, or RUN_DIR/adapter-FORMAT); never overwritten",
    )
    p.add_argument(
        "--unfinished",
        action="store_true",
        help="export a run that stopped or failed, from its newest complete checkpoint (refused otherwise)",
    )
    p.add_argument(
        "--adapter-format",
        choices=LAYOUTS,
        help="instead of merging, write the adapter (LoRA on the routed experts) in this layout to "
        "RUN_DIR/adapter-FORMAT: per-expert for vLLM --enable-lora and SGLang, fused for transformers + PEFT >= "
        "0.19.1; the merged model (the default) loads everywhere",
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if args.adapter_format:
        from finetune.serving.expert_adapter import ENGINES
        from finetune.serving.export import export_adapter

        done = export_adapter(args.run_dir, args.adapter_format, args.out, unfinished=args.unfinished)
        print(f"wrote the {done.layout} adapter of {done.weights} to {done.out}")
        print(f"loads in: {ENGINES[done.layout]}")
        print(f"on its base model {done.base_model}; the merged model (`finetune export RUN_DIR`) loads anywhere")
        return 0
    from finetune.serving.export import export_run

    result = export_run(args.run_dir, args.out, unfinished=args.unfinished)
    print(f"merged {result.weights} into {result.out}")
    return 0
