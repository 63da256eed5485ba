"""`edgemux serve` with the real `openai` client against a real server on loopback (SmolLM2-135M)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn

from edgemux.catalog.fetch import Progress
from edgemux.schedule.loader import EngineFactory
from edgemux.schedule.runtime import LoadOptions
from edgemux.server.downloads import Downloads
from edgemux.server.serve import DrainingServer, create_app
from edgemux.server.worker import Worker
from edgemux.specs import ModelSpec
from tests.timing import HANG_S

KEY = "sekret"


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A raw request (for what the openai client will not send: bad bodies)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=HANG_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@dataclass
class Running:
    url: str
    worker: Worker
    server: DrainingServer
    thread: threading.Thread | None = None

    def client(self, **kw: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=KEY, max_retries=0, timeout=HANG_S, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def running_server(max_queue: int = 4, downloads: Downloads | None = None, default_profile: str = "tiny",
                   engine_factory: EngineFactory | None = None, max_body: int = 64 * 1024, grace_s: float = 10.0,
                   timer: Any = None, **worker_args: int) -> Iterator[Running]:  # fmt: skip
    worker = Worker(default_profile=default_profile, budget_bytes=2 << 30, load=LoadOptions(n_threads=2),
                    max_queue=max_queue, engine_factory=engine_factory, **worker_args)  # fmt: skip
    worker.start()
    app = create_app(worker, api_key=KEY, max_body=max_body, downloads=downloads)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = DrainingServer(config, worker, grace_s, timer=timer)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + HANG_S
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    assert worker.ready.wait(HANG_S)
    try:
        yield Running(f"http://127.0.0.1:{port}", worker, srv, thread)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        worker.stop()


@pytest.fixture
def server(smollm2_in_home: Path) -> Iterator[Running]:
    with running_server() as running:
        yield running


def test_models_chat_completion_and_n(server: Running) -> None:
    client = server.client()
    ids = [m.id for m in client.models.list().data]
    assert "mux:tiny" in ids and "mux:default" in ids and "smollm2-135m" in ids
    chat = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, seed=3
    )
    assert chat.choices[0].message.content and chat.choices[0].finish_reason in ("stop", "length")
    assert 0 < chat.usage.completion_tokens <= 16 and chat.usage.prompt_tokens > 5  # type: ignore[union-attr]
    again = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, seed=3
    )
    assert again.choices[0].message.content == chat.choices[0].message.content  # seed honoured
    three = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12,
        n=3,
        temperature=1.0,
        seed=1,
    )
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert len({c.message.content for c in three.choices}) > 1  # three different samples, drawn as one batch
    completion = client.completions.create(
        model="smollm2-135m", prompt="1, 2, 3, 4,", max_tokens=6, temperature=0, stop=["7"]
    )
    assert completion.choices[0].text and "7" not in completion.choices[0].text


def test_logprobs_in_openais_shapes(server: Running) -> None:
    # Through the real openai client: chat (logprobs + top_logprobs) and completions (logprobs: n).
    client = server.client()
    chat = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, seed=3,
        temperature=0, logprobs=True, top_logprobs=3,
    )  # fmt: skip
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) == chat.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == chat.choices[0].message.content  # the pieces spell the reply
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3 and bytes(t.bytes or []).decode(errors="replace") == t.token
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob  # greedy: the top one
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
    plain = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, seed=3, temperature=0
    )
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == chat.choices[0].message.content
    completion = client.completions.create(model="smollm2-135m", prompt="1, 2, 3, 4,", max_tokens=6, temperature=0,
                                           logprobs=2)  # fmt: skip
    lp = completion.choices[0].logprobs
    assert lp is not None and lp.tokens and len(lp.tokens) == len(lp.token_logprobs or []) == len(lp.top_logprobs or [])
    assert "".join(lp.tokens) == completion.choices[0].text and lp.text_offset == [
        sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))
    ]
    assert all(len(top) <= 2 for top in lp.top_logprobs or [])
    # Streamed: every token's logprob arrives once, in order, spread over the chunks; the same as unstreamed.
    stream = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, seed=3,
        temperature=0, logprobs=True, top_logprobs=3, stream=True,
    )  # fmt: skip
    streamed = [t for chunk in stream for c in chunk.choices if c.logprobs and c.logprobs.content
                for t in c.logprobs.content]  # fmt: skip
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
    for body, message in (
        ({"logprobs": True, "top_logprobs": 21}, "between 0 and 20"),
        ({"top_logprobs": 2}, "needs 'logprobs': true"),
        ({"logprobs": True, "model": "mux:tiny"}, "for a single model"),
    ):
        with pytest.raises(openai.BadRequestError, match=message):
            client.chat.completions.create(**{"model": "smollm2-135m", **body},  # type: ignore[call-overload]
                                           messages=[{"role": "user", "content": "hi"}], max_tokens=2)  # fmt: skip


def test_streaming_chat_equals_the_whole_answer(server: Running) -> None:
    client = server.client()
    kwargs = dict(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=24,
        seed=5,
        temperature=0,
    )
    whole = client.chat.completions.create(**kwargs).choices[0].message.content  # type: ignore[call-overload]
    pieces, reasons = [], []
    for chunk in client.chat.completions.create(stream=True, **kwargs):  # type: ignore[call-overload]
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            reasons.append(choice.finish_reason)
    assert "".join(pieces) == whole and len([p for p in pieces if p]) > 3
    assert reasons[-1] in ("stop", "length") and all(r is None for r in reasons[:-1])


def test_mux_answer_carries_the_vote(server: Running) -> None:
    client = server.client()
    response = client.chat.completions.create(
        model="mux:tiny", messages=[{"role": "user", "content": "What is 2 + 3?"}], max_tokens=40, seed=2
    )
    extension = response.model_extra["edgemux"]  # type: ignore[index]
    assert extension["winner"] == "smollm2-135m" and len(extension["votes"][0]["samples"]) == 3
    assert 0 < extension["confidence"] <= 1 and extension["tokens"] == response.usage.completion_tokens  # type: ignore[union-attr]
    winning = [s["text"] for s in extension["votes"][0]["samples"] if s["answer"] == extension["answer"]]
    assert response.choices[0].message.content in winning
    events, answer = [], ""
    for chunk in client.chat.completions.create(
        model="mux:tiny", messages=[{"role": "user", "content": "What is 2 + 3?"}], max_tokens=40, seed=2, stream=True
    ):
        if chunk.model_extra and "edgemux" in chunk.model_extra:
            events.append(chunk.model_extra["edgemux"].get("event", "decision"))
        for choice in chunk.choices:
            answer += choice.delta.content or ""
    assert events.count("sample_finished") + events.count("model_stopped") >= 1 and events[-1] == "decision"
    assert answer == response.choices[0].message.content  # same seed, same decision


def test_min_confidence_marks_the_answer_abstained(server: Running) -> None:
    client = server.client()
    ask = {
        "model": "mux:tiny",
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "max_tokens": 40,
        "seed": 2,
    }
    sure = client.chat.completions.create(**ask, extra_body={"min_confidence": 0.0})  # type: ignore[call-overload]
    unsure = client.chat.completions.create(**ask, extra_body={"min_confidence": 1.0})  # type: ignore[call-overload]
    a, b = sure.model_extra["edgemux"], unsure.model_extra["edgemux"]  # type: ignore[index]
    assert a["abstained"] is False and a["min_confidence"] == 0.0
    assert b["abstained"] is (b["confidence"] < 1.0) and b["min_confidence"] == 1.0  # 200 either way, best guess
    assert b["answer"] == a["answer"] and unsure.choices[0].message.content == sure.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="min_confidence"):
        client.chat.completions.create(**ask, extra_body={"min_confidence": 2})  # type: ignore[call-overload]


def test_an_open_question_over_mux_returns_a_whole_reply_with_its_clusters(server: Running, home: Path) -> None:
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    (home / "profiles" / "words.yaml").write_text(
        "name: words\nkind: auto\nmodels:\n  - smollm2-135m\nsampling: {k: 3, temperature: 0.7, max_tokens: 40}\n"
        "n_ctx: 1024\n"
    )
    client = server.client()
    response = client.chat.completions.create(
        model="mux:words", messages=[{"role": "user", "content": "Why is the sky blue?"}], max_tokens=40, seed=4
    )
    extension = response.model_extra["edgemux"]  # type: ignore[index]
    assert extension["kind"] == "open" and "words" in extension["kind_reason"]
    samples = [s["text"] for s in extension["votes"][0]["samples"]]
    content = response.choices[0].message.content
    assert content and content in samples  # a whole reply as the model wrote it, not an extracted line
    clusters = extension["clusters"]
    assert clusters["similarity"].startswith("lexical") and sum(c["size"] for c in clusters["clusters"]) <= 3


def test_a_mux_profile_of_members(server: Running, home: Path) -> None:
    """A profile whose members are one model with two strategies: served as mux:NAME, one load, a vote
    per member, and the program member's samples say how their programs ran."""
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    (home / "profiles" / "twoways.yaml").write_text(
        "name: twoways\nkind: number\nmodels:\n  - smollm2-135m:pot\n  - smollm2-135m\n"
        "sampling: {k: 2, temperature: 0.7, max_tokens: 48}\nn_ctx: 1024\n"
    )
    client = server.client()
    assert "mux:twoways" in [m.id for m in client.models.list().data]
    response = client.chat.completions.create(
        model="mux:twoways", messages=[{"role": "user", "content": "What is 2 + 3?"}], max_tokens=48, seed=1
    )
    votes = {v["name"]: v for v in response.model_extra["edgemux"]["votes"]}  # type: ignore[index]
    assert set(votes) == {"smollm2-135m:pot", "smollm2-135m"}
    program_samples = [s for s in votes["smollm2-135m:pot"]["samples"] if s["stop_reason"] != "cancelled"]
    assert program_samples and all(s["program"]["status"] in ("ok", "error", "timeout", "killed", "output-limit")
                                   for s in program_samples)  # fmt: skip
    assert all("program" not in s for s in votes["smollm2-135m"]["samples"])


