"""Run a program a model wrote, where it can do no harm: the one place edgemux executes model output.

Each run is a fresh ``python -I`` in its own session (process group), in a new empty temporary directory
that is its only working place, with a stripped environment and limits on CPU seconds, address space, open
files, file size and (through the user it runs as) processes. On Linux, where the kernel lets us, it also
gets new network and PID namespaces: no interface but a downed loopback, and when its first process ends
(or is killed) the kernel kills every process it forked, so a fork bomb or a daemon cannot outlive it.
What is not isolated where namespaces cannot be made is said once in the log and in ``isolation()``.

The result channel: what the program prints on stdout *is* its answer (capped at ``max_output`` bytes,
after which the run is killed), and whether it succeeded comes from the kernel (exit status, signal, our
timeout) — never from anything the program writes, so there is no status line for it to forge.
"""

from __future__ import annotations

import ctypes
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

__all__ = ["Limits", "ProgramRun", "isolation", "run_python"]

log = logging.getLogger("edgemux.sandbox")

Status = Literal["ok", "error", "timeout", "output-limit", "killed"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_KEEP_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC}

# Runs in the sandboxed interpreter. With a new PID namespace the first fork is its init: the program runs
# there, and the kernel kills the rest of the namespace when it ends; PR_SET_PDEATHSIG ties that init to
# this process, which our timeout kills. A seccomp filter (Linux x86-64 and arm64) then refuses the
# program new processes, programs to exec and sockets, whatever user it runs as.
_BOOT = r"""
import os, sys
source = sys.stdin.read()
sys.stdin = open(os.devnull)

def seccomp():
    import ctypes, platform, struct
    deny = {"x86_64": (56, 57, 58, 59, 322, 435, 41), "aarch64": (220, 221, 281, 435, 198)}.get(platform.machine())
    if deny is None:
        return
    arch = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]
    ins = [(0x20, 0, 0, 4), (0x15, 1, 0, arch), (0x06, 0, 0, 0x00000000)]  # wrong arch: kill
    ins.append((0x20, 0, 0, 0))
    for i, nr in enumerate(deny):
        ins.append((0x15, len(deny) - i, 0, nr))
    ins += [(0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, 0x00050000 | 1)]  # allow; ERRNO(EPERM)
    prog = b"".join(struct.pack("HBBI", *i) for i in ins)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HxxxxxxP", len(ins), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) != 0:
        os._exit(125)  # PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP: refuse to run unconfined

def run():
    if os.environ.get("EDGEMUX_SECCOMP") == "1":
        seccomp()
    code = 0
    try:
        exec(compile(source, "<program>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc(limit=-1)
        code = 1
    try:
        sys.stdout.flush()
    except BaseException:
        code = code or 1
    os._exit(code)

if os.environ.get("EDGEMUX_NEWPID") == "1":
    pid = os.fork()
    if pid == 0:
        import ctypes
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        run()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)
run()
"""


@dataclass(frozen=True)
class Limits:
    """What one program may use. Memory is address space (RLIMIT_AS): an interpreter that imports sympy
    needs ~300 MiB of it."""

    timeout_s: float = 5.0
    cpu_s: int = 4
    memory_bytes: int = 1 << 30
    file_bytes: int = 1 << 20
    processes: int = 32
    open_files: int = 64
    max_output: int = 64 * 1024


@dataclass(frozen=True)
class ProgramRun:
    """How a program ended and what it printed. ``status`` comes from the kernel and our watchdog."""

    status: Status
    stdout: str
    detail: str  # the exception's last line, the signal, or which limit ended it
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, object]:
        return {"status": self.status, "stdout": self.stdout, "detail": self.detail, "seconds": round(self.seconds, 3)}

    @classmethod
    def from_json(cls, row: dict[str, object]) -> ProgramRun:
        return cls(str(row["status"]), str(row.get("stdout", "")), str(row.get("detail", "")),  # type: ignore[arg-type]
                   float(row.get("seconds", 0.0)))  # type: ignore[arg-type]  # fmt: skip


