"""The real engine on the real SmolLM2-135M GGUF: batched k-sample decoding over one shared prompt."""

from __future__ import annotations

import gc
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemux.decide.confidence import sample_score
from edgemux.decide.stoprules import TraceKill
from edgemux.engine.engine import Engine
from edgemux.engine.llama import library_llama
from edgemux.engine.sequences import GenerationRequest
from edgemux.errors import EngineError, InvalidRequestError, ModelFileError, PromptTooLongError
from edgemux.memory.osmemory import rss_bytes
from edgemux.types import FinishedSequence, Sampling, TokenSignals

QUESTION = "What is 12 + 30? Answer with the number."


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    with Engine(smollm2_path, n_ctx=1024, n_seq_max=4, n_threads=2) as e:
        yield e


def prompt(engine: Engine, question: str = QUESTION) -> list[int]:
    return engine.tokenize(engine.render_chat([("user", question)]))


def run(engine: Engine, sampling: Sampling, seeds: list[int], stop: tuple[str, ...] = ()) -> list[FinishedSequence]:
    finished: list[FinishedSequence] = []
    for step in engine.generate(prompt(engine), sampling, seeds, stop):
        finished.extend(step.finished)
    return sorted(finished, key=lambda f: f.index)


def test_chat_template_comes_from_the_gguf(engine: Engine) -> None:
    text = engine.render_chat([("user", "hi")])
    assert engine.has_chat_template
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nhi<|im_end|>" in text


def test_k_samples_each_with_its_own_text(engine: Engine) -> None:
    out = run(engine, Sampling(temperature=1.0, max_tokens=24), seeds=[11, 12, 13, 14])
    assert [f.index for f in out] == [0, 1, 2, 3]
    assert all(f.text and 0 < f.tokens <= 24 for f in out)
    assert len({f.text for f in out}) >= 3  # independent seeded samplers, not copies of one sequence


def test_same_seeds_same_samples(engine: Engine) -> None:
    sampling = Sampling(temperature=0.9, max_tokens=20)
    first = run(engine, sampling, seeds=[5, 6, 7])
    again = run(engine, sampling, seeds=[5, 6, 7])
    assert [f.text for f in first] == [f.text for f in again]
    other = run(engine, sampling, seeds=[8, 9, 10])
    assert [f.text for f in other] != [f.text for f in first]


def test_greedy_batch_reproduces_a_single_sequence(engine: Engine) -> None:
    # Every batched sequence must be the same greedy continuation a lone sequence produces. llama.cpp's
    # CPU kernels give bit-identical logits for this model whatever the batch size, so the whole text is
    # compared; if a backend ever diverged late, the shared prefix is what would still have to hold.
    greedy = Sampling(temperature=0.0, max_tokens=40)
    single = run(engine, greedy, seeds=[0])[0]
    batched = run(engine, greedy, seeds=[0, 1, 2])
    assert [f.text for f in batched] == [single.text] * 3
    assert single.tokens > 10


def test_max_tokens_stops_with_length(engine: Engine) -> None:
    out = run(engine, Sampling(temperature=0.0, max_tokens=5), seeds=[0, 1])
    assert all(f.tokens == 5 and f.stop_reason == "length" for f in out)


def test_stop_string_cuts_the_text(engine: Engine) -> None:
    greedy = Sampling(temperature=0.0, max_tokens=40)
    full = run(engine, greedy, seeds=[0])[0].text
    assert "=" in full
    cut = run(engine, greedy, seeds=[0], stop=("=",))[0]
    assert cut.stop_reason == "stop"
    assert cut.text == full[: full.index("=")]


def test_eos_is_reported(engine: Engine) -> None:
    out = run(engine, Sampling(temperature=0.0, max_tokens=200), seeds=[0])
    assert out[0].stop_reason == "eos" and out[0].tokens < 200