def test_errors_in_openai_shape(server: Running) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert auth.value.status_code == 401
    with pytest.raises(openai.NotFoundError, match="unknown model 'smollm3'"):
        server.client().chat.completions.create(model="smollm3", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        server.client().chat.completions.create(model="mux:nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="'n' must be 1 for a mux model"):
        server.client().chat.completions.create(model="mux:tiny", n=2, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="context_length_exceeded|trained for"):
        server.client().completions.create(model="smollm2-135m", prompt="word " * 3000, max_tokens=8000)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    status, body = http("POST", server.url + "/v1/chat/completions", b"{" + b" " * 70_000 + b"}", headers)
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
    status, body = http("POST", server.url + "/v1/chat/completions", b"{not json", headers)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert json.loads(http("GET", server.url + "/health")[1])["status"] == "ok"


def test_client_disconnect_stops_the_generation(server: Running) -> None:
    client = server.client()
    stream = client.completions.create(model="smollm2-135m", prompt="Once upon a time", max_tokens=3000, stream=True)
    next(iter(stream))
    stream.close()  # walk away after the first chunk
    deadline = time.monotonic() + 10
    while server.worker.current is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.worker.current is None  # 3000 tokens would take half a minute: the generation was stopped
    assert server.worker.stats.generated_tokens < 1000
    ok = client.completions.create(model="smollm2-135m", prompt="Hello", max_tokens=4)
    assert ok.choices[0].text is not None

    def metrics() -> str:
        return http("GET", server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})[1].decode()

    # the reply reaches the client a moment before the decode thread clears its job: poll, do not race
    wait_for(lambda: "edgemux_queue_depth 0" in metrics(), seconds=5)
    assert 'edgemux_resident_bytes{model="smollm2-135m"}' in metrics()


def test_twenty_concurrent_requests_are_answered_or_refused(server: Running) -> None:
    client = server.client()

    def one(i: int) -> str:
        try:
            r = client.completions.create(model="smollm2-135m", prompt=f"Number {i}:", max_tokens=8, seed=i)
            return "ok" if r.choices[0].text is not None else "empty"
        except openai.RateLimitError as e:
            assert int(e.response.headers["Retry-After"]) >= 1
            return "429"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(one, range(20), timeout=HANG_S))
    assert len(outcomes) == 20 and set(outcomes) <= {"ok", "429"}
    assert outcomes.count("ok") >= 5  # the queue holds 4 and one runs
    assert server.worker.depth == 0


