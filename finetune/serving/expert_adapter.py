"""LoRA on glm4_moe's routed experts: from PEFT's fused layout to the layouts serving engines load.

PEFT adapts transformers 5's fused expert parameters (`mlp.experts.gate_up_proj` [E, 2I, H], `mlp.experts.down_proj`
[E, H, I]) through `target_parameters`: one lora_A / lora_B pair per parameter holds every expert's rank-r factors
(A [E*r, in], rows expert-major; B [out, r*E], columns rank-major). Before PEFT 0.19.1, `in` and `out` were read off
the parameter's axes in order (in = axis 1), so the factors saved are the transposes of the standard ones
(dW_e = A_e.T @ B_e.T); from 0.19.1 on they are nn.Linear's (dW_e = B_e @ A_e). Nothing in the file says which,
except `peft_version`, and on square shapes (2I == H) both read without an error.

vLLM serves glm4_moe's expert LoRA as per-expert 2-D modules, `mlp.experts.{e}.{gate,up,down}_proj` (the
checkpoint's own layout, and Megatron-SWIFT's); it refuses a fused adapter (unless started with its mixed-format
flag, which assumes the new orientation), and SGLang drops one silently. `per-expert` writes that layout; `fused`
writes the fused layout in the new orientation, what transformers 5 with PEFT >= 0.19.1 loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError

GATE_UP, DOWN = "gate_up_proj", "down_proj"
PER_EXPERT, FUSED = "per-expert", "fused"
LAYOUTS = (PER_EXPERT, FUSED)
STANDARD_SINCE = "0.19.1"  # first PEFT release that stores the experts' factors as nn.Linear does (for glm4_moe)
PER_EXPERT_MODULES = ("gate_proj", "up_proj", "down_proj")
CONFIG, WEIGHTS, PROVENANCE = "adapter_config.json", "adapter_model.safetensors", "conversion.json"
CARRIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
_FUSED_KEY = re.compile(r"^(?P<module>.*\.mlp\.experts)(?:\.base_layer)*\.(?P<name>[^.]+)\.(?P<kind>weight|bias)$")

# Which engine loads which layout (docs/serving.md, "Adapters on the routed experts", says what was tested).
ENGINES = {
    PER_EXPERT: "vLLM --enable-lora on the base model (GPU builds); SGLang's expert LoRA; transformers 5 + PEFT "
    "0.20, which folds it back into the fused experts (not with rank/alpha patterns on them)",
    FUSED: "transformers 5 + PEFT >= 0.19.1 (PeftModel.from_pretrained); vLLM only with "
    "--enable-mixed-moe-lora-format and is_3d_lora_weight=True on each request; SGLang drops it silently",
}


@dataclass(frozen=True)
class ExpertShapes:
    """The base model's routed-expert sizes: E experts of intermediate size I on hidden size H."""

    experts: int
    intermediate: int
    hidden: int

    def out_in(self, param: str) -> tuple[int, int]:
        """One expert's (out, in) for `param`, nn.Linear's order."""
        return (2 * self.intermediate, self.hidden) if param == GATE_UP else (self.hidden, self.intermediate)


@dataclass(frozen=True)
class ExpertLora:
    """The LoRA of one fused expert parameter in one layer, in the standard orientation (A [E*r, in], B [out, r*E])."""

    module: str  # its key prefix in the file: base_model.model.model.layers.L.mlp.experts
    param: str  # GATE_UP or DOWN
    rank: int
    alpha: float
    a: Any  # torch.Tensor
    b: Any


@dataclass(frozen=True)
class FusedAdapter:
    """A PEFT adapter with fused expert LoRA, read and checked: its config, the other tensors, the experts' LoRA."""

    path: Path
    config: dict
    other: dict[str, Any]  # every tensor that is not a fused expert factor, carried over unchanged
    experts: list[ExpertLora]
    shapes: ExpertShapes
    peft_version: str
    standard: bool  # the file's orientation: True from PEFT 0.19.1 on


@dataclass(frozen=True)
class Conversion:
    out: Path
    layout: str
    source: FusedAdapter


