"""The OpenAI wire format, both ways (pure: no web framework here).

Requests become worker jobs; finished jobs and their progress become OpenAI responses and stream chunks.
Unknown request fields are ignored, as OpenAI clients expect of compatible servers. A mux model's answer
carries the decision in an ``edgemux`` extension field (winner, answer, confidence, votes, tokens, early
stop), and its stream carries the other models' progress as extension chunks with no choices.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..events import Event, ModelFinished, ModelLoaded, ModelLoading, ModelStopped, SampleFinished, SamplingStarted
from ..types import FinishedSequence, MuxResult, Sampling, TokenLogprobs

__all__ = ["ApiError", "ChatRequest", "error_body", "parse_request", "status_of"]

MUX_PREFIX = "mux:"


class ApiError(Exception):
    """An error with its HTTP status and OpenAI error type/code, raised by the web layer itself."""

    def __init__(self, status: int, message: str, code: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code, self.kind = status, code, kind


def status_of(e: BaseException) -> tuple[int, str, str | None]:
    """(HTTP status, OpenAI error type, code) for an error, by its type — never by its message."""
    if isinstance(e, ApiError):
        return e.status, e.kind, e.code
    table: list[tuple[type[BaseException], int, str, str | None]] = [
        (errors.PromptTooLongError, 400, "invalid_request_error", "context_length_exceeded"),
        (errors.InvalidRequestError, 400, "invalid_request_error", None),
        (errors.NotFoundError, 404, "invalid_request_error", "model_not_found"),
        (errors.BudgetError, 503, "server_error", "insufficient_memory"),
        (errors.ShuttingDownError, 503, "server_error", "server_shutting_down"),
        (errors.ConfigError, 500, "server_error", "bad_configuration"),
        (errors.EdgemuxError, 500, "server_error", None),
    ]
    for kind, status, name, code in table:
        if isinstance(e, kind):
            return status, name, code
    return 500, "server_error", None


def error_body(e: BaseException) -> dict[str, Any]:
    _, kind, code = status_of(e)
    return {"error": {"message": str(e) or type(e).__name__, "type": kind, "param": None, "code": code}}


@dataclass
class ChatRequest:
    """One /v1/chat/completions or /v1/completions request, validated."""

    endpoint: str  # "chat" or "completion"
    model: str
    messages: list[tuple[str, str]] = field(default_factory=list)
    prompt: str | None = None
    n: int = 1
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    min_confidence: float | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: not asked; n: each token's logprob with its n likeliest alternatives

    @property
    def is_mux(self) -> bool:
        return self.model.startswith(MUX_PREFIX)

    @property
    def profile(self) -> str:
        return self.model[len(MUX_PREFIX) :]

    @property
    def question(self) -> str:
        """What a mux profile is asked: the last user turn (the profile brings its own instruction)."""
        if self.prompt is not None:
            return self.prompt
        users = [content for role, content in self.messages if role == "user"]
        if not users:
            raise errors.InvalidRequestError("'messages' has no user message to answer")
        return users[-1]

    def sampling(self, base: Sampling) -> Sampling:
        overrides = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        values = {k: v for k, v in overrides.items() if v is not None}
        return Sampling(**{**{f: getattr(base, f) for f in base.field_names()}, **values, "k": self.n}).validated()


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"type": "text", "text": ...}, ...]
        parts = [p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) == len(value):
            return "".join(parts)
    if value is None:
        return ""
    raise errors.InvalidRequestError(f"{where}: only text content is supported")


def _number(body: dict[str, Any], key: str, kind: type, low: float, high: float) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not float(value).is_integer())
    ):
        raise errors.InvalidRequestError(f"'{key}' must be a {'whole ' if kind is int else ''}number")
    if not low <= value <= high:
        raise errors.InvalidRequestError(f"'{key}' must be between {low:g} and {high:g}, got {value}")
    return kind(value)


def _sampling_field(body: dict[str, Any], key: str, name: str | None = None) -> Any:
    """A request field that sets Sampling's field ``name`` (default: the same name), checked by its range."""
    name = name or key
    low, high, low_open = Sampling.range_of(name)
    value = _number(body, key, type(Sampling.__dataclass_fields__[name].default or 0), low, high)
    if value is not None and low_open and value <= low:
        raise errors.InvalidRequestError(f"'{key}' must be in ({low:g}, {high:g}], got {value}")
    return value