@lru_cache(maxsize=1)
def _confinement() -> tuple[int, bool]:
    """(namespace flags, seccomp) that this machine lets a sandboxed run use, found by running one empty
    program each way: the strongest that works, and a warning naming what is lost."""
    if not sys.platform.startswith("linux"):
        log.warning("programs run without namespaces or a syscall filter on %s: only rlimits, a timeout and "
                    "a fresh temporary directory confine them", sys.platform)  # fmt: skip
        return 0, False
    full = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | (0 if os.geteuid() == 0 else _CLONE_NEWUSER)
    for flags, seccomp in ((full, True), (0, True), (0, False)):
        if _launch("print(42)", Limits(timeout_s=10), flags, seccomp).stdout.strip() == "42":
            if (flags, seccomp) != (full, True):
                log.warning("programs run without %s here (the kernel refused them)",
                            "namespaces" if seccomp else "namespaces or a syscall filter")  # fmt: skip
            return flags, seccomp
    return 0, False


def isolation() -> dict[str, bool]:
    """What the sandbox isolates on this machine (for ``-v``, the docs and the tests)."""
    flags, seccomp = _confinement()
    return {
        "network": bool(flags & _CLONE_NEWNET) or seccomp,  # no interfaces, and socket() refused
        "processes": seccomp,  # fork, clone and exec refused
        "process_lifetime": bool(flags & _CLONE_NEWPID),  # nothing outlives the program
        "files": bool(flags & _CLONE_NEWNS),  # everything but the workdir read-only, /proc hidden
        "limits": os.name == "posix",
    }


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(v: str | None) -> bytes | None:
        return v.encode() if v is not None else None

    _check(_libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _read_only_except(workdir: str) -> None:
    """In a fresh mount namespace: every mount read-only but the workdir, and an empty /proc (which would
    show other processes and their environments)."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mounts.append((fields[4].replace("\\040", " "), fields[5].split(",")))
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount(workdir, workdir, None, _MS_BIND)
    for target, options in mounts:
        if target == "/proc" or target.startswith("/proc/"):
            continue
        keep = sum(flag for name, flag in _KEEP_FLAGS.items() if name in options)
        try:
            _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep)
        except OSError:
            if target == "/":
                raise
    _mount("none", "/proc", "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k")


def _child_setup(limits: Limits, flags: int, workdir: str) -> None:
    """Runs in the child between fork and exec."""
    import resource

    if flags:
        uid, gid = os.geteuid(), os.getegid()
        _check(_libc().unshare(flags), "unshare")
        if flags & _CLONE_NEWUSER:  # be root inside, ourselves outside: enough to mount in our namespace
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        if flags & _CLONE_NEWNS:
            _read_only_except(workdir)
    for name, value in (
        ("RLIMIT_CPU", limits.cpu_s),
        ("RLIMIT_AS", limits.memory_bytes),
        ("RLIMIT_FSIZE", limits.file_bytes),
        ("RLIMIT_NOFILE", limits.open_files),
        ("RLIMIT_CORE", 0),
    ):
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), (value, value))
    os.chdir(workdir)


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.kill()


def run_python(source: str, limits: Limits = Limits()) -> ProgramRun:
    """Run ``source`` as a Python program in the sandbox and return how it ended. Never raises for
    anything the program does; waits at most ``limits.timeout_s`` (plus the time to kill it)."""
    flags, seccomp = _confinement()
    return _launch(source, limits, flags, seccomp)


def _launch(source: str, limits: Limits, flags: int, seccomp: bool) -> ProgramRun:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgemux-run-") as workdir:
        env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8",
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": workdir, "TMPDIR": workdir,
               "EDGEMUX_NEWPID": "1" if flags & _CLONE_NEWPID else "0", "EDGEMUX_SECCOMP": "1" if seccomp else "0"}  # fmt: skip
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=workdir, env=env, start_new_session=True, close_fds=True,
                preexec_fn=lambda: _child_setup(limits, flags, workdir),
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
    finally:
        selector.close()
        if status is not None:
            _kill(process)
        try:
            code = process.wait(timeout=max(0.1, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:  # closed its pipes but still runs
            status = status or "timeout"
            _kill(process)
            code = process.wait()
        try:  # anything it left in the group dies with it (the PID namespace already did this)
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
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
