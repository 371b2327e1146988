"""ms-swift plugin: registers the sample GLM-4.5 rewards as `glm45_answer` and `glm45_format`.

Loaded by GRPO recipes through `external_plugins`; the scoring itself lives in `finetune/glm/rewards.py`.
"""

from swift.rewards import ORM, orms

from finetune.glm.rewards import answer_reward, format_reward


class Glm45Answer(ORM):
    """Verifiable answers: compares each completion's final answer with the row's `solution` column."""

    def __call__(self, completions, solution, **kwargs) -> list[float]:
        return [answer_reward(c, s) for c, s in zip(completions, solution, strict=True)]


class Glm45Format(ORM):
    """Output format: balanced think/tool-call tags and a visible answer."""

    def __call__(self, completions, **kwargs) -> list[float]:
        return [format_reward(c) for c in completions]


orms["glm45_answer"] = Glm45Answer
orms["glm45_format"] = Glm45Format
