"""The torchrun topology of one launch: flags first, then the usual environment variables, then the recipe."""

from __future__ import annotations

import os
from dataclasses import dataclass

from finetune.errors import FinetuneError

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class Topology:
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    nproc_per_node: int

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    def torchrun_args(self, *, rdzv_id: str, join_timeout: float, max_restarts: int = 0) -> list[str]:
        """torchrun's options: the c10d store on the first node (MASTER_ADDR:MASTER_PORT), a bounded join timeout.

        The node ranks are the user's (node 0 holds global rank 0, so it logs and saves): torchrun's dynamic
        rendezvous would number nodes by host name instead. The launchers have already met and compared configs
        (finetune/launch/rendezvous.py), so this rendezvous completes at once; its timeout bounds a node lost in
        between.
        """
        options = {
            "--nnodes": self.nnodes,
            "--node-rank": self.node_rank,
            "--nproc-per-node": self.nproc_per_node,
            "--master-addr": self.master_addr,
            "--master-port": self.master_port,
            "--rdzv-id": rdzv_id,
            "--rdzv-conf": f"timeout={int(join_timeout)}",
            "--max-restarts": max_restarts,
        }
        return [item for flag, value in options.items() for item in (flag, str(value))]


def _first(*values: object) -> str | None:
    for value in values:
        if value is not None and value != "":
            return str(value)
    return None


def resolve_topology(
    *,
    nnodes: int | None,
    node_rank: int | None,
    master_addr: str | None,
    master_port: int | None,
    nproc_per_node: int | None,
    recipe_nodes: int,
    recipe_gpus_per_node: int,
    environ: dict[str, str] | None = None,
) -> Topology:
    env = os.environ if environ is None else environ
    try:
        topo = Topology(
            nnodes=int(_first(nnodes, env.get("NNODES"), recipe_nodes)),
            node_rank=int(_first(node_rank, env.get("NODE_RANK"), 0)),
            master_addr=_first(master_addr, env.get("MASTER_ADDR")) or "",
            master_port=int(_first(master_port, env.get("MASTER_PORT"), DEFAULT_MASTER_PORT)),
            nproc_per_node=int(_first(nproc_per_node, env.get("NPROC_PER_NODE"), recipe_gpus_per_node)),
        )
    except ValueError as exc:
        raise FinetuneError(f"NNODES, NODE_RANK, MASTER_PORT and NPROC_PER_NODE must be integers ({exc}).") from exc
    if not topo.master_addr:
        if topo.nnodes > 1:
            raise FinetuneError(
                f"A {topo.nnodes}-node launch needs the first node's address: pass --master-addr ADDR "
                "(or set MASTER_ADDR) on every node."
            )
        topo = Topology(topo.nnodes, topo.node_rank, "127.0.0.1", topo.master_port, topo.nproc_per_node)
    if not 0 <= topo.node_rank < topo.nnodes:
        raise FinetuneError(f"--node-rank {topo.node_rank} is outside 0..{topo.nnodes - 1} for --nnodes {topo.nnodes}.")
    if topo.nnodes < 1 or topo.nproc_per_node < 1:
        raise FinetuneError("--nnodes and --nproc-per-node must be at least 1.")
    return topo
