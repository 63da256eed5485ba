"""`edgemux eval` and `edgemux bench`: accuracy against every baseline; throughput."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from .. import errors
from ..catalog import fetch
from ..catalog.catalog import Catalog
from .common import budget_option, chosen_profile, cli, gpu_layers_option, profile_options, run_programs_option


@cli.command("eval")
@click.option("--tasks", "tasks_path", type=click.Path(path_type=Path), help="run live on this JSONL task file")
@click.option(
    "--runs", "runs_path", type=click.Path(path_type=Path),
    help="or re-score samples collected before (offline); several runs files: a.jsonl,b.jsonl",
)  # fmt: skip
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
@run_programs_option
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON on stdout")
@click.option("--quiet", "-q", is_flag=True, help="no progress")
def eval_cmd(tasks_path: Path | None, runs_path: Path | None, profile: str, models: str | None, kind: str | None,
             n_ctx: int | None, limit: int | None, shuffle_seed: int | None, out: Path | None, n_gpu_layers: int,
             n_threads: int | None, budget: str | None, no_rescore: bool, run_programs: bool, as_json: bool,
             quiet: bool, **sampling: Any) -> None:  # fmt: skip
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
    from .. import ui
    from ..measure.evaluate import score_runs
    from ..measure.live_eval import evaluate_live
    from ..measure.report import write_report
    from ..schedule.planning import estimated_bytes_of
    from ..schedule.runtime import LoadOptions, Mux
    from ..selection.runs import read_runs_files
    from ..selection.tasks import guess_kind, load_tasks

    if (tasks_path is None) == (runs_path is None):
        raise errors.InvalidRequestError("give either --tasks (run live) or --runs (re-score offline)")
    if kind is None and tasks_path is not None:
        tasks = load_tasks(tasks_path, limit=limit, shuffle_seed=shuffle_seed)
        kind = guess_kind(tasks)
    chosen = chosen_profile(profile, models, kind, n_ctx, sampling)
    source = str(tasks_path or runs_path)
    if tasks_path is None:
        assert runs_path is not None
        own_vote = {chosen.vote.vote: chosen.vote} if chosen.vote.vote != "count" else {}  # how the profile answers
        report = score_runs(read_runs_files(runs_path), chosen, k=sampling.get("k"), rescore=not no_rescore,
                            resident_bytes=estimated_bytes_of(chosen), run_programs=run_programs, stops=True,
                            votes=own_vote)  # fmt: skip
    else:
        tasks = load_tasks(tasks_path, limit=limit, shuffle_seed=shuffle_seed)
        out = out or Path("eval") / f"{chosen.name}-{tasks_path.name.split('.')[0]}"
        seed = chosen.sampling.seed or 0
        options = LoadOptions(n_gpu_layers, n_threads, budget)
        with Mux(chosen, load=options, fetch_progress=fetch.NullProgress if quiet else ui.DownloadBar) as mux:
            mux.pull()
            ui.follow_loads(mux.preload(), quiet=quiet)
            say = (lambda line: None) if quiet else ui.stderr.print
            report = evaluate_live(mux, tasks, out, seed, rescore=not no_rescore, progress=say)
    if out is not None:
        write_report(report, out, source=source)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for why, n in report.left_out.items():
            ui.stderr.print(f"left out: {n} {why}")
        ui.wide_stdout().print(ui.eval_table(report))
        ui.wide_stdout().print(ui.risk_coverage_table(report))
        if out is not None:
            ui.stderr.print(f"report: {out / 'report.md'}")


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
    from .. import ui
    from ..measure.benchmark import hardware, measure_models, run_ensemble
    from ..profiles import load_profile
    from ..schedule.runtime import LoadOptions, Mux

    k_list = [] if no_scaling else _int_list(ks)
    if repeats < 1 or prompt_tokens < 1 or gen_tokens < 2:
        raise errors.InvalidRequestError("-r and -p must be at least 1 and -n at least 2")
    if not 1 <= questions <= 5:
        raise errors.InvalidRequestError("--questions must be between 1 and 5")
    catalog = Catalog()
    names = [m.strip() for m in models.split(",") if m.strip()] if models else load_profile("default").model_names
    specs = [catalog.get(name) for name in names]  # every name is checked before anything runs
    if remote := [s.name for s in specs if s.is_remote]:
        raise errors.InvalidRequestError(f"{', '.join(remote)}: remote; `edgemux bench` times the models on this "
                                         "machine (a profile with remote members is timed by --profile)")  # fmt: skip
    paths = [fetch.pull(spec, ui.DownloadBar()) for spec in specs]
    steps = len(specs) * repeats * (2 + len(k_list)) + (questions if ensemble_profile else 0)
    ensemble = None
    with ui.steps_bar("benchmarking", steps, quiet=as_json and not ui.stderr.is_terminal) as tick:
        rows, scaling = measure_models(
            list(zip(specs, paths, strict=True)), ks=k_list, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
            repeats=repeats, n_gpu_layers=n_gpu_layers, n_threads=n_threads, tick=tick,
        )  # fmt: skip
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
