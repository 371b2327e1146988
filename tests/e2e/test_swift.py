"""SWIFT recipes through `finetune launch`, against the real ms-swift on the replica (its own environment).

LoRA SFT, full SFT, DPO, GRPO (with vLLM's CPU build rolling out); two processes (ZeRO-3 and plain data parallel)
and two loopback nodes, each equal to one process; a stop on SIGTERM that is not a finish; then `finetune export`
of a LoRA run. Megatron recipes only parse here: Megatron-SWIFT needs a GPU stack.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from finetune.errors import FinetuneError
from finetune.frameworks import get_framework
from finetune.launch.checkpoints import latest_complete
from finetune.launch.plan import LaunchRequest, check_together, plan_launch
from finetune.launch.run_state import STOPPED_EXIT, State, read_state
from finetune.prepare.datasets import resolve_dataset
from finetune.recipes.components import component_of
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import all_recipes, resolve_recipe
from finetune.replica.build import ensure_replica
from tests.conftest import REPO_ROOT, run_cli
from tests.helpers.gpu_extras import require_modules
from tests.helpers.merge import merge_difference
from tests.helpers.nodes import Node, one_node, process_tree, two_nodes
from tests.helpers.precheck import precheck

SWIFT = get_framework("swift")
SWIFT_RECIPES = [r for r in all_recipes() if r.framework == "swift"]
HF_LORA = [r.id for r in SWIFT_RECIPES if r.meta.engine == "deepspeed" and r.meta.lora_adapts]
MEGATRON = [r.id for r in SWIFT_RECIPES if r.meta.engine == "megatron"]
STEPS = 6


def _shrunk(recipe_id: str, steps: int = STEPS) -> list[str]:
    """The recipe shrunk to `steps` steps of the replica on a CPU, as `--set` arguments."""
    overrides = SWIFT.cpu_smoke_overrides(steps, resolve_recipe(recipe_id).meta)
    return [a for key, value in overrides.items() for a in ("--set", format_override(key, value))]


def _swift_args(recipe_id: str, run_dir: Path, replica: Path, nproc: int, *extra: str, steps: int = STEPS) -> list[str]:
    args = [recipe_id, "--model", str(replica), "--run-dir", str(run_dir), *one_node(nproc)]
    return [*args, *_shrunk(recipe_id, steps), *extra]


def _swift_launch(
    recipe_id: str,
    run_dir: Path,
    replica: Path,
    nproc: int = 1,
    *extra: str,
    env: dict[str, str] | None = None,
    steps: int = STEPS,
):
    args = _swift_args(recipe_id, run_dir, replica, nproc, *extra, steps=steps)
    out = run_cli("launch", *args, env={"OMP_NUM_THREADS": "1", **(env or {})}, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    return out


def _logged(run_dir: Path) -> list[dict]:
    """ms-swift's per-step log (output/logging.jsonl), training steps only."""
    rows = map(json.loads, (run_dir / "output" / "logging.jsonl").read_text().splitlines())
    return [row for row in rows if "loss" in row and "train_runtime" not in row]


def _mean(rows: list[dict], key: str) -> float:
    return sum(row[key] for row in rows) / len(rows)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("swift")


# -- parsing -------------------------------------------------------------------------------------------------


def _replica_request(run_dir: Path, replica: Path, *overrides: str) -> LaunchRequest:
    return LaunchRequest(
        recipe="swift/glm45-air_lora_4xh100",
        model=str(replica),
        nnodes=1,
        nproc_per_node=1,
        run_dir=run_dir,
        overrides=list(overrides),
    )


def _megatron_request(recipe_id: str, run_dir: Path, *overrides: str) -> LaunchRequest:
    return LaunchRequest(recipe=recipe_id, run_dir=run_dir, overrides=list(overrides))


