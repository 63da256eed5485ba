"""The sandbox against hostile programs: each must end as a failed (or harmless) run, quickly, leaving
nothing behind, and never able to make the parent believe a result it did not print."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from edgemux import sandbox
from edgemux.answers import code
from edgemux.sandbox import Limits, inside, run_python
from tests.timing import HANG_S

FAST = Limits(timeout_s=2.0, cpu_s=2)
LINUX = sys.platform.startswith("linux")


def run(source: str, limits: Limits = FAST) -> sandbox.ProgramRun:
    start = time.perf_counter()
    result = run_python(source, limits)
    assert time.perf_counter() - start < HANG_S  # never stuck, whatever the program does (a guard, not a speed check)
    return result


def test_a_plain_program_prints_its_answer() -> None:
    result = run("print(sum(range(10)))")
    assert (result.status, result.stdout, result.detail) == ("ok", "45\n", "")


def test_exceptions_and_exit_codes_are_failures_with_the_reason() -> None:
    assert run("1 / 0").status == "error" and "ZeroDivisionError" in run("1 / 0").detail
    exited = run("import sys; print(5); sys.exit(3)")
    assert (exited.status, exited.detail, exited.stdout) == ("error", "exit code 3", "5\n")
    assert run("import sys; print(5); sys.exit(0)").ok


def test_an_infinite_loop_is_stopped_by_the_timeout() -> None:
    result = run("while True:\n    pass")
    assert result.status in ("timeout", "killed")  # the watchdog ended it (how promptly: bench/sandbox_overhead.py)


def test_a_sleeping_program_is_stopped_by_the_wall_clock() -> None:
    result = run("import time\ntime.sleep(60)")
    assert result.status == "timeout"


def test_gigabytes_of_output_are_cut_off_at_the_cap() -> None:
    result = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)")
    assert result.status == "output-limit" and len(result.stdout) <= FAST.max_output


def test_memory_exhaustion_fails_the_run_not_the_machine() -> None:
    result = run("a = bytearray(8 << 30)\nprint('allocated')")
    assert not result.ok and "allocated" not in result.stdout


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_syscall_filter_as_a_table(machine: str) -> None:
    column = inside.ARCHES[machine][0]
    rows = inside.filter_program(machine, own_pid=7)
    verdict = {"allow": 0x7FFF0000, "eperm": 0x00050001, "kill": 0x80000000}
    for name, numbers in inside.DENIED.items():
        if numbers[column] is not None:
            assert inside.run_filter(rows, machine, numbers[column]) == verdict["eperm"], name
    for name, numbers in inside.SELF_ONLY.items():
        assert inside.run_filter(rows, machine, numbers[column], arg0=7) == verdict["allow"], name
        assert inside.run_filter(rows, machine, numbers[column], arg0=1) == verdict["eperm"], name
        assert inside.run_filter(rows, machine, numbers[column], arg0=(1 << 32) - 1) == verdict["eperm"], name  # -1
    read, write, openat = {"x86_64": (0, 1, 257), "aarch64": (63, 64, 56)}[machine]
    for nr in (read, write, openat):
        assert inside.run_filter(rows, machine, nr) == verdict["allow"]
    other = "aarch64" if machine == "x86_64" else "x86_64"  # a call made under another architecture's numbers
    assert inside.run_filter(rows, other, read) == verdict["kill"]
    if machine == "x86_64":  # the x32 ABI reaches the same calls under other numbers
        assert inside.run_filter(rows, machine, inside.X32_BIT + 165) == verdict["eperm"]
    assert inside.filter_program("riscv64", 7) == []  # no table: run unfiltered, and isolation() says so


def test_a_fork_bomb_gets_no_processes() -> None:
    bomb = "import os\nn = 0\nwhile n < 10000:\n    try:\n        os.fork()\n    except OSError:\n        n += 1\nprint('forks refused', n)"
    result = run(bomb)
    if sandbox.isolation()["processes"]:
        assert result.ok and result.stdout.startswith("forks refused 10000")
    else:
        assert not result.ok


def test_no_subprocess_and_no_daemon_outlives_the_run(tmp_path: Path) -> None:
    marker = tmp_path / "daemon-was-here"
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(1.5)\n"
        f"    open({str(marker)!r}, 'w').write('alive')\n"
        "print('parent done')"
    )
    result = run(daemon)
    assert not result.ok or result.stdout == "parent done\n"
    shell = run("import subprocess\nprint(subprocess.run(['echo', 'escaped'], capture_output=True).stdout)")
    assert not shell.ok and "escaped" not in shell.stdout
    time.sleep(2.0)
    assert not marker.exists()


def test_no_network() -> None:
    result = run("import socket\ns = socket.create_connection(('127.0.0.1', 22), timeout=1)\nprint('connected')")
    assert not result.ok and "connected" not in result.stdout


def test_writing_outside_the_temporary_directory_fails(tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    result = run(f"open({str(outside)!r}, 'w').write('x')\nprint('wrote')")
    if sandbox.isolation()["files"]:
        assert not result.ok and not outside.exists()
    inside = run("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())")
    assert inside.stdout == "ok\n"  # its own working directory is writable
    big = run("open('big.bin', 'wb').write(b'x' * (4 << 20))\nprint('wrote big')")
    assert not big.ok  # the file size limit


def test_the_parents_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMUX_TEST_SECRET", "hunter2")
    result = run(
        "import os\n"
        "print(os.environ.get('EDGEMUX_TEST_SECRET'))\n"
        "try:\n"
        f"    print(open('/proc/{os.getpid()}/environ').read())\n"
        "except OSError as e:\n"
        "    print('no proc', type(e).__name__)"
    )
    assert result.ok and "hunter2" not in result.stdout


def test_a_code_answer_cannot_forge_its_report() -> None:
    tests = ["assert square(3) == 9"]
    forged = (
        "```python\n"
        "import json, os\n"
        "print(json.dumps({'outputs': ['9']}))\n"
        "os.write(1, (json.dumps({'outputs': ['9']}) + '\\n').encode())\n"
        "os._exit(0)\n"
        "```"
    )
    honest = "```python\ndef square(x):\n    return x * x\n```"
    assert code.signature(forged, tests) is None  # what it printed went nowhere; it never reported
    assert code.signature(honest, tests) is not None
