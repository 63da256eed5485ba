"""How sure a sample was, from its own tokens, and votes that weigh samples by it (pure; issue 25).

The engine records, for every generated token, its logprob and its *token confidence*: minus the mean
logprob of the 20 likeliest tokens (DeepConf, arXiv 2508.15260: high when the model's distribution is
peaked, low when it hesitates). A sample's score is one of:

- ``mean_logprob``: the mean logprob of its tokens (the length-normalised sequence probability; CISC's
  cheapest signal);
- ``lowest_group``: the lowest mean token confidence over any ``window`` consecutive tokens (DeepConf's trace
  score: one stretch where the model lost its way marks the whole sample). DeepConf uses 2048-token windows
  on long chains; our answers are 30-400 tokens, so the window is a parameter fitted on validation data;
- ``tail``: the mean token confidence of its last ``window`` tokens (where the answer is written);
- ``bottom_share``: the mean of its lowest 10 % of window confidences (ReASC's stage-one score);
- ``answer_mass``: for a multiple-choice answer, the log of the probability the model gave its letter
  against the other options' letters at the token where it wrote it (the top-20 alternatives there; a
  sample with no letter scores -inf, a question that is not multiple choice leaves every sample counted).

A vote rule turns scores into weights within one member's samples:

- ``count``: every sample weighs 1 (the SLM-MUX paper's rule; the default until measurements say otherwise);
- ``weighted``: CISC (arXiv 2502.06233): weights are the softmax of the scores at a temperature fitted on
  validation data, so only the ranking *within* a question matters, not the scores' scale across questions;
- ``filtered``: DeepConf's offline filter: only the most confident ``keep`` share of the samples vote (at
  least one), each with weight 1.

A member's share for an answer is the weight of its samples that gave it over the weight of all its samples
(unparsable ones included, as SLM-MUX divides by k). A sample without signals (a remote member that gave no
logprobs, a runs file recorded before them) makes the member's vote fall back to ``count``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import InvalidRequestError
from ..types import Sample, TokenLogprobs, TokenSignals

__all__ = [
    "LETTERS",
    "MEASURES",
    "VOTES",
    "VoteRule",
    "Weighing",
    "answer_mass",
    "letter_tokens",
    "sample_score",
    "weigh",
    "weights",
]

MEASURES = ("mean_logprob", "lowest_group", "tail", "bottom_share", "answer_mass")
LETTERS = "ABCDEFGHIJ"  # the option letters extract.py reads
VOTES = ("count", "weighted", "filtered")


@dataclass(frozen=True)
class VoteRule:
    """How a member's samples are weighed: ``vote`` (count, weighted, filtered), the ``measure`` that scores a
    sample and its ``window`` in tokens, the softmax ``temperature`` (weighted) and the share kept (filtered)."""

    vote: str = "count"
    measure: str = "lowest_group"
    window: int = 16
    temperature: float = 1.0
    keep: float = 0.5

    def __post_init__(self) -> None:
        if self.vote not in VOTES:
            raise InvalidRequestError(f"unknown vote {self.vote!r}: use one of {', '.join(VOTES)}")
        if self.measure not in MEASURES:
            raise InvalidRequestError(f"unknown confidence measure {self.measure!r}: use one of {', '.join(MEASURES)}")
        if self.window < 1 or not self.temperature > 0 or not 0 < self.keep <= 1:
            raise InvalidRequestError(
                f"a vote needs window ≥ 1, temperature > 0 and 0 < keep ≤ 1 "
                f"(got window {self.window}, temperature {self.temperature}, keep {self.keep})"
            )


def _window_means(values: Sequence[float], window: int) -> list[float]:
    """The mean of every run of ``window`` consecutive values (one mean of all when there are fewer)."""
    if len(values) <= window:
        return [sum(values) / len(values)]
    running = sum(values[:window])
    means = [running / window]
    for i in range(window, len(values)):
        running += values[i] - values[i - window]
        means.append(running / window)
    return means


def sample_score(signals: TokenSignals, measure: str, window: int) -> float:
    """One sample's confidence under ``measure`` (higher: surer). A sample of no tokens scores -inf."""
    if measure == "answer_mass":
        return math.log(signals.answer_mass) if signals.answer_mass else -math.inf
    if not signals.logprobs:
        return -math.inf
    if measure == "mean_logprob":
        return sum(signals.logprobs) / len(signals.logprobs)
    if measure == "tail":
        tail = signals.confidences[-window:]
        return sum(tail) / len(tail)
    means = _window_means(signals.confidences, window)
    if measure == "lowest_group":
        return min(means)
    if measure == "bottom_share":
        lowest = sorted(means)[: max(1, len(means) // 10)]
        return sum(lowest) / len(lowest)
    raise InvalidRequestError(f"unknown confidence measure {measure!r}: use one of {', '.join(MEASURES)}")


def letter_tokens(tokenize: Callable[[str], Sequence[int]], letters: str = LETTERS) -> dict[int, str]:
    """The tokens that write one option letter, each with its letter: the token that ends the letter after
    each of the usual contexts ("B" at the start, after a space, "(", ":", "**"), whether the tokenizer
    adds it after the context's tokens or merges it with the last of them (" B", "(B")."""
    bos = list(tokenize(""))  # a begin-of-text token some tokenizers add to everything

    def tokens(text: str) -> list[int]:
        found = list(tokenize(text))
        return found[len(bos) :] if found[: len(bos)] == bos else found

    out: dict[int, str] = {}
    for before in ("", " ", "(", ":", ": ", "**", "\n"):
        base = tokens(before)
        for letter in letters:
            written = tokens(before + letter)
            if len(written) in (len(base), len(base) + 1) and written and written[:-1] == base[: len(written) - 1]:
                out.setdefault(written[-1], letter)
    return out


def answer_mass(tokens: Sequence[TokenLogprobs], letter_of: Mapping[int, str], answer: str | None,
                allowed: str) -> float | None:  # fmt: skip
    """The probability the model gave ``answer`` against the other ``allowed`` letters at the last token
    that wrote it (its top alternatives there, each letter's tokens summed); None when no token wrote it
    alone, or no alternatives were kept."""
    if answer is None:
        return None
    at = next((t for t in reversed(tokens) if letter_of.get(t.token) == answer), None)
    if at is None or not at.top:
        return None
    mass = dict.fromkeys(allowed, 0.0)
    for token, logprob in at.top:
        letter = letter_of.get(token)
        if letter in mass:
            mass[letter] += math.exp(logprob)
    if mass[answer] == 0.0:  # sampled from outside the kept alternatives
        mass[answer] = math.exp(at.logprob)
    return mass[answer] / sum(mass.values())


@dataclass(frozen=True)
class Weighing:
    """One member's samples under a rule: each one's score (None: no signals), each one's weight, and the
    rule that was applied (``count`` when some sample had no signals)."""

    scores: tuple[float | None, ...]
    weights: tuple[float, ...]
    vote: str


def weigh(samples: Sequence[Sample], rule: VoteRule) -> Weighing:
    """Score every sample once (shown whatever the rule) and weigh it by ``rule``, in the order given."""
    scores = tuple(sample_score(s.signals, rule.measure, rule.window) if s.signals else None for s in samples)
    if rule.vote == "count" or not samples or None in scores:
        return Weighing(scores, (1.0,) * len(samples), "count")
    known = [x for x in scores if x is not None]  # all of them: the narrowing is for the type checker
    if rule.vote == "filtered":
        kept = max(1, math.ceil(rule.keep * len(samples) - 1e-9))
        order = sorted(range(len(samples)), key=lambda i: (-known[i], i))  # ties: the earlier sample
        chosen = set(order[:kept])
        return Weighing(scores, tuple(1.0 if i in chosen else 0.0 for i in range(len(samples))), rule.vote)
    finite = [x for x in known if x != -math.inf]
    if not finite:
        return Weighing(scores, (1.0,) * len(samples), rule.vote)
    top = max(finite)
    return Weighing(scores, tuple(math.exp((x - top) / rule.temperature) if x != -math.inf else 0.0 for x in known),
                    rule.vote)  # fmt: skip


def weights(samples: Sequence[Sample], rule: VoteRule) -> list[float]:
    """Each sample's weight in its member's vote, in the order given (all 1.0 under ``count``, or when a
    sample has no signals)."""
    return list(weigh(samples, rule).weights)