LORA = "swift/glm45-air_lora_4xh100"
NO_DEEPSPEED = ("--set", "deepspeed=null")
SINGLE = (*NO_DEEPSPEED, "--set", "per_device_train_batch_size=2")  # the global batch of two ranks of batch 1
DPO_STEPS = 32
RECORD_SPANS = "tests.helpers.trained_batches:RecordTrainedSpans"  # what the trainer trains, recorded from inside
TRAINED = [  # the launches of the training tests below: (recipe, extra arguments, steps)
    (LORA, (), STEPS),
    (LORA, NO_DEEPSPEED, STEPS),
    (LORA, SINGLE, STEPS),
    ("swift/glm45-air_full_4xh100", NO_DEEPSPEED, STEPS),
    ("swift/glm45-air_dpo_4xh100", NO_DEEPSPEED, DPO_STEPS),
    ("swift/glm45-air_grpo_4xh100", NO_DEEPSPEED, STEPS),
]


@pytest.fixture(scope="module", autouse=True)
def _parsed_together(air_replica, tmp_path_factory):
    """The configs the parsing and training tests below plan, through ms-swift's parser in one process (as
    `validate --all` does); the tests then read the verdicts from the cache instead of importing ms-swift once
    each."""
    run_dir = tmp_path_factory.mktemp("parsed") / "r"
    check_together(
        [
            _replica_request(run_dir, air_replica, "lora_rnak=8"),
            _replica_request(run_dir, air_replica, "learning_rate=fast"),
            *(_megatron_request(r, run_dir) for r in MEGATRON),
            *(_megatron_request(r, run_dir, "expert_model_paralel_size=4") for r in MEGATRON),
        ]
    )
    precheck(
        [_swift_args(recipe_id, run_dir, air_replica, 1, *extra, steps=steps) for recipe_id, extra, steps in TRAINED]
    )


def test_every_row_of_the_issue_table_has_a_recipe():
    shapes = {(r.meta.model, r.meta.method, r.meta.total_gpus, r.meta.engine) for r in SWIFT_RECIPES}
    for model, gpus in (("glm-4.5", 16), ("glm-4.5-air", 4)):
        for method in ("lora", "full", "dpo", "grpo"):
            assert (model, method, gpus, "deepspeed") in shapes, (model, method)
        assert (model, "lora", gpus, "megatron") in shapes
    assert {(r.meta.model, r.meta.method) for r in SWIFT_RECIPES if r.meta.engine == "megatron"} >= {
        ("glm-4.5", "full"),
        ("glm-4.5-air", "full"),
    }


def test_unknown_swift_key_is_rejected_with_a_suggestion(air_replica, tmp_path):
    with pytest.raises(FinetuneError) as err:
        plan_launch(_replica_request(tmp_path / "r", air_replica, "lora_rnak=8"))
    assert "Did you mean `lora_rank`?" in str(err.value)


def test_bad_swift_value_is_rejected(air_replica, tmp_path):
    with pytest.raises(FinetuneError, match="ms-swift sft: error: argument --learning_rate.*invalid float"):
        plan_launch(_replica_request(tmp_path / "r", air_replica, "learning_rate=fast"))


@pytest.mark.parametrize("recipe_id", MEGATRON)
def test_megatron_recipe_names_only_megatron_swift_arguments(recipe_id, tmp_path):
    plan = plan_launch(_megatron_request(recipe_id, tmp_path / "r"), preview=True)
    assert plan.argv[-3:-1] in (["megatron", "sft"], ["megatron", "rlhf"])
    with pytest.raises(FinetuneError, match="Did you mean `expert_model_parallel_size`"):
        plan_launch(_megatron_request(recipe_id, tmp_path / "r", "expert_model_paralel_size=4"), preview=True)


def test_launch_passes_the_glm45_template_and_runs_swift_through_torchrun(air_replica, tmp_path):
    plan = plan_launch(
        LaunchRequest(
            recipe="swift/glm45_lora_16xh100",
            run_dir=tmp_path / "r",
            nnodes=2,
            node_rank=1,
            master_addr="10.0.0.1",
            nproc_per_node=8,
        ),
        check=False,
    )
    assert plan.config["template"] == "glm4_5"
    assert plan.config["add_version"] is False and plan.config["output_dir"] == str(tmp_path / "r" / "output")
    assert plan.argv[:4] == [str(SWIFT.bin("torchrun")), "--nnodes", "2", "--node-rank"]
    assert plan.argv[plan.argv.index("--master-addr") + 1] == "10.0.0.1"
    assert plan.argv[-4:] == [
        "-m",
        "finetune.frameworks.trainer.swift.entry",
        "sft",
        str(tmp_path / "r" / "config.yaml"),
    ]
    assert plan.config["dataset"] == [str(REPO_ROOT / "data/prepared/sample_chat/swift/train.jsonl")]


