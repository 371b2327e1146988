"""The GPU measurement run as a list of units, most valuable first.

A unit is one child process: a `bench run` over one slice and method, saving a slice for the frameworks, one
framework's real step, or the start-up timings. The order is what a short time on a GPU should buy first: the recipes'
LoRA on both models at 4k and 16k with checkpointing (what the recipe headers promise); then the MoE expert
implementations (whether the recipes should pin one); then full fine-tuning; then the rest of the matrix, the
per-MoE-layer slices, the framework steps and the start-up timings. `--tiny` keeps the order and the code paths
with the replica's shapes and short sequences, so a CPU rehearses exactly what a GPU will run.
"""

from __future__ import annotations

from dataclasses import dataclass

MODELS = ("glm-4.5-air", "glm-4.5")
SEQ_LENS = (2048, 4096, 8192, 16384)
TINY_SEQ = {2048: 32, 4096: 64, 8192: 96, 16384: 128}  # the same matrix, short enough for a CPU
FRAMEWORK_RECIPES = ("llamafactory/glm45-air_lora_4xh100", "swift/glm45-air_lora_4xh100")
SLICE_MODEL = "glm-4.5-air"


@dataclass(frozen=True)
class TrainConfig:
    checkpointing: bool
    seq_len: int
    experts_impl: str


@dataclass(frozen=True)
class TrainUnit:
    """One `bench run`: a slice, one method, and the configurations it measures (in `Matrix.configs` order)."""

    name: str
    model: str
    layers: int
    method: str
    checkpointing: tuple[bool, ...]
    seq_lens: tuple[int, ...]
    experts: tuple[str, ...]
    results: str  # the JSON-lines file in the results folder
    dense_layers: int = 1

    def configs(self) -> list[TrainConfig]:
        return [
            TrainConfig(on, seq_len, impl)
            for on in self.checkpointing
            for seq_len in sorted(self.seq_lens)
            for impl in self.experts
        ]

    def argv(self, *, tiny: bool, steps: int, warmup: int) -> list[str]:
        def csv(values) -> str:
            return ",".join(str(v) for v in values)

        args = [
            *("--model", self.model, "--layers", str(self.layers), "--dense-layers", str(self.dense_layers)),
            *("--methods", self.method, "--seq-lens", csv(sorted(self.seq_lens))),
            *("--checkpointing", csv("on" if on else "off" for on in self.checkpointing)),
            *("--experts-impl", csv(self.experts), "--steps", str(steps), "--warmup", str(warmup)),
        ]
        return [*args, "--tiny", "--device", "cpu"] if tiny else args


@dataclass(frozen=True)
class SliceUnit:
    """Save the slice the framework steps train on."""

    name: str
    model: str
    layers: int = 2


@dataclass(frozen=True)
class FrameworkUnit:
    """One real framework run of a recipe on the saved slice, through `finetune launch`."""

    name: str
    recipe: str

    @property
    def framework(self) -> str:
        return self.recipe.split("/")[0]


@dataclass(frozen=True)
class StartupUnit:
    """`bench/startup_time.py`: cold and warm start of `launch --dry-run` and `plan`."""

    name: str
    runs: int


Unit = TrainUnit | SliceUnit | FrameworkUnit | StartupUnit


def value_ordered(experts: tuple[str, ...], default: str, *, tiny: bool = False) -> list[Unit]:
    """Every unit of the measurement run, most valuable first. `experts`: the implementations the interpreter's
    transformers offers; `default`: the one it picks by itself."""
    seq = (lambda n: TINY_SEQ[n]) if tiny else (lambda n: n)

    def train(name: str, model: str, method: str, on: tuple[bool, ...], lens, impls=(default,), layers=2, out=None):
        return TrainUnit(
            name=f"{model}: {name}",
            model=model,
            layers=layers,
            method=method,
            checkpointing=on,
            seq_lens=tuple(seq(n) for n in lens),
            experts=tuple(impls),
            results=out or "train.jsonl",
        )

    units: list[Unit] = []
    for model in MODELS:  # what the recipe headers promise: their LoRA, checkpointing on, 4k and 16k
        units.append(train("lora, checkpointing on, 4k and 16k", model, "lora", (True,), (4096, 16384)))
    for model in MODELS:  # whether the recipes should pin an expert implementation
        others = tuple(impl for impl in experts if impl != default)
        if others:
            units.append(
                train("expert implementations at 4k", model, "lora", (True,), (4096,), others, out="experts.jsonl")
            )
    for model in MODELS:
        units.append(train("full, checkpointing on, 4k and 16k", model, "full", (True,), (4096, 16384)))
    for model in MODELS:  # the rest of the matrix
        units.append(train("lora, checkpointing off", model, "lora", (False,), SEQ_LENS))
        units.append(train("lora, checkpointing on, 2k and 8k", model, "lora", (True,), (2048, 8192)))
        units.append(train("full, checkpointing off", model, "full", (False,), SEQ_LENS))
        units.append(train("full, checkpointing on, 2k and 8k", model, "full", (True,), (2048, 8192)))
    for model in MODELS:  # one more MoE layer: the difference is the cost of one layer
        name = "1 dense + 2 MoE layers, lora"
        units.append(train(name, model, "lora", (True, False), SEQ_LENS, layers=3))
    units.append(SliceUnit(f"save the {SLICE_MODEL} slice", SLICE_MODEL))
    units += [FrameworkUnit(f"{recipe} on the slice", recipe) for recipe in FRAMEWORK_RECIPES]
    units.append(StartupUnit("start-up timings", runs=1 if tiny else 5))
    return units