def wait_for(condition, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.02)


@pytest.mark.usefixtures("smollm2_in_home")
def test_a_full_queue_answers_429_with_retry_after() -> None:
    """Deterministic: one long generation holds the decode thread, one request fills the queue of 1, and
    the next must be refused (429 with Retry-After), while the queued one is still answered."""
    with running_server(max_queue=1) as server:
        client = server.client()
        busy = client.completions.create(model="smollm2-135m", prompt="Once upon a time", max_tokens=3000, stream=True)
        next(iter(busy))
        wait_for(lambda: server.worker.current is not None)
        with ThreadPoolExecutor(1) as pool:
            queued = pool.submit(client.completions.create, model="smollm2-135m", prompt="Hi", max_tokens=2)
            wait_for(lambda: server.worker.queue.qsize() == 1)  # the queue of 1 is full
            with pytest.raises(openai.RateLimitError) as refused:
                client.completions.create(model="smollm2-135m", prompt="Hello", max_tokens=2)
            assert refused.value.status_code == 429 and int(refused.value.response.headers["Retry-After"]) >= 1
            busy.close()  # let the decode thread go: the queued request is answered, not lost
            assert queued.result(timeout=HANG_S).choices[0].text is not None
        wait_for(lambda: server.worker.depth == 0)


def test_other_sites_and_foreign_host_names_are_refused(server: Running) -> None:
    """A web page elsewhere may not drive the server (a text/plain form post is a 'simple' request a
    browser sends without asking), nor read it through DNS rebinding (its Host is its own name)."""
    body = json.dumps({"model": "smollm2-135m", "prompt": "Hi", "max_tokens": 2}).encode()
    auth = {"Authorization": f"Bearer {KEY}"}
    status, answer = http("POST", server.url + "/v1/completions", body,
                          {**auth, "Content-Type": "text/plain", "Origin": "http://evil.example"})  # fmt: skip
    assert status == 403 and b"evil.example" in answer and b"--allow-origin" in answer
    status, answer = http("GET", server.url + "/v1/models", None, {**auth, "Host": "rebind.example:8080"})
    assert status == 403 and json.loads(answer)["error"]["code"] == "forbidden_host"
    assert http("GET", server.url + "/health", None, {"Host": "rebind.example"})[0] == 403
    # pages on this machine and plain clients are served
    status, _ = http("POST", server.url + "/v1/completions", body,
                     {**auth, "Content-Type": "application/json", "Origin": "http://localhost:3000"})  # fmt: skip
    assert status == 200
    assert http("GET", server.url + "/v1/models", None, {**auth, "Host": "localhost:1234"})[0] == 200


