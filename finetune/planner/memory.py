"""Per-GPU memory of one training setup, term by term, as pure functions of a `PlanInputs`.

The model (bytes, bf16 training with Adam):
- model states: DeepSpeed ZeRO partitions weights (stage 3), gradients (2+) and optimizer states (1+) over the
  N GPUs: 2 bytes per weight, 4 per trainable gradient (fp32), 12 per trainable optimizer state (fp32 master +
  Adam m, v). Megatron keeps 2 + 4 bytes per local parameter (bf16 weight, fp32 gradient buffer) and shards the
  12 optimizer bytes over the data-parallel ranks (distributed optimizer); local = non-expert/(TP*PP) +
  routed-expert/(EP*ETP*PP). Offloaded states move to host RAM or NVMe.
- ZeRO-3 working set: two gathered MoE blocks in bf16 (the whole block is one leaf module), plus its bf16
  gradients when the experts train.
- LoRA on the routed experts through PEFT (`target_parameters`, the Hugging Face path): in every forward PEFT
  builds each expert tensor's full delta B A and the sum W + B A (no low-rank path for 3-D weights), and the
  backward of that sum holds its gradient: 3 bf16 copies of one MoE layer's expert weights in flight (layers
  run one at a time, gradient checkpointing or not, since the sum is recomputed per layer). Megatron's expert
  LoRA runs on activations (grouped GEMMs per expert) and adds nothing here.
- activations, bytes per token per layer (FlashAttention): attention 2[2h + c(d_q + 2 d_kv) + d_q] (c = 2 with
  qk-norm), MoE 2[2h + 4 I n_shared + k(2h + 4I)], dense MLP 2(2h + 4 I_dense). With checkpointing a layer
  keeps only its bf16 input (2h) and about two layers are live while one is recomputed. Tensor-parallel ranks
  split everything but the 2h terms, which only sequence parallelism splits; context parallelism splits all.
- logits: about 10 V bytes per token (bf16 logits, fp32 copy, fp32 gradient), 4 V fused; divided by TP when
  the vocabulary is split over tensor-parallel ranks (Megatron).
- overhead: 3 GiB (CUDA context, NCCL buffers) + 10 % of activations and logits.

The verdict multiplies the sequence-dependent terms (activations, logits and their overhead) by a reserve
factor (default 1.2): published measurements run up to about 20 % above the model, from the allocator caching
and fragmenting what is allocated and freed every step; the model states are allocated once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from finetune.frameworks.setup import DeepSpeedSettings, TrainingSetup
from finetune.planner.params import ModelShape, ParamCounts

GIB = 1024**3
FIXED_OVERHEAD = 3 * GIB
DYNAMIC_OVERHEAD = 0.10
DEFAULT_RESERVE = 1.2
LIVE_LAYERS_WHEN_CHECKPOINTING = 2
EXPERT_DELTA_COPIES = 3  # PEFT's B A, W + B A and its gradient, for one MoE layer's expert tensors


@dataclass(frozen=True)
class PlanInputs:
    """Everything the memory model reads: the training setup, the model's parameters, the cluster, and the
    sequence length and accumulation the planner may vary. Layout facts are read from `setup`, never copied."""

    setup: TrainingSetup
    shape: ModelShape
    total_params: int
    trainable_params: int
    routed_expert_params: int
    trainable_routed_experts: int
    moe_block_params: int
    gpus: int
    gpus_per_node: int
    seq_len: int
    grad_accum: int = 1

    @classmethod
    def of(
        cls,
        setup: TrainingSetup,
        shape: ModelShape,
        counts: ParamCounts,
        *,
        gpus: int,
        gpus_per_node: int,
        seq_len: int | None = None,
    ) -> PlanInputs:
        """`setup` on `gpus` GPUs, with the parameter counts of its model and LoRA (`count_params`)."""
        total, routed = counts.total, counts.routed_experts
        if setup.mtp_layers and setup.engine == "megatron":  # Megatron builds and trains the MTP layer(s)
            total += counts.mtp_layer
            routed += setup.mtp_layers * (routed // max(shape.moe_layers, 1))
        full = setup.method == "full"
        return cls(
            setup=setup,
            shape=shape,
            total_params=total,
            trainable_params=total if full else counts.trainable,
            routed_expert_params=routed,
            trainable_routed_experts=routed if full else counts.trainable_routed_experts,
            moe_block_params=counts.moe_block,
            gpus=gpus,
            gpus_per_node=gpus_per_node,
            seq_len=seq_len or setup.seq_len,
            grad_accum=setup.grad_accum_on(gpus),
        )

    def changed(self, **changes: Any) -> PlanInputs:
        """A copy with fields changed wherever they live: here (`seq_len`, `gpus`, ...), in the setup
        (`checkpointing`, `tp`, ...) or in its DeepSpeed settings (`zero_stage`, `offload_params`, ...)."""
        own = {f.name for f in fields(self)}
        zero = {f.name for f in fields(DeepSpeedSettings)}
        ds = {k: v for k, v in changes.items() if k in zero}
        layout = {k: v for k, v in changes.items() if k not in own and k not in zero}
        setup = replace(self.setup, deepspeed=replace(self.setup.deepspeed, **ds), **layout)
        return replace(self, setup=setup, **{k: v for k, v in changes.items() if k in own})

    @property
    def nodes(self) -> int:
        return max(1, self.gpus // self.gpus_per_node)

    @property
    def data_parallel(self) -> int:
        return self.setup.data_parallel(self.gpus)

    @property
    def micro_batch(self) -> int:
        """Sequences one GPU runs forward at once (a preference pair counts two)."""
        return self.setup.sequences_per_micro_batch

    @property
    def lora(self) -> bool:
        return self.setup.method == "lora"

    @property
    def nvme_buffer_bytes_per_gpu(self) -> int:
        """Pinned host buffers DeepSpeed keeps per GPU for NVMe swapping."""
        ds = self.setup.deepspeed
        sub_group = min(ds.sub_group_size, self.trainable_params // self.gpus)
        return ds.param_buffer_bytes + ds.optimizer_buffer_count * sub_group * 4


@dataclass(frozen=True)
class Memory:
    """Per-GPU bytes by term, and the host RAM / NVMe per node that offloading needs."""

    weights: float
    grads: float
    optimizer: float
    gathered: float
    expert_deltas: float
    activations: float
    logits: float
    reference_model: float
    rollout: float
    overhead: float
    host_ram_per_node: float
    nvme_per_node: float
    reserve: float

    TERMS = (
        "weights",
        "grads",
        "optimizer",
        "gathered",
        "expert_deltas",
        "activations",
        "logits",
        "reference_model",
        "rollout",
        "overhead",
    )

    @property
    def total(self) -> float:
        return sum(getattr(self, t) for t in self.TERMS)

    @property
    def dynamic(self) -> float:
        """The sequence-dependent part: activations, logits and the overhead they bring."""
        return (self.activations + self.logits) * (1 + DYNAMIC_OVERHEAD)

    @property
    def required(self) -> float:
        """What must fit: the total with the reserve factor on the sequence-dependent part."""
        return self.total + (self.reserve - 1) * self.dynamic

    def breakdown_gib(self) -> dict[str, float]:
        return {t: getattr(self, t) / GIB for t in self.TERMS}


def check_layout(x: PlanInputs) -> list[str]:
    """Problems with the parallel layout (sizes that do not divide); empty when it is valid."""
    s = x.setup
    problems = []
    if s.engine == "megatron":
        if x.gpus % (s.tp * s.pp * s.cp):
            problems.append(f"{x.gpus} GPUs do not divide into TP {s.tp} x PP {s.pp} x CP {s.cp}")
        if x.gpus % (s.ep * s.etp * s.pp):
            problems.append(f"{x.gpus} GPUs do not divide into EP {s.ep} x ETP {s.etp} x PP {s.pp}")
        if x.shape.experts % s.ep:
            problems.append(f"{x.shape.experts} experts do not divide over EP {s.ep}")
        if x.shape.layers % s.pp:
            problems.append(f"{x.shape.layers} layers do not divide over PP {s.pp}")
    elif s.tp * s.pp * s.ep * s.etp > 1:
        problems.append("tensor / pipeline / expert parallelism needs the Megatron engine")
    return problems


# -- model states ----------------------------------------------------------------------------------------------


def _deepspeed_states(x: PlanInputs) -> dict[str, float]:
    s, ds = x.setup, x.setup.deepspeed
    n, z = x.gpus, ds.zero_stage
    weights_split = n if z >= 3 else 1
    grads_split = n if z >= 2 else 1
    optimizer_split = n if z >= 1 else 1
    total, trainable = x.total_params, x.trainable_params
    states = {
        "weights": 0.0 if ds.offload_params else 2 * total / weights_split,
        # with the optimizer offloaded, gradient partitions live in pinned host memory (reduce buckets only here)
        "grads": 0.0 if ds.offload_optimizer else 4 * trainable / grads_split,
        "optimizer": 0.0 if ds.offload_optimizer else 12 * trainable / optimizer_split,
        "gathered": 0.0,
        "expert_deltas": expert_delta_bytes(x),
        "reference_model": 0.0,
    }
    if z >= 3:
        block = 2 * x.moe_block_params
        trains_experts = x.trainable_routed_experts > 0 and not x.lora
        states["gathered"] = 2 * block + (block if trains_experts else 0)
    if s.reference_model:
        states["reference_model"] = 0.0 if ds.offload_params else 2 * total / weights_split
    host = {"cpu": 0.0, "nvme": 0.0}
    per_node = x.gpus_per_node / n
    if ds.offload_optimizer:
        host[ds.offload_optimizer] += 16 * trainable * per_node  # fp32 master, Adam m and v, fp32 gradients
    if ds.offload_params:
        copies = 2 if s.reference_model else 1
        host[ds.offload_params] += copies * 2 * total * per_node
    states["host_ram_per_node"] = host["cpu"] + (x.nvme_buffer_bytes_per_gpu * x.gpus_per_node if host["nvme"] else 0)
    states["nvme_per_node"] = host["nvme"]
    return states


def expert_delta_bytes(x: PlanInputs) -> float:
    """PEFT's per-forward delta, sum and its gradient for the routed experts of one MoE layer, in bf16."""
    if not x.lora or x.trainable_routed_experts <= 0:
        return 0.0
    per_layer = x.routed_expert_params / max(x.shape.moe_layers, 1)
    return EXPERT_DELTA_COPIES * 2 * per_layer


