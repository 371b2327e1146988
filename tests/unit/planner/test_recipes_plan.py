"""`finetune plan` on the shipped recipes: read as `finetune launch` reads them, every recipe fits its own
cluster, the launch check refuses what does not fit, and ms-swift configs map onto the memory model."""

from __future__ import annotations

import json

import pytest

from finetune.catalog import GPUS
from finetune.errors import FinetuneError
from finetune.frameworks.setup import ROUTED_EXPERT_PARAMETERS, deepspeed_settings
from finetune.frameworks.swift.setup import swift_setup
from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.planner import check_fits, header_figures, plan_recipe
from finetune.planner.gpus import CATALOG
from finetune.recipes.models import get_model
from finetune.recipes.recipe import all_recipes, resolve_recipe
from tests.conftest import run_cli

GLM45_LORA = "llamafactory/glm45_lora_16xh100"
RECIPE_IDS = [r.id for r in all_recipes()]
MAX_POSITIONS = get_model("glm-4.5").context


@pytest.mark.parametrize("recipe_id", RECIPE_IDS)
def test_every_recipe_fits_its_stated_cluster(recipe_id):
    plan = plan_recipe(recipe_id)
    meta = resolve_recipe(recipe_id).meta
    assert (plan.nodes, plan.gpus_per_node, plan.gpu.key) == (meta.nodes, meta.gpus_per_node, meta.gpu)
    assert plan.fits, f"{recipe_id}: {plan.required_gib:.1f} GiB needed of {plan.capacity_gib} ({plan.problems})"
    assert plan.max_seq_len >= plan.inputs.seq_len
    assert plan.context == get_model(meta.model).context and plan.max_seq_len <= plan.context


def test_known_verdicts_for_glm45_on_16_h100():
    assert plan_recipe(GLM45_LORA).fits  # LoRA, ZeRO-3, 4k, gradient checkpointing
    assert not plan_recipe(GLM45_LORA, ["cutoff_len=32768"]).fits
    full = plan_recipe(GLM45_LORA, ["finetuning_type=full"])  # plain ZeRO-3 (zero3.json)
    assert not full.fits and full.trainable_params == full.total_params


def test_plan_reads_overrides_and_the_deepspeed_json_as_launch_does():
    plan = plan_recipe(GLM45_LORA, ["deepspeed=recipes/deepspeed/zero3_offload.json", "lora_rank=64"])
    assert plan.setup.deepspeed.offload_params == "cpu" and plan.setup.deepspeed.offload_optimizer == "cpu"
    assert plan.memory.weights == 0 and plan.memory.host_ram_per_node > 300 * 1024**3
    assert round(plan.trainable_params / 1e6, 1) == 401.1  # rank 64 on the non-expert linears
    with pytest.raises(FinetuneError, match="finetune validate"):
        plan_recipe(GLM45_LORA, ["lora_rank=sixteen"])


def test_cli_json_carries_the_contract():
    out = run_cli(
        "plan", GLM45_LORA, "--json", "--tokens", "1e9", "--nodes", "4", "--gpus-per-node", "8", "--gpu", "h200"
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in (
        "total_params",
        "trainable_params",
        "per_gpu_gib",
        "per_gpu_breakdown_gib",
        "fits",
        "max_seq_len",
        "context",
        "host_ram_gib_per_node",
        "tokens_per_s",
    ):
        assert key in data, key
    assert data["total_params"] == 352_797_814_784 and data["cluster"]["gpu"] == "h200"
    assert data["context"] == 131072 and data["max_seq_len"] <= data["context"]
    assert set(data["per_gpu_breakdown_gib"]) >= {
        "weights",
        "grads",
        "optimizer",
        "gathered",
        "activations",
        "logits",
        "overhead",
    }
    assert data["per_gpu_gib"] == pytest.approx(sum(data["per_gpu_breakdown_gib"].values()), abs=0.01)
    low, high = data["tokens_per_s"]
    assert 0 < low < high and data["hours"][0] < data["hours"][1]


def test_cli_table_says_the_verdict():
    out = run_cli("plan", GLM45_LORA, "--seq-len", "32768")
    assert out.returncode == 0, out.stderr
    assert "DOES NOT FIT" in out.stdout and "Longest sequence that fits" in out.stdout
    assert "gathered ZeRO-3 working set" in out.stdout


def _launch(tmp_path, *overrides, model=None):
    return plan_launch(
        LaunchRequest(
            recipe=GLM45_LORA,
            model=model,
            overrides=list(overrides),
            nnodes=2,
            master_addr="node0",
            run_dir=tmp_path / "run",
        ),
        check=False,
    )


def test_launch_check_refuses_what_does_not_fit(tmp_path):
    assert check_fits(_launch(tmp_path)).fits
    with pytest.raises(FinetuneError) as err:
        check_fits(_launch(tmp_path, "cutoff_len=16384"))
    message = str(err.value)
    assert "does not fit 2 x 8 H100 80GB" in message and "The longest sequence that fits is" in message
    assert "gathered ZeRO-3 working set" in message and "--force" in message
    with pytest.raises(FinetuneError, match="No sequence length fits"):
        check_fits(_launch(tmp_path, "finetuning_type=full"))
    # the cluster being launched decides: one node of 8 GPUs cannot hold GLM-4.5's ZeRO-3 shards
    one_node = plan_launch(
        LaunchRequest(recipe=GLM45_LORA, nnodes=1, nproc_per_node=8, run_dir=tmp_path / "one"), check=False
    )
    with pytest.raises(FinetuneError, match="does not fit 1 x 8"):
        check_fits(one_node)


def _local_model(tmp_path, name: str, **changes) -> str:
    """A local checkpoint folder: GLM-4.5's config.json with `changes` (a GLM-4.6 folder, a bigger model)."""
    from finetune.recipes.models import get_model

    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**get_model("glm-4.5").config, **changes}))
    return str(folder)


