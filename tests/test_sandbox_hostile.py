"""Hostile programs against the sandbox, as the user that runs the tests (CI and the dev machines: root).

Each program tries one way out (tests/hostile.py). Run directly, through `edgemux ask` and through the
server, each must end as an unparsable sample whose reason is the refusal, with the host unchanged, the
secrets unread and no process left. Every level of confinement this machine allows keeps what
``isolation()`` claims for it."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from edgemux.cli import cli
from edgemux.sandbox import confine, isolation, runner
from edgemux.testing import fake_engine_factory

from .hostile import CANARY, GUARDS, PROGRAMS, REASONS, Host

LINUX = sys.platform.startswith("linux")
NAMES = list(PROGRAMS)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    monkeypatch.setenv("EDGEMUX_CANARY", CANARY)  # in the environment of the process that runs the sandbox
    secret = tmp_path / "secret"
    secret.write_text(CANARY)
    secret.chmod(0o600)
    target = tmp_path / "host-dir"
    target.mkdir()
    target.chmod(0o777)  # writable by anyone: only the sandbox stands between the program and it
    return Host(os.getpid(), target, secret)


def leftover_sandboxes() -> list[psutil.Process]:
    """Processes still running a sandbox's boot script."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = p.info["cmdline"] or []
        if any("EDGEMUX_SECCOMP" in part for part in cmdline):
            found.append(p)
    return found


def assert_stopped(name: str, run: runner.ProgramRun, host: Host) -> None:
    assert not run.ok, f"{name} ran to the end: {run.stdout[:200]!r}"
    assert re.search(REASONS[name], run.detail), f"{name}: {run.status}: {run.detail}"
    assert CANARY not in run.stdout and CANARY not in run.detail
    assert host.unchanged()
    assert not leftover_sandboxes()


def test_every_guarantee_holds_on_linux_as_root() -> None:
    if not LINUX:  # no namespaces and no syscall filter: said, not pretended
        assert not isolation()["files"] and not isolation()["syscalls"]
        return
    assert isolation()["processes"] and isolation()["network"]  # seccomp needs no privilege
    if os.geteuid() == 0:  # root can always confine: CI and the dev machines run as root
        assert all(isolation().values()), isolation()


@pytest.mark.parametrize("name", NAMES)
def test_a_hostile_program_is_refused_with_its_reason(name: str, host: Host) -> None:
    guarded = [g for g in GUARDS[name] if isolation()[g]]
    if not guarded:
        pytest.skip(f"this machine cannot confine {name}: isolation() says no {' or '.join(sorted(GUARDS[name]))}")
    assert_stopped(name, runner.run_python(host.program(name), runner.Limits(timeout_s=5)), host)


def test_every_level_this_machine_allows_keeps_what_it_claims(host: Host) -> None:
    """The weaker levels are what other machines get: each is run here, where the kernel allows it, with the
    attacks that its own claims say it stops (never the others: they would do real harm)."""
    confine.prepare()
    tried = 0
    for level in confine.levels():
        if runner._launch("print(42)", runner.Limits(), level).stdout != "42\n":
            continue  # the kernel refuses this level here
        claims = runner.isolation_of(level)
        for name in NAMES:
            if any(claims[g] for g in GUARDS[name]):
                assert_stopped(name, runner._launch(host.program(name), runner.Limits(timeout_s=5), level), host)
                tried += 1
    assert tried >= len(NAMES)  # at least the strongest level faced every attack


def test_an_interrupt_kills_the_running_program_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while a program runs: its process group is killed before the interrupt propagates (it used to
    wait out the program's timeout)."""
    real_select = runner.selectors.DefaultSelector.select
    calls = {"n": 0}

    def interrupted(self: object, timeout: float | None = None) -> object:
        calls["n"] += 1
        if calls["n"] == 2:  # the program has started and is sleeping
            raise KeyboardInterrupt
        return real_select(self, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(runner.selectors.DefaultSelector, "select", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_python("import time\nprint('started', flush=True)\ntime.sleep(60)", runner.Limits(timeout_s=60))
    assert not leftover_sandboxes()


def test_a_machine_that_cannot_confine_says_so_once(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    weakest = confine.Level(False, False, False, False)
    monkeypatch.setattr(confine, "levels", lambda: [weakest])
    runner._confinement.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="edgemux.sandbox"):
            assert runner.run_python("print(1)").stdout == "1\n"
            assert runner.run_python("print(2)").stdout == "2\n"
            assert not isolation()["files"] and not isolation()["syscalls"]
        warnings = [r.getMessage() for r in caplog.records if r.name == "edgemux.sandbox"]
        assert len(warnings) == 1 and "files" in warnings[0] and "What the sandbox guarantees" in warnings[0]
    finally:
        runner._confinement.cache_clear()


@pytest.fixture
def hostile_engine(fake_models: list[str], host: Host, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The fake model `alpha` whose sample i writes hostile program i (as a fenced block)."""
    replies = [f"```python\n{host.program(name)}\n```" for name in NAMES]
    monkeypatch.setattr("edgemux.schedule.loader.llama_engine", fake_engine_factory({"alpha": replies}))
    yield replies


def test_hostile_programs_through_ask(hostile_engine: list[str], host: Host) -> None:
    result = CliRunner().invoke(cli, ["ask", "--models", "alpha:pot", "--kind", "number", "-k", str(len(NAMES)),
                                      "--no-early-stop", "--json", "What is 2 + 2?"])  # fmt: skip
    assert result.exit_code == 8, result.output  # no parsable answer
    samples = json.loads(result.stdout)["models"][0]["samples"]
    assert len(samples) == len(NAMES)
    for sample in samples:
        name = NAMES[sample["index"]]
        assert sample["answer"] is None
        assert sample["program"]["status"] != "ok" and re.search(REASONS[name], sample["program"]["detail"]), sample
    assert CANARY not in result.output and host.unchanged() and not leftover_sandboxes()


def test_hostile_programs_through_the_server(hostile_engine: list[str], host: Host, home: Path) -> None:
    from .test_server import running_server

    (home / "profiles").mkdir(parents=True, exist_ok=True)
    (home / "profiles" / "hostile.yaml").write_text(
        f"name: hostile\nkind: number\nmodels:\n  - alpha:pot\nsampling: {{k: {len(NAMES)}, max_tokens: 400}}\n"
    )
    with running_server(
        default_profile="hostile", engine_factory=fake_engine_factory({"alpha": hostile_engine})
    ) as server:
        response = server.client().chat.completions.create(
            model="mux:hostile", messages=[{"role": "user", "content": "What is 2 + 2?"}]
        )
    extension = response.model_extra["edgemux"]  # type: ignore[index]
    assert extension["answer"] is None
    for sample in extension["votes"][0]["samples"]:
        name = NAMES[sample["index"]]
        assert re.search(REASONS[name], sample["program"]["detail"]), sample
    assert CANARY not in response.model_dump_json() and host.unchanged() and not leftover_sandboxes()
