"""Train what you serve, through a real engine: vLLM's CPU build serving the replica fine-tuned by each framework.

The proof: a handful of tool-calling conversations (tests/e2e/fixtures/tool_calls.jsonl) are prepared, the replica
is trained on them with each framework's LoRA recipe until it reproduces them (GLM-4.5-Air's replica by both
frameworks, GLM-4.7's by LLaMA-Factory with the project's `glm47` template), merged with `finetune export`,
served with `finetune serve --run` (vLLM with the model's tool-call and reasoning parsers), and asked the training
prompts with their tools: the tool calls and reasoning the server's own parsers return must equal the training
targets, and so must the final answers after the tool results go back. Any difference between the format a
framework trains and the one vLLM renders and parses shows up here as a wrong reply.

The LoRA recipes also train the embeddings and the output layer here (modules_to_save): the replica's weights are
random, and with its embeddings frozen a rank-16 adapter needs thousands of steps to memorize even three
conversations (loss ~2.5 after 200 steps, measured), while with them trainable 100 steps suffice. The merge then
folds the adapter and those layers into one model, as a user's export does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from finetune.frameworks import get_framework
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import resolve_recipe
from finetune.replica.build import ensure_replica
from finetune.serving.chat import ServerChat, assistant_message
from finetune.serving.engine import find_engine
from finetune.serving.serve import check_engine_args, engine_verdicts, plan_serve
from tests.conftest import run_cli
from tests.helpers.merge import merge_difference
from tests.helpers.nodes import free_port, one_node
from tests.helpers.vllm_server import SERVER_ENV, START_WAIT_S, post, ready_url, serving, start_server, stop_servers

pytestmark = [pytest.mark.vllm, pytest.mark.train]

FIXTURE = Path(__file__).parent / "fixtures" / "tool_calls.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
STEPS = 100
RECIPES = {  # one run each, on the replica of the recipe's model
    "llamafactory": "llamafactory/glm45-air_lora_4xh100",
    "swift": "swift/glm45-air_lora_4xh100",
    # GLM-4.7: its own chat template and tool-call layout, served with vLLM's glm47 parser (grammar on)
    "glm47": "llamafactory/glm47_lora_16xh100",
}
MEMORIZE = {  # on top of each framework's CPU shrink: one batch of all rows, a constant rate, long enough rows
    "llamafactory": {
        "deepspeed": None,
        "cutoff_len": 1024,
        "per_device_train_batch_size": 3,
        "learning_rate": 5.0e-3,
        "lr_scheduler_type": "constant",
        "additional_target": "embed_tokens,lm_head",
        "logging_steps": 10,
    },
    "swift": {
        "deepspeed": None,
        "max_length": 1024,
        "per_device_train_batch_size": 3,
        "learning_rate": 5.0e-3,
        "lr_scheduler_type": "constant",
        "modules_to_save": ["embed_tokens", "lm_head"],
        "logging_steps": 10,
    },
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    out = run_cli("prepare", str(FIXTURE), "--name", "tool_proof", "--out-root", str(root), "--quiet")
    assert out.returncode == 0, out.stderr
    return root


def _train_and_export(run: str, data_root: Path, run_dir: Path) -> Path:
    recipe = resolve_recipe(RECIPES[run])
    replica = ensure_replica(recipe.meta.model)
    framework = recipe.framework
    overrides = {**get_framework(framework).cpu_smoke_overrides(STEPS, recipe.meta), **MEMORIZE[framework]}
    sets = [a for k, v in overrides.items() for a in ("--set", format_override(k, v))]
    out = run_cli(
        "launch",
        recipe.id,
        "--model",
        str(replica),
        "--dataset",
        "tool_proof",
        "--run-dir",
        str(run_dir),
        *one_node(),
        *sets,
        env={"FINETUNE_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"},  # the two frameworks train side by side
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    exported = run_cli("export", str(run_dir), timeout=600)
    assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-2000:]
    return run_dir


def _call(message: dict) -> list[dict]:
    return [
        {"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in message.get("tool_calls", [])
    ]


def _rendered_prompt(url: str, model: str, row: dict, *, thinking: bool) -> str:
    """The prompt the server builds for the row's first user turn (vLLM's /tokenize, then /detokenize)."""
    body = {"model": model, "messages": row["messages"][:1], "tools": row["tools"], "add_generation_prompt": True}
    if not thinking:
        body["chat_template_kwargs"] = {"enable_thinking": False}
    tokens = post(url, "/tokenize", body)["tokens"]
    return post(url, "/detokenize", {"model": model, "tokens": tokens})["prompt"]


def _assert_replays_the_training_rows(chat: ServerChat) -> None:
    for row in ROWS:
        user, target = row["messages"][0], row["messages"][1]
        reply = chat.reply([user], row["tools"], max_tokens=200)
        assert reply["reasoning"] == target["reasoning_content"], (user, reply)
        assert reply["tool_calls"] == _call(target), (user, reply)
        assert reply["content"] == target["content"], (user, reply)
        if not target.get("tool_calls"):
            continue
        sent = assistant_message(reply)
        result = {**row["messages"][2], "tool_call_id": sent["tool_calls"][0]["id"]}  # the tool's result goes back
        history = [user, sent, result]
        final, answer = chat.reply(history, row["tools"], max_tokens=200), row["messages"][3]
        assert (final["reasoning"], final["content"], final["tool_calls"]) == (
            answer["reasoning_content"],
            answer["content"],
            [],
        ), (history, final)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """One fine-tuned, merged run per entry of RECIPES, trained once for the module, side by side."""
    root = tmp_path_factory.mktemp("vllm-runs")
    with ThreadPoolExecutor(len(RECIPES)) as pool:  # all at once: the two cores stay busy to the end
        runs = {name: pool.submit(_train_and_export, name, data_root, root / name) for name in RECIPES}
        return {name: run.result() for name, run in runs.items()}


@pytest.fixture(scope="class")
def servers(trained):
    """Every merged run served at once (the engines start side by side); stopped with Ctrl-C."""
    procs = {fw: start_server(run) for fw, run in trained.items()}
    try:
        yield {fw: ready_url(proc) for fw, proc in procs.items()}
    finally:
        stop_servers(*procs.values())


class TestServedRuns:
    """Both servers live for this class only: the tests after it start their own."""

    @pytest.mark.parametrize("framework", list(RECIPES))
    def test_served_replies_equal_the_training_targets(self, framework, servers, tmp_path):
        url = servers[framework]
        chat = ServerChat(url)
        _assert_replays_the_training_rows(chat)
        if framework == "glm47":
            # the server renders GLM-4.7's own prompts: no newline after the role tokens, `<think>` opens the turn,
            # thinking off closes it at once
            row = ROWS[0]
            assert _rendered_prompt(url, chat.model_name(), row, thinking=True).endswith("<|assistant|><think>")
            assert _rendered_prompt(url, chat.model_name(), row, thinking=False).endswith(
                row["messages"][0]["content"] + "<|assistant|></think>"
            )
        if framework == "llamafactory":
            # the same server, as `finetune chat` users reach it: streaming, thinking off, the one-shot CLI
            row = ROWS[0]
            whole = chat.reply(row["messages"][:1], row["tools"], max_tokens=200)
            pieces: list[tuple[str, str]] = []
            streamed = chat.reply(
                row["messages"][:1],
                row["tools"],
                max_tokens=200,
                stream=True,
                on_text=lambda k, t: pieces.append((k, t)),
            )
            assert streamed == whole
            assert "".join(t for k, t in pieces if k == "reasoning").strip() == whole["reasoning"] and len(pieces) > 1
            # thinking off reaches the server's template (the empty think block closes the prompt) and nothing the
            # model writes after it is read as reasoning, by the server's parser or the client
            assert _rendered_prompt(url, chat.model_name(), row, thinking=False).endswith(
                "/nothink<|assistant|>\n<think></think>"
            )
            assert _rendered_prompt(url, chat.model_name(), row, thinking=True).endswith("<|assistant|>")
            off = chat.reply(row["messages"][:1], row["tools"], max_tokens=200, thinking=False)
            assert not off["reasoning"], off
            tools = tmp_path / "tools.json"
            tools.write_text(json.dumps(row["tools"]))
            one_shot = run_cli(
                "chat", url, "--message", row["messages"][0]["content"], "--tools", str(tools), "--stream"
            )
            assert one_shot.returncode == 0, one_shot.stderr
            assert json.loads(one_shot.stdout.strip().splitlines()[-1])["tool_calls"] == _call(row["messages"][1])


def test_llamafactory_merge_is_base_plus_adapter(trained, air_replica):
    """`finetune export` of a LLaMA-Factory run (LLaMA-Factory's own `export`): the merged model computes what
    the base model with the adapter (LoRA, and the trained embeddings and output layer) computes."""
    framework = get_framework("llamafactory")
    run = trained["llamafactory"]
    diff = merge_difference(framework, air_replica, framework.trained_weights(run / "output", {}), run / "merged")
    assert diff["adapter_effect"] > 1e-2  # the fine-tune changes the model...
    assert diff["merged_vs_adapted"] < 1e-4  # ...and the merge is exactly base + adapter (float32 throughout)


def test_a_server_that_cannot_start_is_reported_with_its_log(trained, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in trained["llamafactory"].iterdir():  # the run, with a merged model of an architecture vLLM lacks
        target = broken / item.name
        if item.name == "merged":
            target.mkdir()
            for f in item.iterdir():
                (target / f.name).write_bytes(f.read_bytes())
            config = json.loads((target / "config.json").read_text())
            (target / "config.json").write_text(json.dumps({**config, "architectures": ["NoSuchForCausalLM"]}))
        elif item.is_file():
            target.write_bytes(item.read_bytes())
    start = time.monotonic()
    out = run_cli("serve", str(broken), "--run", "--port", str(free_port()), env=SERVER_ENV, timeout=START_WAIT_S)
    assert out.returncode != 0
    assert "exited with code" in out.stderr and "the end of its log" in out.stderr
    assert "NoSuchForCausalLM" in out.stderr, out.stderr[-2000:]  # the engine's own complaint, from its log
    assert time.monotonic() - start < START_WAIT_S


def test_a_server_that_is_not_ready_in_time_is_stopped(trained):
    check_engine_args(plan_serve(trained["swift"], "vllm", port=free_port()))  # another run's check, cached
    out = run_cli(
        "serve", str(trained["llamafactory"]), "--run", "--port", str(free_port()), "--wait", "2", env=SERVER_ENV
    )
    assert out.returncode != 0 and "did not answer" in out.stderr and "within 2 s" in out.stderr
    assert "checking the arguments" not in out.stderr  # the verdict for the same command shape was reused
    left = subprocess.run(["pgrep", "-f", f"vllm.* --model {trained['llamafactory'] / 'merged'}"], capture_output=True)
    assert left.returncode == 1, left.stdout  # no server left behind


@pytest.mark.gpu
def test_an_adapter_served_on_its_base_model_answers_as_its_merge(tmp_path, air_replica, data_root):
    """GPU twin of the round trip above (vLLM's CPU build cannot serve adapters on glm4_moe): a LoRA-only run of the
    LLaMA-Factory recipe, served as base model + adapter (`--enable-lora`) and as its merge, gives the same greedy
    replies to the training prompts. Its CPU twin is the merge check of each framework (merged logits equal base +
    adapter: test_llamafactory_merge_is_base_plus_adapter here, test_lora_sft_trains_and_exports in test_swift.py)."""
    install = find_engine("vllm")
    if not install.installed or install.cpu_build:
        pytest.skip("vLLM's CUDA wheel is not installed in .venvs/swift (./setup.sh on a GPU machine installs it)")
    recipe = resolve_recipe(RECIPES["llamafactory"])
    overrides = {**get_framework("llamafactory").cpu_smoke_overrides(30, recipe.meta), **MEMORIZE["llamafactory"]}
    overrides.pop("additional_target")  # vLLM serves LoRA weights only
    sets = [a for k, v in overrides.items() for a in ("--set", format_override(k, v))]
    adapter_run = tmp_path / "adapter"
    out = run_cli(
        "launch", recipe.id, "--model", str(air_replica), "--dataset", "tool_proof", "--run-dir", str(adapter_run),
        *one_node(), *sets, env={"FINETUNE_DATA_ROOT": str(data_root)}, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    merged_run = tmp_path / "merged"
    shutil.copytree(adapter_run, merged_run)
    assert run_cli("export", str(merged_run), timeout=600).returncode == 0
    replies = {}
    for name, run in (("adapter", adapter_run), ("merged", merged_run)):
        with serving(run, "--gpus", "1") as url:
            chat = ServerChat(url, model=run.name)  # the adapter's name, not the base model's
            replies[name] = [chat.reply(r["messages"][:1], r["tools"], max_tokens=100) for r in ROWS]
    assert replies["adapter"] == replies["merged"]


# -- the engine's own argument parser ------------------------------------------------------------------------------


def _merged_run(tmp_path: Path, replica: Path) -> Path:
    run = tmp_path / "run"
    (run / "merged").mkdir(parents=True)
    (run / "merged" / "config.json").write_bytes((replica / "config.json").read_bytes())
    (run / "merged" / "export.json").write_text("{}")
    (run / "launch-node0.json").write_text(json.dumps({"framework": "swift", "model": str(replica), "recipe": "x"}))
    (run / "config.yaml").write_text("tuner_type: lora\n")
    return run


def test_serve_arguments_are_those_the_installed_vllm_accepts(tmp_path, air_replica):
    install = find_engine("vllm")
    assert install.installed and install.cpu_build, "setup.sh installs vLLM's CPU build into .venvs/swift"
    plan = plan_serve(_merged_run(tmp_path, air_replica), "vllm", port=8123, max_model_len=2048, install=install)
    check_engine_args(plan)  # raises on anything the engine rejects
    wrong_parser = list(plan.engine_args)
    wrong_parser[wrong_parser.index("--tool-call-parser") + 1] = "glm99"
    ok, gpu_form, unknown_flag, unknown_parser = engine_verdicts(
        install,
        plan.env,
        [
            plan.engine_args,
            [*plan.engine_args, "--enable-lora", "--max-lora-rank", "16"],  # the adapter flags a GPU server gets
            [*plan.engine_args, "--no-such-flag"],
            wrong_parser,
        ],
    )
    assert ok["ok"] and gpu_form["ok"]
    assert not unknown_flag["ok"] and "unrecognized arguments: --no-such-flag" in unknown_flag["error"]
    assert (
        not unknown_parser["ok"] and "--tool-call-parser glm99: not a parser this vLLM has" in unknown_parser["error"]
    )
    assert "glm45" in unknown_parser["error"]  # the parsers it has are listed
