"""`edgemux serve`: the OpenAI-compatible server (the [server] extra)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from .. import errors
from ..catalog import fetch
from .common import budget_option, cli, gpu_layers_option

if TYPE_CHECKING:
    from ..server.exposure import Exposure


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (loopback: only this machine)")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--profile", "-p", default="default", show_default=True, help="the profile preloaded at start (served as mux:NAME)"
)
@budget_option
@click.option(
    "--api-key", envvar="EDGEMUX_API_KEY", help="require 'Authorization: Bearer KEY' on /v1 [EDGEMUX_API_KEY]"
)
@click.option("--max-queue", type=int, default=16, show_default=True, help="requests that may wait; more get 429")
@click.option("--max-body", default="1MiB", show_default=True, help="largest request body")
@gpu_layers_option
@click.option("--threads", "n_threads", type=int, default=None, help="CPU threads [one per core]")
@click.option(
    "--n-ctx",
    "cells",
    type=int,
    default=4096,
    show_default=True,
    help="KV cells each model gets, shared by all the samples it decodes at once",
)
@click.option(
    "--max-sequences",
    type=int,
    default=8,
    show_default=True,
    help="samples one model decodes at once (a request's n, and queued requests batched together)",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="a Host name to serve besides the loopback ones (repeatable); '*' serves any",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    metavar="URL",
    help="a web page origin allowed to call the server, e.g. http://localhost:3000 (repeatable)",
)
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="bind beyond loopback without --api-key (anyone who can reach the port may use it)",
)
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(0, 3600),
    default=10.0,
    show_default=True,
    help="on SIGTERM or Ctrl-C, seconds the requests in flight get to finish before they are cancelled "
    "(their clients get a 503 'server_shutting_down'); a second Ctrl-C stops at once",
)
@click.option("--quiet", "-q", is_flag=True, help="no line per request")
def serve(host: str, port: int, profile: str, budget: str | None, api_key: str | None, max_queue: int, max_body: str,
          n_gpu_layers: int, n_threads: int | None, cells: int, max_sequences: int, allow_hosts: tuple[str, ...],
          allow_origins: tuple[str, ...], allow_unauthenticated: bool, grace_s: float, quiet: bool) -> None:  # fmt: skip
    """An OpenAI-compatible server on HOST:PORT for desktop apps and editors.

    \b
    GET  /v1/models            mux:<profile> for every profile, and every model by name
    POST /v1/chat/completions  model mux:<profile>: the SLM-MUX answer, the vote in the 'edgemux' field;
    POST /v1/completions       a model name: plain generation, n > 1 drawn as one batch; stream: true works
    GET  /health, /metrics     readiness (open, for probes) and Prometheus counters (behind the key)
    \b
    Safe to leave running: it binds to loopback; requests whose Host is not a loopback name (DNS
    rebinding) or that come from another web site's page (Origin) are refused with 403; binding to
    another address needs --api-key (or --allow-unauthenticated). A model that is not downloaded yet is
    fetched in the background: requests for it get 503 with Retry-After meanwhile.
    \b
    Needs the server extra:  pip install 'edgemux[server]'
    """
    try:
        import uvicorn

        from ..server.serve import DrainingServer, create_app
    except ImportError:
        raise errors.InvalidRequestError(
            "edgemux serve needs the server extra: pip install 'edgemux[server]'"
        ) from None
    from .. import ui
    from ..memory.memory import parse_bytes
    from ..profiles import load_profile
    from ..schedule.planning import resolve_budget
    from ..schedule.runtime import LoadOptions
    from ..server.worker import Worker

    exposure = _exposure(host, api_key, allow_unauthenticated, allow_hosts, allow_origins)
    _check_capacity(max_queue, max_sequences, cells)
    budget_bytes, _ = resolve_budget(budget, load_profile(profile))
    worker = Worker(default_profile=profile, budget_bytes=budget_bytes, load=LoadOptions(n_gpu_layers, n_threads, budget),
                    max_queue=max_queue, cells=cells, max_sequences=max_sequences)  # fmt: skip

    # one line per request on stderr (the root handler is set up by the `edgemux` group)
    logging.getLogger("edgemux.access").setLevel(logging.WARNING if quiet else logging.INFO)
    fetch_needed = [n for n in worker.default_profile.model_names if not fetch.is_cached(worker.catalog.get(n))]
    for name in fetch_needed:  # visible downloads before the server starts
        fetch.pull(worker.catalog.get(name), ui.DownloadBar())
    worker.start(_print_load)
    ui.stderr.print(f"edgemux serving on http://{host}:{port}/v1 (profile {worker.default_profile.name}; Ctrl-C stops)")
    app = create_app(worker, api_key=api_key, max_body=parse_bytes(max_body), exposure=exposure)
    try:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        DrainingServer(config, worker, grace_s).run()
    finally:
        worker.stop()


def _exposure(host: str, api_key: str | None, allow_unauthenticated: bool, allow_hosts: tuple[str, ...],
              allow_origins: tuple[str, ...]) -> Exposure:  # fmt: skip
    """Who may reach the server: loopback names, the bound host and --allow-host; refuse an open bind without a key."""
    from ..server.exposure import LOOPBACK_HOSTS, Exposure, is_loopback

    if not is_loopback(host) and api_key is None and not allow_unauthenticated:
        raise errors.InvalidRequestError(
            f"--host {host} would let anyone who can reach this machine use its models: set --api-key "
            "(or EDGEMUX_API_KEY), or pass --allow-unauthenticated if that is what you want"
        )
    return Exposure(
        hosts=None if "*" in allow_hosts else (*LOOPBACK_HOSTS, *([] if is_loopback(host) else [host]), *allow_hosts),
        origins=tuple(o.rstrip("/") for o in allow_origins),
    )


def _check_capacity(max_queue: int, max_sequences: int, cells: int) -> None:
    from ..types import MAX_SAMPLES_PER_MODEL

    if not 1 <= max_queue <= 10_000:
        raise errors.InvalidRequestError("--max-queue must be between 1 and 10000")
    if not 1 <= max_sequences <= MAX_SAMPLES_PER_MODEL or cells < 64:
        raise errors.InvalidRequestError(
            f"--max-sequences must be between 1 and {MAX_SAMPLES_PER_MODEL} and --n-ctx at least 64"
        )


def _print_load(event: object) -> None:
    """The preload's progress on stderr, before the server starts."""
    from .. import ui
    from ..events import ModelLoaded, ModelLoading

    if isinstance(event, ModelLoading):
        ui.stderr.print(f"loading {event.model} …")
    elif isinstance(event, ModelLoaded):
        ui.stderr.print(f"loaded {event.model} in {event.load_s:.1f} s")
