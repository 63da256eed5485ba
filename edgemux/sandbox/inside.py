"""What runs inside the sandboxed interpreter, before the model's program: this file's source is sent to a
fresh ``python -I -S`` as its boot script, so it imports nothing but the standard library.

It reads the program from stdin, becomes the init of its PID namespace when it has one (the program runs
in a forked child; when that child ends, the kernel kills anything it left), and installs the syscall
filter in the program's own process just before running it: after the filter, no new processes, no exec,
no sockets, no mounts, no tracing, no signals to anything but itself, no io_uring, bpf, keyrings or
namespaces. A refused call fails with EPERM, so the program sees an ordinary PermissionError.

The filter is built here (``filter_program``) and tested as a table from the parent side.
"""

from __future__ import annotations

import os
import struct
import sys

# Syscall numbers: (x86-64, arm64). arm64 uses the generic table, which has no fork or vfork.
DENIED = {
    "clone": (56, 220), "fork": (57, None), "vfork": (58, None), "clone3": (435, 435),
    "execve": (59, 221), "execveat": (322, 281),
    "socket": (41, 198), "socketpair": (53, 199),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "unshare": (272, 97), "setns": (308, 268),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "pidfd_open": (434, 434), "pidfd_getfd": (438, 438), "pidfd_send_signal": (424, 424),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "reboot": (169, 142),
    "swapon": (167, 224), "swapoff": (168, 225),
}  # fmt: skip
# Signals may go to the program's own process only: the first argument (pid or thread group) must be its pid.
SELF_ONLY = {
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240),
}  # fmt: skip
ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # column in the tables, AUDIT_ARCH_*
X32_BIT = 0x40000000  # x86-64's x32 ABI: the same calls under other numbers, refused whole

_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO_EPERM = 0x7FFF0000, 0x80000000, 0x00050000 | 1
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian: arg0's low 32 bits)


def filter_program(machine: str, own_pid: int) -> list[tuple[int, int, int, int]]:
    """The classic-BPF seccomp program for ``machine`` as (code, jt, jf, k) rows; empty when this
    architecture has no table (the caller then runs without a filter and says so)."""
    if machine not in ARCHES:
        return []
    column, audit_arch = ARCHES[machine]
    denied = sorted({nr for row in DENIED.values() if (nr := row[column]) is not None})
    self_only = sorted({row[column] for row in SELF_ONLY.values()})
    # Layout: header, one jump per listed call, then the shared tails: ALLOW, the self check, EPERM, KILL.
    head = [(_LD_W_ABS, 0, 0, _ARCH), (_JEQ_K, 0, 0, audit_arch), (_LD_W_ABS, 0, 0, _NR)]
    if machine == "x86_64":
        head.append((_JGE_K, 0, 0, X32_BIT))
    checks = [(nr, "eperm") for nr in denied] + [(nr, "self") for nr in self_only]
    body_end = len(head) + len(checks)
    tails = {"allow": body_end, "self": body_end + 1, "eperm": body_end + 4, "kill": body_end + 5}
    rows: list[tuple[int, int, int, int]] = []
    for i, (code, _, _, k) in enumerate(head):
        if code == _JEQ_K:  # wrong architecture: the numbers would mean other calls
            rows.append((code, 0, tails["kill"] - i - 1, k))
        elif code == _JGE_K:
            rows.append((code, tails["eperm"] - i - 1, 0, k))
        else:
            rows.append((code, 0, 0, k))
    for nr, tail in checks:
        i = len(rows)
        rows.append((_JEQ_K, tails[tail] - i - 1, 0, nr))
    rows += [
        (_RET_K, 0, 0, _ALLOW),
        (_LD_W_ABS, 0, 0, _ARG0),
        (_JEQ_K, 0, 1, own_pid),
        (_RET_K, 0, 0, _ALLOW),
        (_RET_K, 0, 0, _ERRNO_EPERM),
        (_RET_K, 0, 0, _KILL_PROCESS),
    ]
    return rows


def run_filter(rows: list[tuple[int, int, int, int]], machine: str, nr: int, arg0: int = 0) -> int:
    """Evaluate the program on one call, as the kernel would (for the tests)."""
    data = struct.pack("<iIQ6Q", nr, ARCHES[machine][1] if machine in ARCHES else 0, 0, arg0, 0, 0, 0, 0, 0)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = rows[pc]
        if code == _LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == _RET_K:
            return k
        elif code in (_JEQ_K, _JGE_K):
            taken = acc == k if code == _JEQ_K else acc >= k
            pc += jt if taken else jf
        pc += 1


def install_filter(own_pid: int) -> bool:
    """PR_SET_NO_NEW_PRIVS, then the filter. False where this architecture has no table; exits rather
    than run the program unfiltered when the kernel refuses it."""
    import ctypes
    import platform

    rows = filter_program(platform.machine(), own_pid)
    if not rows:
        return False
    buffer = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *row) for row in rows))
    fprog = struct.pack("HxxxxxxP", len(rows), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) != 0:
        os._exit(125)  # PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP: refuse to run unconfined
    return True


def _run(source: str) -> None:
    if os.environ.get("EDGEMUX_SECCOMP") == "1":
        install_filter(os.getpid())
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


def main() -> None:
    source = sys.stdin.read()
    sys.stdin = open(os.devnull)
    import builtins

    # -S skips site, which is what defines exit() and quit(); programs use them.
    builtins.exit = builtins.quit = sys.exit  # type: ignore[assignment]
    sys.path.extend(p for p in os.environ.get("EDGEMUX_PATH", "").split(os.pathsep) if p)
    if os.environ.get("EDGEMUX_NEWPID") != "1":
        _run(source)
    pid = os.fork()
    if pid == 0:
        import ctypes

        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: the init's death ends the program
        _run(source)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)
