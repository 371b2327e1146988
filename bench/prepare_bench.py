"""Benchmark `finetune prepare` on a large generated dataset: rows per second and peak memory.

Generates a JSONL file of N conversations (default 1,000,000, about 1 GB) mixing the layouts `prepare` reads:
OpenAI messages with tools, parallel tool calls and reasoning, ShareGPT with function_call/observation turns,
and Alpaca with history. Then runs `python -m finetune prepare` on it in a child process without token
statistics, and reports wall time, rows/s and the child's peak RSS as a markdown table.

    .venv/bin/python bench/prepare_bench.py                  # 1,000,000 rows in a temporary folder
    .venv/bin/python bench/prepare_bench.py --rows 20000     # a quick run
    .venv/bin/python bench/prepare_bench.py --input big.jsonl --keep
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

WORDS = (  # noqa: SIM905 - a sentence of words reads better than a list literal
    "the a model data token batch gradient layer expert router attention memory cluster node GPU train loss "
    "learning rate schedule warmup checkpoint adapter rank weight bias sequence length context window prompt "
    "answer question weather city price order stock calendar meeting report summary table chart number value "
    "error retry request response server client cache queue stream file folder path user assistant system tool "
    "quickly carefully exactly roughly about over under between after before during while because although"
).split()

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Status of an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "items": {"type": "boolean"}},
                "required": ["order_id"],
            },
        },
    },
]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n)).capitalize() + "."


def _row(i: int, rng: random.Random) -> dict:
    """One conversation; the mix cycles through five shapes so every layout and feature is exercised."""
    shape = i % 20
    q = f"[{i}] " + _text(rng, rng.randint(8, 30))
    if shape < 5:  # OpenAI chat with a system prompt, two exchanges
        return {
            "messages": [
                {"role": "system", "content": _text(rng, 12)},
                {"role": "user", "content": q},
                {"role": "assistant", "content": _text(rng, rng.randint(20, 60))},
                {"role": "user", "content": _text(rng, 12)},
                {"role": "assistant", "content": _text(rng, 30)},
            ]
        }
    if shape < 10:  # OpenAI tool calling, parallel calls, string arguments, call ids
        calls = [
            {
                "id": f"c{i}_{k}",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": json.dumps({"city": rng.choice(WORDS), "unit": "celsius"}),
                },
            }
            for k in range(2)
        ]
        return {
            "tools": TOOLS,
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": "", "tool_calls": calls},
                {"role": "tool", "tool_call_id": f"c{i}_0", "content": json.dumps({"temp": rng.randint(-5, 35)})},
                {"role": "tool", "tool_call_id": f"c{i}_1", "content": json.dumps({"temp": rng.randint(-5, 35)})},
                {"role": "assistant", "content": _text(rng, rng.randint(20, 60))},
            ],
        }
    if shape < 13:  # OpenAI reasoning: reasoning_content and inline think blocks
        return {
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "reasoning_content": _text(rng, 30), "content": _text(rng, 25)},
                {"role": "user", "content": _text(rng, 10)},
                {"role": "assistant", "content": f"<think>\n{_text(rng, 35)}\n</think>\n\n{_text(rng, 25)}"},
            ]
        }
    if shape < 17:  # ShareGPT with LLaMA-Factory's function_call / observation turns
        call = json.dumps([{"name": "lookup_order", "arguments": {"order_id": f"A-{i}", "items": True}}])
        return {
            "tools": TOOLS,
            "conversations": [
                {"from": "system", "value": _text(rng, 10)},
                {"from": "human", "value": q},
                {"from": "function_call", "value": call},
                {"from": "observation", "value": json.dumps({"status": "shipped", "eta": "2025-03-01"})},
                {"from": "gpt", "value": _text(rng, rng.randint(20, 70))},
            ],
        }
    return {  # Alpaca with history
        "instruction": q,
        "input": _text(rng, 15),
        "output": _text(rng, rng.randint(30, 70)),
        "history": [[_text(rng, 12), _text(rng, 30)]],
    }


def generate(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as f:
        for i in range(rows):
            f.write(json.dumps(_row(i, rng), ensure_ascii=False))
            f.write("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--input", type=Path, help="benchmark this file instead of generating one")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and the prepared dataset")
    parser.add_argument("--workdir", type=Path, help="where to generate and prepare (default: a temporary folder)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="prepare-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = args.input
    if source is None:
        source = workdir / f"bench-{args.rows}.jsonl"
        if not source.is_file():
            started = time.monotonic()
            generate(source, args.rows)
            print(
                f"generated {args.rows:,} rows ({source.stat().st_size / 1e9:.2f} GB) in "
                f"{time.monotonic() - started:.0f} s: {source}",
                file=sys.stderr,
            )
    with open(source, "rb") as f:
        rows = sum(1 for _ in f)
    command = [
        sys.executable,
        "-m",
        "finetune",
        "prepare",
        str(source),
        "--name",
        "bench",
        "--out-root",
        str(workdir / "prepared"),
        "--no-token-stats",
        "--quiet",
        "--force",
    ]
    started = time.monotonic()
    proc = subprocess.run(
        command,
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return proc.returncode
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    manifest = json.loads((workdir / "prepared" / "bench" / "manifest.json").read_text())
    written = sum(v["bytes"] for v in manifest["outputs"].values())
    size = source.stat().st_size
    print("| rows | input | wall time | rows/s | input MB/s | peak RSS | written | CPUs |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {rows:,} | {size / 1e9:.2f} GB | {seconds:.1f} s | {rows / seconds:,.0f} | {size / 1e6 / seconds:.1f} "
        f"| {peak_mib:,.0f} MiB | {written / 1e9:.2f} GB | {os.cpu_count()} |"
    )
    print(
        f"kept {manifest['counts']['kept']:,}, rejected {manifest['counts']['rejected']:,}, "
        f"layouts {manifest['statistics']['layouts']}",
        file=sys.stderr,
    )
    if not args.keep and args.workdir is None:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