def test_cancel_frees_the_sequences(engine: Engine) -> None:
    gen = engine.generate(prompt(engine), Sampling(temperature=0.8, max_tokens=50), seeds=[1, 2, 3])
    next(gen)
    next(gen)
    gen.close()  # the caller walked away mid-decode
    out = run(engine, Sampling(temperature=0.0, max_tokens=8), seeds=[0])
    assert out[0].tokens == 8


def test_the_context_never_grows_past_what_it_was_loaded_with(smollm2_path: Path) -> None:
    # The resident set granted the bytes of 256 cells for one sequence at load; more is refused with the
    # numbers, and the context is the same afterwards.
    with Engine(smollm2_path, n_ctx=256, n_seq_max=1, n_threads=2) as e:
        with pytest.raises(PromptTooLongError, match=r"need \d+ KV cells, but smollm2-135m.gguf was loaded with 256"):
            run(e, Sampling(temperature=0.7, max_tokens=100), seeds=[1, 2, 3])
        with pytest.raises(InvalidRequestError, match="at most 1"):
            run(e, Sampling(temperature=0.7, max_tokens=20), seeds=[1, 2])
        assert (e.n_ctx, e.n_seq_max) == (256, 1)
        assert len(run(e, Sampling(temperature=0.7, max_tokens=20), seeds=[1])) == 1  # what fits still runs


def test_prompt_longer_than_the_model_context(engine: Engine) -> None:
    long_question = "Count the apples. " * 3000
    with pytest.raises(PromptTooLongError, match="trained for 8192 tokens"):
        list(engine.generate(prompt(engine, long_question), Sampling(max_tokens=64), seeds=[0]))


def test_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>404</html>")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        Engine(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        Engine(tmp_path / "absent.gguf")


def test_truncated_file(smollm2_path: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    with smollm2_path.open("rb") as src, truncated.open("wb") as dst:
        dst.write(src.read(20_000_000))
    with pytest.raises(ModelFileError, match="truncated"):
        Engine(truncated, expected_nbytes=smollm2_path.stat().st_size)
    with pytest.raises(ModelFileError, match="truncated"):  # no size known: llama.cpp refuses it, the header says why
        Engine(truncated)
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(smollm2_path.read_bytes()[:64] + b"\xff" * 4096)
    with pytest.raises((ModelFileError, EngineError)):
        Engine(corrupt)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="RSS is read from /proc (Linux)")
def test_close_releases_the_memory(smollm2_path: Path, tmp_path: Path) -> None:
    # A private copy, so pages of the shared test model mapped by other tests do not blur the measure.
    path = tmp_path / "copy.gguf"
    shutil.copyfile(smollm2_path, path)
    gc.collect()
    before = rss_bytes() or 0
    e = Engine(path, n_ctx=2048, n_seq_max=4, n_threads=2)
    run(e, Sampling(temperature=0.0, max_tokens=8), seeds=[0, 1, 2, 3])
    loaded = rss_bytes() or 0
    e.close()
    gc.collect()
    after = rss_bytes() or 0
    gained = loaded - before
    assert gained > 50 * 2**20  # the weights (94 MiB file) were really resident
    assert after - before < 0.25 * gained, (before, loaded, after)
    assert e.closed
    e.close()  # idempotent


def test_ignore_eos_runs_to_max_tokens(engine: Engine) -> None:
    natural = run(engine, Sampling(temperature=0.0, max_tokens=200), seeds=[0])[0]
    assert natural.stop_reason == "eos"
    forced: list[FinishedSequence] = []
    greedy = Sampling(temperature=0.0, max_tokens=natural.tokens + 5)
    for step in engine.generate(prompt(engine), greedy, [0, 1], ignore_eos=True):
        forced.extend(step.finished)
    assert [(f.tokens, f.stop_reason) for f in forced] == [(natural.tokens + 5, "length")] * 2
    assert forced[0].text.startswith(natural.text)


