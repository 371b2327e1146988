"""Talk to a fine-tuned model of the family: a local model folder through transformers, or an OpenAI-compatible
server.

Both paths give the same reply shape, {"content", "reasoning", "tool_calls": [{"name", "arguments"}]}: a server
(vLLM / SGLang with its model's parsers, `finetune serve` picks them; `swift deploy`) parses it itself; for a local
model the prompt is the folder's own chat template and the generated text is parsed with finetune.glm.format,
which reads GLM-4.5's and GLM-4.7's layouts alike. Thinking off is `chat_template_kwargs.enable_thinking = false`,
which the model's chat template turns into an empty think block (and GLM-4.5's into `/nothink`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.glm.format import parse_assistant


def load_tools(path: Path) -> list[dict]:
    """Tool definitions from a JSON file: a list of OpenAI tools ({"type": "function", "function": {...}}) or of
    bare functions ({"name", "description", "parameters"}), or an object holding such a list under "tools"."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise FinetuneError(f"--tools {path}: cannot read it as JSON ({error}).") from error
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list):
        raise FinetuneError(f"--tools {path}: expected a JSON list of tool definitions, found {type(data).__name__}.")
    tools = []
    for index, tool in enumerate(data):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise FinetuneError(
                f"--tools {path}: item {index} has no function name; each item is "
                '{"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}.'
            )
        tools.append({"type": "function", "function": function})
    return tools


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


@dataclass
class ServerChat:
    """An OpenAI-compatible /v1/chat/completions endpoint, over plain HTTP."""

    url: str
    model: str | None = None
    timeout: float = 600.0
    last_request: dict[str, Any] = field(default_factory=dict)

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=self.timeout) as response:
            return json.loads(response.read())

    def model_name(self) -> str:
        if self.model is None:
            self.model = self._get("/v1/models")["data"][0]["id"]
        return self.model

    def reply(
        self,
        messages: list[dict],
        tools: list[dict] | None,
        *,
        thinking: bool = True,
        max_tokens: int = 1024,
        stream: bool = False,
        on_text: Callable[[str, str], None] | None = None,
    ) -> dict[str, Any]:
        """One assistant turn. `stream` reads the server's event stream and calls `on_text(kind, text)` for each
        piece ("reasoning" or "content") as it arrives; the reply is the same either way."""
        body: dict[str, Any] = {"model": self.model_name(), "messages": messages, "max_tokens": max_tokens}
        body["temperature"] = 0.0  # the fine-tuned behaviour, not a sample of it
        if tools:
            body["tools"] = tools
        if not thinking:
            body["chat_template_kwargs"] = {"enable_thinking": False}
        if stream:
            body["stream"] = True
        self.last_request = body
        request = urllib.request.Request(
            self.url.rstrip("/") + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if stream:
                    message = _read_stream(response, on_text)
                else:
                    message = json.loads(response.read())["choices"][0]["message"]
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[-2000:]
            raise FinetuneError(f"{self.url} refused the request (HTTP {error.code}): {detail}") from error
        content = message.get("content") or ""
        parsed = parse_assistant(content, thinking=thinking)  # servers without a tool parser return the raw text
        calls = [
            {"name": c["function"]["name"], "arguments": _arguments(c["function"]["arguments"])}
            for c in message.get("tool_calls") or []
        ] or parsed["tool_calls"]
        reasoning = (message.get("reasoning_content") or message.get("reasoning") or parsed["reasoning"]).strip()
        return {
            "content": parsed["content"] if not message.get("tool_calls") else content.strip(),
            "reasoning": reasoning,
            "tool_calls": calls,
        }


def _read_stream(response, on_text: Callable[[str, str], None] | None) -> dict[str, Any]:
    """Assemble an OpenAI chat-completion event stream into one message: text pieces joined, tool calls joined
    by their index (the name arrives once, the arguments in pieces)."""
    content, reasoning, calls = [], [], {}
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            break
        choices = json.loads(data).get("choices") or []
        delta = choices[0].get("delta", {}) if choices else {}
        for kind, key, sink in (
            ("reasoning", "reasoning_content", reasoning),
            ("reasoning", "reasoning", reasoning),
            ("content", "content", content),
        ):
            piece = delta.get(key)
            if piece:
                sink.append(piece)
                if on_text:
                    on_text(kind, piece)
        for call in delta.get("tool_calls") or []:
            slot = calls.setdefault(call.get("index", len(calls)), {"name": "", "arguments": ""})
            function = call.get("function") or {}
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""
    return {
        "content": "".join(content),
        "reasoning": "".join(reasoning),
        "tool_calls": [{"type": "function", "function": calls[i]} for i in sorted(calls)],
    }


@dataclass
class LocalChat:
    """A model folder, generated with transformers and parsed as GLM-4.5 writes."""

    path: str
    last_prompt: str = ""

    def __post_init__(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, torch_dtype="auto")

    def reply(
        self,
        messages: list[dict],
        tools: list[dict] | None,
        *,
        thinking: bool = True,
        max_tokens: int = 1024,
        stream: bool = False,
        on_text: Callable[[str, str], None] | None = None,
    ) -> dict[str, Any]:
        """One assistant turn, generated whole (`stream` and `on_text` are for servers)."""
        self.last_prompt = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
        )
        ids = self.tokenizer(self.last_prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        out = self.model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        text = self.tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=False)
        return parse_assistant(text, thinking=thinking)


def connect(target: str, model: str | None = None):
    return ServerChat(target, model) if is_url(target) else LocalChat(target)


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def assistant_message(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply as the next request's history message (OpenAI shape)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply["content"]}
    if reply["reasoning"]:
        message["reasoning_content"] = reply["reasoning"]
    if reply["tool_calls"]:
        message["tool_calls"] = [  # OpenAI's shape: an id per call, the arguments as a JSON string
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": _arguments_text(c["arguments"])},
            }
            for i, c in enumerate(reply["tool_calls"])
        ]
    return message


def repl(chat, tools: list[dict] | None, *, thinking: bool, system: str | None = None, stream: bool = False) -> None:
    """Interactive chat: tool calls are shown and their results typed in; `stream` prints text as it arrives."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            text = input("you> ")
        except EOFError:
            return
        if text.strip() in ("/exit", "/quit"):
            return
        messages.append({"role": "user", "content": text})
        while True:
            shown = _StreamPrinter() if stream else None
            reply = chat.reply(messages, tools, thinking=thinking, stream=stream, on_text=shown)
            messages.append(assistant_message(reply))
            if shown is not None:
                shown.end()
            else:
                if reply["reasoning"]:
                    print(f"(thinking) {reply['reasoning']}")
                if reply["content"]:
                    print(f"glm> {reply['content']}")
            if not reply["tool_calls"]:
                break
            for call, sent in zip(reply["tool_calls"], messages[-1]["tool_calls"], strict=True):
                print(f"tool call: {call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})")
                result = input(f"result of {call['name']}> ")
                messages.append({"role": "tool", "tool_call_id": sent["id"], "content": result})


class _StreamPrinter:
    """Prints streamed pieces under the same labels the whole-reply view uses."""

    def __init__(self) -> None:
        self.kind: str | None = None

    def __call__(self, kind: str, text: str) -> None:
        if kind != self.kind:
            if self.kind is not None:
                print()
            print("(thinking) " if kind == "reasoning" else "glm> ", end="")
            self.kind = kind
        print(text, end="", flush=True)

    def end(self) -> None:
        if self.kind is not None:
            print()
