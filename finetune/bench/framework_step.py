"""One real LLaMA-Factory or SWIFT run of a recipe on a saved slice, through `finetune launch`, as a record.

The recipe runs as a user runs it (`finetune launch RECIPE --model SLICE_DIR`), on one process, shortened to a
few optimizer steps with one micro-batch each. The device's memory is sampled with nvidia-smi while it runs
(the card's whole use: CUDA context and allocator cache included), and the framework's own per-step log
(LLaMA-Factory `trainer_log.jsonl`, SWIFT `logging.jsonl`) is kept in the record.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

from finetune.bench import measure, records
from finetune.errors import FinetuneError
from finetune.paths import REPO_ROOT

FRAMEWORK_LOGS = ("trainer_log.jsonl", "logging.jsonl")


class DeviceMemorySampler:
    """Peak memory used on GPU 0 as nvidia-smi reports it, sampled every half second in the background."""

    def __init__(self):
        self.peak_mib: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int | None:
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            used = self._sample()
            if used is not None:
                self.peak_mib = max(self.peak_mib or 0, used)
            self._stop.wait(0.5)

    def __enter__(self) -> Self:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _framework_log(run_dir: Path) -> list[dict[str, Any]]:
    for name in FRAMEWORK_LOGS:
        for path in sorted((run_dir / "output").rglob(name)):
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return []


def _slice_summary(slice_dir: Path) -> dict[str, Any]:
    from finetune.bench.slice import STAMP

    stamp = slice_dir / STAMP
    if not stamp.is_file():
        raise FinetuneError(f"--slice {slice_dir}: no {STAMP}; write the slice with `finetune bench-slice`.")
    return json.loads(stamp.read_text())


def run_framework_step(
    recipe_id: str,
    slice_dir: Path,
    run_dir: Path,
    *,
    steps: int = 2,
    out: Path | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Launch `recipe_id` on the slice for `steps` optimizer steps (one process); the record is returned and
    appended to `out`."""
    from finetune.frameworks import get_framework
    from finetune.recipes.overrides import format_override
    from finetune.recipes.recipe import resolve_recipe

    slice_dir = Path(slice_dir).resolve()
    summary = _slice_summary(slice_dir)
    device = measure.detect()
    recipe = resolve_recipe(recipe_id)
    shrink: dict[str, Any] = {
        "max_steps": steps,
        "gradient_accumulation_steps": 1,
        "logging_steps": 1,
        "save_steps": steps,
    }
    if device.kind == "cpu":  # the tiny slice on a CPU: the framework's own CPU settings (fp32, short sequences)
        shrink = get_framework(recipe.framework).cpu_smoke_overrides(steps, recipe.meta) | shrink
    sets = [a for k, v in shrink.items() for a in ("--set", format_override(k, v))]
    sets += [a for o in overrides or [] for a in ("--set", o)]
    argv = [
        sys.executable,
        "-m",
        "finetune",
        "launch",
        recipe.id,
        "--model",
        str(slice_dir),
        "--run-dir",
        str(run_dir),
        "--nnodes",
        "1",
        "--node-rank",
        "0",
        "--nproc-per-node",
        "1",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        *sets,
    ]
    start = time.perf_counter()
    with DeviceMemorySampler() as sampler:
        proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    log = _framework_log(Path(run_dir))
    step_rows = [row for row in log if "loss" in row]
    record = {
        "kind": "framework_step",
        "format": records.FORMAT,
        "created": records.stamp(),
        **device.to_json(),
        "versions": measure.environment(),
        "recipe": recipe.id,
        "framework": recipe.framework,
        "slice": summary,
        "config": {"steps": steps, "overrides": shrink | {"extra": overrides or []}},
        "status": "ok" if proc.returncode == 0 else "error",
        "metrics": {
            "wall_s": wall,
            "peak_device_memory_bytes": sampler.peak_mib * 2**20 if sampler.peak_mib else None,
            "framework_log": log,
            "last_log": json.dumps(step_rows[-1], sort_keys=True) if step_rows else None,
        },
    }
    if proc.returncode != 0:
        record["reason"] = f"exit code {proc.returncode}"
        record["output_tail"] = proc.stdout[-3000:] + proc.stderr[-3000:]
    if out is not None:
        records.append(out, record)
    print(
        f"[{device.kind}] {recipe.id} on {slice_dir.name}: {record['status']} in {wall:.0f} s"
        + (f"\n{record['output_tail']}" if proc.returncode else "")
    )
    return record