def test_requests_decoded_together_match_each_decoded_alone(engine: Engine) -> None:
    # Two prompts of different lengths in one batch (the server's parallel requests): each request's greedy
    # text must be the one it gets alone, so positions and sequence ids are kept apart per request.
    greedy = Sampling(temperature=0.0, max_tokens=24)
    a, b = (
        prompt(engine, "Name three fruits."),
        prompt(engine, "What is the capital of Italy? Explain in one sentence."),
    )
    alone = [run_prompt(engine, p, greedy) for p in (a, b)]
    together: dict[int, str] = {}
    for steps in engine.generate_many([GenerationRequest(a, greedy, [0]), GenerationRequest(b, greedy, [0])]):
        for g, step in enumerate(steps):
            for f in step.finished if step else ():
                together[g] = f.text
    assert [together[0], together[1]] == alone


def test_a_cancelled_request_leaves_the_others_running(engine: Engine) -> None:
    sampling = Sampling(temperature=0.0, max_tokens=30)
    p = prompt(engine)
    cancel = {0: False, 1: False}
    last: dict[int, int] = {}
    steps_seen = 0
    for steps in engine.generate_many(
        [GenerationRequest(p, sampling, [0, 1], ignore_eos=True), GenerationRequest(p, sampling, [2], ignore_eos=True)],
        cancelled=cancel.__getitem__,
    ):
        steps_seen += 1
        for g, step in enumerate(steps):
            if step is not None:
                last[g] = max(step.tokens)
        if steps_seen == 5:
            cancel[0] = True
    assert last[0] == 5 and last[1] == 30  # request 0 stopped at once; request 1 ran to its end


def run_prompt(engine: Engine, tokens: list[int], sampling: Sampling) -> str:
    return next(f.text for step in engine.generate(tokens, sampling, [0]) for f in step.finished)


def test_a_sample_drawn_alone_is_reproducible(engine: Engine) -> None:
    # The staged policy draws a challenger's samples one at a time. The same seed drawn alone twice gives the
    # same text. (Drawn alone vs inside a batch of k it may not: the logits differ in their last bits with
    # the batch's shape, and sampling at T > 0 can turn that into another token after a few dozen steps.)
    sampling = Sampling(temperature=0.8, max_tokens=40)
    first = run(engine, sampling, seeds=[4])
    again = run(engine, sampling, seeds=[4])
    assert [f.text for f in first] == [f.text for f in again] and first[0].text


def logprobs_of(engine: Engine, sampling: Sampling, seeds: list[int], top: int = 5) -> list[FinishedSequence]:
    finished = [f for step in engine.generate(prompt(engine), sampling, seeds, logprobs=top) for f in step.finished]
    return sorted(finished, key=lambda f: f.index)


def killed_run(engine: Engine, sampling: Sampling, seed: int, kill: tuple[float, int] | None) -> FinishedSequence:
    (f,) = [f for step in engine.generate(prompt(engine), sampling, [seed], kill=kill) for f in step.finished]
    return f


def test_trace_kill_ends_a_sample_where_its_window_confidence_falls_below_the_floor(engine: Engine) -> None:
    # Each seed drawn alone (a batch of one: another sample's end cannot change its numerics), first without
    # kill, then with a floor between the samples' lowest 8-token windows: the pure rule says where each one
    # dies, and the engine must end it there, "killed", with the same tokens up to that point.
    sampling, window = Sampling(temperature=0.9, max_tokens=48), 8
    free = {seed: logprobs_of(engine, sampling, [seed], top=0)[0] for seed in (1, 2, 3, 4)}
    lowest = {seed: sample_score(TokenSignals.of(f.logprobs or ()), "lowest_group", window) for seed, f in free.items()}
    floor = sorted(lowest.values())[2]  # the two lowest die (if 8 tokens long), the others live
    for seed, f in free.items():
        confidences = [t.confidence for t in f.logprobs or ()]
        dies_at = TraceKill(window).kill_point(confidences, floor)
        cut = killed_run(engine, sampling, seed, (floor, window))
        assert cut.logprobs is not None  # confidences are computed for the kill even when none were asked
        if dies_at is None:
            assert (cut.text, cut.tokens, cut.stop_reason) == (f.text, f.tokens, f.stop_reason)
        else:
            assert cut.stop_reason == "killed" and cut.tokens == dies_at == len(cut.logprobs)
            assert [t.token for t in cut.logprobs] == [t.token for t in (f.logprobs or ())][:dies_at]
    fates = {
        TraceKill(window).kill_point([t.confidence for t in f.logprobs or ()], floor) is None for f in free.values()
    }
    assert fates == {True, False}  # some died and some lived: both branches above were checked
    never = killed_run(engine, sampling, 1, (-math.inf, window))
    assert (never.text, never.stop_reason) == (free[1].text, free[1].stop_reason)