def _version_tuple(version: str) -> tuple[int, ...] | None:
    """'0.18.1' -> (0, 18, 1); a dev or local build ('0.19.1.dev0@abc') -> None: its orientation is not known."""
    parts = version.split("@")[0].split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def _standard_orientation(config: dict, path: Path) -> tuple[str, bool]:
    version = config.get("peft_version")
    numbers = _version_tuple(str(version)) if version else None
    if numbers is None:
        raise FinetuneError(
            f"{path / CONFIG}: peft_version is {version!r}; the orientation of the expert LoRA depends on the PEFT "
            f"release that wrote it (before {STANDARD_SINCE}: transposed), so only a release number can be converted. "
            "Set peft_version to the release the adapter was trained with."
        )
    return str(version), numbers >= _version_tuple(STANDARD_SINCE)


def _base_config(adapter: Path, config: dict, base_model: Path | str | None) -> tuple[Path, dict]:
    """The base model's config.json: `base_model` (a folder or the file), else the adapter's base_model_name_or_path
    as a folder or in the Hugging Face cache."""
    named = base_model if base_model is not None else config.get("base_model_name_or_path")
    candidates = []
    if named:
        path = Path(named).expanduser()
        candidates.append(path if path.suffix == ".json" else path / "config.json")
        if not path.exists() and not path.is_absolute():  # a hub id: its config.json in the Hugging Face cache
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(str(named), "config.json")
                if isinstance(cached, str):
                    candidates.append(Path(cached))
            except (ImportError, ValueError):  # not a valid repo id either
                pass
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FinetuneError(
            f"{adapter}: the base model's config.json is needed for the expert shapes and was not found "
            f"(looked for {[str(c) for c in candidates] or 'nothing: no base_model_name_or_path'}); pass the base "
            "model's folder."
        )
    return found, json.loads(found.read_text())


def base_shapes(adapter: Path, config: dict, base_model: Path | str | None = None) -> ExpertShapes:
    path, base = _base_config(adapter, config, base_model)
    if base.get("model_type") != "glm4_moe":
        raise FinetuneError(
            f"{path}: model_type {base.get('model_type')!r}; this conversion knows glm4_moe's expert layout only "
            "(gate = the first half of gate_up_proj's rows)."
        )
    return ExpertShapes(base["n_routed_experts"], base["moe_intermediate_size"], base["hidden_size"])


def _pattern(patterns: dict | None, name: str) -> Any:
    """PEFT's rule (`get_pattern_key`): the first key that matches a dot-bounded suffix of the name."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return None


def _factor_shapes(param: str, shapes: ExpertShapes, standard: bool) -> tuple[int, int]:
    """(lora_A's columns, lora_B's rows) of `param`'s factors in the file: (in, out), swapped before 0.19.1."""
    out, inp = shapes.out_in(param)
    return (inp, out) if standard else (out, inp)


def _which_param(key_a: str, a, b, shapes: ExpertShapes, standard: bool) -> str:
    """The parameter whose shapes these factors have in this orientation (PEFT nests its wrappers in the order it
    met the parameters, so the shapes decide; on glm4_moe they always can, as 2I != I and H != 2I or I != H)."""
    pairs = a.shape[0] == b.shape[1] and a.shape[0] % shapes.experts == 0
    found = [p for p in (GATE_UP, DOWN) if pairs and (a.shape[1], b.shape[0]) == _factor_shapes(p, shapes, standard)]
    if len(found) != 1:
        expect = ", ".join(
            "{}: A [E*r, {}], B [{}, r*E]".format(p, *_factor_shapes(p, shapes, standard)) for p in (GATE_UP, DOWN)
        )
        raise FinetuneError(
            f"{key_a}: lora_A {list(a.shape)} / lora_B {list(b.shape)} fit no expert parameter of the base model "
            f"({shapes}) as PEFT {'>=' if standard else '<'} {STANDARD_SINCE} stores them ({expect}, E="
            f"{shapes.experts}). Is peft_version right, and is this the base model it was trained on?"
        )
    return found[0]


def _to_standard(a, b, experts: int):
    """PEFT < 0.19.1 factors -> the standard ones: per expert, A_e' = B_e.T and B_e' = A_e.T."""
    rank = a.shape[0] // experts
    new_a = b.reshape(b.shape[0], rank, experts).permute(2, 1, 0).reshape(experts * rank, b.shape[0])
    new_b = a.reshape(experts, rank, a.shape[1]).permute(2, 1, 0).reshape(a.shape[1], rank * experts)
    return new_a.contiguous(), new_b.contiguous()