# -- what the LoRA adapts -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapted(tmp_path_factory) -> dict[str, list[str]]:
    """Recipe id -> the parameters ms-swift's own tuner set-up leaves trainable on the replica, for every HF-path
    LoRA recipe (one ms-swift process for all of them)."""
    folder = tmp_path_factory.mktemp("adapted")
    argv = []
    for recipe_id in HF_LORA:
        recipe = resolve_recipe(recipe_id)
        replica = ensure_replica(recipe.meta.model)
        shrink = [format_override(k, v) for k, v in SWIFT.cpu_smoke_overrides(STEPS, recipe.meta).items()]
        plan = plan_launch(
            LaunchRequest(
                recipe=recipe_id,
                model=str(replica),
                run_dir=folder / recipe.name,
                nnodes=1,
                nproc_per_node=1,
                overrides=[*shrink, "deepspeed=null"],
            ),
            check=False,
        )
        config_path = folder / f"{recipe.name}.yaml"
        config_path.write_text(yaml.safe_dump(plan.config))
        argv += [SWIFT.command(recipe.meta)[-1], str(config_path)]
    out = subprocess.run(
        [str(SWIFT.python()), "tests/helpers/swift_adapted_modules.py", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **SWIFT.env()},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(zip(HF_LORA, json.loads(out.stdout.strip().splitlines()[-1]), strict=True))


@pytest.mark.parametrize("recipe_id", HF_LORA)
def test_adapted_modules_are_what_the_header_says(recipe_id, adapted):
    recipe = resolve_recipe(recipe_id)
    trainable = adapted[recipe_id]
    assert trainable and all(".lora_" in name for name in trainable)
    assert {component_of(name) for name in trainable} == set(recipe.meta.lora_adapts)
    for component in recipe.meta.lora_adapts:
        assert f"- {component}:" in recipe.header


# -- training on the replica ----------------------------------------------------------------------------------


@pytest.mark.train
def test_lora_sft_trains_and_exports(runs, air_replica):
    run_dir = runs / "lora"
    _swift_launch(LORA, run_dir, air_replica)
    losses = [row["loss"] for row in _logged(run_dir)]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)

    out = run_cli("export", str(run_dir), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    merged = run_dir / "merged"
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in merged.iterdir()
    }
    assert (merged / "chat_template.jinja").read_text() == (air_replica / "chat_template.jinja").read_text()
    diff = merge_difference(SWIFT, air_replica, SWIFT.trained_weights(run_dir / "output", {}), merged)
    assert diff["adapter_effect"] > 1e-4  # the adapter changes the model...
    assert diff["merged_vs_adapted"] < 1e-4  # ...and the merged model is base + adapter

    again = run_cli("export", str(run_dir))
    assert again.returncode == 2 and "never overwrites" in again.stderr


@pytest.mark.train
def test_full_sft_trains(runs, air_replica):
    run_dir = runs / "full"
    _swift_launch("swift/glm45-air_full_4xh100", run_dir, air_replica, 1, "--set", "deepspeed=null")
    losses = [row["loss"] for row in _logged(run_dir)]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert sum(losses[-2:]) < sum(losses[:2])  # full fine-tuning at 1e-3 learns the tiny data fast
    out = run_cli("export", str(run_dir))
    assert out.returncode == 2 and "already a full model" in out.stderr


