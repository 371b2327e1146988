"""ms-swift's `glm4_5` template, keeping reasoning where GLM-4.5's own template keeps it (swift environment).

Where ms-swift drops the reasoning of earlier assistant turns (generation prompts for GRPO rollouts and serving,
and DPO's context, whose loss scale is `last_round`), it drops it from every assistant turn before the last user
*or tool* message. GLM-4.5's chat template drops it only before the last user message: the turns of the current
tool loop keep their reasoning, so a rollout after a tool result sees the reasoning that led to the call, as the
served model does. This applies GLM-4.5's rule; everything else stays ms-swift's own. docs/format.md.
"""

from __future__ import annotations


def last_user_index(messages: list[dict]) -> int:
    return max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)


def keep_tool_loop_reasoning() -> None:
    from swift.template.templates.glm import GLM4_5Template

    if getattr(GLM4_5Template._remove_history_thinking, "_glm45_rule", False):
        return

    def _remove_history_thinking(self, inputs) -> None:
        before = last_user_index(inputs.messages)
        for i, message in enumerate(inputs.messages):
            if message["role"] != "assistant" or i >= before:
                continue
            content = message["content"]
            if isinstance(content, list) and content and isinstance(content[0], str):
                content[0] = self._remove_thinking_content(content[0])
            elif isinstance(content, str):
                message["content"] = self._remove_thinking_content(content)

    _remove_history_thinking._glm45_rule = True
    GLM4_5Template._remove_history_thinking = _remove_history_thinking
