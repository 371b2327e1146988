"""ms-swift's `glm4_7` template, writing GLM-4.7's official format (runs in the swift environment).

ms-swift renders GLM-4.7 with the same template class as GLM-4.5 and a GLM-4.7 agent template, which match the
official template token for token except in two places, both fixed here and nothing else:

- Assistant text arrives as `finetune prepare` writes it for every model, GLM-4.5's way: reasoning inline as
  `<think>R</think>` followed by a newline and the answer, and `<think></think>` for a turn that only calls
  tools. GLM-4.7 writes `<think>R</think>A`, and a lone `</think>` before every turn that shows no reasoning;
  ms-swift keeps text that opens a think block verbatim (the newline and the empty pair would be trained) and
  adds the lone `</think>` only from the last user or tool message on (context turns of a tool loop would lack
  it in DPO prompts and GRPO rollouts). Each assistant text is rewritten to GLM-4.7's form before ms-swift reads
  it.
- With tools and a system prompt, ms-swift puts the newline of the tools block after the system prompt's
  `<|system|>` instead of before `# Tools` (prompt text, not trained, but what the model reads).
docs/format.md.
"""

from __future__ import annotations

import re

GLM47 = "glm4_7"
_INLINE_THINK = re.compile(r"^<think>(.*?)</think>\n", re.DOTALL)


def glm47_content(content: str) -> str:
    """Assistant text in GLM-4.5's prepared layout, as GLM-4.7 writes it."""
    if content.startswith("<think></think>"):
        return "</think>" + content.removeprefix("<think></think>").lstrip("\n")
    if content.startswith("<think>"):
        return _INLINE_THINK.sub(lambda m: f"<think>{m.group(1)}</think>", content, count=1)
    return content if content.startswith("</think>") else "</think>" + content


def write_glm47_format() -> None:
    from swift.agent_template.glm4 import GLM4_5AgentTemplate
    from swift.template.templates.glm import GLM4_5Template

    prepare = GLM4_5Template._swift_prepare_inputs
    if getattr(prepare, "_glm47_format", False):
        return

    def _swift_prepare_inputs(self, inputs):
        if self.template_meta.template_type == GLM47:
            for message in inputs.messages:
                if message["role"] == "assistant" and isinstance(message["content"], str):
                    message["content"] = glm47_content(message["content"])
        return prepare(self, inputs)

    format_tools = GLM4_5AgentTemplate._format_tools

    def _format_tools(self, tools, system=None, user_message=None):
        if self.model_type != GLM47 or not (system and system.strip()):
            return format_tools(self, tools, system, user_message)
        return format_tools(self, tools, None, user_message) + "<|system|>" + system.strip()

    _swift_prepare_inputs._glm47_format = True
    GLM4_5Template._swift_prepare_inputs = _swift_prepare_inputs
    GLM4_5AgentTemplate._format_tools = _format_tools
