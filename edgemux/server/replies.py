"""One completion request in flight and its reply: as one JSON body, or as server-sent events in OpenAI's
chunk format (text deltas held back while a stop string may be arriving, logprobs as they come, a mux
answer's progress as extension chunks), and its access-log line when it ends."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..events import DecodeProgress, SamplingStarted
from ..types import BatchStep, MuxResult, TokenLogprobs
from .openai_api import (
    ChatRequest,
    decision_extension,
    error_body,
    event_payload,
    extension_chunk,
    finish_reason,
    generation_response,
    logprobs_body,
    mux_response,
    status_of,
    text_chunk,
)
from .worker import GenerateJob, Job, Worker

__all__ = ["UNKNOWN_MODEL", "Call", "error_response", "printable", "stream", "whole"]

access = logging.getLogger("edgemux.access")
UNKNOWN_MODEL = "(unknown)"  # the one label of requests that named no served model (or none at all)


def error_response(e: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    status, _, _ = status_of(e)
    return JSONResponse(error_body(e), status_code=status, headers=headers)


class Call:
    """One completion request in flight: the queue its job reports to, and its access-log line."""

    def __init__(self, request: Request, worker: Worker) -> None:
        self.request, self.worker, self.model = request, worker, UNKNOWN_MODEL
        self.started = time.perf_counter()
        self.loop = asyncio.get_running_loop()
        self.out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.generated: dict[str, int] = {}  # tokens generated so far, per model (a mux job has several)

    def emit(self, kind: str, payload: Any) -> None:  # called on the decode thread
        if kind == "delta":
            self.generated[self.model] = sum(payload.tokens)
        elif kind == "event" and isinstance(payload, DecodeProgress):
            self.generated[payload.model] = sum(payload.tokens)
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, (kind, payload))
        except RuntimeError:  # the event loop is closed: the server stopped, nobody is listening
            pass

    @property
    def tokens(self) -> int:
        return sum(self.generated.values())

    def finished(self, status: int, tokens: int | None = None) -> None:
        """Count the request and log it, with the tokens generated for it (so far, when it was cut off)."""
        self.worker.stats.count(self.model, str(status))
        access.info("%s %s model=%s %d %.2fs %d tokens", self.request.method, printable(self.request.url.path),
                    self.model, status, time.perf_counter() - self.started,
                    self.tokens if tokens is None else tokens)  # fmt: skip


async def whole(req: ChatRequest, rid: str, job: Job, call: Call) -> Response:
    """Wait for the job and answer with one JSON body; a client that goes away cancels the job."""
    prompt_tokens = 0
    while True:
        getter = asyncio.ensure_future(call.out.get())
        while not getter.done():
            await asyncio.wait({getter}, timeout=0.25)
            if not getter.done() and await call.request.is_disconnected():
                getter.cancel()
                job.cancelled.set()
                call.finished(499)  # the tokens generated before the client left
                return Response(status_code=499)
        kind, payload = getter.result()
        if kind == "event" and isinstance(payload, SamplingStarted):
            prompt_tokens += payload.prompt_tokens
        elif kind == "error":
            call.finished(status_of(payload)[0])
            return error_response(payload)
        elif kind == "done":
            if isinstance(payload, MuxResult):
                call.finished(200, payload.tokens)
                return JSONResponse(mux_response(req, rid, payload, prompt_tokens))
            sequences, n_prompt = payload
            call.finished(200, sum(f.tokens for f in sequences))
            piece = job.piece if isinstance(job, GenerateJob) else None
            return JSONResponse(generation_response(req, rid, sequences, n_prompt, piece))


async def stream(req: ChatRequest, rid: str, job: Job, call: Call) -> AsyncIterator[str]:
    """The job as server-sent events in OpenAI's chunk format."""
    sent: dict[int, int] = {}  # characters of each choice already sent
    logprobs = _StreamedLogprobs(req, job)
    hold = max((len(s) for s in req.stop), default=1) - 1  # a stop string may be arriving: keep its length back
    try:
        if not req.is_mux:
            for i in range(req.n):
                yield _sse(text_chunk(req, rid, i, None, None, first=True))
                sent[i] = 0
        while True:
            kind, payload = await call.out.get()
            if kind == "error":
                call.finished(status_of(payload)[0])
                yield _sse(error_body(payload))
                break
            if kind == "event":
                data = event_payload(payload)
                if data is not None:
                    yield _sse(extension_chunk(req, rid, data))
            elif kind == "delta":
                for chunk in _delta_chunks(req, rid, payload, sent, hold, logprobs):
                    yield _sse(chunk)
            elif kind == "done":
                if isinstance(payload, MuxResult):
                    yield _sse(text_chunk(req, rid, 0, payload.text, None, first=True))
                    last = text_chunk(req, rid, 0, None, "stop", first=False)
                    last["edgemux"] = decision_extension(payload)
                    yield _sse(last)
                    call.finished(200, payload.tokens)
                else:
                    call.finished(200, sum(f.tokens for f in payload[0]))
                break
        yield "data: [DONE]\n\n"
    except asyncio.CancelledError:  # the client went away: stop decoding for it
        job.cancelled.set()
        call.finished(499)  # the tokens generated before it left
        raise
    finally:
        job.cancelled.set()  # a no-op once the job is done; frees the sequences if it is not


