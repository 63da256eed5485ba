"""Remote members: a model another server runs (llama-server, vLLM, SGLang, Ollama, another edgemux),
reached over its OpenAI-compatible HTTP API and voting exactly like a local model.

A ``RemoteEngine`` is what ``Models`` loads for a remote manifest (``source: remote:``). The runtime hands
every engine token ids; a remote engine's are the prompt's UTF-8 bytes, and a chat prompt's "rendering"
is its messages as JSON, so the prompt reaches the server exactly as the profile built it and no tokenizer
is needed here.

``generate`` streams. Where the server takes ``n`` (llama-server, vLLM, SGLang, edgemux), one request
draws all k samples: the server evaluates the prompt once, and llama-server seeds child j with seed + j,
edgemux's own seeds. Otherwise (Ollama; ``--no-n``) k requests run side by side, one seed each; choices a
server left out of an ``n`` request are asked for one by one. Requests run on threads, so a remote member
is in flight while local members decode: each ``next`` of the generator returns what has arrived, waiting
at most ``POLL_S`` when nothing has. Closing the generator (early stop) closes the streams, and a
llama-server stops generating for a closed connection (``bench/remote_members.py`` measures it).

Faults: connect and read timeouts; 429 and 5xx answers retried with backoff (``Retry-After`` honoured)
while no text has arrived; a request that still fails finishes its samples as ``failed``, with the reason
as their note, so they count as unparsable and the ask answers from the other members.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..specs import RemoteSource
from ..types import BatchStep, FinishedSequence, Sampling, TokenLogprobs
from .logits import CONFIDENCE_TOP, confidence_of

__all__ = ["POLL_S", "RemoteEngine", "RemoteError", "api_key_of"]

log = logging.getLogger("edgemux.remote")

POLL_S = 0.002  # the longest a decode round waits for a remote chunk (a local step takes 20-100 ms)
RETRIES = 3  # after the first try, for 429/5xx and refused connections
BACKOFF_S = 0.5  # doubled after each retry
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class RemoteError(Exception):
    """A remote request that failed for good: the reason, in words."""


def api_key_of(source: RemoteSource) -> str | None:
    """The API key, read from the environment variable the manifest names (keys are never stored)."""
    if source.api_key_env is None:
        return None
    key = os.environ.get(source.api_key_env)
    if not key:
        raise ConfigError(f"the remote model needs an API key in ${source.api_key_env}, which is not set")
    return key


@dataclass
class _Choice:
    text: str = ""
    tokens: int = 0
    reason: str | None = None  # set once finished: "eos", "stop", "length", "failed"
    note: str = ""
    seconds: float = 0.0
    logprobs: list[TokenLogprobs] | None = field(default_factory=list)  # None once a token came without them


@dataclass
class _Request:
    """One HTTP request's samples: their indices in the batch and the seed of the first."""

    indices: list[int]
    seed: int
    cancelled: threading.Event = field(default_factory=threading.Event)


