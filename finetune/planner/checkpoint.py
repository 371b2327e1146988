"""What a checkpoint costs and how long a stop needs: its size, its write time, and one step plus that.

Size, whole run: a LoRA checkpoint holds the adapter and its Adam states (4 + 12 bytes per trainable parameter);
a full-parameter one the bf16 model (2 bytes per parameter; DeepSpeed gathers it on save) plus the fp32 master
weights and Adam moments (12), unless the config saves the model only (save_only_model / no_save_optim). Write
time: every node writes its ranks' shards at STORAGE_GBPS (an assumed shared-storage speed; measure yours), the
gathered model goes through one node (Megatron's distributed checkpoint is written by every rank). A stop on
request finishes the step it is in, then saves: the Slurm signal lead (`--signal=B:USR1@N`) or Kubernetes' grace
period must cover the slowest step plus the write.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.planner.memory import PlanInputs
from finetune.planner.throughput import Throughput

STORAGE_GBPS = 1.0  # GB/s each node writes to the run directory's storage (assumed)


@dataclass(frozen=True)
class StopCost:
    checkpoint_bytes: float
    write_s: float
    step_s: tuple[float, float]  # (fastest, slowest) optimizer step
    graceful: bool = True  # a stop request saves a checkpoint first (Megatron-SWIFT runs have no such hook)

    @property
    def lead_s(self) -> float:
        """Seconds a stop request needs before the kill: the slowest step plus the checkpoint write."""
        return self.step_s[1] + self.write_s

    def describe(self) -> str:
        if not self.graceful:
            return (
                f"no stop hook (Megatron-SWIFT): SIGTERM ends the run without a checkpoint; each periodic one is "
                f"{self.checkpoint_bytes / 1e9:,.1f} GB ({self.write_s:,.0f} s at {STORAGE_GBPS:g} GB/s per node)"
            )
        return (
            f"one step ({self.step_s[0]:,.0f}-{self.step_s[1]:,.0f} s) + a {self.checkpoint_bytes / 1e9:,.1f} GB "
            f"checkpoint ({self.write_s:,.0f} s at {STORAGE_GBPS:g} GB/s per node) = {self.lead_s:,.0f} s "
            "between a stop request and the kill"
        )


def stop_cost(x: PlanInputs, throughput: Throughput) -> StopCost:
    s, nodes = x.setup, x.nodes
    optimizer = 12 if s.checkpoint_optimizer else 0
    if s.method == "lora":
        gathered, sharded = 0.0, (4 + optimizer) * x.trainable_params
    elif s.engine == "megatron":  # a distributed checkpoint: every rank writes its own shard of the model too
        gathered, sharded = 0.0, (2 + optimizer) * x.total_params
    else:
        gathered, sharded = 2.0 * x.total_params, optimizer * x.total_params
    write_s = gathered / (STORAGE_GBPS * 1e9) + sharded / (nodes * STORAGE_GBPS * 1e9)
    low, high = throughput.tokens_per_s
    step = (throughput.step_tokens / high, throughput.step_tokens / low)
    graceful = s.engine != "megatron"
    return StopCost(checkpoint_bytes=gathered + sharded, write_s=write_s, step_s=step, graceful=graceful)