MAX_TOP_LOGPROBS = 20  # OpenAI's limit for chat, and what the engine computes anyway (token confidence)
MODEL_ID_MAX = 128
MODEL_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MODEL_ID_MAX - 1}}}")


def parse_request(body: Any, endpoint: str) -> ChatRequest:
    if not isinstance(body, dict):
        raise errors.InvalidRequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise errors.InvalidRequestError("'model' is required: a model name, or mux:<profile>")
    if not MODEL_ID.fullmatch(model):  # checked before the name reaches a log line or a metric label
        raise errors.InvalidRequestError(
            f"'model' must be a model name or mux:<profile>: letters, digits, '.', '_', '-' and ':', at most "
            f"{MODEL_ID_MAX} characters (got {len(model)} characters)"
        )
    request = ChatRequest(endpoint, model)
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise errors.InvalidRequestError("'messages' must be a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise errors.InvalidRequestError(f"messages[{i}] must be an object with a 'role'")
            request.messages.append((m["role"], _content(m.get("content"), f"messages[{i}].content")))
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise errors.InvalidRequestError("'prompt' must be a string (token arrays and batches are not supported)")
        request.prompt = prompt
    # The sampling fields and their ranges are Sampling's own (n is its k; the server refuses more samples
    # than its models were loaded for, with the numbers).
    request.n = _sampling_field(body, "n", "k") or 1
    request.temperature = _sampling_field(body, "temperature")
    request.top_p = _sampling_field(body, "top_p")
    request.max_tokens = _sampling_field(body, "max_completion_tokens", "max_tokens") or _sampling_field(
        body, "max_tokens"
    )
    request.seed = _sampling_field(body, "seed")
    # edgemux's own field (mux models): below this confidence the answer is marked abstained
    request.min_confidence = _number(body, "min_confidence", float, 0, 1)
    stop = body.get("stop")
    if isinstance(stop, str):
        request.stop = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        request.stop = tuple(s for s in stop if s)
    elif stop is not None:
        raise errors.InvalidRequestError("'stop' must be a string or a list of up to 4 strings")
    request.stream = bool(body.get("stream", False))
    request.logprobs = _logprobs(body, endpoint)
    if request.logprobs is not None and request.is_mux:
        raise errors.InvalidRequestError(
            "logprobs are returned for a single model (a mux answer's confidence is in its 'edgemux' field, "
            "each sample's included)"
        )
    if request.is_mux and request.n != 1:
        raise errors.InvalidRequestError(
            "'n' must be 1 for a mux model: the profile sets how many samples each model draws"
        )
    return request


def _logprobs(body: dict[str, Any], endpoint: str) -> int | None:
    """OpenAI's fields: chat ``logprobs: true`` with ``top_logprobs`` 0-20; completions ``logprobs: n``."""
    if endpoint == "chat":
        asked = body.get("logprobs")
        if asked is not None and not isinstance(asked, bool):
            raise errors.InvalidRequestError("'logprobs' must be true or false")
        top: int | None = _number(body, "top_logprobs", int, 0, MAX_TOP_LOGPROBS)
        if top is not None and not asked:
            raise errors.InvalidRequestError("'top_logprobs' needs 'logprobs': true")
        return (top or 0) if asked else None
    n: int | None = _number(body, "logprobs", int, 0, MAX_TOP_LOGPROBS)
    return n


# -- responses ---------------------------------------------------------------------------------------------


def new_id(endpoint: str) -> str:
    return ("chatcmpl-" if endpoint == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def finish_reason(stop_reason: str) -> str:
    return "length" if stop_reason == "length" else "stop"


def _choice(endpoint: str, index: int, text: str, reason: str | None,
            logprobs: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    if endpoint == "chat":
        return {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "finish_reason": reason,
            "logprobs": logprobs,
        }
    return {"index": index, "text": text, "finish_reason": reason, "logprobs": logprobs}


def logprobs_body(endpoint: str, tokens: Sequence[TokenLogprobs], piece: Callable[[int], bytes]) -> dict[str, Any]:
    """One choice's ``logprobs`` in OpenAI's shape: chat ``{"content": [{token, logprob, bytes, top_logprobs}]}``,
    completions ``{tokens, token_logprobs, top_logprobs, text_offset}``. A token's text is its piece decoded
    as UTF-8 (a piece that splits a character shows U+FFFD; ``bytes`` has the exact bytes)."""

    def text(token: int) -> str:
        return piece(token).decode("utf-8", errors="replace")

    if endpoint == "chat":
        return {"content": [
            {"token": text(t.token), "logprob": t.logprob, "bytes": list(piece(t.token)),
             "top_logprobs": [{"token": text(i), "logprob": lp, "bytes": list(piece(i))} for i, lp in t.top]}
            for t in tokens
        ], "refusal": None}  # fmt: skip
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(text(t.token))
    return {
        "tokens": [text(t.token) for t in tokens], "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{text(i): lp for i, lp in t.top} for t in tokens], "text_offset": offsets,
    }  # fmt: skip


def _envelope(request: ChatRequest, rid: str, chunk: bool) -> dict[str, Any]:
    kind = ("chat.completion" if request.endpoint == "chat" else "text_completion") + (
        ".chunk" if chunk and request.endpoint == "chat" else ""
    )
    return {"id": rid, "object": kind, "created": int(time.time()), "model": request.model}


def generation_response(
    request: ChatRequest, rid: str, finished: Sequence[FinishedSequence], prompt_tokens: int,
    piece: Callable[[int], bytes] | None = None,
) -> dict[str, Any]:  # fmt: skip
    completion = sum(f.tokens for f in finished)

    def logprobs(f: FinishedSequence) -> dict[str, Any] | None:
        if f.logprobs is None or piece is None:
            return None
        return logprobs_body(request.endpoint, f.logprobs, piece)

    return {
        **_envelope(request, rid, chunk=False),
        "choices": [
            _choice(request.endpoint, f.index, f.text, finish_reason(f.stop_reason), logprobs(f)) for f in finished
        ],  # fmt: skip
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        },
    }


def decision_extension(result: MuxResult) -> dict[str, Any]:
    d = result.to_dict()
    return {
        "profile": result.profile, "winner": d["winner"], "answer": d["answer"], "confidence": d["confidence"],
        "tie_break": d["tie_break"], "reason": d["reason"], "votes": d["models"], "tokens": result.tokens,
        "early_stop": d["early_stop"], "seconds": round(result.seconds, 3),
        # abstained: the confidence was below min_confidence; the message is then the best guess, still 200
        "abstained": d["abstained"], "min_confidence": d["min_confidence"], "calibration": d["calibration"],
        # how answers were compared (kind auto says why), open answers' clusters, remote members that failed
        "kind": d["kind"], **{key: d[key] for key in ("kind_reason", "clusters", "failures") if key in d},
    }  # fmt: skip


def mux_response(request: ChatRequest, rid: str, result: MuxResult, prompt_tokens: int) -> dict[str, Any]:
    return {
        **_envelope(request, rid, chunk=False),
        "choices": [_choice(request.endpoint, 0, result.text, "stop")],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": result.tokens,
            "total_tokens": prompt_tokens + result.tokens,
        },
        "edgemux": decision_extension(result),
    }


def text_chunk(
    request: ChatRequest, rid: str, index: int, text: str | None, reason: str | None, first: bool,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    if request.endpoint == "chat":
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if text:
            delta["content"] = text
        choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": logprobs}
    else:
        choice = {"index": index, "text": text or "", "finish_reason": reason, "logprobs": logprobs}
    return {**_envelope(request, rid, chunk=True), "choices": [choice]}


def event_payload(event: Event) -> dict[str, Any] | None:
    """A mux progress event as the extension chunk's ``edgemux`` field (None: not worth a chunk)."""
    if isinstance(event, ModelLoading):
        return {"event": "model_loading", "model": event.model}
    if isinstance(event, ModelLoaded):
        return {"event": "model_loaded", "model": event.model, "seconds": round(event.load_s, 3)}
    if isinstance(event, SamplingStarted):
        return {"event": "sampling_started", "model": event.model, "k": event.k, "prompt_tokens": event.prompt_tokens}
    if isinstance(event, SampleFinished):
        s = event.sample
        return {"event": "sample_finished", "model": s.model, "index": s.index, "answer": s.answer, "tokens": s.tokens}
    if isinstance(event, ModelStopped):
        return {"event": "model_stopped", "model": event.model, "samples": list(event.samples), "reason": event.reason}
    if isinstance(event, ModelFinished):
        v = event.vote
        return {"event": "model_finished", "model": v.model, "answer": v.answer, "confidence": v.confidence}
    return None


def extension_chunk(request: ChatRequest, rid: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {**_envelope(request, rid, chunk=True), "choices": [], "edgemux": payload}
