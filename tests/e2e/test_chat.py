"""`finetune chat` against a real OpenAI-compatible server: ms-swift's `swift deploy` serving the replica on CPU."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from finetune.serving.chat import LocalChat, ServerChat, assistant_message
from tests.conftest import REPO_ROOT, run_cli

SWIFT = REPO_ROOT / ".venvs" / "swift" / "bin" / "swift"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(air_replica, tmp_path_factory):
    if not SWIFT.exists():
        pytest.fail(f"{SWIFT} is missing: run ./setup.sh")
    port = _free_port()
    log = tmp_path_factory.mktemp("deploy") / "deploy.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(SWIFT),
                "deploy",
                "--model",
                str(air_replica),
                "--template",
                "glm4_5",
                "--torch_dtype",
                "float32",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--max_new_tokens",
                "16",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 150
        while True:
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("swift deploy did not come up:\n" + log.read_text()[-3000:])
                time.sleep(2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_tool_calling_round_trip(server):
    chat = ServerChat(server)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    reply = chat.reply(messages, TOOLS, max_tokens=8)
    assert chat.last_request["tools"] == TOOLS
    assert set(reply) == {"content", "reasoning", "tool_calls"}  # the replica's words are random; the shape is not
    # the tool result goes back as GLM-4.5 reads it: an assistant call, then the tool's answer
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    messages += [
        assistant_message({"content": "", "reasoning": "", "tool_calls": [call]}),
        {"role": "tool", "content": '{"temperature": "21C"}'},
    ]
    final = chat.reply(messages, TOOLS, max_tokens=8)
    assert chat.last_request["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert isinstance(final["content"], str)


def test_thinking_off_is_sent_as_the_chat_template_flag(server):
    chat = ServerChat(server)
    chat.reply([{"role": "user", "content": "hi"}], None, thinking=False, max_tokens=4)
    assert chat.last_request["chat_template_kwargs"] == {"enable_thinking": False}


def test_one_shot_prints_json(server, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    proc = run_cli(
        "chat", server, "--message", "Weather in Paris?", "--tools", str(tools), "--max-tokens", "4", "--no-thinking"
    )
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout.strip().splitlines()[-1])) == {"content", "reasoning", "tool_calls"}


def test_local_model_renders_tools_and_thinking_off(air_replica):
    chat = LocalChat(str(air_replica))
    reply = chat.reply([{"role": "user", "content": "Weather?"}], TOOLS, thinking=False, max_tokens=4)
    assert chat.last_prompt.endswith("Weather?/nothink<|assistant|>\n<think></think>")
    assert "<tools>" in chat.last_prompt and set(reply) == {"content", "reasoning", "tool_calls"}
