"""Remote members: a model another server runs, registered like a model and voting like a local one.

The peer in these tests is a real `edgemux serve` on loopback (the openai-compatible API with `n` and
streaming, SmolLM2-135M); faults come from a small stdlib HTTP server that answers 503s or never answers.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemux.catalog.catalog import Catalog, parse_manifest
from edgemux.catalog.register import register_remote
from edgemux.cli import cli
from edgemux.engine import remote
from edgemux.errors import ConfigError, InvalidRequestError
from edgemux.profiles import Profile, ProfileModel
from edgemux.schedule.planning import plan_profile
from edgemux.schedule.runtime import LoadOptions, Mux
from edgemux.specs import RemoteSource
from edgemux.types import Sampling
from tests.timing import HANG_S

from .conftest import TEST_MODEL
from .test_server import KEY, running_server

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def _profile(*names: str, k: int = 3) -> Profile:
    return Profile(name="remote-test", kind="number", models=tuple(ProfileModel(n) for n in names),
                   sampling=Sampling(k=k, max_tokens=40, temperature=0.8, seed=11))  # fmt: skip


def test_a_remote_manifest_round_trips(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESK_KEY", "s3cr3t-k3y")
    catalog = Catalog()
    source = RemoteSource("http://desk:8080/v1", "qwen2.5-7b", "completion", "DESK_KEY", supports_n=False)
    register_remote(source, "desk-7b", catalog)
    spec = Catalog().get("desk-7b")
    assert spec.source == source and spec.is_remote and spec.prompt_style == "completion"
    assert "DESK_KEY" in spec.manifest.read_text() and "s3cr3t" not in spec.manifest.read_text()  # type: ignore[union-attr]
    with pytest.raises(InvalidRequestError, match="exists already"):
        register_remote(source, "desk-7b", catalog)
    with pytest.raises(InvalidRequestError, match="http:// or https://"):
        register_remote(RemoteSource("desk:8080", "m"), "desk-2", catalog)


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        ("{url: ftp://x, model: m}", "http:// or https://"),
        ("{url: 'http://x/v1', model: m, endpoint: embeddings}", "expected 'chat' or 'completion'"),
        ("{url: 'http://x/v1'}", "model: required key is missing"),
        ("{url: 'http://x/v1', model: m, read_timeout_s: 0}", "more than 0 seconds"),
        ("{url: 'http://x/v1', model: m, colour: red}", "colour"),
    ],
)
def test_bad_remote_manifests_name_the_key(tmp_path: Path, remote: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nsource:\n  remote: {remote}\n")
    with pytest.raises(ConfigError, match=message):
        parse_manifest(path)


def test_models_add_remote_and_the_plan_lists_it_as_remote(home: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(
        cli, ["models", "add", "--remote", "http://127.0.0.1:9/v1", "--model", "big", "--name", "desk"]
    )
    assert added.exit_code == 0, added.output
    assert "one request with n = k" in added.output
    listed = runner.invoke(cli, ["models", "list", "--json"])
    assert '"url": "http://127.0.0.1:9/v1"' in listed.output
    usage = runner.invoke(cli, ["models", "add", "--remote", "http://x/v1", "--name", "nomodel"])
    assert usage.exit_code == 2 and "--model NAME" in usage.output
    plan = plan_profile(_profile("desk", TEST_MODEL), budget_bytes=1 << 40)
    assert plan.remote == ("desk",) and [e.model for e in plan.estimates] == [TEST_MODEL]
    shown = runner.invoke(cli, ["plan", "--models", f"desk,{TEST_MODEL}", "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"remote": [\n    "desk"' in shown.output
    timed = runner.invoke(cli, ["bench", "--models", f"{TEST_MODEL},desk"])  # refused before anything is pulled
    assert timed.exit_code != 0 and "desk: remote" in timed.output and "--profile" in timed.output
    assert "Traceback" not in timed.output


def test_a_remote_member_votes_like_the_same_model_run_here(
    smollm2_in_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEMUX_TEST_KEY", KEY)
    with running_server() as server:
        source = RemoteSource(server.url + "/v1", TEST_MODEL, api_key_env="EDGEMUX_TEST_KEY")
        register_remote(source, "peer", Catalog())
        with Mux(_profile("peer", TEST_MODEL), load=LoadOptions(n_threads=2, early_stop=False)) as mux:
            result = mux.ask(QUESTION)
    votes = {v.model: v for v in result.decision.votes}
    here, there = votes[TEST_MODEL].samples, votes["peer"].samples
    assert [s.seed for s in there] == [s.seed for s in here] == [11, 12, 13]
    # the same prompt (the server renders the same messages with the same template), the same seeds, the
    # same engine: the remote samples are the local ones, and they are extracted and voted the same way
    assert [s.text for s in there] == [s.text for s in here]
    assert [s.answer for s in there] == [s.answer for s in here]
    assert all(s.stop_reason in ("eos", "stop", "length") for s in there) and not result.failures
    # the peer sent each token's top 20 logprobs: the member's token confidence is the local one
    for a, b in zip(there, here, strict=True):
        assert a.signals is not None and b.signals is not None
        assert a.signals.logprobs == pytest.approx(b.signals.logprobs, abs=1e-9)
        assert a.signals.confidences == pytest.approx(b.signals.confidences, abs=1e-9)


class _Faulty(http.server.BaseHTTPRequestHandler):
    mode = "503"
    requests = 0

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).requests += 1
        if self.mode == "hang":
            time.sleep(3)
            return
        self.send_response(503)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": {"message": "overloaded, try later"}}')

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def faulty_server(mode: str) -> Iterator[str]:
    handler = type("Handler", (_Faulty,), {"mode": mode, "requests": 0})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()
    faulty_server.requests = handler.requests  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("503", "answered HTTP 503: overloaded, try later"),
        ("hang", "sent nothing for 1 s"),
        ("refused", "cannot connect"),
    ],
)
def test_a_failing_remote_member_counts_as_unparsable_and_the_others_answer(
    smollm2_in_home: Path, monkeypatch: pytest.MonkeyPatch, mode: str, reason: str
) -> None:
    monkeypatch.setattr(remote, "BACKOFF_S", 0.01)
    threads_before = threading.active_count()
    with faulty_server(mode) as url:
        if mode == "refused":
            url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
        register_remote(RemoteSource(url, "m", read_timeout_s=1.0, connect_timeout_s=1.0), "flaky", Catalog())
        with Mux(_profile("flaky", TEST_MODEL, k=2), load=LoadOptions(n_threads=2)) as mux:
            result = mux.ask(QUESTION)
    assert reason in result.failures["flaky"]
    flaky = next(v for v in result.decision.votes if v.model == "flaky")
    assert flaky.unparsable == 2 and flaky.answer is None
    assert result.decision.winner == TEST_MODEL or result.answer is None  # no wall-clock check: the
    # reason above says the 1 s read timeout ended it, and the retries are counted below
    if mode == "503":
        assert faulty_server.requests == remote.RETRIES + 1  # type: ignore[attr-defined]
    assert (
        "note" in result.to_dict()["models"][0]["samples"][0] or "note" in result.to_dict()["models"][1]["samples"][0]
    )
    deadline = time.monotonic() + HANG_S
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before  # no request thread left behind


def test_a_peer_that_sends_too_few_logprobs_leaves_the_member_counting() -> None:
    # OpenAI's chat shape with the 20 alternatives: confidence as the engine computes it; fewer (a server
    # capped at 5, or none): no signals, so that member's vote falls back to counting samples.
    top = [{"token": str(j), "logprob": -0.1 * j} for j in range(20)]
    (t,) = remote._token_logprobs({"content": [{"token": "a", "logprob": -0.5, "top_logprobs": top}]})  # type: ignore[misc]
    assert (t.logprob, t.confidence) == (-0.5, pytest.approx(0.95))
    assert remote._token_logprobs({"content": [{"token": "a", "logprob": -0.5, "top_logprobs": top[:5]}]}) is None
    assert remote._token_logprobs(None) is None
    completions = remote._token_logprobs(
        {"token_logprobs": [-1.0], "top_logprobs": [{str(j): -0.1 * j for j in range(20)}]}
    )
    assert completions is not None and completions[0].confidence == pytest.approx(0.95)
