"""Run a program a model wrote, where it can do no harm: the one place edgemux executes model output.

Each run is a fresh ``python -I -S`` in its own session (process group), confined as strongly as this
machine allows (``confine.py``: namespaces, a root holding only an allow-list, nobody instead of root, a
tmpfs of fixed size as its only writable place, rlimits; ``inside.py``: a syscall filter), with a stripped
environment and a wall-clock timeout. What the machine cannot confine is said once in the log (``ask``
shows it) and in ``isolation()``.

The result channel: what the program prints on stdout *is* its answer (capped at ``max_output`` bytes,
after which the run is killed), and whether it succeeded comes from the kernel (exit status, signal, our
timeout) — never from anything the program writes, so there is no status line for it to forge.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from ..programs import ProgramRun
from ..programs import ProgramStatus as Status
from . import confine, inside
from .confine import Level, Limits

__all__ = ["Limits", "ProgramRun", "isolation", "run_python"]

log = logging.getLogger("edgemux.sandbox")


@lru_cache(maxsize=1)
def _confinement() -> Level:
    """The strongest level this machine allows, found by running one trivial program at each; the
    guarantees lost against the strongest are logged once (``ask`` shows the warning)."""
    confine.prepare()
    tried = confine.levels()
    for level in tried:
        if _launch("print(42)", Limits(timeout_s=10), level).stdout.strip() == "42":
            missing = [what for what, held in isolation_of(level).items() if not held]
            if missing:
                log.warning("the sandbox cannot confine everything here (%s): model-written programs run "
                            "without %s; see the README's 'What the sandbox guarantees'",
                            level.name, ", ".join(missing))  # fmt: skip
            return level
    return tried[-1]


def isolation_of(level: Level) -> dict[str, bool]:
    return {
        "network": level.namespaces or level.seccomp,  # no interfaces, and socket() refused
        "processes": level.seccomp,  # fork, clone and exec refused
        "process_lifetime": level.namespaces,  # a PID namespace: nothing outlives the program
        "files": level.namespaces,  # host files outside the allow-list are not there; the rest read-only
        "privileges": level.nobody or os.name != "posix" or os.geteuid() != 0,  # never root, no capabilities
        "disk": level.namespaces,  # total bytes and file count capped (a tmpfs of fixed size)
        "syscalls": level.seccomp,  # mount, ptrace, foreign kill, io_uring, bpf, namespaces... refused
        "limits": os.name == "posix",
    }


def isolation() -> dict[str, bool]:
    """What the sandbox guarantees on this machine (for ``-v``, the docs and the tests)."""
    return isolation_of(_confinement())


@lru_cache(maxsize=1)
def _boot() -> str:
    return Path(inside.__file__).read_text(encoding="utf-8") + "\nmain()\n"


def _kill(process: subprocess.Popen[bytes]) -> None:
    _kill_group(process.pid)
    process.kill()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


DEFAULT_LIMITS = Limits()


def run_python(source: str, limits: Limits = DEFAULT_LIMITS) -> ProgramRun:
    """Run ``source`` as a Python program in the sandbox and return how it ended. Never raises for
    anything the program does; waits at most ``limits.timeout_s`` (plus the time to kill it). An
    interrupt (Ctrl-C) kills the program's process group before it propagates."""
    return _launch(source, limits, _confinement())


def _launch(source: str, limits: Limits, level: Level) -> ProgramRun:
    start = time.perf_counter()
    tree = confine.allow_list()
    with tempfile.TemporaryDirectory(prefix="edgemux-run-") as root:
        workdir = confine.WORKDIR if level.namespaces else root
        # Without the new root the packages are imported from where they are installed.
        path = (
            confine.LIBDIR
            if level.namespaces
            else os.pathsep.join(sorted({os.path.dirname(p) for p, _ in tree.packages}))
        )
        env = {"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8", "HOME": workdir, "TMPDIR": workdir,
               "EDGEMUX_PATH": path, "EDGEMUX_NEWPID": "1" if level.namespaces else "0",
               "EDGEMUX_SECCOMP": "1" if level.seccomp else "0"}  # fmt: skip
        try:
            process = subprocess.Popen(
                [tree.interpreter, "-I", "-S", "-B", "-c", _boot()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd="/", env=env, start_new_session=True, close_fds=True,
                preexec_fn=lambda: confine.enter(level, limits, root),
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            return ProgramRun("error", "", f"could not start the sandbox: {e}", time.perf_counter() - start)
        return _supervise(process, source, limits, start)


def _supervise(process: subprocess.Popen[bytes], source: str, limits: Limits, start: float) -> ProgramRun:
    assert process.stdin and process.stdout and process.stderr
    try:
        process.stdin.write(source.encode("utf-8", "replace"))
        process.stdin.close()
    except BrokenPipeError:
        pass
    out, err = bytearray(), bytearray()
    status: Status | None = None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, out)
    selector.register(process.stderr, selectors.EVENT_READ, err)
    deadline = start + limits.timeout_s
    interrupted = True  # until the loop ends normally: an exception here (Ctrl-C) must not leave it running
    try:
        while selector.get_map():
            left = deadline - time.perf_counter()
            if left <= 0:
                status = "timeout"
                break
            for key, _ in selector.select(timeout=left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
            if len(out) > limits.max_output or len(err) > limits.max_output:
                status = "output-limit"
                break
        interrupted = False
    finally:
        selector.close()
        if status is not None or interrupted:
            _kill(process)
        try:
            code = process.wait(timeout=max(0.1, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:  # closed its pipes but still runs
            status = status or "timeout"
            _kill(process)
            code = process.wait()
        _kill_group(process.pid)  # anything it left in the group dies with it (the PID namespace already did this)
        process.stdout.close()
        process.stderr.close()
    seconds = time.perf_counter() - start
    stdout = bytes(out[: limits.max_output]).decode("utf-8", "replace")
    if status == "timeout":
        return ProgramRun("timeout", stdout, f"ran past {limits.timeout_s:g} s", seconds)
    if status == "output-limit":
        return ProgramRun("output-limit", stdout, f"printed more than {limits.max_output} bytes", seconds)
    if code == 0:
        return ProgramRun("ok", stdout, "", seconds)
    failed, detail = _failure(code, bytes(err))
    return ProgramRun(failed, stdout, detail, seconds)


def _failure(code: int, stderr: bytes) -> tuple[Status, str]:
    if code < 0 or code > 128:
        signum = -code if code < 0 else code - 128
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        reason = {"SIGXCPU": "CPU limit", "SIGKILL": "killed", "SIGSEGV": "crashed", "SIGXFSZ": "file size limit"}
        return "killed", f"{name} ({reason.get(name, 'signal')})"
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return "error", (lines[-1] if lines else f"exit code {code}")[:200]