@pytest.mark.train
def test_dpo_learns_to_prefer_the_chosen_answers(runs, air_replica):
    """DPO starts at ln 2 by construction (LoRA's B = 0: policy = reference); that it learns shows in what
    follows: over a pass and a half of the sample pairs the loss falls below ln 2 and the reward margin (chosen
    minus rejected) grows."""
    run_dir = runs / "dpo"
    record = {"FINETUNE_CALLBACKS": RECORD_SPANS, "TRAINED_SPANS_OUT": str(runs / "dpo-spans.jsonl")}
    _swift_launch("swift/glm45-air_dpo_4xh100", run_dir, air_replica, 1, *NO_DEEPSPEED, env=record, steps=DPO_STEPS)
    rows = _logged(run_dir)
    assert len(rows) == DPO_STEPS and rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)
    first, last = rows[:8], rows[-8:]
    assert _mean(last, "loss") < math.log(2) - 0.05, [r["loss"] for r in rows]
    assert _mean(last, "rewards/margins") > _mean(first, "rewards/margins") + 0.1, [r["rewards/margins"] for r in rows]

    # the loss mask the trainer applied (its own dataset through its own collator) is GLM-4.5's, pair for pair:
    # what check-format renders and holds to the official rendering is what DPO trains
    from transformers import AutoTokenizer

    from finetune.glm.format_check import expected_rows

    tokenizer = AutoTokenizer.from_pretrained(air_replica)
    dataset = resolve_dataset("sample_preference")
    official = sorted(
        (want["chosen"]["text"], want["chosen"]["trained"], want["rejected"]["text"], want["rejected"]["trained"])
        for row in map(json.loads, dataset.canonical_train.read_text().splitlines())
        for want in [expected_rows(tokenizer, row, "preference")]
    )
    trained = sorted(
        (chosen["text"], chosen["trained"], rejected["text"], rejected["trained"])
        for chosen, rejected in (json.loads(line)["sequences"] for line in (runs / "dpo-spans.jsonl").open())
    )
    assert trained == official


@pytest.mark.train
@pytest.mark.vllm
def test_grpo_rolls_out_with_vllm_and_its_rewards_vary(runs, air_replica):
    """The recipe as it runs on a cluster: vLLM colocated in the trainer's process (its CPU build here, one
    "GPU"), the recipe's reward functions scoring its completions."""
    run_dir = runs / "grpo"
    _swift_launch(
        "swift/glm45-air_grpo_4xh100",
        run_dir,
        air_replica,
        1,
        "--set",
        "deepspeed=null",
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    log = (run_dir / "logs" / "node0.log").read_text()
    assert "Loading safetensors checkpoint shards: 100% Completed" in log  # vLLM's own loader, not transformers'
    rows = _logged(run_dir)
    assert rows and all("rewards/Glm45Answer/mean" in r and "rewards/Glm45Format/mean" in r for r in rows)
    assert all(math.isfinite(r["reward"]) for r in rows)
    assert any(r["reward_std"] > 0 for r in rows)  # completions of one prompt scored differently: a signal to learn


# -- distributed runs train as one process does ----------------------------------------------------------------
# Two ranks of batch 1 see the global batch of one process of batch 2, so losses and adapters must agree to float32
# rounding. Without a process group each rank would train alone and log its own losses (ms-swift on CPU without
# `use_cpu`; finetune/frameworks/trainer/swift/entry.py sets it).


@pytest.fixture(scope="module")
def single_run(runs, air_replica) -> Path:
    run_dir = runs / "single"
    _swift_launch(LORA, run_dir, air_replica, 1, *SINGLE)
    return run_dir


def _assert_trains_as(run_dir: Path, single: Path) -> None:
    losses, reference = ([row["loss"] for row in _logged(d)] for d in (run_dir, single))
    assert len(losses) == STEPS and losses == pytest.approx(reference, abs=1e-4), (losses, reference)
    ours, theirs = (
        load_file(SWIFT.trained_weights(d / "output", {}) / "adapter_model.safetensors") for d in (run_dir, single)
    )
    assert ours.keys() == theirs.keys()
    assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) < 1e-4
    assert max(t.abs().max().item() for t in theirs.values()) > 1e-3  # the adapters did move


