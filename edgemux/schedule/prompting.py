"""A member's prompt as its model reads it: the instruction for its strategy, the chat template or plain
completion, the stop strings, the tokens (checked against the context); and each model's option-letter
tokens for multiple-choice questions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..answers.prompts import build_prompt
from ..answers.strategies import Member
from ..decide.confidence import letter_tokens
from ..profiles import Profile
from ..specs import ModelSpec
from ..types import Sampling

if TYPE_CHECKING:
    from .loader import EngineLike

__all__ = ["Prompter"]


class Prompter:
    """Prompts for the models of ``specs`` (their prompt style), with each model's letter tokens cached."""

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self.specs = specs
        self._letters: dict[str, dict[int, str]] = {}

    def tokens(
        self,
        engine: EngineLike,
        member: Member,
        question: str,
        profile: Profile,
        sampling: Sampling,
        check: bool = True,
    ) -> tuple[list[int], tuple[str, ...]]:
        text, stop = self.text(engine, member, question, profile)
        tokens = engine.tokenize(text)
        if check:
            engine.check_fits(len(tokens), sampling.k, sampling.max_tokens)
        return tokens, stop

    def letters(self, model: str, engine: EngineLike) -> dict[int, str]:
        """The tokens that write an option letter in this model's vocabulary (confidence.letter_tokens)."""
        if model not in self._letters:
            self._letters[model] = letter_tokens(engine.tokenize)
        return self._letters[model]

    def text(self, engine: EngineLike, member: Member, question: str, profile: Profile
                     ) -> tuple[str, tuple[str, ...]]:  # fmt: skip
        """The member's prompt as the model reads it (its chat template applied), and its stop strings."""
        style = self.specs[member.model].prompt_style if engine.has_chat_template else "completion"
        instruction = member.instruction(profile.kind, profile.instruction)
        prompt = build_prompt(question, profile.kind, style, instruction, profile.system)
        return (engine.render_chat(prompt.messages) if prompt.messages else prompt.text), prompt.stop