def test_metrics_need_the_key_and_health_stays_open(server: Running) -> None:
    assert http("GET", server.url + "/metrics")[0] == 401
    status, text = http("GET", server.url + "/metrics", None, {"Authorization": f"Bearer {KEY}"})
    assert status == 200 and b"edgemux_budget_bytes" in text
    status, health = http("GET", server.url + "/health")
    assert status == 200 and json.loads(health)["status"] == "ok"


@pytest.mark.usefixtures("smollm2_in_home")
def test_the_largest_requests_are_refused_with_numbers_and_the_context_never_grows() -> None:
    with running_server(cells=512, max_sequences=4) as server:
        client = server.client()
        with pytest.raises(openai.BadRequestError, match="at most 4"):
            client.completions.create(model="smollm2-135m", prompt="Hi", n=64, max_tokens=4)
        with pytest.raises(
            openai.BadRequestError, match=r"need \d+ KV cells, but smollm2-135m.gguf was loaded with 512"
        ):
            client.completions.create(model="smollm2-135m", prompt="Hi", n=4, max_tokens=32768 // 64)
        with pytest.raises(openai.BadRequestError, match="trained for 8192 tokens"):
            client.chat.completions.create(model="mux:tiny", messages=[{"role": "user", "content": "1+1?"}],
                                           max_tokens=32768)  # fmt: skip
        with pytest.raises(openai.BadRequestError, match="KV cells"):  # mux samples share the same context
            client.chat.completions.create(model="mux:tiny", messages=[{"role": "user", "content": "1+1?"}],
                                           max_tokens=4000)  # fmt: skip
        # the largest that fits is answered: four samples filling the context
        largest = client.completions.create(model="smollm2-135m", prompt="Hi", n=4, max_tokens=120, temperature=1)
        assert len(largest.choices) == 4
        engine = server.worker.resident.acquire("smollm2-135m")
        server.worker.resident.release("smollm2-135m")
        assert (engine.n_ctx, engine.n_seq_max) == (512, 4)
        assert server.worker.resident.resident_bytes <= server.worker.budget_bytes


@pytest.mark.usefixtures("smollm2_in_home")
def test_a_model_that_is_not_downloaded_is_fetched_beside_the_decode_thread() -> None:
    release = threading.Event()
    started: list[str] = []

    def slow_failing_pull(spec: ModelSpec, progress: Progress) -> None:  # the network, on its own thread
        started.append(spec.name)
        progress.start(spec.name, 1000)
        progress.advance(250)
        release.wait(30)
        raise OSError("network unreachable")

    with running_server(downloads=None) as server:
        pass  # (only to know the catalog)
    downloads = Downloads(server.worker.catalog, pull=slow_failing_pull)
    with running_server(downloads=downloads) as server:
        client = server.client()
        question = [{"role": "user", "content": "What is 2 + 2?"}]
        with pytest.raises(openai.APIStatusError) as waiting:
            client.chat.completions.create(model="mux:default", messages=question)
        assert waiting.value.status_code == 503 and waiting.value.response.headers["Retry-After"] == "10"
        assert "qwen2.5-coder-1.5b is being downloaded" in str(waiting.value)
        wait_for(lambda: started and downloads.running()[0].done_bytes == 250)
        with pytest.raises(openai.APIStatusError, match="being downloaded \\(25 % of"):
            client.chat.completions.create(model="mux:default", messages=question)
        health = json.loads(http("GET", server.url + "/health")[1])
        assert {d["model"] for d in health["downloads"]} == set(started) and health["downloads"][0]["bytes"] == 250
        # the decode thread is not waiting on the network: other requests are answered meanwhile
        assert client.completions.create(model="smollm2-135m", prompt="Hi", max_tokens=2).choices
        release.set()
        wait_for(lambda: not downloads.running())
        with pytest.raises(openai.APIStatusError, match="failed \\(network unreachable\\)"):
            client.chat.completions.create(model="mux:default", messages=question)
        assert len(started) == 1  # a failed download is not retried by every request


def test_binding_beyond_loopback_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from edgemux.cli import cli

    monkeypatch.delenv("EDGEMUX_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--profile", "tiny"])
    assert result.exit_code == 2 and "--api-key" in result.output and "--allow-unauthenticated" in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("smollm2_in_home")
