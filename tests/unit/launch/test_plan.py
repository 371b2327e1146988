"""`finetune launch` renders, refuses what is wrong before anything starts, and prints the exact command."""

from __future__ import annotations

import hashlib
import json

import pytest

from finetune.errors import FinetuneError
from finetune.frameworks import get_framework
from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.launch.rundir import claim_run_dir
from finetune.paths import DATA_DIR, REPO_ROOT
from finetune.recipes.recipe import all_recipes
from tests.conftest import run_cli

GLM45 = "llamafactory/glm45_lora_16xh100"
GLM47_RECIPES = [r.id for r in all_recipes() if r.meta.model == "glm-4.7" and r.meta.engine == "deepspeed"]


def test_dry_run_of_the_16_gpu_recipe_on_node_rank_1(tmp_path):
    run_dir = tmp_path / "shared" / "runs" / "glm45-lora"
    cluster = ["--nnodes", "2", "--node-rank", "1", "--master-addr", "10.1.2.3", "--master-port", "29500"]
    unset = {"NNODES": "", "NODE_RANK": "", "MASTER_ADDR": "", "NPROC_PER_NODE": ""}
    out = run_cli("launch", GLM45, *cluster, "--run-dir", str(run_dir), "--dry-run", env=unset)
    assert out.returncode == 0, out.stderr
    torchrun = REPO_ROOT / ".venv" / "bin" / "torchrun"
    rdzv_id = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
    expected = (
        f"{torchrun} --nnodes 2 --node-rank 1 --nproc-per-node 8 --master-addr 10.1.2.3 --master-port 29500 "
        f"--rdzv-id {rdzv_id} --rdzv-conf timeout=600 --max-restarts 0 "
        f"-m finetune.frameworks.trainer.llamafactory.entry {run_dir}/config.yaml"
    )
    assert out.stdout.strip().splitlines()[-1] == expected
    assert "export OMP_NUM_THREADS=" in out.stdout
    assert "#   model_name_or_path: zai-org/GLM-4.5\n" in out.stdout  # the real checkpoint by default
    sample = DATA_DIR / "prepared" / "sample_chat"
    assert f"#   dataset_dir: {sample}\n" in out.stdout and "#   dataset: sample_chat\n" in out.stdout
    assert not run_dir.exists() and not (tmp_path / "shared").exists()  # a dry run writes nothing


def test_topology_comes_from_the_environment(tmp_path, monkeypatch):
    environ = {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29999", "NPROC_PER_NODE": "8"}
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    plan = plan_launch(LaunchRequest(recipe=GLM45, run_dir=tmp_path / "r"), check=False)
    assert (
        plan.argv[1:11] == "--nnodes 2 --node-rank 1 --nproc-per-node 8 --master-addr node0 --master-port 29999".split()
    )
    # flags win over the environment
    plan = plan_launch(LaunchRequest(recipe=GLM45, run_dir=tmp_path / "r", node_rank=0), check=False)
    assert plan.topology.node_rank == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nnodes": 2, "run_dir": "r"}, "needs the first node's address"),
        ({"nnodes": 2, "master_addr": "n0"}, "same run directory on every node"),
        ({"nnodes": 2, "node_rank": 2, "master_addr": "n0", "run_dir": "r"}, "outside 0..1"),
    ],
)
def test_multi_node_mistakes_are_explained(kwargs, message, tmp_path, monkeypatch):
    for key in ("NNODES", "NODE_RANK", "MASTER_ADDR", "SLURM_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
    if "run_dir" in kwargs:
        kwargs["run_dir"] = tmp_path / kwargs["run_dir"]
    with pytest.raises(FinetuneError, match=message):
        plan_launch(LaunchRequest(recipe=GLM45, **kwargs), check=False)


def test_model_folder_must_be_glm4_moe(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(FinetuneError, match="model_type `llama`"):
        plan_launch(
            LaunchRequest(recipe=GLM45, model=str(tmp_path), nnodes=1, nproc_per_node=1, run_dir=tmp_path / "r"),
            check=False,
        )


@pytest.mark.parametrize(
    ("model", "bf16"),
    [
        ("zai-org/GLM-4.7-FP8", "zai-org/GLM-4.7"),  # a hub id the model descriptions list as an FP8 checkpoint
        ("zai-org/GLM-4.5-Air-FP8", "zai-org/GLM-4.5-Air"),
        ("folder", "zai-org/GLM-4.5"),  # a local folder whose config says FP8: the recipe's own BF16 model
    ],
)
def test_fp8_checkpoints_are_refused_for_training_with_the_bf16_id(model, bf16, tmp_path):
    if model == "folder":
        config = {"model_type": "glm4_moe", "quantization_config": {"quant_method": "fp8", "fmt": "e4m3"}}
        (tmp_path / "config.json").write_text(json.dumps(config))
        model = str(tmp_path)
    with pytest.raises(FinetuneError, match="FP8") as refused:
        plan_launch(
            LaunchRequest(recipe=GLM45, model=model, nnodes=1, nproc_per_node=1, run_dir=tmp_path / "r"), check=False
        )
    assert f"--model {bf16}" in str(refused.value) and "serving" in str(refused.value)


def test_a_bf16_folder_is_not_taken_for_fp8(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "glm4_moe", "quantization_config": None}))
    request = LaunchRequest(recipe=GLM45, model=str(tmp_path), nnodes=1, nproc_per_node=1, run_dir=tmp_path / "r")
    assert plan_launch(request, check=False).model == str(tmp_path.resolve())