def test_logprobs_are_recorded_for_every_generated_token(engine: Engine) -> None:
    (f,) = logprobs_of(engine, Sampling(temperature=0.0, max_tokens=24), [0])
    assert f.logprobs is not None and len(f.logprobs) == f.tokens
    for t in f.logprobs:
        assert t.top[0] == (t.token, t.logprob)  # greedy takes the likeliest token
        assert [lp for _, lp in t.top] == sorted((lp for _, lp in t.top), reverse=True) and len(t.top) == 5
        assert sum(math.exp(lp) for _, lp in t.top) <= 1 + 1e-6 and t.logprob <= 0
        assert t.confidence >= -t.top[-1][1]  # minus the mean of the top 20, the top 5 included
    without = run(engine, Sampling(temperature=0.0, max_tokens=24), [0])[0]
    assert without.logprobs is None and without.text == f.text


def test_logprobs_come_before_the_sampler_chain(engine: Engine) -> None:
    # The first token's distribution depends on the prompt only: whatever the temperature, its logprobs
    # are the model's (llama-server's /v1 semantics), and asking for them leaves the samples as they were.
    hot = logprobs_of(engine, Sampling(temperature=1.5, max_tokens=8), [1, 2])
    cold = logprobs_of(engine, Sampling(temperature=0.0, max_tokens=8), [1])
    assert hot[0].logprobs and cold[0].logprobs
    (hot_first, cold_first) = (hot[0].logprobs[0], cold[0].logprobs[0])
    assert [t for t, _ in hot_first.top] == [t for t, _ in cold_first.top]
    assert [lp for _, lp in hot_first.top] == pytest.approx([lp for _, lp in cold_first.top], abs=1e-3)
    assert [f.text for f in hot] == [f.text for f in run(engine, Sampling(temperature=1.5, max_tokens=8), [1, 2])]


def test_each_sequence_of_a_batch_gets_its_own_logprobs(engine: Engine) -> None:
    # min-p 0.05 runs on the raw logits, so every token the chain let through has a logprob within log(0.05)
    # of its own distribution's best. Logits read from another sequence's row would break that at once.
    hot = Sampling(temperature=1.5, max_tokens=32, min_p=0.05, top_k=0, top_p=1.0)
    out = logprobs_of(engine, hot, [21, 22, 23, 24], top=1)
    tokens = [t for f in out for t in (f.logprobs or ())]
    assert len(tokens) == sum(f.tokens for f in out) > 60
    assert all(t.logprob >= t.top[0][1] + math.log(0.05) - 1e-6 for t in tokens)
    assert sum(t.token != t.top[0][0] for t in tokens) > 10  # hot enough that the check means something


