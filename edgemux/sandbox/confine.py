"""How a sandboxed run is confined: the levels a machine may allow, the files a program may see, and the
steps that confine it, taken in the child between fork and exec (``enter``).

The strongest level, on Linux:

- new mount, PID, network and IPC namespaces (as root directly; as a user inside a user namespace that
  maps only the user's own uid, so the program never holds a capability outside it);
- a new root on a small tmpfs holding only the allow-list, bound read-only: the system's shared libraries,
  the Python installation, the packages programs import (sympy, mpmath) and four harmless devices. The
  host's root is detached, so /etc, /home, /root, /proc, /sys, /tmp and the project are not there at all;
- the only writable place, the working directory, is a tmpfs of fixed size and file count;
- root becomes nobody (setgroups, setresgid, setresuid: the kernel clears every capability), the
  capability bounding set is emptied and PR_SET_NO_NEW_PRIVS is set, whoever started edgemux;
- rlimits on CPU seconds, address space, file size, open files and processes (applied to nobody, whom
  they bind, rather than to root, whom the kernel exempts from the process limit).

Weaker levels keep what the kernel allows; ``runner.isolation()`` says which guarantees hold.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os
import platform
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache

from .inside import ARCHES, DENIED

NOBODY = 65534
WORKDIR = "/edgemux-work"  # the program's working directory inside the new root
LIBDIR = "/edgemux-lib"  # the packages programs may import, inside the new root
PACKAGES = ("sympy", "mpmath")  # what recorded programs import beyond the standard library (sympy needs mpmath)
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_SYSTEM_LIBS = ("/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache",)  # where the dynamic loader finds libraries (no secrets)

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 1024, 2048, 4096
_KEEP = _MS_NOEXEC | _MS_NOATIME | _MS_NODIRATIME | _MS_RELATIME  # statvfs's ST_* bits equal these MS_* bits
_MNT_DETACH = 2
_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 24, 38


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
    disk_bytes: int = 8 << 20  # all its files together (the working directory is a tmpfs of this size)
    files: int = 256  # how many files and directories it may make there


@dataclass(frozen=True)
class Level:
    """One way of confining a run; ``levels()`` lists them strongest first."""

    namespaces: bool  # mount, PID, network and IPC namespaces and the allow-list root
    user_namespace: bool  # how a user (not root) gets them
    seccomp: bool  # the syscall filter of inside.py
    nobody: bool  # root drops to nobody

    @property
    def name(self) -> str:
        parts = ["namespaces" if self.namespaces else "no namespaces", "seccomp" if self.seccomp else "no seccomp"]
        return ", ".join(parts + (["as nobody"] if self.nobody else []))


def levels() -> list[Level]:
    """What to try on this machine, strongest first. Elsewhere than Linux: rlimits alone."""
    if not sys.platform.startswith("linux"):
        return [Level(False, False, False, False)]
    root = os.geteuid() == 0
    # Without namespaces nobody may be unable to reach the interpreter (a pyenv under /root): then the
    # filter is kept and root stays root.
    return [
        Level(True, not root, True, root),
        Level(False, False, True, root),
        Level(False, False, True, False),
        Level(False, False, False, False),
    ]


@dataclass(frozen=True)
class Tree:
    """What a program sees of the host: each path bound read-only at the same place, plus symlinks as on the
    host (merged /usr: /lib -> usr/lib) and the packages under LIBDIR."""

    interpreter: str
    binds: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    packages: tuple[tuple[str, str], ...]  # (host directory, name under LIBDIR)


@lru_cache(maxsize=1)
def allow_list() -> Tree:
    interpreter = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,  # the installation, not a venv
            "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}  # fmt: skip
    stdlib = sysconfig.get_paths(vars=base)
    paths = [interpreter, stdlib["stdlib"], stdlib["platstdlib"]]
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and library and os.path.exists(os.path.join(libdir, library)):  # a shared libpython
        paths.append(os.path.realpath(os.path.join(libdir, library)))
    links = []
    for path in _SYSTEM_LIBS:
        if os.path.islink(path):
            links.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            paths.append(path)
    paths += [p for p in _SYSTEM_FILES if os.path.isfile(p)]
    packages = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)  # locates the package without importing it
        if spec is not None and spec.submodule_search_locations:
            packages.append((os.path.realpath(list(spec.submodule_search_locations)[0]), name))
    binds: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths}):
        if not any(path.startswith(b.rstrip("/") + "/") for b in binds):  # already inside an earlier bind
            binds.append(path)
    return Tree(interpreter, tuple(binds), tuple(links), tuple(packages))


@lru_cache(maxsize=1)
def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(v: str | None) -> bytes | None:
        return v.encode() if v is not None else None

    _check(_libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _bind(source: str, target: str, *, read_only: bool) -> None:
    """Bind ``source`` (a file or a directory) at ``target`` inside the new root. Read-only binds keep the
    source's noexec and atime flags: a user namespace may not clear them, and adding noexec would stop
    the loader mapping libraries."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(source, target, None, _MS_BIND)
    if read_only:
        keep = os.statvfs(source).f_flag & _KEEP
        _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | keep)