def test_launch_check_plans_the_local_checkpoint_it_trains(tmp_path, glm45_replica):
    """Any local glm4_moe folder is planned with its own config.json, not waved through."""
    glm46 = _local_model(tmp_path, "glm46", max_position_embeddings=202752)
    plan = check_fits(_launch(tmp_path, model=glm46))
    assert plan.fits and plan.model == f"the model at {glm46} (its own config.json)"
    bigger = _local_model(tmp_path, "bigger", num_hidden_layers=184)  # twice GLM-4.5's layers: twice the shards
    with pytest.raises(FinetuneError, match="does not fit 2 x 8 H100 80GB"):
        check_fits(_launch(tmp_path, model=bigger))
    replica = check_fits(_launch(tmp_path, "cutoff_len=65536", model=str(glm45_replica)))
    assert replica.fits and replica.required_gib < 10  # the tiny replica, planned as what it is
    other = tmp_path / "partial"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "glm4_moe", "hidden_size": 8}))  # shapes missing
    assert check_fits(_launch(tmp_path, model=str(other))) is None


@pytest.mark.parametrize(
    ("name", "memory_gib", "key"),
    [
        ("NVIDIA H100 80GB HBM3", 79.6, "h100-80gb"),
        ("NVIDIA H200", 139.8, "h200"),
        ("NVIDIA H20", 95.6, "h20-96gb"),
        ("NVIDIA A100-SXM4-80GB", 79.2, "a100-80gb"),
        ("NVIDIA A100-SXM4-40GB", 39.4, None),
        ("NVIDIA L40S", 44.4, None),
    ],
)
def test_the_gpu_nvidia_smi_reports_names_its_catalog_entry(name, memory_gib, key):
    from finetune.planner.gpus import gpu_key_for

    assert gpu_key_for(name, memory_gib) == key


def test_the_memory_check_plans_the_gpus_of_this_node(tmp_path, monkeypatch, capsys):
    import finetune.launch.doctor as doctor
    from finetune.launch.run import LaunchOptions, check_memory

    monkeypatch.setattr(doctor, "gpus", lambda: [("NVIDIA H200", 139.8)] * 8)
    check_memory(_launch(tmp_path), LaunchOptions())
    assert "GiB per H200 141GB (planner, GLM-4.5)" in capsys.readouterr().err
    check_memory(_launch(tmp_path), LaunchOptions(gpu="h100-80gb"))  # --gpu still decides
    assert "of 79.1 GiB per H100 80GB" in capsys.readouterr().err


def test_header_figures_come_from_the_plan():
    plan = plan_recipe(GLM45_LORA)
    lines = header_figures(GLM45_LORA)
    labels = [line.split(" ", 1)[0] for line in lines]
    assert labels[:3] == ["Memory", "Ceiling", "Speed"]
    assert f"{plan.per_gpu_gib:.1f} GiB per GPU at 4,096 tokens" in lines[0] and "fits" in lines[0]
    assert f"{plan.max_seq_len:,} tokens" in lines[1]


@pytest.mark.parametrize("recipe_id", RECIPE_IDS)
def test_recipe_headers_carry_the_planner_figures(recipe_id):
    recipe = resolve_recipe(recipe_id)
    header_text = " ".join(line.lstrip("# ").strip() for line in recipe.header.splitlines())
    for figure in header_figures(recipe):
        _label, text = figure.split(" ", 1)
        assert " ".join(text.split()) in " ".join(header_text.split()), "run `finetune recipes --sync-headers`"


def test_gpu_catalog_covers_the_recipe_gpus():
    from finetune.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for command in ("plan", "launch"):
        gpu_choices = next(a.choices for a in commands[command]._actions if a.dest == "gpu")
        assert set(CATALOG) == set(GPUS) == set(gpu_choices), command


# -- ms-swift configs, as plain dicts ------------------------------------------------------------------------------


