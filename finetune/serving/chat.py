"""Talk to a fine-tuned GLM-4.5: a local model folder through transformers, or an OpenAI-compatible server.

Both paths give the same reply shape, {"content", "reasoning", "tool_calls": [{"name", "arguments"}]}: a server
(vLLM / SGLang with the glm45 parsers, `swift deploy`) parses it itself; for a local model the generated text is
parsed with GLM-4.5's format (finetune.glm.format). Thinking off is `chat_template_kwargs.enable_thinking =
false`, which the model's chat template turns into `/nothink` and an empty think block.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from finetune.glm.format import parse_assistant


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
        self, messages: list[dict], tools: list[dict] | None, *, thinking: bool = True, max_tokens: int = 1024
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_name(), "messages": messages, "max_tokens": max_tokens}
        if tools:
            body["tools"] = tools
        if not thinking:
            body["chat_template_kwargs"] = {"enable_thinking": False}
        self.last_request = body
        request = urllib.request.Request(
            self.url.rstrip("/") + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            message = json.loads(response.read())["choices"][0]["message"]
        content = message.get("content") or ""
        parsed = parse_assistant(content)  # servers without a tool parser return the raw text
        calls = [
            {"name": c["function"]["name"], "arguments": _arguments(c["function"]["arguments"])}
            for c in message.get("tool_calls") or []
        ] or parsed["tool_calls"]
        reasoning = message.get("reasoning_content") or message.get("reasoning") or parsed["reasoning"]
        return {
            "content": parsed["content"] if not message.get("tool_calls") else content.strip(),
            "reasoning": reasoning,
            "tool_calls": calls,
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
        self, messages: list[dict], tools: list[dict] | None, *, thinking: bool = True, max_tokens: int = 1024
    ) -> dict[str, Any]:
        self.last_prompt = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
        )
        ids = self.tokenizer(self.last_prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        out = self.model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        text = self.tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=False)
        return parse_assistant(text)


def connect(target: str, model: str | None = None):
    return ServerChat(target, model) if is_url(target) else LocalChat(target)


def assistant_message(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply as the next request's history message (OpenAI shape)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply["content"]}
    if reply["reasoning"]:
        message["reasoning_content"] = reply["reasoning"]
    if reply["tool_calls"]:
        message["tool_calls"] = [
            {"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in reply["tool_calls"]
        ]
    return message


def repl(chat, tools: list[dict] | None, *, thinking: bool, system: str | None = None) -> None:
    """Interactive chat: tool calls are shown and their results typed in."""
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
            reply = chat.reply(messages, tools, thinking=thinking)
            messages.append(assistant_message(reply))
            if reply["reasoning"]:
                print(f"(thinking) {reply['reasoning']}")
            if reply["content"]:
                print(f"glm> {reply['content']}")
            if not reply["tool_calls"]:
                break
            for call in reply["tool_calls"]:
                print(f"tool call: {call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})")
                messages.append({"role": "tool", "content": input(f"result of {call['name']}> ")})
