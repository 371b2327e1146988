"""The launchers of one job, one per node, meeting before training and watching each other during it.

Before torchrun starts, every node's launcher joins a small key-value store on the first node (MASTER_PORT + 1)
within a bounded time, and the nodes compare the hash of the config they rendered: a node that never arrives,
or that rendered something else, stops the job at once with a message naming it. While training runs, each
launcher beats a heartbeat into the store and posts its failure there; the others end their own training
promptly, naming the node that failed and its log, instead of waiting in a collective until a timeout.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from finetune.errors import FinetuneError

STORE_PORT_OFFSET = 1
HEARTBEAT_S = 2.0


@dataclass
class PeerFailure:
    node_rank: int
    reason: str


class NodeGroup:
    """This node's membership in the job: join, heartbeat, report and detect failures."""

    def __init__(self, master_addr: str, master_port: int, nnodes: int, node_rank: int, timeout_s: float):
        from torch.distributed import TCPStore

        self.nnodes, self.node_rank, self.timeout_s = nnodes, node_rank, timeout_s
        self.addr = f"{master_addr}:{master_port + STORE_PORT_OFFSET}"
        try:
            self.store = TCPStore(
                master_addr,
                master_port + STORE_PORT_OFFSET,
                world_size=nnodes,
                is_master=node_rank == 0,
                timeout=timedelta(seconds=timeout_s),
                wait_for_workers=False,
            )
        except Exception as exc:  # connection refused / timed out: the first node is not there
            raise FinetuneError(
                f"Node {node_rank} could not reach node 0 at {self.addr} within {timeout_s:.0f} s ({exc}). Is node 0 "
                "started, and are --master-addr/--master-port the same on every node (both ports open)?"
            ) from exc
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def join(self, config_sha256: str, host: str) -> None:
        """Wait until every node has arrived with the same config; raise naming the absent or different ones."""
        try:
            self._join(config_sha256, host)
        except FinetuneError:
            raise
        except Exception as exc:  # node 0 (the store) went away mid-rendezvous: it refused or failed
            raise FinetuneError(
                f"Node {self.node_rank} lost node 0 during the rendezvous at {self.addr} ({type(exc).__name__}); "
                "node 0's output says why."
            ) from exc

    def _join(self, config_sha256: str, host: str) -> None:
        self.store.set(f"config/{self.node_rank}", config_sha256)
        self.store.set(f"host/{self.node_rank}", host)
        keys = [f"config/{r}" for r in range(self.nnodes)]
        deadline = time.monotonic() + self.timeout_s
        while True:
            arrived = [r for r, key in enumerate(keys) if self.store.check([key])]
            if len(arrived) == self.nnodes:
                break
            if time.monotonic() > deadline:
                missing = sorted(set(range(self.nnodes)) - set(arrived))
                raise FinetuneError(
                    f"Node(s) {', '.join(map(str, missing))} of {self.nnodes} did not join within "
                    f"{self.timeout_s:.0f} s (rendezvous at {self.addr}). Start `finetune launch` on every node with "
                    "the same --nnodes, --master-addr and --master-port, or raise --join-timeout."
                )
            time.sleep(0.2)
        hashes = {r: self.store.get(f"config/{r}").decode() for r in range(self.nnodes)}
        different = sorted(r for r, h in hashes.items() if h != hashes[0])
        if different:
            hosts = {r: self.store.get(f"host/{r}").decode() for r in different}
            raise FinetuneError(
                "Nodes rendered different configs; refusing to start. Node(s) "
                + ", ".join(f"{r} ({hosts[r]})" for r in different)
                + " differ from node 0: use the same recipe, overrides, dataset and repository version everywhere."
            )

    # -- while training ------------------------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    self.store.set(f"alive/{self.node_rank}", str(time.time()))
                except Exception:
                    return

        self.store.set(f"alive/{self.node_rank}", str(time.time()))
        self._beat = threading.Thread(target=beat, daemon=True)
        self._beat.start()

    def report_failure(self, reason: str) -> None:
        try:
            self.store.set(f"failed/{self.node_rank}", reason)
        except Exception:
            pass

    def report_done(self) -> None:
        try:
            self.store.set(f"done/{self.node_rank}", "1")
        except Exception:
            pass

    def peer_failure(self, stale_after_s: float) -> PeerFailure | None:
        """A node that reported a failure, stopped beating (for `stale_after_s`), or took the store with it."""
        try:
            for rank in range(self.nnodes):
                if rank == self.node_rank:
                    continue
                if self.store.check([f"failed/{rank}"]):
                    return PeerFailure(rank, self.store.get(f"failed/{rank}").decode())
                if self.store.check([f"done/{rank}"]):
                    continue
                if self.store.check([f"alive/{rank}"]):
                    age = time.time() - float(self.store.get(f"alive/{rank}").decode())
                    if age > stale_after_s:
                        return PeerFailure(rank, f"no heartbeat for {age:.0f} s (node lost or launcher killed)")
        except Exception as exc:
            return PeerFailure(0, f"the rendezvous store on node 0 is gone ({type(exc).__name__})")
        return None

    def close(self) -> None:
        self._stop.set()