def test_swift_megatron_keys():
    config = {
        "tuner_type": "lora",
        "target_modules": ["linear_qkv", "linear_proj"],
        "lora_rank": 32,
        "tensor_model_parallel_size": 4,
        "expert_model_parallel_size": 4,
        "sequence_parallel": True,
        "recompute_granularity": "full",
        "max_length": 8192,
        "micro_batch_size": 1,
    }
    s = swift_setup(config, max_positions=MAX_POSITIONS)
    assert s.engine == "megatron" and (s.tp, s.pp, s.ep, s.etp, s.cp) == (4, 1, 4, 1, 1)
    assert s.checkpointing and s.sequence_parallel and s.distributed_optimizer and s.logits_fused
    assert s.lora.layout == "megatron" and s.lora.rank == 32 and s.seq_len == 8192
    # Megatron-SWIFT's defaults: full fine-tuning, selective recompute (activations kept), 8-rank all-linear LoRA
    defaults = swift_setup({"micro_batch_size": 2}, max_positions=MAX_POSITIONS)
    assert defaults.method == "full" and not defaults.checkpointing and defaults.seq_len == MAX_POSITIONS
    lora = swift_setup({"tuner_type": "lora"}, max_positions=MAX_POSITIONS, megatron=True).lora
    assert lora.target_modules == ("all-linear",) and lora.rank == 8


def test_swift_huggingface_keys_and_deepspeed_presets():
    s = swift_setup({"max_length": 4096, "deepspeed": "zero3_offload"}, max_positions=MAX_POSITIONS)
    assert s.engine == "deepspeed" and s.method == "lora" and s.checkpointing
    assert (s.deepspeed.zero_stage, s.deepspeed.offload_params, s.deepspeed.offload_optimizer) == (3, "cpu", "cpu")
    # all-linear, as ms-swift's PEFT builds it on glm4_moe: attention plus the fused routed experts
    assert s.lora.target_parameters == ROUTED_EXPERT_PARAMETERS and "q_proj" in s.lora.target_modules
    attention = swift_setup({"target_modules": ["q_proj", "k_proj"]}, max_positions=MAX_POSITIONS).lora
    assert attention.target_modules == ("q_proj", "k_proj") and not attention.target_parameters
    with pytest.raises(FinetuneError, match="neither one of ms-swift's names"):
        swift_setup({"deepspeed": "zero4"}, max_positions=MAX_POSITIONS)


def test_swift_rl_keys():
    dpo_full = swift_setup({"rlhf_type": "dpo", "tuner_type": "full", "max_length": 2048}, max_positions=MAX_POSITIONS)
    assert dpo_full.reference_model and dpo_full.sequences_per_micro_batch == 2  # chosen + rejected
    assert dpo_full.micro_batch == 1  # as configured: one pair
    dpo_lora = swift_setup({"rlhf_type": "dpo", "tuner_type": "lora"}, max_positions=MAX_POSITIONS)
    assert not dpo_lora.reference_model  # the base model with the adapter off
    grpo = swift_setup(
        {
            "rlhf_type": "grpo",
            "tuner_type": "full",
            "beta": 0.0,
            "max_length": 1024,
            "max_completion_length": 2048,
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": 0.4,
            "vllm_tensor_parallel_size": 4,
            "sleep_level": 1,
            "offload_model": True,
        },
        max_positions=MAX_POSITIONS,
    )
    assert not grpo.reference_model and grpo.seq_len == 3072 and grpo.logits_tokens == 2048
    assert grpo.rollout_gpu_fraction == 0.4 and grpo.rollout_sleeps and grpo.rollout_weights_to_host
    assert grpo.rollout_tp == 4 and grpo.trainer_offloaded_while_rolling_out
    grpo_kl = swift_setup({"rlhf_type": "grpo", "tuner_type": "full"}, max_positions=MAX_POSITIONS)
    assert grpo_kl.reference_model
    server = swift_setup({"rlhf_type": "grpo", "use_vllm": True, "vllm_mode": "server"}, max_positions=MAX_POSITIONS)
    assert server.rollout_gpu_fraction == 0 and server.notes


def test_deepspeed_json_settings():
    nvme = {
        "zero_optimization": {
            "stage": 3,
            "offload_param": {"device": "nvme", "buffer_count": 5, "buffer_size": 1e8},
            "offload_optimizer": {"device": "nvme"},
            "sub_group_size": 1e9,
        }
    }
    s = deepspeed_settings(nvme)
    assert (s.zero_stage, s.offload_params, s.offload_optimizer) == (3, "nvme", "nvme")
    assert s.param_buffer_bytes == 5 * 10**8 * 2 and s.optimizer_buffer_count == 4
    stage2 = deepspeed_settings(
        {"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}, "offload_optimizer": {"device": "none"}}}
    )
    assert (stage2.offload_params, stage2.offload_optimizer) == (None, None)  # ZeRO-2 cannot offload parameters


@pytest.mark.parametrize("recipe_id", [GLM45_LORA, "swift/glm45-air_grpo_4xh100"])
def test_plan_prints_its_report_once(recipe_id):
    out = run_cli("plan", recipe_id)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if any(c.isalnum() for c in line)]
    assert lines[0].startswith(f"{recipe_id} on ") and len(lines) == len(set(lines)), out.stdout
