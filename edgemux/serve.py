"""``edgemux serve``: the OpenAI-compatible HTTP layer (Starlette + uvicorn, the ``[server]`` extra).

Requests are checked here (key, size, JSON, model), turned into worker jobs, and queued; the decode thread
(``worker.Worker``) runs them one at a time. Results come back through an asyncio queue: as one JSON body,
or as server-sent events in OpenAI's chunk format. A client that disconnects cancels its job, which frees
its sequences at the next decode step. Errors use OpenAI's error shape, with the status chosen from the
error's type (``openai_api.status_of``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from . import errors
from .memory import rss_bytes
from .openai_api import (
    MUX_PREFIX,
    ApiError,
    ChatRequest,
    decision_extension,
    error_body,
    event_payload,
    extension_chunk,
    finish_reason,
    generation_response,
    mux_response,
    new_id,
    parse_request,
    status_of,
    text_chunk,
)
from .profiles import list_profiles
from .types import BatchStep, FinishedSequence, MuxResult, SamplingStarted
from .worker import GenerateJob, Job, MuxJob, QueueFull, Worker

__all__ = ["create_app"]

log = logging.getLogger("edgemux.serve")
access = logging.getLogger("edgemux.access")


def _error(e: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    status, _, _ = status_of(e)
    return JSONResponse(error_body(e), status_code=status, headers=headers)


def create_app(worker: Worker, *, api_key: str | None = None, max_body: int = 1 << 20) -> Starlette:
    async def health(request: Request) -> Response:
        if worker.load_error is not None:
            return JSONResponse({"status": "error", "error": str(worker.load_error)}, status_code=503)
        if not worker.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok", "loaded": worker.resident.names(), "queue": worker.depth})

    async def metrics(request: Request) -> Response:
        lines = [
            "# HELP edgemux_requests_total Requests answered, by model and HTTP status.",
            "# TYPE edgemux_requests_total counter",
            *(
                f'edgemux_requests_total{{model="{m}",status="{s}"}} {n}'
                for (m, s), n in sorted(worker.stats.requests.items())
            ),
            "# HELP edgemux_generated_tokens_total Tokens generated for all requests.",
            "# TYPE edgemux_generated_tokens_total counter",
            f"edgemux_generated_tokens_total {worker.stats.generated_tokens}",
            "# HELP edgemux_queue_depth Requests waiting or running.",
            "# TYPE edgemux_queue_depth gauge",
            f"edgemux_queue_depth {worker.depth}",
            "# HELP edgemux_resident_bytes Memory held by each loaded model (measured at load).",
            "# TYPE edgemux_resident_bytes gauge",
            *(f'edgemux_resident_bytes{{model="{n}"}} {worker.resident.nbytes(n)}' for n in worker.resident.names()),
            "# HELP edgemux_budget_bytes The memory budget of the loaded models.",
            "# TYPE edgemux_budget_bytes gauge",
            f"edgemux_budget_bytes {worker.budget_bytes}",
            "# HELP edgemux_process_resident_bytes Resident memory of the whole server process.",
            "# TYPE edgemux_process_resident_bytes gauge",
            f"edgemux_process_resident_bytes {rss_bytes() or 0}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    def check_key(request: Request) -> None:
        sent = request.headers.get("authorization", "").encode()
        if api_key is not None and not hmac.compare_digest(sent, f"Bearer {api_key}".encode()):  # constant time
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer <key>')", "invalid_api_key")

    async def models(request: Request) -> Response:
        try:
            check_key(request)
        except ApiError as e:
            return _error(e)
        created = int(time.time())
        ids = served_ids()
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": i, "object": "model", "created": created, "owned_by": "edgemux"} for i in ids],
            }
        )

    async def read_json(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise ApiError(413, f"the request body is {length} bytes; the limit is {max_body}", "request_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise ApiError(413, f"the request body is over the {max_body}-byte limit", "request_too_large")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON ({e})", "invalid_json") from None

    def served_ids() -> list[str]:
        """What /v1/models lists and requests may name (profiles and cached models, read once per call)."""
        return [MUX_PREFIX + p for p in list_profiles()] + worker.model_names()

    def make_job(req: ChatRequest, emit: Any) -> Job:
        ids = served_ids()
        if req.model not in ids:
            raise errors.NotFoundError("model", req.model, ids)
        if req.is_mux:
            overrides = {
                "temperature": req.temperature,
                "top_p": req.top_p,
                "max_tokens": req.max_tokens,
                "seed": req.seed,
            }
            return MuxJob(emit, profile=req.profile, question=req.question, sampling=overrides,
                          min_confidence=req.min_confidence)  # fmt: skip
        sampling = req.sampling(worker.default_profile.sampling)
        if req.endpoint == "chat":
            return GenerateJob(emit, model=req.model, messages=req.messages, sampling=sampling, stop=req.stop)
        return GenerateJob(emit, model=req.model, prompt=req.prompt, sampling=sampling, stop=req.stop)

    async def completions(request: Request, endpoint: str) -> Response:
        started = time.perf_counter()
        model = "?"
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(kind: str, payload: Any) -> None:  # called on the decode thread
            loop.call_soon_threadsafe(out.put_nowait, (kind, payload))

        def finished(status: int, tokens: int = 0) -> None:
            worker.stats.count(model, str(status))
            access.info('%s %s model=%s %d %.2fs %d tokens', request.method, request.url.path, model, status,
                        time.perf_counter() - started, tokens)  # fmt: skip

        try:
            check_key(request)
            req = parse_request(await read_json(request), endpoint)
            model = req.model
            if worker.load_error is not None:
                raise ApiError(
                    503, f"the server could not load its models: {worker.load_error}", "load_failed", "server_error"
                )
            if not worker.ready.is_set():
                raise ApiError(503, "the server is still loading its models; retry shortly", "loading", "server_error")
            job = make_job(req, emit)
            worker.submit(job)
        except QueueFull:
            retry = max(1, round(worker.depth * 2))
            finished(429)
            return _error(ApiError(429, f"{worker.depth} requests are queued; retry in {retry} s", "rate_limit_exceeded", "requests"),
                          headers={"Retry-After": str(retry)})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - every error becomes an OpenAI error body
            status, _, _ = status_of(e)
            finished(status)
            return _error(e)

        rid = new_id(endpoint)
        if req.stream:
            return StreamingResponse(stream(request, req, rid, job, out, finished), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
        prompt_tokens = 0
        while True:
            getter = asyncio.ensure_future(out.get())
            while not getter.done():
                await asyncio.wait({getter}, timeout=0.25)
                if not getter.done() and await request.is_disconnected():
                    getter.cancel()
                    job.cancelled.set()
                    finished(499)
                    return Response(status_code=499)
            kind, payload = getter.result()
            if kind == "event" and isinstance(payload, SamplingStarted):
                prompt_tokens += payload.prompt_tokens
            elif kind == "error":
                status, _, _ = status_of(payload)
                finished(status)
                return _error(payload)
            elif kind == "done":
                if isinstance(payload, MuxResult):
                    finished(200, payload.tokens)
                    return JSONResponse(mux_response(req, rid, payload, prompt_tokens))
                sequences, n_prompt = payload
                finished(200, sum(f.tokens for f in sequences))
                return JSONResponse(generation_response(req, rid, sequences, n_prompt))

    async def stream(request: Request, req: ChatRequest, rid: str, job: Job, out: asyncio.Queue[tuple[str, Any]],
                     finished: Any) -> AsyncIterator[str]:  # fmt: skip
        sent: dict[int, int] = {}  # characters of each choice already sent
        hold = max((len(s) for s in req.stop), default=1) - 1  # a stop string may be arriving: keep its length back
        tokens = 0
        try:
            if not req.is_mux:
                for i in range(req.n):
                    yield _sse(text_chunk(req, rid, i, None, None, first=True))
                    sent[i] = 0
            while True:
                kind, payload = await out.get()
                if kind == "error":
                    status, _, _ = status_of(payload)
                    finished(status, tokens)
                    yield _sse(error_body(payload))
                    break
                if kind == "event":
                    data = event_payload(payload)
                    if data is not None:
                        yield _sse(extension_chunk(req, rid, data))
                elif kind == "delta":
                    step: BatchStep = payload
                    done = {f.index: f for f in step.finished}
                    for i, text in enumerate(step.texts):
                        if i in done or i not in sent:
                            continue
                        safe = len(text) - hold
                        if safe > sent[i]:
                            yield _sse(text_chunk(req, rid, i, text[sent[i] : safe], None, first=False))
                            sent[i] = safe
                    for i, f in done.items():
                        yield _sse(_final_chunk(req, rid, f, sent.get(i, 0)))
                        sent.pop(i, None)
                elif kind == "done":
                    if isinstance(payload, MuxResult):
                        tokens = payload.tokens
                        yield _sse(text_chunk(req, rid, 0, payload.text, None, first=True))
                        last = text_chunk(req, rid, 0, None, "stop", first=False)
                        last["edgemux"] = decision_extension(payload)
                        yield _sse(last)
                    else:
                        tokens = sum(f.tokens for f in payload[0])
                    finished(200, tokens)
                    break
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:  # the client went away: stop decoding for it
            job.cancelled.set()
            finished(499, tokens)
            raise
        finally:
            job.cancelled.set()  # a no-op once the job is done; frees the sequences if it is not

    async def chat(request: Request) -> Response:
        return await completions(request, "chat")

    async def completion(request: Request) -> Response:
        return await completions(request, "completion")

    routes = [
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completion, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _final_chunk(req: ChatRequest, rid: str, f: FinishedSequence, already: int) -> dict[str, Any]:
    return text_chunk(req, rid, f.index, f.text[already:], finish_reason(f.stop_reason), first=False)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
