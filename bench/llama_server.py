"""llama.cpp's own `llama-server`, built once from the sources vendored in the llama-cpp-python sdist
edgemux runs on (the same llama.cpp), and served on loopback for the remote-member benchmarks.

    python bench/llama_server.py            # build (22 minutes on 2 idle cores here) or print the cached binary

The binary is cached under $EDGEMUX_HOME/tools/llama-server-<version>/ and rebuilt only when missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import llama_cpp

from edgemux import paths
from edgemux.engine.llama import system_info

VERSION = llama_cpp.__version__


def binary_path() -> Path:
    return paths.home() / "tools" / f"llama-server-{VERSION}" / "llama-server"


def build(jobs: int = 2) -> Path:
    """The cached llama-server, built from the llama-cpp-python sdist of the installed version if missing."""
    target = binary_path()
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="edgemux-llama-server-") as tmp:
        work = Path(tmp)
        # the sdist only (its build requirements may come as wheels: pip reads its metadata to download it)
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={VERSION}", "--no-binary",
                        "llama-cpp-python", "--no-deps", "-d", str(work), "-q"], check=True)  # fmt: skip
        sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        source = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
        build_dir = work / "build"
        subprocess.run(["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        "-DBUILD_SHARED_LIBS=OFF"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        built = next(build_dir.rglob("bin/llama-server"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copy2(built, partial)
        os.replace(partial, target)  # never a half-copied binary in the cache
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(model: Path, *, parallel: int, ctx: int, threads: int, cpus: set[int] | None = None,
            extra: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:  # fmt: skip
    """A llama-server for ``model`` on a free loopback port: yields (its /v1 base URL, the process)."""
    port = free_port()
    # The AMX rule edgemux's engine follows (edgemux.llama.model_params): no repacked weights where the AMX
    # matmul crashes, so both sides load the weights the same way.
    no_repack = ("--no-repack",) if "AMX_INT8 = 1" in str(system_info()["system_info"]) else ()
    argv = [str(build()), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-np", str(parallel),
            "-c", str(ctx), "-t", str(threads), "-tb", str(threads), "--jinja", "--metrics", "--slots",
            *no_repack, *extra]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with code {proc.returncode}: {' '.join(argv)}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server did not become healthy in 120 s")
            time.sleep(0.2)
        yield url + "/v1", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    print(build())
