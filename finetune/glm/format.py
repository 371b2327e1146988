"""GLM-4.5's conversation format in plain Python: what the model reads and what it must write.

The official chat template is the reference; this module writes the same text piece by piece so that a training
framework can tell prompt from response. Each assistant turn is written as the model generates it and ends with
the stop token the model emits at serving time: `<|observation|>` after tool calls (it hands the turn to the
tools), `<|user|>` after an answer (inference engines stop on it). Used by the LLaMA-Factory template `glm45`,
by `finetune check-format` and by `finetune chat` (parsing tool calls and reasoning out of generated text).
No third-party imports: it runs in every environment of the repository.
"""

from __future__ import annotations

import json
import re
from typing import Any

PREFIX = "[gMASK]<sop>"
USER, ASSISTANT, SYSTEM, OBSERVATION = "<|user|>", "<|assistant|>", "<|system|>", "<|observation|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK = "\n<think></think>"
NO_THINK_SUFFIX = "/nothink"
STOP_TOKENS = (USER, OBSERVATION, "<|endoftext|>")

TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
TOOLS_FOOTER = (
    "</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\n"
    "<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n"
    "<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>"
)
_THINK = re.compile(r"^\s*<think>(.*?)</think>(.*)$", re.DOTALL)
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ARG = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.DOTALL)


def tools_block(tools: list[dict[str, Any]]) -> str:
    """The system block that lists the tools, as the official template writes it (without `<|system|>`)."""
    return TOOLS_HEADER + "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tools) + TOOLS_FOOTER


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer) of an assistant text with an optional leading `<think>...</think>`, both stripped."""
    match = _THINK.match(text or "")
    if match:
        return match.group(1).strip(), match.group(2).strip()
    return "", (text or "").strip()


def arg_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def tool_call_text(name: str, arguments: Any) -> str:
    """One call as GLM-4.5 writes it: `\\n<tool_call>NAME\\n<arg_key>K</arg_key>\\n<arg_value>V</arg_value>...`."""
    text = "\n<tool_call>" + name
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return text + ("\n" + arguments if arguments.strip() else "") + "\n</tool_call>"
    for key, value in (arguments or {}).items():
        text += f"\n<arg_key>{key}</arg_key>\n<arg_value>{arg_value(value)}</arg_value>"
    return text + "\n</tool_call>"


def assistant_body(reasoning: str, answer: str, calls: list[dict[str, Any]], *, thinking: bool = True) -> str:
    """What follows `<|assistant|>` in a turn the model generates (thinking=False: without the think block)."""
    body = (f"\n<think>{reasoning}</think>" if reasoning else EMPTY_THINK) if thinking else ""
    if answer:
        body += "\n" + answer
    return body + "".join(tool_call_text(c["name"], c.get("arguments")) for c in calls)


def parse_assistant(text: str, *, thinking: bool = True) -> dict[str, Any]:
    """Generated text -> {"reasoning", "content", "tool_calls": [{"name", "arguments"}]}, as the glm45 parsers
    of vLLM and SGLang split it (argument values that are JSON are decoded, others stay strings).
    thinking=False: the prompt closed the think block, so nothing generated is reasoning, even a stray
    `</think>` (vLLM's parser reads it so when the request turns thinking off)."""
    for stop in STOP_TOKENS:
        text = text.split(stop)[0]
    reasoning, rest = split_reasoning(text) if thinking else ("", text.strip())
    if thinking and not reasoning and THINK_CLOSE in text:  # the prompt opened the think block
        reasoning, rest = (p.strip() for p in text.split(THINK_CLOSE, 1))
        reasoning = reasoning.removeprefix(THINK_OPEN).strip()
    calls = []
    for block in _CALL.findall(rest):
        name = block.split("<arg_key>")[0].strip()
        arguments = {}
        for key, raw in _ARG.findall(block):
            try:
                arguments[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                arguments[key.strip()] = raw
        calls.append({"name": name, "arguments": arguments})
    content = _CALL.sub("", rest).strip()
    return {"reasoning": reasoning, "content": content, "tool_calls": calls}


def training_segments(
    messages: list[dict[str, Any]],
    system: str = "",
    tools: list[dict[str, Any]] | None = None,
    *,
    thinking: bool = True,
    drop_history_reasoning: bool = False,
) -> list[str]:
    """A conversation in LLaMA-Factory's shape (alternating prompt / response messages; roles user, observation,
    assistant, function with `{"reasoning", "content", "calls"}` already parsed) as alternating prompt and
    response texts whose concatenation is GLM-4.5's rendering with every trained turn as the model writes it.

    Every response ends with its stop token, so the stop token is trained, and starts right after `<|assistant|>`,
    where a served model's generation starts: the newline after the role token is trained too (a model that never
    learnt it does not write it). thinking=False: reasoning is dropped, users get `/nothink` and the empty think
    block moves into the prompt, as at serving time with thinking off.
    drop_history_reasoning: reasoning of turns before the last user message is dropped, as the official
    template does for context (used for prompts that are not trained).
    """
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    out: list[str] = []
    for i, msg in enumerate(messages):
        role = msg["role"]
        if role in ("user", "observation"):
            text = ""
            if i == 0:
                text = PREFIX + (SYSTEM + "\n" + tools_block(tools) if tools else "")
                text += SYSTEM + "\n" + system if system else ""
                text += USER if role == "user" else OBSERVATION
            if role == "user":
                content = msg["content"]
                if not thinking and not content.endswith(NO_THINK_SUFFIX):
                    content += NO_THINK_SUFFIX
                text += "\n" + content + ASSISTANT
            else:
                text += "\n<tool_response>\n" + msg["content"] + "\n</tool_response>" + ASSISTANT
            out.append(text if thinking else text + EMPTY_THINK)
            continue
        reasoning = msg.get("reasoning", "")
        if not thinking or (drop_history_reasoning and i < last_user):
            reasoning = ""
        calls = msg.get("calls") or []
        following = messages[i + 1]["role"] if i + 1 < len(messages) else None
        stop = OBSERVATION if following == "observation" or (following is None and calls) else USER
        body = assistant_body(reasoning, msg.get("content", ""), calls, thinking=thinking)
        out.append(body + stop)
    return out