def megatron_local(x: PlanInputs, params: float, experts: float) -> float:
    """Parameters one GPU holds: non-expert ones split by TP*PP, routed experts by EP*ETP*PP."""
    s = x.setup
    return (params - experts) / (s.tp * s.pp) + experts / (s.ep * s.etp * s.pp)


def _megatron_states(x: PlanInputs) -> dict[str, float]:
    s, ds = x.setup, x.setup.deepspeed
    local = megatron_local(x, x.total_params, x.routed_expert_params)
    trainable_local = megatron_local(x, x.trainable_params, x.trainable_routed_experts)
    dense_trainable = (x.trainable_params - x.trainable_routed_experts) / (s.tp * s.pp)
    expert_trainable = x.trainable_routed_experts / (s.ep * s.etp * s.pp)
    if s.distributed_optimizer:
        dense_dp = max(1, x.gpus // (s.tp * s.pp))  # the distributed optimizer shards over data x context parallel
        expert_dp = max(1, x.gpus // (s.ep * s.etp * s.pp))
        optimizer = 12 * (dense_trainable / dense_dp + expert_trainable / expert_dp)
    else:
        optimizer = 12 * trainable_local
    host = optimizer * x.gpus_per_node if ds.offload_optimizer == "cpu" else 0.0
    return {
        "weights": 2 * local,
        "grads": 4 * trainable_local,
        "optimizer": 0.0 if ds.offload_optimizer else optimizer,
        "gathered": 0.0,
        "expert_deltas": 0.0,
        "reference_model": 2 * local if s.reference_model else 0.0,
        "host_ram_per_node": host,
        "nvme_per_node": 0.0,
    }


# -- activations and logits -------------------------------------------------------------------------------------


def layer_activation_bytes(shape: ModelShape, moe: bool) -> tuple[float, float]:
    """(bytes per token that tensor parallelism splits, bytes per token only sequence parallelism splits)."""
    h = shape.hidden
    c = 2 if shape.qk_norm else 1
    attention_split = 2 * (c * (shape.q_dim + 2 * shape.kv_dim) + shape.q_dim)
    if moe:
        i, k = shape.moe_intermediate, shape.experts_per_token
        mlp_split = 2 * (4 * i * shape.shared_experts + k * (2 * h + 4 * i))
    else:
        mlp_split = 2 * 4 * shape.intermediate
    replicated = 2 * 2 * h + 2 * 2 * h  # the attention and MLP inputs (layer norm in, residual)
    return attention_split + mlp_split, replicated


def activation_bytes(x: PlanInputs) -> float:
    s = x.setup
    shape = x.shape
    tokens = x.seq_len * x.micro_batch / s.cp
    seq_split = s.tp if s.sequence_parallel else 1

    def per_token(moe: bool) -> float:
        split, replicated = layer_activation_bytes(shape, moe)
        return split / s.tp + replicated / seq_split

    # pipeline stage 0 holds min(PP, micro-batches) micro-batches of its L/PP layers (1F1B schedule)
    in_flight = min(s.pp, max(x.grad_accum, 1)) / s.pp
    if s.checkpointing:
        kept = 2 * shape.hidden / seq_split * shape.layers * in_flight
        live = LIVE_LAYERS_WHEN_CHECKPOINTING * max(per_token(True), per_token(False))
        return tokens * (kept + live)
    all_layers = shape.dense_layers * per_token(False) + shape.moe_layers * per_token(True)
    return tokens * all_layers * in_flight


def logits_bytes(x: PlanInputs) -> float:
    s = x.setup
    tokens = min(x.seq_len, s.logits_tokens or x.seq_len) * x.micro_batch / s.cp
    per_token = (4 if s.logits_fused else 10) * x.shape.vocab
    vocab_split = s.tp if s.engine == "megatron" else 1
    return tokens * per_token / vocab_split


# -- the whole ----------------------------------------------------------------------------------------------------


def rollout_bytes(x: PlanInputs, states: dict[str, float], dynamic: float, gpu_memory_bytes: float) -> float:
    """What a colocated vLLM adds to the training peak. Awake all the time it adds its whole share; in sleep
    mode generation and training take turns, so it adds only what its turn needs beyond the training step's
    (the trainer's states stay on the GPU unless they are offloaded while it generates)."""
    s = x.setup
    share = s.rollout_gpu_fraction * gpu_memory_bytes
    if not share or not s.rollout_sleeps:
        return share
    model_states = sum(
        states[k] for k in ("weights", "grads", "optimizer", "gathered", "expert_deltas", "reference_model")
    )
    kept = 0.0 if s.trainer_offloaded_while_rolling_out else model_states
    return max(0.0, kept + share - (model_states + dynamic))


def estimate(x: PlanInputs, gpu_memory_bytes: float, reserve: float = DEFAULT_RESERVE) -> Memory:
    """Per-GPU memory of `x` on a GPU of `gpu_memory_bytes` (the colocated rollout takes a share of it)."""
    s = x.setup
    states = _megatron_states(x) if s.engine == "megatron" else _deepspeed_states(x)
    activations, logits = activation_bytes(x), logits_bytes(x)
    rollout = rollout_bytes(x, states, reserve * (activations + logits) * (1 + DYNAMIC_OVERHEAD), gpu_memory_bytes)
    host = states["host_ram_per_node"]
    if s.rollout_gpu_fraction and s.rollout_weights_to_host:
        host += 2 * x.total_params / s.rollout_tp * x.gpus_per_node
    if s.rollout_gpu_fraction and s.trainer_offloaded_while_rolling_out:
        on_gpu = sum(states[k] for k in ("weights", "grads", "optimizer", "reference_model"))
        host += on_gpu * x.gpus_per_node
    return Memory(
        weights=states["weights"],
        grads=states["grads"],
        optimizer=states["optimizer"],
        gathered=states["gathered"],
        expert_deltas=states["expert_deltas"],
        activations=activations,
        logits=logits,
        reference_model=states["reference_model"],
        rollout=rollout,
        overhead=FIXED_OVERHEAD + DYNAMIC_OVERHEAD * (activations + logits),
        host_ram_per_node=host,
        nvme_per_node=states["nvme_per_node"],
        reserve=reserve,
    )


def fits(x: PlanInputs, gpu_memory_bytes: float, reserve: float = DEFAULT_RESERVE) -> bool:
    return estimate(x, gpu_memory_bytes, reserve).required <= gpu_memory_bytes


def max_seq_len(x: PlanInputs, gpu_memory_bytes: float, reserve: float = DEFAULT_RESERVE) -> int:
    """The longest sequence (tokens, at the same micro-batch) that fits; 0 when none does. Bisection: memory
    grows with the sequence length."""
    limit = x.shape.max_positions

    def ok(seq_len: int) -> bool:
        return fits(replace(x, seq_len=seq_len), gpu_memory_bytes, reserve)

    if not ok(1):
        return 0
    if ok(limit):
        return limit
    lo, hi = 1, limit  # ok(lo), not ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