class _StreamedLogprobs:
    """The logprobs of the tokens each streamed choice has produced since its last chunk. They follow the
    tokens, not the characters sent: text kept back for a stop string may reach the client a chunk later
    than its tokens' logprobs; over the whole stream every token's logprob is sent once, in order."""

    def __init__(self, req: ChatRequest, job: Job) -> None:
        self.req, self.job = req, job
        self.sent: dict[int, int] = {}

    def new(self, index: int, tokens: Sequence[TokenLogprobs] | None, upto: int | None = None) -> dict[str, Any] | None:
        piece = self.job.piece if isinstance(self.job, GenerateJob) else None  # set once the worker decodes it
        if self.req.logprobs is None or piece is None or tokens is None:
            return None
        start = self.sent.get(index, 0)
        end = len(tokens) if upto is None else upto
        self.sent[index] = max(start, end)
        return logprobs_body(self.req.endpoint, tokens[start:end], piece)


def _delta_chunks(req: ChatRequest, rid: str, step: BatchStep, sent: dict[int, int], hold: int,
                  logprobs: _StreamedLogprobs) -> list[dict[str, Any]]:  # fmt: skip
    """The new text of each choice in one decode step (minus what could be the start of a stop string),
    with its new tokens' logprobs when the request asked for them."""
    chunks = []
    done = {f.index: f for f in step.finished}
    for i, text in enumerate(step.texts):
        if i in done or i not in sent:
            continue
        safe = len(text) - hold
        lp = logprobs.new(i, step.logprobs[i] if i < len(step.logprobs) else None, step.tokens[i])
        if safe > sent[i] or (lp and _has_tokens(lp)):
            chunks.append(text_chunk(req, rid, i, text[sent[i] : max(safe, sent[i])], None, first=False, logprobs=lp))
            sent[i] = max(safe, sent[i])
    for i, f in done.items():
        chunks.append(text_chunk(req, rid, f.index, f.text[sent.get(i, 0) :], finish_reason(f.stop_reason),
                                 first=False, logprobs=logprobs.new(i, f.logprobs)))  # fmt: skip
        sent.pop(i, None)
    return chunks


def _has_tokens(body: dict[str, Any]) -> bool:
    return bool(body.get("content") or body.get("tokens"))


def printable(value: str, limit: int = 200) -> str:
    """A client-given string made safe for one log line: control characters escaped, length capped."""
    escaped = value[:limit].encode("unicode_escape").decode("ascii")
    return escaped + ("…" if len(value) > limit else "")


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