class RemoteEngine:
    """A remote model behind the engine interface the runtime uses (``loader.EngineLike``)."""

    measured_nbytes = 0  # nothing of it lives in this process: it never counts against the budget

    def __init__(self, name: str, source: RemoteSource) -> None:
        import httpx2 as httpx  # the HTTP client openai and huggingface-hub use: streaming, timeouts

        self.name = name
        self.source = source
        self._headers = {"Content-Type": "application/json"}
        key = api_key_of(source)
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(source.read_timeout_s, connect=source.connect_timeout_s)
        self._client = httpx.Client(timeout=timeout, headers=self._headers)
        self._closed = False

    # -- the engine interface ---------------------------------------------------------------------

    @property
    def has_chat_template(self) -> bool:
        return self.source.endpoint == "chat"

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        return json.dumps([{"role": role, "content": content} for role, content in messages])

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode())

    def check_fits(self, prompt_tokens: int, k: int, max_tokens: int) -> int:
        return prompt_tokens  # the server knows its context; it refuses what does not fit, as a failed request

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def generate(
        self, prompt: Sequence[int], sampling: Sampling, seeds: Sequence[int], stop: Sequence[str] = (),
        *, logprobs: int | None = None, kill: tuple[float, int] | None = None,
    ) -> Iterator[BatchStep]:  # fmt: skip
        """All ``len(seeds)`` samples, streamed; closing the generator cancels the requests still running.
        ``kill`` is not applied: a server streams one request's samples together, and cutting one sample
        would mean closing all of them; remote members' samples are never killed."""
        text = bytes(prompt).decode()
        k = len(seeds)
        choices = [_Choice() for _ in range(k)]
        events: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        requests = (
            [_Request(list(range(k)), seeds[0])] if self.source.supports_n else [_Request([i], seeds[i]) for i in range(k)]
        )  # fmt: skip
        start = time.perf_counter()
        threads = [
            threading.Thread(target=self._run, args=(r, text, sampling, stop, seeds, events, start, logprobs is not None),
                             name=f"edgemux-remote-{self.name}", daemon=True)
            for r in requests
        ]  # fmt: skip
        for t in threads:
            t.start()
        open_ = k
        try:
            while open_:
                finished: list[FinishedSequence] = []
                try:
                    item: tuple[int, str, Any] | None = events.get(timeout=POLL_S)
                except queue.Empty:
                    item = None
                while item is not None:
                    i, what, value = item
                    c = choices[i]
                    if c.reason is None:
                        if what == "text":
                            c.text += value
                            c.tokens += 1
                        elif what == "logprobs":
                            if value is None:  # a token without them: this sample votes by count
                                c.logprobs = None
                            elif c.logprobs is not None:
                                c.logprobs.extend(value)
                        else:  # "done" (a finish reason) or "failed" (the reason in words)
                            c.reason, c.seconds = ("failed", time.perf_counter() - start) if what == "failed" else (
                                value, time.perf_counter() - start)  # fmt: skip
                            if what == "failed":
                                c.note = value
                            signals = tuple(c.logprobs) if logprobs is not None and c.logprobs else None
                            finished.append(FinishedSequence(i, c.text, c.tokens, c.reason, c.seconds, c.note,  # type: ignore[arg-type]
                                                             signals))  # fmt: skip
                            open_ -= 1
                    try:
                        item = events.get_nowait()
                    except queue.Empty:
                        item = None
                yield BatchStep(tuple(c.tokens for c in choices), tuple(finished), len(prompt),
                                time.perf_counter() - start, tuple(c.text for c in choices))  # fmt: skip
        finally:
            for r in requests:  # early stop, or the caller walked away: the streams close
                r.cancelled.set()

    # -- one request, on its own thread ------------------------------------------------------------

    def _body(self, text: str, sampling: Sampling, stop: Sequence[str], n: int, seed: int,
              logprobs: bool) -> dict[str, Any]:  # fmt: skip
        body: dict[str, Any] = {
            "model": self.source.model,
            "stream": True,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": seed,
            # llama.cpp's and vLLM's own sampling fields; OpenAI-compatible servers that lack them ignore them
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
        }
        if n > 1:
            body["n"] = n
        if logprobs:  # the top 20 make the token confidence (llama-server and vLLM send them, pre-sampling)
            body.update({"logprobs": True, "top_logprobs": CONFIDENCE_TOP} if self.source.endpoint == "chat"
                        else {"logprobs": CONFIDENCE_TOP})  # fmt: skip
        if stop:
            body["stop"] = list(stop)[:4]
        if self.source.endpoint == "chat":
            body["messages"] = json.loads(text)
        else:
            body["prompt"] = text
        return body

    def _run(self, request: _Request, text: str, sampling: Sampling, stop: Sequence[str], seeds: Sequence[int],
             events: queue.Queue[tuple[int, str, Any]], start: float, logprobs: bool) -> None:  # fmt: skip
        """Stream one request into ``events``; choices the server left out are asked for one by one."""
        seen: set[int] = set()  # choices the server sent anything for
        ended: set[int] = set()  # choices it finished
        try:
            self._stream(request, text, sampling, stop, events, seen, ended, logprobs)
            missing = [i for i in request.indices if i not in seen]
            if missing and len(request.indices) > 1 and not request.cancelled.is_set():
                log.info("%s answered %d of %d choices: asking for the rest one by one",
                         self.name, len(request.indices) - len(missing), len(request.indices))  # fmt: skip
                for i in missing:
                    one = _Request([i], seeds[i], request.cancelled)
                    self._stream(one, text, sampling, stop, events, seen, ended, logprobs)
            reason = "the server's stream ended before the sample finished"
        except RemoteError as e:
            reason = str(e)
        except Exception as e:  # never a traceback from a thread: the samples fail with the reason
            log.warning("%s: request failed: %r", self.name, e)
            reason = f"{type(e).__name__}: {e}"
        if not request.cancelled.is_set():
            for i in request.indices:
                if i not in ended:
                    events.put((i, "failed", reason))

    def _stream(self, request: _Request, text: str, sampling: Sampling, stop: Sequence[str],
                events: queue.Queue[tuple[int, str, Any]], seen: set[int], ended: set[int],
                logprobs: bool = False) -> None:  # fmt: skip
        import httpx2 as httpx

        path = "/chat/completions" if self.source.endpoint == "chat" else "/completions"
        body = self._body(text, sampling, stop, len(request.indices), request.seed, logprobs)
        delay = BACKOFF_S
        for attempt in range(RETRIES + 1):
            try:
                with self._client.stream("POST", self.source.url.rstrip("/") + path, json=body) as response:
                    if response.status_code in _RETRY_STATUS and attempt < RETRIES:
                        wait = _retry_after(response.headers.get("retry-after"), delay)
                        log.info("%s: HTTP %d, retrying in %.1f s", self.name, response.status_code, wait)
                        if request.cancelled.wait(wait):
                            return
                        delay *= 2
                        continue
                    if response.status_code != 200:
                        response.read()
                        raise RemoteError(f"{self.source.url} answered HTTP {response.status_code}: "
                                          f"{_error_message(response.text)}")  # fmt: skip
                    self._read_events(response, request, events, seen, ended, logprobs)
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                if attempt == RETRIES:
                    raise RemoteError(f"cannot connect to {self.source.url}: {e}") from e
                if request.cancelled.wait(delay):
                    return
                delay *= 2
            except httpx.ReadTimeout as e:
                raise RemoteError(f"{self.source.url} sent nothing for {self.source.read_timeout_s:g} s") from e
            except httpx.TransportError as e:
                raise RemoteError(f"the connection to {self.source.url} broke: {e}") from e

    def _read_events(self, response: Any, request: _Request, events: queue.Queue[tuple[int, str, Any]],
                     seen: set[int], ended: set[int], logprobs: bool) -> None:  # fmt: skip
        """Server-sent events: each chunk's choices, by index, until [DONE] or the caller cancels."""
        for line in response.iter_lines():
            if request.cancelled.is_set():
                return  # leaving the ``with`` closes the connection: the server stops generating
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            chunk = json.loads(data)
            if "error" in chunk:
                raise RemoteError(f"{self.source.url}: {_error_message(json.dumps(chunk))}")
            for choice in chunk.get("choices") or ():
                i = request.indices[choice.get("index", 0)] if choice.get("index", 0) < len(request.indices) else None
                if i is None:
                    continue
                seen.add(i)
                piece = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
                if piece:
                    events.put((i, "text", piece))
                if logprobs and (piece or choice.get("logprobs")):
                    events.put((i, "logprobs", _token_logprobs(choice.get("logprobs"))))
                reason = choice.get("finish_reason")
                if reason and i not in ended:
                    ended.add(i)
                    events.put((i, "done", "length" if reason == "length" else "stop"))


