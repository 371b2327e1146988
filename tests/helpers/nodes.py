"""Nodes on loopback: separate `finetune launch` processes, each told its NODE_RANK, as on a real cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_node(nproc: int = 1) -> list[str]:
    """`finetune launch` arguments for a job of one node on this machine, on a free port."""
    return [
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
    ]


class Node(subprocess.Popen):
    """A launcher process whose output goes to a file (a pipe nobody reads while it runs would fill and block)."""

    def __init__(self, argv: list[str], **kwargs) -> None:
        self.log = tempfile.TemporaryFile("w+")
        super().__init__(argv, stdout=self.log, stderr=subprocess.STDOUT, text=True, **kwargs)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


def start_node(node_rank: int, nnodes: int, port: int, *args: str) -> Node:
    """`finetune launch ARGS` as node `node_rank` of `nnodes`, one process per node, in a session of its own."""
    env = {
        **os.environ,
        "NNODES": str(nnodes),
        "NODE_RANK": str(node_rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "NPROC_PER_NODE": "1",
        "OMP_NUM_THREADS": "1",
    }
    return Node([sys.executable, "-m", "finetune", "launch", *args], cwd=REPO_ROOT, env=env, start_new_session=True)


def two_nodes(*args: str, timeout: float = 600) -> list[tuple[int, str]]:
    """Both nodes of a two-node launch; (exit code, output) of each once both have ended."""
    port = free_port()
    procs = [start_node(rank, 2, port, *args) for rank in (0, 1)]
    return [(p.wait(timeout=timeout), p.output()) for p in procs]


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (torchrun runs in a session of its own): every process of a job step, as
    Slurm signals them."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out
