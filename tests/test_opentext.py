"""Open answers: reading, scoring against aliases, and clusters whose counts bound exactly."""

from __future__ import annotations

import pytest

from edgemux.answers.equivalence import Unifier, reference_of
from edgemux.answers.opentext import answer_words, central, exact_match, extract_open, lexical_similarity, token_f1
from edgemux.decide.mux import tally
from edgemux.types import Sample


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Paris\nParis has been the capital since the 10th century.", "Paris"),
        ("It is blue because of Rayleigh scattering.", "It is blue because of Rayleigh scattering"),
        ("Some thoughts.\n**Answer:** William Shakespeare.", "William Shakespeare"),
        ("   \n\n  ", None),
        ("", None),
    ],
)
def test_the_answer_of_a_reply(reply: str, answer: str | None) -> None:
    assert extract_open(reply) == answer


def test_scoring_is_squad_exact_match_and_token_f1_against_any_alias() -> None:
    aliases = ("Sunset Boulevard", "Sunset Blvd.")
    assert exact_match("sunset blvd", aliases) and exact_match("The Sunset Boulevard!", aliases)
    assert not exact_match("Sunset Boulevard musical", aliases) and not exact_match(None, aliases)
    assert token_f1("Sunset Boulevard musical", aliases) == pytest.approx(0.8)
    assert token_f1("Cats", aliases) == 0.0


def test_similarity_looks_at_the_answers_own_words() -> None:
    question = "How old was Woody Herman when he founded his own orchestra?"
    assert answer_words("Woody Herman was 25 when he founded his orchestra", question) == ["25"]
    assert lexical_similarity("Shakespeare", "William Shakespeare") == 1.0  # one side's extra words do not count
    assert lexical_similarity("He was 25 years old", "He was 45 years old", question) == 0.0  # other numbers
    assert lexical_similarity("Paris", "Lyon") < 0.8


def test_clusters_never_merge_so_a_count_only_grows_by_the_samples_still_running() -> None:
    unify = Unifier("open", question="Who wrote Hamlet?")
    answers = ["William Shakespeare", "Christopher Marlowe", "Shakespeare", "shakespeare.", "Marlowe"]
    leaders = [unify(a) for a in answers]
    assert leaders == ["William Shakespeare", "Christopher Marlowe", "William Shakespeare", "William Shakespeare",
                       "Christopher Marlowe"]  # fmt: skip
    assert unify.clusters == {"William Shakespeare": 3, "Christopher Marlowe": 2}
    # what a member's vote sees: the cluster counts, exactly like equal answers
    samples = [
        Sample("m", i, i, a, leader, 5, "eos", 0.1) for i, (a, leader) in enumerate(zip(answers, leaders, strict=True))
    ]
    vote = tally("m", samples)
    assert vote.answer == "William Shakespeare" and vote.confidence == pytest.approx(3 / 5)


def test_an_open_reference_is_not_a_cluster_leader() -> None:
    unify = Unifier("open")
    ref = reference_of("open", "Jennifer Aniston", None, ("Jennifer Aniston", "Jen Aniston"), unify)
    assert ref is not None and not unify.clusters  # answers are not pulled towards the reference
    assert ref.is_right("jen aniston") and not ref.is_right("Aniston")  # scored by exact match, not similarity


def test_the_printed_reply_is_the_most_central_of_its_cluster() -> None:
    replies = [
        "The Milky Way galaxy",
        "Milky Way\nOur home galaxy.",
        "the Milky Way, a barred spiral",
        "Milky Way, our home",
    ]
    assert central(replies) == 1  # its words are in every other answer; theirs are not in each other


@pytest.mark.usefixtures("smollm2_in_home")
def test_embeddings_through_llama_cpp_cluster_the_same_answer() -> None:
    from edgemux.engine.embeddings import _model, _vector, clear_cache, embed_answers, embedding_similarity

    _model.cache_clear()
    clear_cache()
    alone = [_vector(t) for t in ("Paris", "the capital is Paris", "London")]
    clear_cache()
    embed_answers(["Paris", "the capital is Paris", "London"])  # one batch, three sequences
    together = [_vector(t) for t in ("Paris", "the capital is Paris", "London")]
    for a, b in zip(alone, together, strict=True):
        assert a @ b == pytest.approx(1.0, abs=1e-4)  # a sequence's vector does not depend on its batch
    assert alone[0] @ alone[1] < 0.9999 and alone[0] @ alone[2] < 0.9999
    assert embedding_similarity("George Clooney", "george clooney!") == pytest.approx(1.0)  # same words
    assert embedding_similarity("George Clooney", "Rayleigh scattering of sunlight") < 0.999
    unify = Unifier("open", "embedding", question="Who starred in it?")
    assert unify("George Clooney") == unify("George Clooney.") == "George Clooney"
    assert unify.threshold == 0.9


def test_the_embedding_model_must_be_downloaded(home: object) -> None:
    from edgemux.engine.embeddings import _model, embedding_similarity
    from edgemux.errors import NotCachedError

    _model.cache_clear()
    with pytest.raises(NotCachedError, match="edgemux models pull smollm2-135m"):
        embedding_similarity("a b", "c d")
    _model.cache_clear()
    with pytest.raises(ValueError, match="unknown similarity measure 'cosmic'"):
        Unifier("open", "cosmic")


def test_in_the_search_an_open_answer_is_judged_on_its_own_words_not_its_cluster_leader() -> None:
    from edgemux.selection.runs import Record
    from edgemux.selection.search import build_table

    def record(model: str, texts: list[str]) -> Record:
        samples = tuple(Sample(model, j, j, t, extract_open(t), 5, "eos", 1.0) for j, t in enumerate(texts))
        return Record("t", model, "open", "Paris", None, {"k": 2}, 5, samples, aliases=("Paris",),
                      question="What is the capital of France?")  # fmt: skip

    # b's sentence clusters with a's exact "Paris" (the same words) but is no exact match itself
    records = [record("a", ["Paris", "Lyon"]), record("b", ["The city of Paris", "Lyon"])]
    table = build_table(records)
    assert table.answers[0, 0, 0] == table.answers[1, 0, 0]  # one cluster across members, for the pooled vote
    assert table.correct[0].tolist() == [[True, False]] and table.correct[1].tolist() == [[False, False]]
    # eval judges the same way: b's first sample, and b as the winner, say "The city of Paris"
    from edgemux.measure.evaluate import MUX, score_runs, single_name
    from edgemux.profiles import Profile, ProfileModel
    from edgemux.types import Sampling

    profile = Profile("p", "open", (ProfileModel("b", validation_accuracy=0.9), ProfileModel("a", validation_accuracy=0.1)),
                      Sampling(k=2))  # fmt: skip
    report = score_runs(records, profile)
    assert report.questions[0].answers[single_name("b")] == "The city of Paris"
    assert report.method(single_name("b")).correct == 0 and report.method(single_name("a")).correct == 1
    assert report.questions[0].answers[MUX] == "The city of Paris" and report.method(MUX).correct == 0
    # risk–coverage judges the same way: "paris." is right by exact match, though not the reference's spelling
    right = score_runs([record("a", ["paris.", "paris"]), record("b", ["Lyon", "Nice"])], profile)
    assert right.method(MUX).correct == 1 and right.risk_coverage()[-1].accuracy == 1.0
