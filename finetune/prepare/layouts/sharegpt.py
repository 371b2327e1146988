"""ShareGPT: `conversations` of {from, value} with tags such as human/gpt/function_call/observation.

`--role TAG=ROLE` maps custom tags. The messages are read as OpenAI's are (a row may mix both vocabularies), so
the layouts differ only in how a row is recognised.
"""

from __future__ import annotations

from finetune.prepare.layouts.base import Layout
from finetune.prepare.layouts.openai import conversation, message_style

LAYOUT = Layout("sharegpt", lambda row: message_style(row) == "sharegpt", conversation)