def _expert_lora(module: str, param: str, a, b, fused_config: dict, shapes: ExpertShapes, standard: bool, path: Path):
    """One parameter's LoRA, standard orientation, with the rank and alpha PEFT gives it (rank_pattern,
    alpha_pattern); the rank the config declares must be the one the tensors hold."""
    if not standard:
        a, b = _to_standard(a, b, shapes.experts)
    rank = a.shape[0] // shapes.experts
    name = f"{module.removeprefix('base_model.model.')}.{param}"
    declared = _pattern(fused_config.get("rank_pattern"), name) or fused_config.get("r", 8)
    if declared != rank:
        raise FinetuneError(
            f"{path / WEIGHTS}: {module} ({param}) holds rank {rank} per expert, but {CONFIG} (r / rank_pattern) "
            f"says {declared}: the adapter and its config do not belong together."
        )
    alpha = _pattern(fused_config.get("alpha_pattern"), name)
    return ExpertLora(module, param, rank, fused_config.get("lora_alpha", 8) if alpha is None else alpha, a, b)


def read_fused_adapter(adapter: Path, base_model: Path | str | None = None) -> FusedAdapter:
    """Read and check a PEFT adapter folder that adapts the fused routed experts (`target_parameters`)."""
    from safetensors.torch import load_file

    adapter = Path(adapter).resolve()
    if not (adapter / CONFIG).is_file() or not (adapter / WEIGHTS).is_file():
        raise FinetuneError(f"{adapter} is not a PEFT adapter folder ({CONFIG} and {WEIGHTS} are both needed).")
    config = json.loads((adapter / CONFIG).read_text())
    if config.get("use_dora") or config.get("lora_bias"):
        raise FinetuneError(
            f"{adapter / CONFIG}: DoRA / lora_bias adapters cannot be converted (PEFT refuses both on expert "
            "parameters too)."
        )
    version, standard = _standard_orientation(config, adapter)
    shapes = base_shapes(adapter, config, base_model)
    tensors = load_file(str(adapter / WEIGHTS))
    factors: dict[str, dict[str, str]] = {}
    other = {}
    for key, tensor in tensors.items():
        match = _FUSED_KEY.match(key)
        if match is None:
            other[key] = tensor
        elif match["name"] in ("lora_A", "lora_B") and match["kind"] == "weight":
            factors.setdefault(key.removesuffix(f".{match['name']}.weight"), {})[match["name"]] = key
        else:
            raise FinetuneError(
                f"{adapter / WEIGHTS}: {key}: {match['name']}.{match['kind']} on the fused experts cannot be "
                "converted (only lora_A / lora_B weights can)."
            )
    targets = config.get("target_parameters") or []
    experts, seen = [], set()
    for wrapper, pair in sorted(factors.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise FinetuneError(f"{adapter / WEIGHTS}: {wrapper} has {sorted(pair)} only; lora_A and lora_B pair.")
        a, b = tensors[pair["lora_A"]], tensors[pair["lora_B"]]
        param = _which_param(pair["lora_A"], a, b, shapes, standard)
        module = _FUSED_KEY.match(pair["lora_A"])["module"]
        if not any(t == param or t.endswith(f".{param}") for t in targets):
            raise FinetuneError(
                f"{adapter / WEIGHTS}: {wrapper} holds {param}'s LoRA but {CONFIG}'s target_parameters {targets} "
                "does not name it."
            )
        if (module, param) in seen:
            raise FinetuneError(f"{adapter / WEIGHTS}: {module} holds two LoRA pairs shaped like {param}.")
        seen.add((module, param))
        experts.append(_expert_lora(module, param, a, b, config, shapes, standard, adapter))
    if not experts:
        raise FinetuneError(
            f"{adapter}: no LoRA on the fused routed experts (no `...mlp.experts[.base_layer].lora_A.weight` keys); "
            "serve or merge it as it is."
        )
    return FusedAdapter(adapter, config, other, experts, shapes, version, standard)


def per_expert_tensors(fused: FusedAdapter) -> dict[str, Any]:
    """mlp.experts.{e}.{gate,up,down}_proj.lora_{A,B}.weight: gate and up share A_e, B_e's rows split at I."""
    out = dict(fused.other)
    experts, inter = fused.shapes.experts, fused.shapes.intermediate
    for lora in fused.experts:
        a = lora.a.reshape(experts, lora.rank, -1)
        b = lora.b.reshape(lora.b.shape[0], lora.rank, experts)
        for e in range(experts):
            a_e, b_e = a[e].clone(), b[:, :, e].clone()  # copies: safetensors stores no shared storage
            name = f"{lora.module}.{e}"
            if lora.param == GATE_UP:
                for proj, rows in (("gate_proj", b_e[:inter]), ("up_proj", b_e[inter:])):
                    out[f"{name}.{proj}.lora_A.weight"] = a_e.clone()
                    out[f"{name}.{proj}.lora_B.weight"] = rows.clone()
            else:
                out[f"{name}.down_proj.lora_A.weight"] = a_e
                out[f"{name}.down_proj.lora_B.weight"] = b_e
    return out


def fused_tensors(fused: FusedAdapter) -> dict[str, Any]:
    """The fused keys PEFT writes (gate_up nested inside down when both are adapted), in the standard orientation."""
    out = dict(fused.other)
    layers = {}
    for lora in fused.experts:
        layers.setdefault(lora.module, []).append(lora)
    for module, loras in layers.items():
        for lora in loras:
            inner = lora.param == GATE_UP and len(loras) == 2  # PEFT wraps gate_up first, then down around it
            prefix = f"{module}.base_layer" if inner else module
            out[f"{prefix}.lora_A.weight"], out[f"{prefix}.lora_B.weight"] = lora.a, lora.b
    return out


def _per_expert_config(fused: FusedAdapter) -> dict:
    config = dict(fused.config)
    modules = config.get("target_modules")
    wanted = list(PER_EXPERT_MODULES)
    if isinstance(modules, str):  # a regex PEFT full-matches against module names
        config["target_modules"] = rf"(?:{modules})|.*\.experts\.\d+\.(?:{'|'.join(wanted)})"
    else:
        config["target_modules"] = list(modules or []) + [m for m in wanted if m not in (modules or [])]
    config["target_parameters"] = None
    ranks, alphas = {}, {}
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        # explicit entries for the per-expert modules, first (the first match wins): the source's patterns were
        # written for the fused names and could match the new ones differently (a bare `down_proj`, say)
        for lora in fused.experts:
            projections = ("gate_proj", "up_proj") if lora.param == GATE_UP else ("down_proj",)
            for proj in projections:
                key = re.escape(lora.module.removeprefix("base_model.model.")) + r"\.\d+\." + proj
                ranks[key], alphas[key] = lora.rank, lora.alpha
        config["rank_pattern"] = {**ranks, **(config.get("rank_pattern") or {})}
        config["alpha_pattern"] = {**alphas, **(config.get("alpha_pattern") or {})}
    return config


def convert_adapter(
    adapter: Path, out: Path, layout: str, base_model: Path | str | None = None, note: dict | None = None
) -> Conversion:
    """Write `adapter` (fused expert LoRA, any PEFT release) to the new folder `out` in `layout`, with `note` in its
    conversion.json; never overwrites."""
    if layout not in LAYOUTS:
        raise FinetuneError(f"adapter layout {layout!r}: choose {' or '.join(LAYOUTS)}.")
    out = Path(out).resolve()
    if out.exists():
        raise FinetuneError(f"{out} exists; a conversion never overwrites: choose a new folder.")
    fused = read_fused_adapter(adapter, base_model)
    if layout == PER_EXPERT:
        tensors, config = per_expert_tensors(fused), _per_expert_config(fused)
    else:
        tensors, config = fused_tensors(fused), dict(fused.config)
        if not fused.standard:  # re-oriented: the version a reader takes the orientation from must say so
            config["peft_version"] = STANDARD_SINCE
    provenance = {
        "layout": layout,
        "source": str(fused.path),
        "source_peft_version": fused.peft_version,
        "source_orientation": "standard" if fused.standard else f"transposed (PEFT < {STANDARD_SINCE})",
        "shapes": vars(fused.shapes),
        "experts": [{"module": x.module, "param": x.param, "rank": x.rank, "alpha": x.alpha} for x in fused.experts],
        "loads_in": ENGINES[layout],
        **(note or {}),
    }
    _write(fused.path, out, config, tensors, provenance)
    return Conversion(out, layout, fused)


def _write(source: Path, out: Path, config: dict, tensors: dict, provenance: dict) -> None:
    """Into a staging folder beside `out`, renamed at the end: a reader sees no adapter or a whole one."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        staging = Path(tmp) / "adapter"
        staging.mkdir()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging / WEIGHTS), metadata={"format": "pt"})
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (staging / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
        for name in CARRIED_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, staging / name)
        os.rename(staging, out)
