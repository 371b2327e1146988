"""vLLM's `glm45` tool-call parser without the GLM-4.7 grammar it forces on generation (vLLM 0.32).

In vLLM 0.32 the `glm45` name points at the GLM-4.7 parser, which constrains every request that has tools with
GLM-4.7's tool-call layout (`<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value></tool_call>`, no
newlines). GLM-4.5 and GLM-4.6 write (and are fine-tuned on) newlines between those parts, so the grammar
rewrites the very tokens the model was trained to write: a replica fine-tuned to reproduce its training calls then
writes garbage argument values. This parser, `glm45_trained`, parses exactly as `glm45` does and leaves
generation unconstrained, as GLM-4.5's own format needs. `finetune serve` loads it with `--tool-parser-plugin`.
"""

from __future__ import annotations

from vllm.tool_parsers.abstract_tool_parser import ToolParserManager
from vllm.tool_parsers.glm47_moe_tool_parser import Glm47MoeModelToolParser

NAME = "glm45_trained"


@ToolParserManager.register_module(NAME)
class Glm45TrainedFormatToolParser(Glm47MoeModelToolParser):
    structural_tag_model = None  # no grammar: the model writes the layout it was trained on
    default_tool_strict_level = None
