"""LoRA on the routed experts, from the trainer's PEFT to the server, on a replica whose experts are not square.

The standard replica has 2 * moe_intermediate_size == hidden_size (gate_up_proj [8, 64, 64]), where a transposed
factor has the right shape and passes unnoticed; this one has moe_intermediate_size 48 (gate_up_proj [8, 96, 64],
down_proj [8, 64, 48]). Adapters are made with PEFT directly in both environments (PEFT 0.18.1 in .venv, 0.20 in
.venvs/swift, which store the expert factors transposed to each other), on attention and both expert parameters,
with random non-zero factors, and checked from end to end:
(a) each environment's merge is base + adapter;
(b) the per-expert adapter (`finetune export --adapter-format per-expert`), applied to the checkpoint's own
    per-expert weights as a 2-D LoRA engine applies it, is that merge; a wrong conversion is not;
(c) vLLM's CPU build serving a merged model returns transformers' prompt logprobs on that folder;
(d) on a GPU, vLLM --enable-lora serves the per-expert adapters on the base model as their merges;
(e) an adapter whose only non-zero delta is on the experts, merged and served, changes what the server returns.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from finetune.errors import FinetuneError
from finetune.frameworks import get_framework
from finetune.replica.build import ensure_replica
from finetune.serving.engine import find_engine
from finetune.serving.expert_adapter import convert_adapter
from finetune.serving.serve import engine_verdicts
from finetune.serving.server import healthy
from tests.conftest import REPO_ROOT, run_cli
from tests.helpers.expert_prompt import TEXT_IDS
from tests.helpers.nodes import free_port
from tests.helpers.vllm_server import post, ready_url, start_server, stop_servers

pytestmark = [pytest.mark.vllm]

NON_SQUARE = {"moe_intermediate_size": 48}
MADE = {  # name: (environment, seed, kind) for tests/helpers/expert_make.py
    "peft-0.18.1": ("llamafactory", 1, "mixed"),
    "peft-0.20.0": ("swift", 2, "mixed"),
    "experts-only": ("swift", 3, "experts-only"),
}
# vLLM's CPU kernels against transformers, both float32: other summation orders, ~1e-6 apart on this prompt
# (measured 1.1e-6); the adapters move the logprobs by ~0.4, so 1e-4 tells a served adapter from a dropped one
# 4000 times over while leaving room for the kernels
LOGPROB_TOL = 1e-4
GREEDY_TOKENS = 8


def _helper(env: str, *args: str) -> dict:
    proc = subprocess.run(
        [str(get_framework(env).python()), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _apply(replica: Path, adapter: Path, merged: Path, *flags: str) -> dict:
    """tests/helpers/expert_apply.py in the ms-swift environment (transformers 5.19, PEFT 0.20)."""
    return _helper("swift", "tests/helpers/expert_apply.py", str(replica), str(adapter), str(merged), *flags)


@pytest.fixture(scope="module")
def replica() -> Path:
    path = ensure_replica("glm-4.5-air", NON_SQUARE)
    config = json.loads((path / "config.json").read_text())
    inter, hidden = config["moe_intermediate_size"], config["hidden_size"]
    assert 2 * inter != hidden and inter != hidden, "the experts must not be square"
    return path


@pytest.fixture(scope="module")
def made(replica, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Each adapter of MADE and its merge, made in its environment, two at a time."""
    root = tmp_path_factory.mktemp("expert-adapters")

    def make(name):
        env, seed, kind = MADE[name]
        return root / name, _helper(
            env, "tests/helpers/expert_make.py", str(replica), str(root / name), str(seed), kind
        )

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(MADE, pool.map(make, MADE), strict=True))


def _exported(adapter: Path, replica: Path, run: Path) -> Path:
    """`finetune export RUN --adapter-format per-expert` on a finished LLaMA-Factory run that trained `adapter`."""
    shutil.copytree(adapter, run / "output")
    record = {"framework": "llamafactory", "model": str(replica), "recipe": "llamafactory/glm45-air_lora_4xh100"}
    (run / "launch-node0.json").write_text(json.dumps(record))
    (run / "config.yaml").write_text("finetuning_type: lora\n")
    out = run_cli("export", str(run), "--adapter-format", "per-expert")
    assert out.returncode == 0, out.stderr
    assert f"to {run / 'adapter-per-expert'}" in out.stdout
    return run / "adapter-per-expert"


@pytest.fixture(scope="module")
def per_expert(made, replica, tmp_path_factory) -> dict[str, Path]:
    """Each adapter in the per-expert layout: PEFT 0.18.1's through `finetune export`, the others converted."""
    root = tmp_path_factory.mktemp("per-expert")
    converted = {"peft-0.18.1": _exported(made["peft-0.18.1"][0] / "adapter", replica, root / "run")}
    for name, (folder, _) in made.items():
        converted.setdefault(name, convert_adapter(folder / "adapter", root / name, "per-expert", replica).out)
    return converted


