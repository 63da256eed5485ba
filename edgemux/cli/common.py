"""What every command shares: the root group (errors mapped to exit codes in one place), the shared
options, and the profile a command runs. The command modules import this; this imports none of them."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any

import click

from .. import errors
from ..answers.autokind import AUTO_RULE
from ..profiles import Profile
from ..types import ASK_KINDS, Sampling

EXIT_CODES: list[tuple[type[BaseException], int]] = [  # most specific first
    (errors.PromptTooLongError, 2),
    (errors.InvalidRequestError, 2),
    (errors.NotFoundError, 3),
    (errors.ConfigError, 4),
    (errors.ChecksumError, 5),
    (errors.FetchError, 5),
    (errors.ModelFileError, 6),
    (errors.EngineError, 7),
    (errors.BudgetError, 9),
    (errors.EdgemuxError, 1),
]
NO_ANSWER_EXIT = 8
ABSTAIN_EXIT = 10  # an answer below --min-confidence: 'not sure', the best guess on stderr


def sampling_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one flag per Sampling field (declared once in types.py); unset flags keep the profile's value."""
    for f in reversed(dataclasses.fields(Sampling)):
        flags = [f.metadata.get("flag") or "--" + f.name.replace("_", "-")]
        kind = float if isinstance(f.default, float) else int
        command = click.option(
            *flags, f.name, type=kind, default=None, help=f"{f.metadata['help']} [from the profile]"
        )(command)
    return command


# Which module defines each command: a command's module is imported when it runs (or --help lists it), so
# `edgemux ask` starts without loading the server, the search or the benchmarks.
COMMAND_MODULES = {"ask": "answer", "plan": "answer", "eval": "measure", "bench": "measure", "models": "models",
                   "collect": "profiles", "search": "profiles", "profile": "profiles", "profiles": "profiles",
                   "serve": "server"}  # fmt: skip


class _Edgemux(click.Group):
    """The root group: commands loaded on first use (``COMMAND_MODULES``), and edgemux errors mapped to a
    one-line message and an exit code, in one place."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMAND_MODULES and name not in self.commands:
            import_module(f"edgemux.cli.{COMMAND_MODULES[name]}")  # its decorators register it on this group
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.EdgemuxError as e:
            code = next(code for kind, code in EXIT_CODES if isinstance(e, kind))
            click.echo(f"edgemux: error: {e}", err=True)
            raise click.exceptions.Exit(code) from None
        except KeyboardInterrupt:
            click.echo("edgemux: interrupted", err=True)
            raise click.exceptions.Exit(130) from None


gpu_layers_option = click.option(
    "--gpu-layers",
    "n_gpu_layers",
    type=int,
    default=0,
    show_default=True,
    help="layers to offload to the GPU (-1 = all)",
)
budget_option = click.option(
    "--budget",
    help="memory the loaded models may hold, e.g. 3GiB [EDGEMUX_BUDGET, the profile's, or 80% of free memory]",
)


run_programs_option = click.option(
    "--run-programs",
    is_flag=True,
    help="run the programs of code answers again (MBPP: the reference and every sample), in the sandbox; "
    "without it a runs file is scored without executing anything",
)


def profile_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--profile, --models, --kind, --n-ctx and the sampling flags: shared by every command that runs a profile."""
    command = sampling_options(command)
    for option in reversed([
        click.option("--profile", "-p", default="default", show_default=True, help="profile name or path to a profile .yaml"),
        click.option("--models", "-m", help="comma-separated members, MODEL or MODEL:STRATEGY (cot, pot, mix): an ad-hoc ensemble instead of the profile's"),
        click.option("--kind", type=click.Choice(ASK_KINDS), help=f"how answers are extracted and compared [from the profile]; {AUTO_RULE}"),
        click.option("--n-ctx", type=int, default=None, help="context of one sample, prompt + answer [from the profile]"),
    ]):  # fmt: skip
        command = option(command)
    return command


def chosen_profile(
    profile: str,
    models: str | None,
    kind: str | None,
    n_ctx: int | None,
    sampling: dict[str, Any],
    any_question: bool = False,
) -> Profile:
    """The profile a command runs: a named one, or an ad-hoc one from --models, with flags applied.
    ``any_question`` (ask): kind auto stays auto, and is what an ad-hoc ensemble gets. Commands over task
    sets (collect, eval, bench) need one kind: an auto profile runs as its numeric kind there, and an ad-hoc
    ensemble as number unless --kind says."""
    from ..profiles import adhoc_profile, load_profile

    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    default_kind = "auto" if any_question else "number"
    base = adhoc_profile(names, kind or default_kind) if names is not None else load_profile(profile)
    chosen = base.with_overrides(sampling=sampling, kind=kind, n_ctx=n_ctx)
    if chosen.kind == "auto" and not any_question:
        chosen = chosen.with_overrides(kind=chosen.numeric_kind)
    return chosen


@click.group(cls=_Edgemux, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="log decisions (-v) and llama.cpp's own output (-vv) to stderr")
@click.version_option(package_name="edgemux")
def cli(verbose: int) -> None:
    """Run several small GGUF language models together and let them answer by the SLM-MUX rule.

    \b
    Examples:
      edgemux ask "A pen costs $2 and a book $7. What do 3 pens and 2 books cost?"
      edgemux ask --profile tiny -k 5 --json "What is 17 + 25?"
      edgemux ask --models qwen2.5-coder-1.5b:pot,qwen2.5-coder-1.5b "…"   # a program and prose vote
      echo "What is 6 * 7?" | edgemux ask -
      edgemux models list
      edgemux plan --budget 2GiB
      edgemux collect --tasks dev.jsonl --models a,b,c -k 5 --out runs/dev.jsonl
      edgemux search --runs runs/dev.jsonl && edgemux profile build --runs runs/dev.jsonl --name mine
      edgemux eval --tasks dev.jsonl --profile mine --limit 100
      edgemux bench --models smollm2-135m
      edgemux serve --profile default      # OpenAI-compatible, needs 'edgemux[server]'
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("edgemux.llama").setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)
