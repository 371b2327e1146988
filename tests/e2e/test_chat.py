"""`finetune chat` on a local model folder (transformers). Against a real server (vLLM serving a fine-tuned replica):
tests/e2e/test_vllm.py."""

from __future__ import annotations

from finetune.serving.chat import LocalChat

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


def test_local_model_renders_tools_and_thinking_off(air_replica):
    chat = LocalChat(str(air_replica))
    reply = chat.reply([{"role": "user", "content": "Weather?"}], TOOLS, thinking=False, max_tokens=4)
    assert chat.last_prompt.endswith("Weather?/nothink<|assistant|>\n<think></think>")
    assert "<tools>" in chat.last_prompt and set(reply) == {"content", "reasoning", "tool_calls"}
