"""`finetune serve`: vLLM / SGLang commands with the parsers of the run's model, for each way the engine is installed.

Whether the installed vLLM's own parser accepts them is tests/e2e/test_vllm.py's job (it needs .venvs/swift)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from finetune.errors import FinetuneError
from finetune.serving.engine import EngineInstall
from finetune.serving.serve import ExpertAdapter, plan_serve
from tests.conftest import run_cli

ABSENT = {"vllm": EngineInstall("vllm", None), "sglang": EngineInstall("sglang", None)}
CUDA_VLLM = EngineInstall("vllm", Path("/env/bin/python"))
CPU_VLLM = EngineInstall("vllm", Path("/env/bin/python"), cpu_build=True, has_torchvision=False)


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


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_adapter_is_served_on_its_base_model(tmp_path, engine):
    run = _run_dir(tmp_path)
    plan = plan_serve(run, engine, gpus=4, install=ABSENT[engine])
    argv = plan.argv
    assert argv[argv.index("--reasoning-parser") + 1] == "glm45"
    # vLLM: glm45's parsing without the GLM-4.7 grammar vLLM 0.32 puts on generation (docs/serving.md)
    parser = "glm45_trained" if engine == "vllm" else "glm45"
    assert argv[argv.index("--tool-call-parser") + 1] == parser
    if engine == "vllm":
        assert argv[argv.index("--tool-parser-plugin") + 1].endswith(
            "finetune/serving/vllm_plugins/glm45_tool_parser.py"
        )
    assert "/models/GLM-4.5-Air" in argv and "--enable-lora" in argv
    assert f"glm45-air-lora-run={run / 'output'}" in argv
    assert argv[argv.index("--tp" if engine == "sglang" else "--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--max-lora-rank") + 1] == "16"
    # what the engine's parser is asked about: the same arguments, the model as its option
    assert plan.engine_args[:2] == ["--model" if engine == "vllm" else "--model-path", "/models/GLM-4.5-Air"]
    assert plan.engine_args[2:] == argv[argv.index("--served-model-name") :]


@pytest.mark.parametrize(
    ("recipe", "vllm_tool", "sglang_tool"),
    [
        ("swift/glm46_lora_16xh100", "glm45_trained", "glm45"),  # GLM-4.6: GLM-4.5's template and layout
        ("swift/glm47_lora_16xh100", "glm47", "glm47"),  # GLM-4.7: its own layout, vLLM's grammar on
    ],
)
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_parsers_follow_the_model_the_run_trained(tmp_path, engine, recipe, vllm_tool, sglang_tool):
    run = _run_dir(tmp_path, merged=True)
    record = json.loads((run / "launch-node0.json").read_text())
    (run / "launch-node0.json").write_text(json.dumps({**record, "framework": "swift", "recipe": recipe}))
    argv = plan_serve(run, engine, gpus=8, install=ABSENT[engine]).argv
    assert argv[argv.index("--tool-call-parser") + 1] == (vllm_tool if engine == "vllm" else sglang_tool)
    assert argv[argv.index("--reasoning-parser") + 1] == "glm45"
    assert ("--tool-parser-plugin" in argv) == (vllm_tool == "glm45_trained" and engine == "vllm")


def test_a_glm47_run_trained_with_earlier_reasoning_kept_is_served_so(tmp_path):
    run = _run_dir(tmp_path, merged=True)
    record = json.loads((run / "launch-node0.json").read_text())
    (run / "launch-node0.json").write_text(json.dumps({**record, "recipe": "swift/glm47_lora_16xh100"}))
    (run / "config.yaml").write_text(yaml.safe_dump({"template": "glm4_7", "preserve_thinking": True}))
    argv = plan_serve(run, "vllm", gpus=8, install=ABSENT["vllm"]).argv
    assert json.loads(argv[argv.index("--default-chat-template-kwargs") + 1]) == {"clear_thinking": False}
    notes = plan_serve(run, "sglang", gpus=8, install=ABSENT["sglang"]).notes
    assert any('"clear_thinking": false' in note for note in notes)
    (run / "config.yaml").write_text(yaml.safe_dump({"template": "glm4_7"}))
    assert "--default-chat-template-kwargs" not in plan_serve(run, "vllm", gpus=8, install=ABSENT["vllm"]).argv


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_merged_model_is_served_as_a_model(tmp_path, engine):
    plan = plan_serve(_run_dir(tmp_path, merged=True), engine, gpus=8, name="mine", install=ABSENT[engine])
    assert str(tmp_path / "glm45-air-lora-run" / "merged") in plan.argv and "--enable-lora" not in plan.argv
    assert plan.argv[plan.argv.index("--served-model-name") + 1] == "mine"


def test_tensor_parallel_follows_the_recipe_cluster(tmp_path):
    plan = plan_serve(_run_dir(tmp_path, merged=True), "vllm", install=CUDA_VLLM)  # a 4-GPU recipe
    assert plan.argv[:3] == ["/env/bin/vllm", "serve", str(tmp_path / "glm45-air-lora-run" / "merged")]
    assert plan.argv[plan.argv.index("--tensor-parallel-size") + 1] == "4"


def test_cpu_build_runs_as_a_module_in_eager_mode_without_swifts_plugin(tmp_path):
    plan = plan_serve(_run_dir(tmp_path, merged=True), "vllm", gpus=8, port=8123, install=CPU_VLLM)
    assert plan.argv[:3] == ["/env/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert plan.argv[plan.argv.index("--tensor-parallel-size") + 1] == "1"
    assert "--enforce-eager" in plan.argv and plan.url == "http://127.0.0.1:8123"
    assert "swift" not in plan.env["VLLM_PLUGINS"]
    # one process (no engine-core or worker process importing vLLM again): the printed command says so too
    assert plan.argv[plan.argv.index("--distributed-executor-backend") + 1] == "uni"
    assert plan.env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert plan.command.startswith("VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_PLUGINS=")


def test_cpu_build_refuses_an_adapter_and_says_to_merge(tmp_path):
    with pytest.raises(FinetuneError, match="CPU build.*merge it\\s+first"):
        plan_serve(_run_dir(tmp_path), "vllm", install=CPU_VLLM)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_a_routed_expert_adapter_is_never_handed_to_an_engine(tmp_path, engine):
    """No engine loads a fused expert adapter as trained (vLLM refuses it, SGLang drops its deltas): planning
    refuses it, saying why, and `finetune serve` merges the run and serves the merge (tests/e2e/test_expert_lora.py)."""
    run = _run_dir(tmp_path, targets=["q_proj", "mlp.experts.gate_up_proj"])
    with pytest.raises(ExpertAdapter, match="adapts the routed experts .* SGLang drops its expert deltas"):
        plan_serve(run, engine, gpus=8, install=CUDA_VLLM if engine == "vllm" else ABSENT[engine])
    merged = _run_dir(tmp_path / "merged", targets=["q_proj", "mlp.experts.gate_up_proj"], merged=True)
    assert "--enable-lora" not in plan_serve(merged, engine, gpus=8, install=ABSENT[engine]).argv


def test_cli_prints_the_command(tmp_path):
    proc = run_cli("serve", str(_run_dir(tmp_path)), "--engine", "sglang", "--gpus", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("python -m sglang.launch_server --model-path /models/GLM-4.5-Air")
    assert "not installed here" in proc.stderr


def test_the_argument_check_is_cached_by_the_commands_shape_not_the_run(tmp_path):
    """A second run (another folder, port and name) reuses the first run's verdict; another flag value does not."""
    from finetune.serving.serve import _shape

    first = _run_dir(tmp_path / "a", merged=True)
    second = _run_dir(tmp_path / "b", merged=True)
    a = plan_serve(first, "vllm", port=8123, install=CPU_VLLM).engine_args
    b = plan_serve(second, "vllm", port=9321, name="other", install=CPU_VLLM).engine_args
    assert a != b and _shape(a) == _shape(b)
    other_parser = [*a[:-1], "glm47"] if a[-1] == "glm45" else [*a, "--reasoning-parser", "glm47"]
    assert _shape(other_parser) != _shape(a)
    assert _shape([*a, "--max-model-len", "1024"]) != _shape(a)


def test_a_run_that_did_not_finish_is_not_served_as_if_it_had(tmp_path):
    from finetune.launch.run_state import RunState, State, write_state

    run = _run_dir(tmp_path)
    write_state(run, RunState(State.STOPPED, 0, step=5, checkpoint="output/checkpoint-5", exit_code=75))
    with pytest.raises(FinetuneError, match=r"has not finished \(stopped at step 5\).*--unfinished"):
        plan_serve(run, "vllm", gpus=8, install=CUDA_VLLM)
    write_state(run, RunState(State.FINISHED, 0, step=9, exit_code=0))
    assert "--enable-lora" in plan_serve(run, "vllm", gpus=8, install=CUDA_VLLM).argv  # its adapter, as before
