"""`finetune serve RUN_DIR --run` as a user starts and stops it, and plain HTTP to the server it starts (vLLM's CPU
build in these tests): shared by the serving tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.helpers.nodes import free_port

SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
START_WAIT_S = 300


def start_server(run_dir: Path, *extra: str) -> subprocess.Popen:
    """`finetune serve RUN_DIR --run`, as a user starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "finetune", "serve", str(run_dir), "--run", "--port", str(free_port()), *extra],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **SERVER_ENV},
    )


def ready_url(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()  # the launcher prints one line once the server answers (bounded by --wait)
    assert line.startswith("serving "), line + proc.stderr.read()[-3000:]
    return line.split(" at ")[1].split()[0].removesuffix("/v1")


def stop_servers(*procs: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops it: each must stop its engine and exit 0."""
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    ended = [(proc, *proc.communicate(timeout=90)) for proc in procs]
    for proc, out, err in ended:
        assert proc.returncode == 0, err[-3000:]
        assert "server stopped" in out


@contextmanager
def serving(run_dir: Path, *extra: str):
    proc = start_server(run_dir, *extra)
    try:
        yield ready_url(proc)
    finally:
        stop_servers(proc)


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        url.rstrip("/") + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