def test_logprobs_match_llama_cpp_python_teacher_forced(engine: Engine, smollm2_path: Path) -> None:
    # An independent computation: llama-cpp-python's Llama evaluates prompt + sampled tokens in one pass and
    # keeps every position's logits; their log-softmax at each sampled token is the logprob we recorded. The
    # two differ by kernel rounding (a different batch shape over 4-bit weights: up to ~0.3 nats where the
    # model hesitates, 0 where it is sure), so the check is on the median and on gross errors.
    import numpy as np

    (f,) = logprobs_of(engine, Sampling(temperature=0.8, max_tokens=16), [3], top=0)
    assert f.logprobs
    p = prompt(engine)
    tokens = [t.token for t in f.logprobs]
    # edgemux's model parameters: llama.cpp's defaults crash on AMX CPUs (model_params)
    llm = library_llama(str(smollm2_path), n_ctx=512, logits_all=True, n_threads=2, verbose=False)
    try:
        llm.eval(p + tokens)
        scores = np.asarray(llm.scores[len(p) - 1 : len(p) - 1 + len(tokens)], dtype=np.float64)
    finally:
        llm.close()
    z = scores.max(axis=1) + np.log(np.exp(scores - scores.max(axis=1, keepdims=True)).sum(axis=1))
    expected = scores[np.arange(len(tokens)), tokens] - z
    confidence = -(np.sort(scores, axis=1)[:, -20:] - z[:, None]).mean(axis=1)
    logprob_error = np.abs(np.array([t.logprob for t in f.logprobs]) - expected)
    confidence_error = np.abs(np.array([t.confidence for t in f.logprobs]) - confidence)
    assert np.median(logprob_error) < 0.02 and logprob_error.max() < 0.5, logprob_error
    assert np.median(confidence_error) < 0.05 and confidence_error.max() < 0.5, confidence_error


def test_scoring_recorded_tokens_gives_what_generation_recorded(engine: Engine) -> None:
    # Teacher forcing: the tokens a sample drew, evaluated at prompt speed, give back its logprobs and
    # confidences (up to kernel rounding between batch shapes), so runs recorded without them can be scored.
    import numpy as np

    (f,) = logprobs_of(engine, Sampling(temperature=0.8, max_tokens=20), [5], top=0)
    assert f.logprobs
    (g,) = logprobs_of(engine, Sampling(temperature=0.8, max_tokens=12), [6], top=0)
    assert g.logprobs
    tokens = [t.token for t in f.logprobs]
    scored, empty, other = engine.score(prompt(engine), [tokens, [], [t.token for t in g.logprobs]])
    assert [t.token for t in scored] == tokens and empty == []
    for recorded, again in ((f.logprobs, scored), (g.logprobs, other)):  # the shared prompt is reused, not mixed
        error = np.abs(np.array([t.logprob for t in again]) - [t.logprob for t in recorded])
        assert np.median(error) < 0.02 and error.max() < 0.5, error
    with pytest.raises(PromptTooLongError):
        engine.score(prompt(engine), [[1] * 2000])


def test_a_choice_letters_probability_against_the_other_letters(engine: Engine) -> None:
    # The real vocabulary: every way SmolLM2 writes an option letter is found, and the letter it is made
    # to write after "Answer:" gets its share of the letters' probability where it was written.
    from edgemux.decide.confidence import answer_mass, letter_tokens

    letters = letter_tokens(engine.tokenize, "ABCD")
    assert set(letters.values()) == set("ABCD")
    question = "Which planet is closest to the Sun?\nA. Mars\nB. Mercury\nC. Jupiter\nD. Venus\nAnswer with the letter."
    text = engine.render_chat([("user", question)]) + "Answer:"
    base = engine.tokenize(text)
    masses = {}
    for letter in "ABCD":
        written = engine.tokenize(text + " " + letter)
        assert written[: len(base)] == base and letters.get(written[-1]) == letter
        (scored,) = engine.score(base, [written[len(base) :]], keep=20)
        masses[letter] = answer_mass(scored, letters, letter, "ABCD")
    assert all(m is not None and 0 < m <= 1 for m in masses.values())
    assert sum(masses.values()) == pytest.approx(1.0, abs=0.02)  # the same position, four letters' shares
