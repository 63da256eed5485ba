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
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .. import errors
from ..events import DecodeProgress, SamplingStarted
from ..memory.osmemory import peak_rss_bytes, rss_bytes
from ..profiles import list_profiles
from ..types import BatchStep, MuxResult, TokenLogprobs
from .downloads import Downloads
from .exposure import Exposure, Guard
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
    logprobs_body,
    mux_response,
    new_id,
    parse_request,
    status_of,
    text_chunk,
)
from .worker import GenerateJob, Job, MuxJob, QueueFull, Worker

__all__ = ["DrainingServer", "create_app", "metrics_text"]

log = logging.getLogger("edgemux.serve")
access = logging.getLogger("edgemux.access")


def _error(e: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    status, _, _ = status_of(e)
    return JSONResponse(error_body(e), status_code=status, headers=headers)


class _Api:
    """The route handlers, each small; the state they share is the worker and the server's settings."""

    def __init__(self, worker: Worker, api_key: str | None, max_body: int, downloads: Downloads) -> None:
        self.worker, self.api_key, self.max_body, self.downloads = worker, api_key, max_body, downloads

    # -- plain endpoints ------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Open without the key (for probes): says only whether it is up, what is loaded and downloading."""
        worker = self.worker
        downloads = [d.as_dict() for d in self.downloads.running()]
        if worker.load_error is not None:
            return JSONResponse({"status": "error", "error": str(worker.load_error)}, status_code=503)
        if not worker.ready.is_set():
            return JSONResponse({"status": "loading", "downloads": downloads}, status_code=503)
        return JSONResponse({"status": "ok", "loaded": worker.resident.names(), "queue": worker.depth,
                             "downloads": downloads})  # fmt: skip

    async def metrics(self, request: Request) -> Response:
        self.check_key(request)
        return PlainTextResponse(metrics_text(self.worker), media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        self.check_key(request)
        created = int(time.time())
        data = [{"id": i, "object": "model", "created": created, "owned_by": "edgemux"} for i in self.served_ids()]
        return JSONResponse({"object": "list", "data": data})

    # -- helpers --------------------------------------------------------------------------------------

    def check_key(self, request: Request) -> None:
        sent = request.headers.get("authorization", "").encode()
        if self.api_key is not None and not hmac.compare_digest(sent, f"Bearer {self.api_key}".encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer <key>')", "invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        length, limit = request.headers.get("content-length"), self.max_body
        if length is not None and length.isdigit() and int(length) > limit:
            raise ApiError(413, f"the request body is {length} bytes; the limit is {limit}", "request_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"the request body is over the {limit}-byte limit", "request_too_large")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON ({e})", "invalid_json") from None

    def served_ids(self) -> list[str]:
        """What /v1/models lists and requests may name (profiles and cached models, read once per call)."""
        return [MUX_PREFIX + p for p in list_profiles()] + self.worker.model_names()

    def check_ready(self) -> None:
        if self.worker.load_error is not None:
            raise ApiError(503, f"the server could not load its models: {self.worker.load_error}", "load_failed",
                           "server_error")  # fmt: skip
        if not self.worker.ready.is_set():
            raise ApiError(503, "the server is still loading its models; retry shortly", "loading", "server_error")

    def make_job(self, req: ChatRequest, emit: Any, ids: list[str]) -> Job:
        if req.model not in ids:
            raise errors.NotFoundError("model", req.model, ids)
        needed = self.worker.mux_for(req.profile).profile.model_names if req.is_mux else [req.model]
        missing = self.downloads.missing(needed)  # started here, on their own threads
        if missing:
            raise ApiError(503, f"{self.downloads.describe(missing)}; retry in {DOWNLOAD_RETRY_S} s",
                           "model_downloading", "server_error")  # fmt: skip
        if req.is_mux:
            overrides = {"temperature": req.temperature, "top_p": req.top_p, "max_tokens": req.max_tokens,
                         "seed": req.seed}  # fmt: skip
            return MuxJob(emit, profile=req.profile, question=req.question, sampling=overrides,
                          min_confidence=req.min_confidence)  # fmt: skip
        sampling = req.sampling(self.worker.default_profile.sampling)
        if req.endpoint == "chat":
            return GenerateJob(emit, model=req.model, messages=req.messages, sampling=sampling, stop=req.stop,
                               logprobs=req.logprobs)  # fmt: skip
        return GenerateJob(emit, model=req.model, prompt=req.prompt, sampling=sampling, stop=req.stop,
                           logprobs=req.logprobs)  # fmt: skip

    # -- completions ----------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self.completions(request, "chat")

    async def completion(self, request: Request) -> Response:
        return await self.completions(request, "completion")

    async def completions(self, request: Request, endpoint: str) -> Response:
        call = _Call(request, self.worker)
        try:
            self.check_key(request)
            req = parse_request(await self.read_json(request), endpoint)
            ids = self.served_ids()
            call.model = req.model if req.model in ids else UNKNOWN_MODEL  # no label set per foreign name
            self.check_ready()
            job = self.make_job(req, call.emit, ids)
            self.worker.submit(job)
        except QueueFull:
            depth = self.worker.depth
            retry = max(1, round(depth * 2))
            call.finished(429)
            return _error(ApiError(429, f"{depth} requests are queued; retry in {retry} s", "rate_limit_exceeded",
                                   "requests"), headers={"Retry-After": str(retry)})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - every error becomes an OpenAI error body
            call.finished(status_of(e)[0])
            wait = {"Retry-After": str(DOWNLOAD_RETRY_S)} if getattr(e, "code", None) == "model_downloading" else None
            return _error(e, headers=wait)
        rid = new_id(endpoint)
        if req.stream:
            return StreamingResponse(_stream(req, rid, job, call), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
        return await _whole(req, rid, job, call)


DOWNLOAD_RETRY_S = 10
UNKNOWN_MODEL = "(unknown)"  # the one label of requests that named no served model (or none at all)


class _Call:
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


async def _whole(req: ChatRequest, rid: str, job: Job, call: _Call) -> Response:
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
            return _error(payload)
        elif kind == "done":
            if isinstance(payload, MuxResult):
                call.finished(200, payload.tokens)
                return JSONResponse(mux_response(req, rid, payload, prompt_tokens))
            sequences, n_prompt = payload
            call.finished(200, sum(f.tokens for f in sequences))
            piece = job.piece if isinstance(job, GenerateJob) else None
            return JSONResponse(generation_response(req, rid, sequences, n_prompt, piece))


async def _stream(req: ChatRequest, rid: str, job: Job, call: _Call) -> AsyncIterator[str]:
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


def metrics_text(worker: Worker) -> str:
    """Prometheus text: requests, tokens, queue, resident bytes per model, budget, process RSS and its peak."""
    lines = [
        "# HELP edgemux_requests_total Requests answered, by model and HTTP status.",
        "# TYPE edgemux_requests_total counter",
        *(
            f"edgemux_requests_total{{model={_label(m)},status={_label(s)}}} {n}"
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
        *(f"edgemux_resident_bytes{{model={_label(n)}}} {worker.resident.nbytes(n)}" for n in worker.resident.names()),
        "# HELP edgemux_budget_bytes The memory budget of the loaded models.",
        "# TYPE edgemux_budget_bytes gauge",
        f"edgemux_budget_bytes {worker.budget_bytes}",
        "# HELP edgemux_process_resident_bytes Resident memory of the whole server process.",
        "# TYPE edgemux_process_resident_bytes gauge",
        f"edgemux_process_resident_bytes {rss_bytes() or 0}",
        "# HELP edgemux_process_peak_resident_bytes The most the server process has held resident since start.",
        "# TYPE edgemux_process_peak_resident_bytes gauge",
        f"edgemux_process_peak_resident_bytes {peak_rss_bytes()}",
    ]
    return "\n".join(lines) + "\n"


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a bounded drain: on SIGTERM or Ctrl-C it stops accepting connections, lets
    the requests in flight run for ``grace_s``, then cancels what is left, telling each client why (503
    ``server_shutting_down``, or that error as the stream's last event), and exits. A second Ctrl-C exits
    at once. ``timer`` is injectable for tests."""

    def __init__(self, config: uvicorn.Config, worker: Worker, grace_s: float,
                 timer: Callable[[float, Callable[[], object]], Any] | None = None) -> None:  # fmt: skip
        config.timeout_graceful_shutdown = math.ceil(grace_s) + 1  # uvicorn's own last resort, after ours
        super().__init__(config)
        self.worker, self.grace_s = worker, grace_s
        self._timer = timer or _daemon_timer
        self.draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.draining:
            self.draining = True
            log.warning("stopping: requests in flight get %g s to finish", self.grace_s)
            self._timer(self.grace_s, self._cancel_the_rest)
        super().handle_exit(sig, frame)

    def _cancel_the_rest(self) -> None:
        cancelled = self.worker.abort("the server is shutting down")
        if cancelled:
            log.warning("cancelled %d request(s) still running after the %g s grace period", cancelled, self.grace_s)


def _daemon_timer(seconds: float, action: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


def _label(value: str) -> str:
    """A Prometheus label value, quoted and escaped by the text format's rules (backslash, quote, newline)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def printable(value: str, limit: int = 200) -> str:
    """A client-given string made safe for one log line: control characters escaped, length capped."""
    escaped = value[:limit].encode("unicode_escape").decode("ascii")
    return escaped + ("…" if len(value) > limit else "")


def create_app(
    worker: Worker, *, api_key: str | None = None, max_body: int = 1 << 20, exposure: Exposure | None = None,
    downloads: Downloads | None = None,
) -> Starlette:  # fmt: skip
    """The web app over ``worker``: every request's Host and Origin checked first (``exposure``), then its key."""
    api = _Api(worker, api_key, max_body, downloads or Downloads(worker.catalog))
    guard = exposure or Exposure()

    routes = [
        Route("/health", api.health),
        Route("/metrics", _errors_as_json(api.metrics)),
        Route("/v1/models", _errors_as_json(api.models)),
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/completions", api.completion, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, exposure=guard, refuse=_refuse)])


async def _refuse(scope: Scope, receive: Receive, send: Send, method: str, path: str, refusal: str) -> None:
    access.info("%s %s refused: %s", printable(method), printable(path), printable(refusal))
    await _error(ApiError(403, refusal, "forbidden_host"))(scope, receive, send)


def _errors_as_json(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await handler(request)
        except ApiError as e:
            return _error(e)
        return response

    return wrapped


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
