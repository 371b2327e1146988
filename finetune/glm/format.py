"""The family's conversation formats in plain Python: what the model reads and what it must write.

The official chat templates are the reference; this module writes the same text piece by piece so that a training
framework can tell prompt from response. Each assistant turn is written as the model generates it and ends with
the stop token the model emits at serving time: `<|observation|>` after tool calls (it hands the turn to the
tools), `<|user|>` after an answer (inference engines stop on it). GLM-4.5 (and 4.6) and GLM-4.7 differ only in
the strings a `Dialect` holds: GLM-4.7 writes no newline after role tokens, a lone `</think>` for an empty think
block, tool calls without newlines, and no `/nothink`. Used by the LLaMA-Factory templates `glm45` and `glm47`, by
`finetune check-format` and by `finetune chat` (parsing tool calls and reasoning out of generated text, which
reads both layouts). No third-party imports: it runs in every environment of the repository.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PREFIX = "[gMASK]<sop>"
USER, ASSISTANT, SYSTEM, OBSERVATION = "<|user|>", "<|assistant|>", "<|system|>", "<|observation|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
STOP_TOKENS = (USER, OBSERVATION, "<|endoftext|>")

TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
_FOOTER_INTRO = (
    "</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\n"
)
# LLaMA-Factory's sharegpt files hold the results of parallel calls as one observation, joined with this; GLM-4.5's
# `\n<tool_response>\nX\n</tool_response>` wrapping of the joined text is then exactly one block per result
RESULT_SEPARATOR = "\n</tool_response>\n<tool_response>\n"
_THINK = re.compile(r"^\s*<think>(.*?)</think>(.*)$", re.DOTALL)
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ARG = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.DOTALL)


def arg_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Dialect:
    """What one chat template writes, where the family's templates differ."""

    name: str
    role_break: str  # after `<|system|>` and `<|user|>`, before an answer that follows a think block
    empty_think: str  # the think block of a turn without (or with dropped) reasoning
    call_break: str  # before `<tool_call>`, between its name and arguments, and before `</tool_call>`
    no_think_suffix: str  # appended to user messages when thinking is off ("": the template has none)
    thinking_off_prompt: str  # what follows `<|assistant|>` in the prompt when thinking is off

    @property
    def tools_footer(self) -> str:
        """The tool-call example that closes the tools block, written the way the dialect writes calls."""
        br = self.call_break
        keys = "".join(
            f"{br}<arg_key>{{arg-key-{n}}}</arg_key>{br}<arg_value>{{arg-value-{n}}}</arg_value>" for n in (1, 2)
        )
        return f"{_FOOTER_INTRO}<tool_call>{{function-name}}{keys}{br}...{br}</tool_call>"

    def tools_block(self, tools: list[dict[str, Any]]) -> str:
        """The system block that lists the tools, as the official template writes it (without `<|system|>`)."""
        return TOOLS_HEADER + "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tools) + self.tools_footer

    def tool_call_text(self, name: str, arguments: Any) -> str:
        """One call as the model writes it (GLM-4.5: `\\n<tool_call>NAME\\n<arg_key>K</arg_key>\\n<arg_value>V...`)."""
        br = self.call_break
        text = br + "<tool_call>" + name
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return text + (br + arguments if arguments.strip() else "") + br + "</tool_call>"
        for key, value in (arguments or {}).items():
            text += f"{br}<arg_key>{key}</arg_key>{br}<arg_value>{arg_value(value)}</arg_value>"
        return text + br + "</tool_call>"

    def assistant_body(self, reasoning: str, answer: str, calls: list[dict[str, Any]], *, thinking: bool = True) -> str:
        """What follows `<|assistant|>` in a turn the model generates (thinking=False: without the think block)."""
        body = (f"{self.role_break}<think>{reasoning}</think>" if reasoning else self.empty_think) if thinking else ""
        if answer:
            body += self.role_break + answer
        return body + "".join(self.tool_call_text(c["name"], c.get("arguments")) for c in calls)

    def tool_results(self, content: str) -> str:
        """The `<tool_response>` blocks of one observation (LLaMA-Factory's joined parallel results included)."""
        results = content.split(RESULT_SEPARATOR)
        br = self.role_break
        return "".join(f"{br}<tool_response>{br}{r}{br}</tool_response>" for r in results)


GLM45 = Dialect(
    name="glm45",
    role_break="\n",
    empty_think="\n<think></think>",
    call_break="\n",
    no_think_suffix="/nothink",
    thinking_off_prompt="\n<think></think>",
)
GLM47 = Dialect(
    name="glm47",
    role_break="",
    empty_think=THINK_CLOSE,
    call_break="",
    no_think_suffix="",
    thinking_off_prompt=THINK_CLOSE,
)


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer) of an assistant text with an optional leading `<think>...</think>`, both stripped."""
    match = _THINK.match(text or "")
    if match:
        return match.group(1).strip(), match.group(2).strip()
    return "", (text or "").strip()


def parse_assistant(text: str, *, thinking: bool = True) -> dict[str, Any]:
    """Generated text -> {"reasoning", "content", "tool_calls": [{"name", "arguments"}]}, as the glm45 / glm47
    parsers of vLLM and SGLang split it (argument values that are JSON are decoded, others stay strings; a call
    without arguments, GLM-4.7's `<tool_call>NAME</tool_call>`, has none). thinking=False: the prompt closed the
    think block, so nothing generated is reasoning, even a stray `</think>` (vLLM's parser reads it so when the
    request turns thinking off)."""
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
    dialect: Dialect = GLM45,
) -> list[str]:
    """A conversation in LLaMA-Factory's shape (alternating prompt / response messages; roles user, observation,
    assistant, function with `{"reasoning", "content", "calls"}` already parsed) as alternating prompt and
    response texts whose concatenation is the template's rendering with every trained turn as the model writes it.

    Every response ends with its stop token, so the stop token is trained, and starts right after `<|assistant|>`,
    where a served model's generation starts (GLM-4.5: the newline after the role token is trained too; a model
    that never learnt it does not write it). thinking=False: reasoning is dropped and the empty think block moves
    into the prompt (GLM-4.5's users also get `/nothink`), as at serving time with thinking off.
    drop_history_reasoning: reasoning of turns before the last user message is dropped, as the official
    template does for context (used for prompts that are not trained).
    """
    d = dialect
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    out: list[str] = []
    for i, msg in enumerate(messages):
        role = msg["role"]
        if role in ("user", "observation"):
            text = ""
            if i == 0:
                text = PREFIX + (SYSTEM + "\n" + d.tools_block(tools) if tools else "")
                text += SYSTEM + d.role_break + system if system else ""
                text += USER if role == "user" else OBSERVATION
            if role == "user":
                content = msg["content"]
                if not thinking and d.no_think_suffix and not content.endswith(d.no_think_suffix):
                    content += d.no_think_suffix
                text += d.role_break + content + ASSISTANT
            else:
                text += d.tool_results(msg["content"]) + ASSISTANT
            out.append(text if thinking else text + d.thinking_off_prompt)
            continue
        reasoning = msg.get("reasoning", "")
        if not thinking or (drop_history_reasoning and i < last_user):
            reasoning = ""
        calls = msg.get("calls") or []
        following = messages[i + 1]["role"] if i + 1 < len(messages) else None
        stop = OBSERVATION if following == "observation" or (following is None and calls) else USER
        out.append(d.assistant_body(reasoning, msg.get("content", ""), calls, thinking=thinking) + stop)
    return out
