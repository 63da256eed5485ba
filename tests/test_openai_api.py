"""The OpenAI wire format on its own (no server): what a request becomes, what an error's status is, and the
shapes of logprobs and chunks. The server tests drive the same code through the real `openai` client."""

from __future__ import annotations

from typing import Any

import pytest

from edgemux import errors
from edgemux.events import ModelLoaded, ModelStopped, SampleFinished
from edgemux.server.openai_api import (
    ApiError,
    error_body,
    event_payload,
    generation_response,
    logprobs_body,
    parse_request,
    status_of,
    text_chunk,
)
from edgemux.types import FinishedSequence, Sample, Sampling, TokenLogprobs

CHAT = {"model": "qwen2.5-coder-0.5b", "messages": [{"role": "user", "content": "2+2?"}]}


def chat(**fields: Any) -> dict[str, Any]:
    return {**CHAT, **fields}


def test_a_chat_request_keeps_its_turns_and_sampling_fields() -> None:
    request = parse_request(
        chat(messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": [
            {"type": "text", "text": "2+"}, {"type": "text", "text": "2?"}]}],
             n=3, temperature=0.5, max_completion_tokens=64, seed=7, stop="\n", unknown_field=1),
        "chat",
    )  # fmt: skip
    assert request.messages == [("system", "terse"), ("user", "2+2?")]
    assert (request.n, request.temperature, request.max_tokens, request.seed, request.stop) == (3, 0.5, 64, 7, ("\n",))
    sampling = request.sampling(Sampling(k=5, top_k=17))
    assert (sampling.k, sampling.temperature, sampling.top_k, sampling.max_tokens) == (3, 0.5, 17, 64)


def test_a_completion_takes_a_one_string_batch_and_a_mux_model_names_its_profile() -> None:
    request = parse_request({"model": "mux:default", "prompt": ["What is 6*7?"]}, "completion")
    assert (request.is_mux, request.profile, request.question) == (True, "default", "What is 6*7?")


@pytest.mark.parametrize(
    ("body", "endpoint", "says"),
    [
        ([], "chat", "JSON object"),
        ({"messages": CHAT["messages"]}, "chat", "'model' is required"),
        (chat(model="x" * 200), "chat", "at most 128"),
        (chat(model="../../etc/passwd"), "chat", "letters, digits"),
        (chat(messages=[]), "chat", "non-empty list"),
        (chat(messages=[{"content": "hi"}]), "chat", "messages[0]"),
        (chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), "chat", "only text"),
        ({"model": "m", "prompt": [1, 2, 3]}, "completion", "token arrays"),
        (chat(n=0), "chat", "'n' must be between"),
        (chat(n=1.5), "chat", "whole number"),
        (chat(temperature=True), "chat", "'temperature' must be a number"),
        (chat(top_p=0), "chat", "'top_p' must be in (0"),
        (chat(stop=["a", "b", "c", "d", "e"]), "chat", "up to 4"),
        (chat(min_confidence=2), "chat", "between 0 and 1"),
        (chat(logprobs=1), "chat", "true or false"),
        (chat(top_logprobs=3), "chat", "needs 'logprobs': true"),
        (chat(logprobs=True, top_logprobs=21), "chat", "between 0 and 20"),
        ({"model": "m", "prompt": "x", "logprobs": 21}, "completion", "between 0 and 20"),
        (chat(model="mux:default", n=2), "chat", "'n' must be 1 for a mux model"),
        (chat(model="mux:default", logprobs=True), "chat", "single model"),
    ],
)
def test_a_bad_request_says_what_is_wrong(body: Any, endpoint: str, says: str) -> None:
    with pytest.raises(errors.InvalidRequestError) as caught:
        parse_request(body, endpoint)
    assert says in str(caught.value)


def test_logprobs_follow_openai_fields_per_endpoint() -> None:
    assert parse_request(chat(), "chat").logprobs is None
    assert parse_request(chat(logprobs=True), "chat").logprobs == 0
    assert parse_request(chat(logprobs=True, top_logprobs=5), "chat").logprobs == 5
    assert parse_request({"model": "m", "prompt": "x", "logprobs": 2}, "completion").logprobs == 2


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.PromptTooLongError("long"), 400, "context_length_exceeded"),
        (errors.InvalidRequestError("bad"), 400, None),
        (errors.NotFoundError("model", "nope", ["a"]), 404, "model_not_found"),
        (errors.BudgetError("full"), 503, "insufficient_memory"),
        (errors.ShuttingDownError("bye"), 503, "server_shutting_down"),
        (ApiError(429, "busy", "queue_full", "rate_limit_error"), 429, "queue_full"),
        (RuntimeError("boom"), 500, None),
    ],
)
def test_errors_map_to_status_by_type(error: BaseException, status: int, code: str | None) -> None:
    assert status_of(error)[0] == status
    assert error_body(error)["error"]["code"] == code


PIECES = {1: b"Hi", 2: b" there", 3: b"\xc3"}  # 3: half of a two-byte character


def test_chat_logprobs_carry_bytes_and_alternatives() -> None:
    tokens = [TokenLogprobs(1, -0.1, 2.0, ((1, -0.1), (2, -2.5))), TokenLogprobs(3, -1.0, 1.0)]
    body = logprobs_body("chat", tokens, PIECES.__getitem__)
    first, second = body["content"]
    assert first == {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [
        {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}, {"token": " there", "logprob": -2.5, "bytes": list(b" there")}]}  # fmt: skip
    assert (second["token"], second["bytes"], second["top_logprobs"]) == ("\ufffd", [0xC3], [])


def test_completion_logprobs_give_text_offsets() -> None:
    tokens = [TokenLogprobs(1, -0.1, 2.0, ((2, -3.0),)), TokenLogprobs(2, -0.2, 2.0)]
    body = logprobs_body("completion", tokens, PIECES.__getitem__)
    assert body == {
        "tokens": ["Hi", " there"], "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{" there": -3.0}, {}], "text_offset": [0, 2],
    }  # fmt: skip


def test_a_generation_response_counts_usage_and_maps_finish_reasons() -> None:
    request = parse_request(chat(n=2), "chat")
    finished = [FinishedSequence(0, "4", 3, "stop", 0.1), FinishedSequence(1, "four and", 8, "length", 0.2)]
    response = generation_response(request, "chatcmpl-x", finished, prompt_tokens=10)
    assert [c["finish_reason"] for c in response["choices"]] == ["stop", "length"]
    assert [c["message"]["content"] for c in response["choices"]] == ["4", "four and"]
    assert response["usage"] == {"prompt_tokens": 10, "completion_tokens": 11, "total_tokens": 21}
    assert response["object"] == "chat.completion" and response["choices"][0]["logprobs"] is None


def test_stream_chunks_announce_the_role_once() -> None:
    request = parse_request(chat(stream=True), "chat")
    first = text_chunk(request, "id", 0, "Hi", None, first=True)
    later = text_chunk(request, "id", 0, None, "stop", first=False)
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert later["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}


def test_progress_events_become_extension_payloads() -> None:
    sample = Sample(model="m", index=2, seed=1, text="… 4", answer="4", tokens=12, stop_reason="stop", seconds=0.5)
    assert event_payload(SampleFinished(sample)) == {
        "event": "sample_finished", "model": "m", "index": 2, "answer": "4", "tokens": 12,
    }  # fmt: skip
    assert event_payload(ModelLoaded("m", 1.23456)) == {"event": "model_loaded", "model": "m", "seconds": 1.235}
    assert event_payload(ModelStopped("m", "settled", (3, 4)))["samples"] == [3, 4]  # type: ignore[index]
