"""``edgemux serve``: the OpenAI-compatible HTTP layer (Starlette + uvicorn, the ``[server]`` extra).

Requests are checked here (key, size, JSON, model), turned into worker jobs, and queued; the decode thread
(``worker.Worker``) runs them one at a time. Results come back through an asyncio queue: as one JSON body,
or as server-sent events in OpenAI's chunk format. A client that disconnects cancels its job, which frees
its sequences at the next decode step. Errors use OpenAI's error shape, with the status chosen from the
error's type (``openai_api.status_of``).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable
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
from ..memory.osmemory import peak_rss_bytes, rss_bytes
from ..profiles import list_profiles
from .downloads import Downloads
from .exposure import Exposure, Guard
from .openai_api import (
    MUX_PREFIX,
    ApiError,
    ChatRequest,
    new_id,
    parse_request,
    status_of,
)
from .replies import UNKNOWN_MODEL, Call, error_response, printable, stream, whole
from .worker import GenerateJob, Job, MuxJob, QueueFull, Worker

__all__ = ["DrainingServer", "create_app", "metrics_text"]

log = logging.getLogger("edgemux.serve")
access = logging.getLogger("edgemux.access")


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
        call = Call(request, self.worker)
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
            return error_response(ApiError(429, f"{depth} requests are queued; retry in {retry} s", "rate_limit_exceeded",
                                   "requests"), headers={"Retry-After": str(retry)})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - every error becomes an OpenAI error body
            call.finished(status_of(e)[0])
            wait = {"Retry-After": str(DOWNLOAD_RETRY_S)} if getattr(e, "code", None) == "model_downloading" else None
            return error_response(e, headers=wait)
        rid = new_id(endpoint)
        if req.stream:
            return StreamingResponse(stream(req, rid, job, call), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
        return await whole(req, rid, job, call)


DOWNLOAD_RETRY_S = 10


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
    await error_response(ApiError(403, refusal, "forbidden_host"))(scope, receive, send)


def _errors_as_json(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await handler(request)
        except ApiError as e:
            return error_response(e)
        return response

    return wrapped