def _token_logprobs(body: Any) -> list[TokenLogprobs] | None:
    """A chunk's ``logprobs`` (OpenAI's chat or completions shape) as the engine's records, the confidence
    from the top 20 as the engine computes it; None when the server sent none or fewer than 20 alternatives
    (the member's vote then counts samples)."""
    if not isinstance(body, dict):
        return None
    out = []
    if isinstance(body.get("content"), list):  # chat
        for t in body["content"]:
            top = [a.get("logprob") for a in t.get("top_logprobs") or ()]
            out.append((t.get("logprob"), top))
    elif isinstance(body.get("token_logprobs"), list):  # completions
        tops = body.get("top_logprobs") or [None] * len(body["token_logprobs"])
        out = [(lp, list((top or {}).values())) for lp, top in zip(body["token_logprobs"], tops, strict=False)]
    else:
        return None
    records = []
    for logprob, top in out:
        if (
            not isinstance(logprob, (int, float))
            or len(top) < CONFIDENCE_TOP
            or not all(isinstance(x, (int, float)) for x in top)
        ):
            return None
        records.append(TokenLogprobs(-1, float(logprob), confidence_of(sorted(top, reverse=True))))
    return records


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(float(header), 30.0) if header else default
    except ValueError:
        return default


def _error_message(body: str) -> str:
    """The server's own error message when its body is OpenAI-shaped, else the start of the body."""
    try:
        data = json.loads(body)
        error = data.get("error", data)
        return str(error.get("message", error) if isinstance(error, dict) else error)[:300]
    except (ValueError, AttributeError):
        return body.strip()[:300] or "(no body)"