@pytest.mark.train
def test_zero3_two_processes_train_as_one_process(runs, air_replica, single_run):
    run_dir = runs / "zero3"
    _swift_launch(LORA, run_dir, air_replica, 2)
    assert "world_size: 2" in (run_dir / "logs" / "node0.log").read_text()  # ms-swift's own line
    assert json.loads((run_dir / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 3
    _assert_trains_as(run_dir, single_run)


@pytest.mark.train
def test_data_parallel_two_processes_train_as_one_process(runs, air_replica, single_run):
    run_dir = runs / "ddp"
    _swift_launch(LORA, run_dir, air_replica, 2, *NO_DEEPSPEED)
    _assert_trains_as(run_dir, single_run)


@pytest.mark.train
def test_two_nodes_train_as_one_process(runs, air_replica, single_run):
    run_dir = runs / "two-nodes"
    for code, out in two_nodes(LORA, "--model", str(air_replica), "--run-dir", str(run_dir), *_shrunk(LORA)):
        assert code == 0, out[-3000:]
    assert {p.name for p in run_dir.glob("launch-node*.json")} == {"launch-node0.json", "launch-node1.json"}
    _assert_trains_as(run_dir, single_run)


@pytest.mark.gpu
@pytest.mark.parametrize("recipe_id", MEGATRON)
def test_megatron_recipe_trains_on_gpu(recipe_id, runs):
    """A few real Megatron-SWIFT steps on the replica (needs `./setup.sh gpu-extras`). No CPU twin: nothing of
    Megatron runs without a GPU; on a CPU its recipes are checked against Megatron-SWIFT's argument names only."""
    require_modules(SWIFT.python(), ("megatron.core", "transformer_engine"), "run ./setup.sh gpu-extras")
    recipe = resolve_recipe(recipe_id)
    replica = ensure_replica(recipe.meta.model)
    import torch

    gpus = torch.cuda.device_count()
    shrink = {  # the replica has 2 key/value heads and 8 experts: parallel sizes shrink with it
        "tensor_model_parallel_size": 1,
        "pipeline_model_parallel_size": 1,
        "sequence_parallel": False,
        "expert_model_parallel_size": min(gpus, 8),
        "global_batch_size": gpus,
        "max_length": 512,
        "packing": False,
        "train_iters": 3,
        "log_interval": 1,
        "torch_dtype": "bfloat16",
    }
    sets = [a for k, v in shrink.items() for a in ("--set", format_override(k, v))]
    out = run_cli(
        "launch",
        recipe_id,
        "--model",
        str(replica),
        "--run-dir",
        str(runs / recipe.name),
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(gpus),
        *sets,
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    rows = [json.loads(line) for line in (runs / recipe.name / "output" / "logging.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "iteration" in r and "loss" in r]  # Megatron-SWIFT's own log, one row per step
    assert [r["iteration"] for r in steps] == ["1/3", "2/3", "3/3"], rows
    assert all(math.isfinite(float(r["loss"])) for r in steps)
    assert Path(rows[-1]["last_model_checkpoint"]).is_dir()  # the final message names the saved checkpoint


@pytest.mark.vllm
def test_grpo_rollouts_follow_the_weights_the_trainer_syncs(air_replica):
    """Colocated GRPO loads the policy's weights into vLLM after each step. On vLLM's CPU build that load fails
    without the repository's hook (finetune/frameworks/trainer/swift/vllm_cpu.py); with it, vLLM's greedy tokens
    after the load are transformers' greedy tokens on the loaded weights, not the old ones."""
    proc = subprocess.run(
        [
            str(SWIFT.python()),
            str(REPO_ROOT / "tests" / "e2e" / "scripts" / "vllm_weight_sync.py"),
            str(air_replica),
            "hook",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert result["after"] == result["expected"] != result["before"]


@pytest.mark.train
def test_sigterm_to_every_process_stops_a_zero3_run_resumably_and_says_so(runs, air_replica):
    """Slurm's preemption on two ranks under the recipe's ZeRO-3: SIGTERM to the launcher, torchrun and the workers
    at once, during a step longer than torchrun's ~30 s grace, ends in a complete checkpoint, exit code 75 and the
    state `stopped`; that checkpoint is not exported as the finished run's, and `--resume` trains to the end."""
    run_dir = runs / "stopped"
    steps = 30
    args = _swift_args(LORA, run_dir, air_replica, 2, "--set", "save_steps=1000", steps=steps)
    slow = {"FINETUNE_CALLBACKS": "tests.helpers.trainer_faults:SlowStepAfterStopRequest", "SLOW_STEP_S": "40"}
    env = {**os.environ, "OMP_NUM_THREADS": "1", **slow}
    proc = Node([sys.executable, "-m", "finetune", "launch", *args], cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 420
    while not ((run_dir / "output" / "logging.jsonl").is_file() and _logged(run_dir)):  # training, step 1 logged
        assert time.monotonic() < deadline and proc.poll() is None, proc.output()[-3000:]
        time.sleep(0.5)
    for pid in process_tree(proc.pid):
        os.kill(pid, signal.SIGTERM)
    code = proc.wait(timeout=300)
    out, node_log = proc.output(), (run_dir / "logs" / "node0.log").read_text()
    assert code == STOPPED_EXIT, out[-4000:]
    assert "slow step: 40 s" in node_log and "death signal" not in node_log
    checkpoint, skipped = latest_complete(run_dir / "output")
    assert checkpoint is not None and not skipped and (checkpoint / "latest").is_file()  # DeepSpeed's own shards
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert 0 < step < steps and f"stopped at step {step} (output/{checkpoint.name} holds it" in out
    assert not (run_dir / "output" / "adapter_model.safetensors").exists()
    closing = json.loads((run_dir / "output" / "logging.jsonl").read_text().splitlines()[-1])
    assert closing["global_step"] == step  # ms-swift's own closing record (it writes one however train() ends)
    state = read_state(run_dir)
    assert (state.state, state.step, state.exit_code) == (State.STOPPED, step, STOPPED_EXIT)
    refused = run_cli("export", str(run_dir))
    assert refused.returncode == 2 and "has not finished" in refused.stderr

    resumed = run_cli("launch", "--resume", str(run_dir), env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming from {checkpoint}" in resumed.stdout
    assert [int(r["global_step/max_steps"].split("/")[0]) for r in _logged(run_dir)][-1] == steps
    assert read_state(run_dir).state is State.FINISHED


def _losses_by_step(run_dir: Path) -> dict[int, float]:
    return {int(r["global_step/max_steps"].split("/")[0]): r["loss"] for r in _logged(run_dir)}


@pytest.mark.train
def test_full_sft_resumes_from_its_optimizer_state(runs, air_replica):
    """Full SFT under ZeRO-3 on two ranks, killed right after its first checkpoint, resumes with Adam's states:
    the resumed steps lose exactly what an uninterrupted run's do (a model-only checkpoint would restart Adam)."""
    full, steps = "swift/glm45-air_full_4xh100", 8
    extra = ("--set", "deepspeed=recipes/deepspeed/zero3.json", "--set", "save_steps=4")
    whole = runs / "full-whole"
    _swift_launch(full, whole, air_replica, 2, *extra, steps=steps)

    crashed = runs / "full-crashed"
    args = _swift_args(full, crashed, air_replica, 2, *extra, steps=steps)
    crash = {"OMP_NUM_THREADS": "1", "FINETUNE_CALLBACKS": "tests.helpers.trainer_faults:CrashAfterFirstSave"}
    out = run_cli("launch", *args, env=crash, timeout=900)
    assert out.returncode != 0 and read_state(crashed).state is State.FAILED, out.stdout[-3000:]
    checkpoint, skipped = latest_complete(crashed / "output")
    assert checkpoint is not None and checkpoint.name == "checkpoint-4" and not skipped
    assert (checkpoint / "latest").is_file()  # the optimizer states are in it (save_only_model: false)

    resumed = run_cli("launch", "--resume", str(crashed), env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    reference, continued = _losses_by_step(whole), _losses_by_step(crashed)
    assert sorted(continued) == list(range(1, steps + 1))
    assert [continued[s] for s in range(5, steps + 1)] == pytest.approx(
        [reference[s] for s in range(5, steps + 1)], abs=1e-4
    )