def _pivot_root(new_root: str) -> None:
    """Make ``new_root`` the root and detach the host's: nothing outside the new root stays reachable."""
    machine = platform.machine()
    number = DENIED["pivot_root"][ARCHES[machine][0]] if machine in ARCHES else None
    if number is None:  # no syscall table for this architecture: this level fails, a weaker one is used
        raise OSError(errno.ENOSYS, f"pivot_root: no syscall number known for {machine}")
    os.chdir(new_root)
    _check(_libc().syscall(ctypes.c_long(number), b".", b"."), "pivot_root")
    _check(_libc().umount2(b".", _MNT_DETACH), "umount old root")
    os.chdir("/")


def _build_root(tree: Tree, limits: Limits, root: str, owner: tuple[int, int]) -> None:
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing we mount is seen by the host
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    for path, target in tree.links:
        os.symlink(target, root + path)
    for path in tree.binds:
        _bind(path, root + path, read_only=True)
    for name, path in ((name, path) for path, name in tree.packages):
        _bind(path, f"{root}{LIBDIR}/{name}", read_only=True)
    for device in DEVICES:
        if os.path.exists(device):
            _bind(device, root + device, read_only=False)
    os.makedirs(root + WORKDIR)
    uid, gid = owner
    _mount("tmpfs", root + WORKDIR, "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={limits.disk_bytes},nr_inodes={limits.files},mode=0700,uid={uid},gid={gid}")  # fmt: skip
    _pivot_root(root)
    _mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def _map_own_ids(uid: int, gid: int) -> None:
    """Inside a new user namespace, map only our own uid and gid to themselves: uid 0 of the namespace is
    unmapped, so exec grants no capability there."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _set_limits(limits: Limits) -> None:
    import resource  # Unix only: imported where it is used, so the package imports everywhere

    for name, value in (
        ("RLIMIT_CPU", limits.cpu_s),
        ("RLIMIT_AS", limits.memory_bytes),
        ("RLIMIT_FSIZE", limits.file_bytes),
        ("RLIMIT_NOFILE", limits.open_files),
        ("RLIMIT_NPROC", limits.processes),
        ("RLIMIT_CORE", 0),
    ):
        if hasattr(resource, name):
            resource.setrlimit(getattr(resource, name), (value, value))


def _drop_privileges(level: Level) -> None:
    """Empty the capability bounding set, become nobody (root), and forbid gaining privileges by exec."""
    libc = _libc()
    if level.namespaces or level.nobody:
        for cap in range(_last_capability() + 1):
            _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    if level.nobody:
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)  # from root to nobody: the kernel clears every capability
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def prepare() -> None:
    """Read, in the parent, what the child needs after the host's root is gone."""
    allow_list()
    _last_capability()


def enter(level: Level, limits: Limits, root: str) -> None:
    """Confine this process (the child, between fork and exec). ``root`` is an empty directory made for
    this run: the mount point of the new root, or, without namespaces, the working directory itself.
    ``prepare()`` must have run in the parent. Raises OSError when a step fails, so the run fails rather than run with less confinement than probed."""
    uid, gid = os.getuid(), os.getgid()
    if os.geteuid() == 0:
        os.setgroups([])  # root's supplementary groups (disk, adm...) would otherwise come along
    if level.namespaces:
        flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC
        _check(_libc().unshare(flags | (_CLONE_NEWUSER if level.user_namespace else 0)), "unshare")
        if level.user_namespace:
            _map_own_ids(uid, gid)
        _build_root(allow_list(), limits, root, (NOBODY, NOBODY) if level.nobody else (uid, gid))
    elif level.nobody:
        os.chown(root, NOBODY, NOBODY)
    _set_limits(limits)
    _drop_privileges(level)
    os.chdir(WORKDIR if level.namespaces else root)