# -- (a) the merge --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["peft-0.18.1", "peft-0.20.0"])
def test_each_environments_merge_is_base_plus_adapter(made, name):
    folder, result = made[name]
    assert result["peft_version"] == name.removeprefix("peft-")
    assert (
        json.loads((folder / "adapter" / "adapter_config.json").read_text())["peft_version"] == result["peft_version"]
    )
    assert result["adapter_effect"] > 0.1 and result["expert_effect"] > 0.1  # the experts' LoRA moves the logits...
    assert result["merged_vs_adapted"] < 1e-4  # ...and the merged model computes what base + adapter computes


# -- (b) the per-expert adapter ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["peft-0.18.1", "peft-0.20.0"])
def test_per_expert_adapter_on_per_expert_weights_is_the_merge(made, per_expert, replica, tmp_path, name):
    merged = made[name][0] / "merged"
    result = _apply(replica, per_expert[name], merged, "--apply", str(tmp_path / "applied"))
    assert result["modules_applied"] == 3 * 4 + 2 * 8 * 3  # attention of 3 layers, 8 experts x 3 of 2 MoE layers
    assert result["applied_vs_base"] > 0.1
    assert result["applied_vs_merged"] < 1e-5


def test_a_wrong_conversion_is_caught(made, per_expert, replica, tmp_path):
    """gate and up exchanged (same shapes): the applied model is not the merge. A transposed conversion cannot even
    be written on these shapes: the converter refuses a mislabelled orientation."""
    wrong = tmp_path / "wrong"
    shutil.copytree(per_expert["peft-0.18.1"], wrong)
    tensors = load_file(str(wrong / "adapter_model.safetensors"))
    gates = [k for k in tensors if ".gate_proj.lora_B." in k]
    for gate in gates:
        up = gate.replace(".gate_proj.", ".up_proj.")
        tensors[gate], tensors[up] = tensors[up], tensors[gate]
    save_file(tensors, str(wrong / "adapter_model.safetensors"))
    merged = made["peft-0.18.1"][0] / "merged"
    result = _apply(replica, wrong, merged, "--apply", str(tmp_path / "applied"))
    assert result["applied_vs_merged"] > 1e-2, result

    mislabelled = tmp_path / "mislabelled"
    shutil.copytree(made["peft-0.18.1"][0] / "adapter", mislabelled)
    config = json.loads((mislabelled / "adapter_config.json").read_text())
    (mislabelled / "adapter_config.json").write_text(json.dumps({**config, "peft_version": "0.20.0"}))
    with pytest.raises(FinetuneError, match="fit no expert parameter"):
        convert_adapter(mislabelled, tmp_path / "out", "per-expert", replica)


def test_exported_adapters_load_in_peft_0_20_as_their_merges(made, per_expert, replica, tmp_path):
    """The fused export of a PEFT 0.18.1 adapter is in the orientation PEFT 0.20 reads; PEFT 0.20 folds a per-expert
    adapter (no rank/alpha patterns: its fold ignores them, docs/serving.md) back into the fused experts exactly."""
    fused = convert_adapter(made["peft-0.18.1"][0] / "adapter", tmp_path / "fused", "fused", replica).out
    assert _apply(replica, fused, made["peft-0.18.1"][0] / "merged", "--peft")["peft_vs_merged"] < 1e-4
    plain = per_expert["experts-only"]
    assert _apply(replica, plain, made["experts-only"][0] / "merged", "--peft")["peft_vs_merged"] < 1e-5


# -- (c), (e) served by vLLM's CPU build ----------------------------------------------------------------------------


def _served_run(root: Path, name: str, model: Path, replica: Path) -> Path:
    """A run directory `finetune serve` serves `model` from, as it serves an exported run (RUN_DIR/merged)."""
    run = root / name
    shutil.copytree(model, run / "merged", ignore=shutil.ignore_patterns("replica.json"))
    (run / "merged" / "export.json").write_text("{}")
    record = {"framework": "swift", "model": str(replica), "recipe": "swift/glm45-air_lora_4xh100"}
    (run / "launch-node0.json").write_text(json.dumps(record))
    (run / "config.yaml").write_text("tuner_type: lora\n")
    return run


def _ask(url: str, model: str) -> dict:
    """The server's logprob of each prompt token given the ones before it, and its greedy continuation."""
    body = {"model": model, "prompt": TEXT_IDS, "max_tokens": GREEDY_TOKENS, "temperature": 0}
    choice = post(url, "/v1/completions", {**body, "prompt_logprobs": 0, "return_token_ids": True})["choices"][0]
    logprobs = [entry[str(t)]["logprob"] for entry, t in zip(choice["prompt_logprobs"][1:], TEXT_IDS[1:], strict=True)]
    return {"logprobs": logprobs, "greedy": choice["token_ids"]}


