"""The LLaMA-Factory templates `glm45` and `glm47`: the official formats, registered with LLaMA-Factory on import.

LLaMA-Factory 0.9.5's built-in `glm4_moe` and `glm4_7` train a format the models never see when served (tool calls
without `</tool_call>`, tool results without `<tool_response>`, think blocks and role tokens with extra newlines,
`<|endoftext|>` as the end of every turn). These templates write each conversation as the model's own chat template
does (finetune.glm.format, one `Dialect` per template), through LLaMA-Factory's own registry, so its loaders,
processors and trainers use them unchanged. What is trained, per assistant turn: the think block (empty when there
is no reasoning: GLM-4.7 writes a lone `</think>`), the answer, the tool calls and the stop token the model emits
(`<|observation|>` after tool calls, `<|user|>` after an answer).

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

_WRAPPED_CALLS = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


class GlmToolUtils(ToolUtils):
    """The dialect's tool prompt and tool-call text, and the tool-call parser (which reads both layouts)."""

    dialect: fmt.Dialect = fmt.GLM45

    @classmethod
    def tool_formatter(cls, tools: list[dict[str, Any]]) -> str:
        return cls.dialect.tools_block(tools)

    @classmethod
    def function_formatter(cls, functions: list[FunctionCall]) -> str:
        calls = "".join(cls.dialect.tool_call_text(f.name, json.loads(f.arguments)) for f in functions)
        return calls.removeprefix(cls.dialect.call_break)

    @staticmethod
    def tool_extractor(content: str) -> str | list[FunctionCall]:
        calls = fmt.parse_assistant(content)["tool_calls"]
        if not calls:
            return content
        return [FunctionCall(c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in calls]


class Glm47ToolUtils(GlmToolUtils):
    dialect = fmt.GLM47


TOOL_UTILS = {"glm45": GlmToolUtils, "glm47": Glm47ToolUtils}


def _function_formatter(name: str) -> type[FunctionFormatter]:
    @dataclass
    class Formatter(FunctionFormatter):
        def __post_init__(self):
            StringFormatter.__post_init__(self)
            self.tool_utils = TOOL_UTILS[name]()

    return Formatter


def _tool_formatter(name: str) -> type[ToolFormatter]:
    @dataclass
    class Formatter(ToolFormatter):
        def __post_init__(self):
            self.tool_utils = TOOL_UTILS[name]()

    return Formatter


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
class GlmTemplate(ReasoningTemplate):
    """Encodes whole conversations with finetune.glm.format instead of per-message slots, because the end of a
    turn is the next role's token and depends on what follows."""

    dialect = fmt.GLM45

    def _segments(self, tokenizer, messages, system, tools, drop_history_reasoning: bool) -> list[list[int]]:
        texts = fmt.training_segments(
            [parse_message(m) for m in messages],
            system or self.default_system,
            json.loads(tools) if tools else None,
            thinking=self.enable_thinking is not False,
            drop_history_reasoning=drop_history_reasoning,
            dialect=self.dialect,
        )
        return [tokenizer.encode(t, add_special_tokens=False) for t in texts]

    def _encode(self, tokenizer, messages, system, tools) -> list[list[int]]:
        return self._segments(tokenizer, messages, system, tools, drop_history_reasoning=False)

    def encode_oneturn(self, tokenizer, messages, system=None, tools=None) -> tuple[list[int], list[int]]:
        """Prompt and one response (preference pairs): the prompt is context only, so it is written exactly as
        the official template writes context, earlier reasoning dropped (kept with `preserve_thinking`, GLM-4.7's
        `clear_thinking=False`)."""
        encoded = self._segments(tokenizer, messages, system, tools, drop_history_reasoning=not self.preserve_thinking)
        return [t for ids in encoded[:-1] for t in ids], encoded[-1]

    def encode_multiturn(self, tokenizer, messages, system=None, tools=None, discarding_history_cot=False):
        """Every turn is trained as the model writes it, reasoning included (as ms-swift trains its GLM templates)."""
        encoded = self._segments(tokenizer, messages, system, tools, drop_history_reasoning=discarding_history_cot)
        return [(encoded[i], encoded[i + 1]) for i in range(0, len(encoded), 2)]


@dataclass
class Glm47Template(GlmTemplate):
    dialect = fmt.GLM47


def _register(name: str, template_class: type[GlmTemplate]) -> None:
    """One template through LLaMA-Factory's own registry. The slots serve LLaMA-Factory's chat and export paths
    only; training encodes through the class above."""
    br = template_class.dialect.role_break
    register_template(
        name=name,
        format_user=StringFormatter(slots=[f"<|user|>{br}{{{{content}}}}<|assistant|>"]),
        format_assistant=StringFormatter(slots=[f"{br}{{{{content}}}}"]),
        format_system=StringFormatter(slots=[f"<|system|>{br}{{{{content}}}}"]),
        format_function=_function_formatter(name)(slots=[f"{template_class.dialect.call_break}{{{{content}}}}"]),
        format_observation=StringFormatter(
            slots=[f"<|observation|>{br}<tool_response>{br}{{{{content}}}}{br}</tool_response><|assistant|>"]
        ),
        format_tools=_tool_formatter(name)(),
        format_prefix=EmptyFormatter(slots=["[gMASK]<sop>"]),
        stop_words=["<|user|>", "<|observation|>"],
        thought_words=("<think>", "</think>"),
        efficient_eos=False,
        template_class=template_class,
    )


TEMPLATES_BY_NAME = {"glm45": GlmTemplate, "glm47": Glm47Template}


def register() -> None:
    for name, template_class in TEMPLATES_BY_NAME.items():
        if name not in TEMPLATES:
            _register(name, template_class)


register()