def test_preserved_thinking_data_is_trained_so_and_refused_where_the_template_cannot(tmp_path, monkeypatch):
    """A dataset prepared with --clear-thinking false: GLM-4.5's template always clears earlier reasoning, so a
    GLM-4.5 recipe refuses it; a GLM-4.7 recipe keeps it in both frameworks' context (preserve_thinking)."""
    from finetune.prepare.pipeline import PrepareOptions, prepare

    source = tmp_path / "agent.jsonl"
    source.write_text(
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}) + "\n"
    )
    prepare(
        PrepareOptions(
            [str(source)], "kept", out_root=tmp_path / "data", token_stats=False, progress=False, clear_thinking=False
        )
    )
    monkeypatch.setenv("FINETUNE_DATA_ROOT", str(tmp_path / "data"))
    request = LaunchRequest(recipe=GLM45, dataset="kept", nnodes=1, nproc_per_node=1, run_dir=tmp_path / "r")
    with pytest.raises(FinetuneError, match=r"--clear-thinking false.*GLM-4.5's chat template always clears it"):
        plan_launch(request, check=False)
    assert len(GLM47_RECIPES) >= 4  # both frameworks' LoRA, DPO, GRPO, ...
    for recipe in GLM47_RECIPES:
        plan = plan_launch(
            LaunchRequest(recipe=recipe, dataset="kept", nnodes=1, nproc_per_node=1, run_dir=tmp_path / "r"),
            check=False,
        )
        assert plan.config["preserve_thinking"] is True, recipe


def test_overrides_are_typed_and_null_drops_a_key(tmp_path):
    overrides = ["learning_rate=5e-5", "bf16=false", "deepspeed=null"]
    request = LaunchRequest(recipe=GLM45, nnodes=1, nproc_per_node=1, run_dir=tmp_path / "r", overrides=overrides)
    plan = plan_launch(request, check=False)
    assert plan.config["learning_rate"] == 5e-5 and plan.config["bf16"] is False
    assert "deepspeed" not in plan.config


def test_existing_run_directory_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(FinetuneError, match="never overwritten"):
        plan_launch(LaunchRequest(recipe=GLM45, nnodes=1, nproc_per_node=1, run_dir=run_dir), check=False)
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_nodes_join_one_run_directory_only_with_the_same_config(tmp_path):
    run_dir = tmp_path / "run"
    claim_run_dir(run_dir, 0, {"config.yaml": "a: 1\n"})
    (run_dir / "launch-node0.json").write_text("{}")
    claim_run_dir(run_dir, 1, {"config.yaml": "a: 1\n"})  # node 1 joins
    with pytest.raises(FinetuneError, match="differs from what this node rendered"):
        claim_run_dir(run_dir, 2, {"config.yaml": "a: 2\n"})
    with pytest.raises(FinetuneError, match="already holds a run launched from node 0"):
        claim_run_dir(run_dir, 0, {"config.yaml": "a: 1\n"})
    assert (run_dir / "config.yaml").read_text() == "a: 1\n"


def test_missing_framework_environment_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("FINETUNE_LLAMAFACTORY_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(FinetuneError, match="setup.sh"):
        get_framework("llamafactory").python()


def test_cli_errors_are_one_line_without_traceback():
    out = run_cli("launch", "llamafactory/glm45_lora_16xh10", "--dry-run")
    assert out.returncode == 2
    assert out.stderr.startswith("error: No recipe") and "Traceback" not in out.stderr
    assert "glm45_lora_16xh100" in out.stderr


def test_show_prints_the_resolved_recipe():
    out = run_cli("show", "llamafactory/glm45-air_lora_4xh100", "--set", "cutoff_len=2048")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# LoRA SFT of GLM-4.5-Air")
    assert "\ncutoff_len: 2048\n" in out.stdout and "model_name_or_path: zai-org/GLM-4.5-Air" in out.stdout