def test_queued_requests_for_one_model_are_decoded_as_one_batch() -> None:
    # Three plain requests for the same model wait in the queue; the worker takes the first and its
    # companions and decodes them in one generate_many call (one decode step serves all three), and each
    # request still gets its own answer.
    from edgemux.schedule.loader import llama_engine
    from edgemux.server.worker import GenerateJob
    from edgemux.types import Sampling

    batches: list[int] = []

    def recording(*args: Any) -> Any:
        engine = llama_engine(*args)
        decode_many = engine.generate_many

        def generate_many(requests: Any, cancelled: Any = None) -> Any:
            batches.append(len(requests))
            return decode_many(requests, cancelled)

        engine.generate_many = generate_many  # type: ignore[attr-defined]
        return engine

    worker = Worker(default_profile="tiny", budget_bytes=2 << 30, load=LoadOptions(n_threads=2),
                    engine_factory=recording)  # fmt: skip
    results: dict[int, Any] = {}
    done = threading.Event()

    def emit_for(i: int) -> Any:
        def emit(kind: str, payload: Any) -> None:
            if kind in ("done", "error"):
                results[i] = (kind, payload)
                if len(results) == 3:
                    done.set()

        return emit

    for i, prompt in enumerate(["One, two,", "Red, green,", "Monday, Tuesday,"]):
        worker.submit(GenerateJob(emit_for(i), model="smollm2-135m", prompt=prompt,
                                  sampling=Sampling(k=1, max_tokens=8, seed=i)))  # fmt: skip
    worker.start()
    try:
        assert done.wait(HANG_S)
    finally:
        worker.stop()
    assert batches == [3]
    assert all(
        kind == "done" and len(payload[0]) == 1 and payload[0][0].tokens > 0 for kind, payload in results.values()
    )
