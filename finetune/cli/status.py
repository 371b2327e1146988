"""`status RUN_DIR`: whether a run is running, stopped (resumable), finished or failed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="how a run stands: running, stopped, finished or failed, and what to do next")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from finetune.launch.status import describe, run_status

    status = run_status(args.run_dir)
    print(json.dumps(status.as_dict()) if args.json else describe(status))
    return 0
