"""`finetune serve`: vLLM / SGLang commands with GLM-4.5's parsers, using only flags the engines document."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest
import yaml

from finetune.errors import FinetuneError
from finetune.serving.serve import SGLANG_FLAGS, VLLM_FLAGS, flags_of, plan_serve
from tests.conftest import run_cli


def _run_dir(tmp_path, targets=None, merged=False):
    run = tmp_path / "glm45-air-lora-run"
    (run / "output").mkdir(parents=True)
    (run / "launch-node0.json").write_text(
        json.dumps(
            {
                "framework": "llamafactory",
                "model": "/models/GLM-4.5-Air",
                "recipe": "llamafactory/glm45-air_lora_4xh100",
            }
        )
    )
    (run / "config.yaml").write_text(yaml.safe_dump({"finetuning_type": "lora", "template": "glm45"}))
    adapter = {"r": 16, "target_modules": targets or ["q_proj", "k_proj", "v_proj", "o_proj"]}
    (run / "output" / "adapter_config.json").write_text(json.dumps(adapter))
    if merged:
        (run / "merged").mkdir()
        (run / "merged" / "export.json").write_text("{}")
    return run


@pytest.mark.parametrize("engine,documented", [("vllm", VLLM_FLAGS), ("sglang", SGLANG_FLAGS)])
def test_adapter_is_served_on_its_base_model(tmp_path, engine, documented):
    run = _run_dir(tmp_path)
    plan = plan_serve(run, engine, gpus=4)
    assert set(flags_of(plan.argv)) <= documented
    argv = plan.argv
    assert argv[argv.index("--tool-call-parser") + 1] == argv[argv.index("--reasoning-parser") + 1] == "glm45"
    assert "/models/GLM-4.5-Air" in argv and "--enable-lora" in argv
    assert f"glm45-air-lora-run={run / 'output'}" in argv
    assert argv[argv.index("--tp" if engine == "sglang" else "--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--max-lora-rank") + 1] == "16"


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_merged_model_is_served_as_a_model(tmp_path, engine):
    plan = plan_serve(_run_dir(tmp_path, merged=True), engine, gpus=8, name="mine")
    assert str(tmp_path / "glm45-air-lora-run" / "merged") in plan.argv and "--enable-lora" not in plan.argv
    assert plan.argv[plan.argv.index("--served-model-name") + 1] == "mine"


def test_routed_expert_adapter_must_be_merged_first(tmp_path):
    run = _run_dir(tmp_path, targets=["q_proj", "mlp.experts.gate_up_proj"])
    with pytest.raises(FinetuneError, match="merge it first"):
        plan_serve(run, "vllm", gpus=8)


def test_cli_prints_the_command(tmp_path):
    proc = run_cli("serve", str(_run_dir(tmp_path)), "--engine", "sglang", "--gpus", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("python -m sglang.launch_server --model-path /models/GLM-4.5-Air")


@pytest.mark.parametrize(
    "engine,help_cmd",
    [("vllm", ["vllm", "serve", "--help=all"]), ("sglang", ["python", "-m", "sglang.launch_server", "--help"])],
)
def test_flags_exist_in_the_installed_engine(tmp_path, engine, help_cmd):
    if importlib.util.find_spec(engine) is None:
        pytest.skip(f"{engine} is not installed here; checked against its documented flags above")
    text = subprocess.run(help_cmd, capture_output=True, text=True).stdout
    for flag in flags_of(plan_serve(_run_dir(tmp_path), engine, gpus=1).argv):
        assert flag in text, flag
