"""Open answers (questions in words, not word problems): reading the answer, scoring it, and grouping
answers that say the same thing.

- The answer of a reply is its last ``Answer: …`` line, else its first line (whitespace collapsed); the
  reply is what is printed, whole.
- Scoring against a dataset's accepted answers (TriviaQA, NQ-open) is the usual one: exact match after
  SQuAD normalisation (lower case, no punctuation, no articles) against any alias, and token F1.
- Agreement is similarity, not equality: two answers are the same answer when their similarity reaches the
  measure's threshold. ``lexical`` is rapidfuzz's token-set ratio of the normalised answers (word order and
  extra words of one side do not count: "Shakespeare" and "William Shakespeare" agree). Clusters are built
  by ``equivalence.Unifier``: each answer joins the most similar earlier cluster *leader* at or above the
  threshold, else it leads a new cluster. Clusters never merge and an answer never changes cluster, so a
  cluster count bounds the final count exactly as a vote count does, and early stop stays exact.
  ``embedding`` compares the answers' embeddings; this layer computes none itself: the package root
  installs llama.cpp's (``engine.embeddings``) with ``use_embedder``, loaded the first time it is needed.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import ConfigError

__all__ = [
    "MEASURES",
    "Embedder",
    "Measure",
    "answer_words",
    "central",
    "exact_match",
    "extract_open",
    "lexical_similarity",
    "normalize",
    "threshold_of",
    "token_f1",
]

_MAX_CHARS = 300  # what votes is a line; a runaway line is compared by its start
_ANSWER_LINE = re.compile(r"(?im)^\W*answer\s*(?:is)?\s*[:\-]\s*(.+)$")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation + "‘’“”")


def extract_open(text: str) -> str | None:
    """The answer in a reply: its last 'Answer: …' line, else its first line (the prompt asks for the answer
    there, in a few words); None for an empty reply."""
    found = _ANSWER_LINE.findall(text)
    candidate = found[-1] if found else next((line for line in text.splitlines() if line.strip()), "")
    answer = re.sub(r"\s+", " ", candidate).strip().strip("*\"'`").strip().rstrip(".!").strip()
    return answer[:_MAX_CHARS] or None


def normalize(answer: str) -> str:
    """SQuAD's answer normalisation: lower case, punctuation and articles dropped, spaces collapsed."""
    return " ".join(_ARTICLES.sub(" ", answer.lower().translate(_PUNCTUATION)).split())


def exact_match(answer: str | None, accepted: Sequence[str]) -> bool:
    return answer is not None and any(normalize(answer) == normalize(a) for a in accepted)


def token_f1(answer: str | None, accepted: Sequence[str]) -> float:
    """The best token F1 of ``answer`` against any accepted answer (0 for no answer)."""
    if answer is None:
        return 0.0
    tokens = normalize(answer).split()
    best = 0.0
    for a in accepted:
        ref = normalize(a).split()
        common = sum((Counter(tokens) & Counter(ref)).values())
        if common:
            precision, recall = common / len(tokens), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def answer_words(answer: str, question: str = "") -> list[str]:
    """The normalised words of an answer that do not restate the question ("Woody Herman was 25 when he
    founded his orchestra" -> ["25"]); all of them when nothing else is left."""
    words = normalize(answer).split()
    asked = set(normalize(question).split())
    rest = [w for w in words if w not in asked]
    return rest or words


def lexical_similarity(a: str, b: str, question: str = "") -> float:
    """rapidfuzz's token-set ratio of the two answers' own words (one side's extra words do not count:
    "Shakespeare" ~ "William Shakespeare"); answers that name different numbers are different answers."""
    from rapidfuzz import fuzz

    wa, wb = answer_words(a, question), answer_words(b, question)
    if sorted(w for w in wa if any(c.isdigit() for c in w)) != sorted(w for w in wb if any(c.isdigit() for c in w)):
        return 0.0
    return float(fuzz.token_set_ratio(" ".join(wa), " ".join(wb))) / 100.0


class Embedder(Protocol):
    """What the embedding measure needs (``engine.embeddings`` is one)."""

    def embedding_similarity(self, a: str, b: str, question: str = "") -> float: ...

    def embed_answers(self, answers: Sequence[str], question: str = "") -> None: ...


_embedder_source: Callable[[], Embedder] | None = None


def use_embedder(source: Callable[[], Embedder]) -> None:
    """Where the embedding measure gets its embedder (``source`` is called when one is first needed)."""
    global _embedder_source
    _embedder_source = source


def _embedder() -> Embedder:
    if _embedder_source is None:
        raise ConfigError("the embedding similarity has no embedder installed (opentext.use_embedder); use lexical")
    return _embedder_source()


def _embedding_similarity(a: str, b: str, question: str = "") -> float:
    return _embedder().embedding_similarity(a, b, question)


def _embed_together(answers: Sequence[str], question: str) -> None:
    _embedder().embed_answers(answers, question)


@dataclass(frozen=True)
class Measure:
    """How two answers are compared: their similarity in [0, 1] given the question, the threshold at which
    they are one answer, and ``prepare``, called with answers about to be compared (the embedding measure
    embeds them in one batch; one call per answer costs a model pass each)."""

    similarity: Callable[[str, str, str], float]
    threshold: float
    prepare: Callable[[Sequence[str], str], None] = lambda answers, question: None


MEASURES: dict[str, Measure] = {
    "lexical": Measure(lexical_similarity, 0.8),
    "embedding": Measure(_embedding_similarity, 0.9, _embed_together),
}


def central(replies: Sequence[str], question: str = "", measure: str = "lexical") -> int:
    """The index of the most central reply of one cluster: the one whose answer is most similar to the
    others' in sum (the first on a tie)."""
    answers = [extract_open(r) or "" for r in replies]
    MEASURES[measure].prepare(answers, question)
    similarity = MEASURES[measure].similarity
    sums = [sum(similarity(a, b, question) for j, b in enumerate(answers) if j != i) for i, a in enumerate(answers)]
    return max(range(len(replies)), key=lambda i: (sums[i], -i))


def threshold_of(measure: str) -> float:
    return MEASURES[measure].threshold
