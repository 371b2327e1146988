"""Wall time of `finetune launch --dry-run` and `finetune plan` from a cold start, each run in a fresh process.

Users run both often; the target is under 3 s each. Two caches decide the cost (both under the cache folder,
`FINETUNE_CACHE`): `checks/` holds the framework parser's verdict on a rendered config (a miss runs the
framework's own argument parser in its environment, which imports the framework), and `plan/` the parameter
counts of a model + LoRA (a miss imports torch, transformers and PEFT and builds the model on the meta device).
Every scenario runs in a temporary cache folder prepared for it, so the user's cache is never touched:

  first-ever    empty cache: what the very first run on a machine (or after an upgrade) costs
  checks miss   parameter counts cached, parser verdict not (a new config or override)
  counts miss   parser verdict cached, parameter counts not
  repeat        both cached: every later run

    .venv/bin/python bench/startup_time.py              # 3 runs per scenario, markdown table
    .venv/bin/python bench/startup_time.py --runs 5 --importtime   # plus the slowest imports of a cold run
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 3.0
COMMANDS = {
    "launch --dry-run": [
        "launch",
        "llamafactory/glm45_lora_16xh100",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--run-dir",
        "/tmp/finetune-startup-never-written",
        "--dry-run",
    ],
    "plan": ["plan", "llamafactory/glm45_lora_16xh100"],
}
SCENARIOS = {  # scenario -> cache subfolders removed before each timed run (after a warming run)
    "first-ever": None,
    "checks miss": ("checks",),
    "counts miss": ("plan",),
    "repeat": (),
}


def run_once(args: list[str], cache: Path, extra: tuple[str, ...] = ()) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "FINETUNE_CACHE": str(cache)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *extra, "-m", "finetune", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"`finetune {' '.join(args)}` failed:\n{proc.stderr[-2000:]}")
    return seconds, proc


def time_scenario(args: list[str], removed: tuple[str, ...] | None, runs: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory(prefix="finetune-startup-") as tmp:
        cache = Path(tmp) / "cache"
        if removed is not None:
            run_once(args, cache)  # warm both caches
        for _ in range(runs):
            if removed is None:
                shutil.rmtree(cache, ignore_errors=True)
            else:
                for sub in removed:
                    shutil.rmtree(cache / sub, ignore_errors=True)
            times.append(run_once(args, cache)[0])
    return times


def importtime(args: list[str], top: int) -> list[tuple[float, str]]:
    """The slowest imports (cumulative seconds) of a first-ever run in the launcher's own process."""
    with tempfile.TemporaryDirectory(prefix="finetune-startup-") as tmp:
        _, proc = run_once(args, Path(tmp) / "cache", ("-X", "importtime"))
    rows = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if match and len(match.group(2)) <= 3:  # top-level and first-level imports only
            rows.append((int(match.group(1)) / 1e6, match.group(3)))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per command and scenario")
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports of a cold run")
    args = parser.parse_args()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"{args.runs} fresh processes per row; target < {TARGET_S:g} s.\n"
    )
    print("| command | cache | median s | min s | max s | under 3 s |")
    print("|---|---|---|---|---|---|")
    for name, command in COMMANDS.items():
        for scenario, removed in SCENARIOS.items():
            if name == "plan" and scenario == "checks miss":
                continue  # `plan` renders without the parser check
            times = time_scenario(command, removed, args.runs)
            median = statistics.median(times)
            print(
                f"| `finetune {name}` | {scenario} | {median:.2f} | {min(times):.2f} | {max(times):.2f} "
                f"| {'yes' if median < TARGET_S else 'NO'} |",
                flush=True,
            )
    if args.importtime:
        for name, command in COMMANDS.items():
            print(f"\nSlowest imports of a first-ever `finetune {name}` (cumulative s, launcher process only):\n")
            for seconds, module in importtime(command, 12):
                print(f"    {seconds:6.2f}  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
