"""The chat formats of the family, one type: what each is called by every tool that renders or parses it.

GLM-4.5, GLM-4.5-Air and GLM-4.6 share one chat template; GLM-4.7 has its own (no newline after role tokens, a lone
`</think>` for an empty think block, tool calls without newlines, `clear_thinking`). A model description names its
format (`chat_format` in recipes/models/NAME.json); the replica's template, the frameworks' template names, the
serving parsers and the template arguments all follow from it here, so adding a model of a known format is a JSON
file. Sources: ../shared/reference/glm46-glm47.md (hub configs and templates, vLLM's and SGLang's parser tables).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatFormat:
    name: str
    display_name: str
    replica_template: str  # file in finetune/replica/: the official template, written from the format
    swift_template: str  # ms-swift 4.6's template name
    llamafactory_template: str  # the corrected template the project registers with LLaMA-Factory
    vllm_tool_parser: str  # vLLM's --tool-call-parser (glm45_trained: the project's plugin, docs/serving.md)
    sglang_tool_parser: str
    reasoning_parser: str  # vLLM's and SGLang's --reasoning-parser
    template_kwargs: tuple[str, ...]  # the chat template's own arguments


CHAT_FORMATS = {
    "glm45": ChatFormat(
        name="glm45",
        display_name="GLM-4.5",
        replica_template="glm45_chat_template.jinja",
        swift_template="glm4_5",
        llamafactory_template="glm45",
        vllm_tool_parser="glm45_trained",
        sglang_tool_parser="glm45",
        reasoning_parser="glm45",
        template_kwargs=("enable_thinking",),
    ),
    "glm47": ChatFormat(
        name="glm47",
        display_name="GLM-4.7",
        replica_template="glm47_chat_template.jinja",
        swift_template="glm4_7",
        llamafactory_template="glm47",
        vllm_tool_parser="glm47",
        sglang_tool_parser="glm47",
        reasoning_parser="glm45",
        template_kwargs=("enable_thinking", "clear_thinking"),
    ),
}


def chat_format(name: str) -> ChatFormat:
    return CHAT_FORMATS[name]