@pytest.fixture(scope="module")
def served(made, replica, tmp_path_factory) -> dict[str, dict]:
    """The base replica and two merged models (PEFT 0.18.1's mixed adapter, PEFT 0.20's experts-only one), each
    served by `finetune serve --run` (the three start side by side), asked once, and stopped."""
    root = tmp_path_factory.mktemp("served")
    models = {
        "base": replica,
        "merged": made["peft-0.18.1"][0] / "merged",
        "experts": made["experts-only"][0] / "merged",
    }
    procs = {name: start_server(_served_run(root, name, model, replica)) for name, model in models.items()}
    try:
        return {name: _ask(ready_url(proc), name) for name, proc in procs.items()}
    finally:
        stop_servers(*procs.values())


@pytest.fixture(scope="module")
def transformers_logprobs(made, replica) -> dict[str, list[float]]:
    folders = {
        "base": replica,
        "merged": made["peft-0.18.1"][0] / "merged",
        "experts": made["experts-only"][0] / "merged",
    }
    result = _helper("swift", "tests/helpers/expert_logprobs.py", *map(str, folders.values()))
    return {name: result[str(folder)] for name, folder in folders.items()}


def _gap(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["base", "merged", "experts"])
def test_served_logprobs_are_transformers_logprobs(served, transformers_logprobs, name):
    assert _gap(served[name]["logprobs"], transformers_logprobs[name]) < LOGPROB_TOL


def test_the_served_merge_is_not_the_base_model(served):
    assert _gap(served["merged"]["logprobs"], served["base"]["logprobs"]) > 0.1


def test_an_expert_only_delta_is_served_not_dropped(served, made, replica):
    """The attention LoRA is zero: only the merged expert weights can move the server's output, and they do."""
    base = load_file(str(replica / "model.safetensors"))
    merged = load_file(str(made["experts-only"][0] / "merged" / "model.safetensors"))
    changed = {k for k in base if not base[k].equal(merged[k])}
    assert changed and all(".mlp.experts." in k for k in changed), sorted(changed)[:5]
    assert _gap(served["experts"]["logprobs"], served["base"]["logprobs"]) > 0.1
    assert served["experts"]["greedy"] != served["base"]["greedy"]


# -- (d) the GPU twin -------------------------------------------------------------------------------------------------


def _lora_server_args(adapters: dict[str, Path], port: int) -> list[str]:
    """vLLM's arguments after the model for the base replica with every per-expert adapter (float32, as stored)."""
    modules = [f"{name}={path}" for name, path in adapters.items()]
    args = ["--port", str(port), "--dtype", "float32", "--enable-lora", "--lora-modules", *modules]
    return [*args, "--max-lora-rank", "8", "--max-loras", str(len(modules))]  # ranks 4 and 2; 8 is vLLM's least above


def test_the_gpu_twins_command_is_one_vllm_accepts(per_expert, replica):
    """The command (d) starts on a GPU, checked here by the installed vLLM's own parser (a rank vLLM does not offer,
    say 4, is refused there)."""
    install = find_engine("vllm")
    args = ["--model", str(replica), *_lora_server_args(per_expert, free_port())]
    wrong_rank = [*args[:-3], "4", *args[-2:]]
    ok, refused = engine_verdicts(install, install.env(), [args, wrong_rank])
    assert ok["ok"], ok["error"]
    assert not refused["ok"] and "--max-lora-rank" in refused["error"]


@pytest.mark.gpu
def test_vllm_serves_the_per_expert_adapters_on_the_base_model_as_their_merges(per_expert, replica, made):
    """vLLM's CUDA build, `--enable-lora` with every per-expert adapter on the base replica: each adapter's prompt
    logprobs are transformers' on its merged folder. The CPU build cannot run LoRA on glm4_moe's MoE layers."""
    install = find_engine("vllm")
    assert install.installed and not install.cpu_build, "./setup.sh on a GPU machine installs vLLM's CUDA wheel"
    port = free_port()
    argv = [*install.program(str(replica)), *_lora_server_args(per_expert, port)]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env={**os.environ, **install.env()}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while not healthy(url):
            assert proc.poll() is None and time.monotonic() < deadline, "vLLM did not start"
            time.sleep(2)
        folders = {name: made[name][0] / "merged" for name in per_expert}
        expected = _helper("swift", "tests/helpers/expert_logprobs.py", *map(str, folders.values()))
        for name, folder in folders.items():
            # TF32 may round the GPU's float32 matmuls to 10-bit mantissas: 1e-2 still tells 0.4 from 0
            assert _gap(_ask(url, name)["logprobs"], expected[str(folder)]) < 1e-2, name
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
