"""The LLaMA-Factory template `glm45`: GLM-4.5's official format, registered with LLaMA-Factory on import.

LLaMA-Factory 0.9.5's built-in `glm4_moe` trains a format GLM-4.5 never sees when served (tool calls without
`</tool_call>`, tool results without `<tool_response>`, think blocks with extra newlines, `<|endoftext|>` as the
end of every turn). This template writes each conversation as the model's own chat template does
(finetune.glm.format), through LLaMA-Factory's own registry, so its loaders, processors and trainers use it
unchanged. What is trained, per assistant turn: the think block (empty when there is no reasoning), the answer,
the tool calls and the stop token GLM-4.5 emits (`<|observation|>` after tool calls, `<|user|>` after an answer).

Runs inside the LLaMA-Factory environment; importing it twice is harmless.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from llamafactory.data.formatter import EmptyFormatter, FunctionFormatter, StringFormatter, ToolFormatter
from llamafactory.data.template import TEMPLATES, ReasoningTemplate, register_template
from llamafactory.data.tool_utils import FunctionCall, ToolUtils

from finetune.glm import format as fmt

NAME = "glm45"
_WRAPPED_CALLS = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


class Glm45ToolUtils(ToolUtils):
    """GLM-4.5's tool prompt, tool-call text and tool-call parser."""

    @staticmethod
    def tool_formatter(tools: list[dict[str, Any]]) -> str:
        return fmt.tools_block(tools)

    @staticmethod
    def function_formatter(functions: list[FunctionCall]) -> str:
        return "".join(fmt.tool_call_text(f.name, json.loads(f.arguments)) for f in functions).removeprefix("\n")

    @staticmethod
    def tool_extractor(content: str) -> str | list[FunctionCall]:
        calls = fmt.parse_assistant(content)["tool_calls"]
        if not calls:
            return content
        return [FunctionCall(c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in calls]


@dataclass
class Glm45FunctionFormatter(FunctionFormatter):
    def __post_init__(self):
        StringFormatter.__post_init__(self)
        self.tool_utils = Glm45ToolUtils()


@dataclass
class Glm45ToolFormatter(ToolFormatter):
    def __post_init__(self):
        self.tool_utils = Glm45ToolUtils()


def parse_message(message: dict[str, str]) -> dict[str, Any]:
    """A LLaMA-Factory message -> the fields finetune.glm.format writes. Function-call content is a JSON list
    (or one object) of {"name", "arguments"}, after the reasoning and text when there are any, in which case the
    list sits in `<tool_call>...</tool_call>` (the layout `finetune prepare` writes)."""
    role, content = message["role"], message["content"]
    if role not in ("assistant", "function"):
        return {"role": role, "content": content}
    calls: list[dict[str, Any]] = []
    if role == "function":
        wrapped = _WRAPPED_CALLS.search(content)
        if wrapped:
            listed, content = wrapped.group(1), content.replace(wrapped.group(0), "")
        else:
            reasoning, listed = fmt.split_reasoning(content)
            content = f"<think>{reasoning}</think>" if reasoning else ""
        parsed = json.loads(listed)
        calls = [
            {"name": c["name"], "arguments": c["arguments"]} for c in (parsed if isinstance(parsed, list) else [parsed])
        ]
    reasoning, answer = fmt.split_reasoning(content)
    return {"role": role, "reasoning": reasoning, "content": answer, "calls": calls}


@dataclass
class Glm45Template(ReasoningTemplate):
    """Encodes whole conversations with finetune.glm.format instead of per-message slots, because GLM-4.5's
    end of a turn is the next role's token and depends on what follows."""

    def _segments(self, tokenizer, messages, system, tools, drop_history_reasoning: bool) -> list[list[int]]:
        texts = fmt.training_segments(
            [parse_message(m) for m in messages],
            system or self.default_system,
            json.loads(tools) if tools else None,
            thinking=self.enable_thinking is not False,
            drop_history_reasoning=drop_history_reasoning,
        )
        return [tokenizer.encode(t, add_special_tokens=False) for t in texts]

    def _encode(self, tokenizer, messages, system, tools) -> list[list[int]]:
        return self._segments(tokenizer, messages, system, tools, drop_history_reasoning=False)

    def encode_oneturn(self, tokenizer, messages, system=None, tools=None) -> tuple[list[int], list[int]]:
        """Prompt and one response (preference pairs): the prompt is context only, so it is written exactly as
        the official template writes context, earlier reasoning dropped."""
        encoded = self._segments(tokenizer, messages, system, tools, drop_history_reasoning=not self.preserve_thinking)
        return [t for ids in encoded[:-1] for t in ids], encoded[-1]

    def encode_multiturn(self, tokenizer, messages, system=None, tools=None, discarding_history_cot=False):
        """Every turn is trained as the model writes it, reasoning included (the same as ms-swift's `glm4_5`)."""
        encoded = self._segments(tokenizer, messages, system, tools, drop_history_reasoning=discarding_history_cot)
        return [(encoded[i], encoded[i + 1]) for i in range(0, len(encoded), 2)]


def register() -> None:
    if NAME in TEMPLATES:
        return
    register_template(
        name=NAME,
        format_user=StringFormatter(slots=["<|user|>\n{{content}}<|assistant|>"]),
        format_assistant=StringFormatter(slots=["\n{{content}}"]),
        format_system=StringFormatter(slots=["<|system|>\n{{content}}"]),
        format_function=Glm45FunctionFormatter(slots=["\n{{content}}"]),
        format_observation=StringFormatter(
            slots=["<|observation|>\n<tool_response>\n{{content}}\n</tool_response><|assistant|>"]
        ),
        format_tools=Glm45ToolFormatter(),
        format_prefix=EmptyFormatter(slots=["[gMASK]<sop>"]),
        stop_words=["<|user|>", "<|observation|>"],
        thought_words=("<think>", "</think>"),
        efficient_eos=False,
        template_class=Glm45Template,
    )


register()
