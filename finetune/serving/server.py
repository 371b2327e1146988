"""`serve --run`: start the engine, wait until it answers, say where, and stop it cleanly on Ctrl-C.

The engine's own output goes to a log file in the run directory (each start its own file, none overwritten);
`verbose` also streams it. A server that exits, or does not become healthy within the wait, is reported with its
log's tail instead of a hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.launch.process_group import stop_group
from finetune.serving.serve import ServePlan

TAIL_LINES = 40
STOP_GRACE_S = 30


def serve_log_path(run_dir: Path, engine: str) -> Path:
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = logs / f"serve-{engine}-{stamp}.log"
    index = 1
    while path.exists():
        index += 1
        path = logs / f"serve-{engine}-{stamp}-{index}.log"
    return path


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join(lines[-TAIL_LINES:])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to the server's process group (its own clean shutdown), then SIGTERM, then SIGKILL."""
    stop_group(proc, ((signal.SIGINT, STOP_GRACE_S), (signal.SIGTERM, 10), (signal.SIGKILL, 10)))


def run_server(plan: ServePlan, log: Path, *, wait_s: float, verbose: bool = False) -> int:
    """Start the server, block until it stops. 0 when stopped by Ctrl-C / SIGTERM; raises when it fails."""
    if not plan.engine.installed:
        raise FinetuneError(
            f"{plan.engine.engine} is not installed in this checkout's serving environment (.venvs/swift): run "
            "./setup.sh, or run the printed command (`finetune serve` without --run) where it is installed."
        )
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            plan.argv,
            stdout=None if verbose else out,
            stderr=None if verbose else subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the server's whole group ourselves
            env={**os.environ, **plan.env},
        )
    stop_requested = False

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        deadline = time.monotonic() + wait_s
        while not healthy(plan.url):
            if stop_requested:
                _stop(proc)
                print("server stopped before it was ready", file=sys.stderr)
                return 0
            if proc.poll() is not None:
                raise FinetuneError(
                    f"{plan.engine.engine} exited with code {proc.returncode} before it was ready; the end of "
                    f"its log ({log}):\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                _stop(proc)
                raise FinetuneError(
                    f"{plan.engine.engine} did not answer {plan.url}/health within {wait_s:.0f} s (--wait raises "
                    f"it); stopped. The end of its log ({log}):\n{_tail(log)}"
                )
            time.sleep(1)
        print(f"serving {plan.model_name} at {plan.url}/v1 (log: {log}); Ctrl-C stops it", flush=True)
        while proc.poll() is None and not stop_requested:
            time.sleep(0.5)
        if stop_requested:
            _stop(proc)
            print("server stopped", flush=True)
            return 0
        raise FinetuneError(
            f"{plan.engine.engine} exited with code {proc.returncode} while serving; the end of its log "
            f"({log}):\n{_tail(log)}"
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            _stop(proc)
