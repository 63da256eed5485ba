"""`edgemux collect`, `search`, `profile build|show` and `profiles`: from validation runs to a profile."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import errors
from ..catalog import fetch
from .common import budget_option, chosen_profile, cli, gpu_layers_option, profile_options, run_programs_option

if TYPE_CHECKING:
    from ..decide.calibration import Calibrated
    from ..profiles import Profile
    from ..selection.build import Candidate
    from ..selection.search import RunTable
    from ..selection.stopsearch import StopChoice


@cli.command()
@click.option("--tasks", "tasks_path", required=True, type=click.Path(path_type=Path),
              help="JSONL task file: id, question, answer and optional choices per line")  # fmt: skip
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
    from .. import ui
    from ..schedule.runtime import LoadOptions, Mux
    from ..selection.collect import plan_collection, run_collection
    from ..selection.tasks import guess_kind, load_tasks

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
@click.option("--runs", "runs_path", required=True, type=click.Path(path_type=Path),
              help="a runs file from `edgemux collect` (.jsonl or .jsonl.gz); several, one per strategy: a.jsonl,b.jsonl")  # fmt: skip
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
@run_programs_option
@click.option("--markdown", is_flag=True, help="print the tables as Markdown (for a README or an issue)")
@click.option("--json", "as_json", is_flag=True, help="print everything as JSON on stdout")
def search(runs_path: Path, max_models: int, lam: float, repeats: int, seed: int, top: int, no_rescore: bool,
           run_programs: bool, markdown: bool, as_json: bool) -> None:  # fmt: skip
    """Which members to combine and with how many samples, judged on collected runs (no generation).

    A member is a model with a strategy (qwen2.5-coder-1.5b:pot); runs of several strategies, collected
    into separate files, are searched together with --runs a.jsonl,b.jsonl. Per member: accuracy of one sample, of its majority vote, how often it is confidently wrong. Per subset
    of 2..--max-models models: UnionAcc, Contradiction and the objective (the SLM-MUX paper's search),
    next to the simulated MUX accuracy on the same samples for every k up to the collected one, the pooled
    vote (Agent Forest) and the oracle. Accuracies are percentages.
    """
    from .. import ui
    from ..selection.runs import read_runs_files
    from ..selection.search import build_table
    from ..selection.search import search as run_search

    if repeats < 1:
        raise errors.InvalidRequestError("--repeats must be at least 1")
    table = build_table(read_runs_files(runs_path), rescore=not no_rescore, run_programs=run_programs)
    result = run_search(table, max_models=max_models, lam=lam, repeats=repeats, seed=seed)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    if markdown:
        from ..measure.report import search_markdown

        click.echo(search_markdown(result, top=top), nl=False)
        return
    for why, n in table.left_out.items():
        ui.stderr.print(f"left out: {n} {why}")
    console = ui.wide_stdout()
    for t in ui.search_tables(result, top):
        console.print(t)


@cli.group("profile")
def profile_group() -> None:
    """Build a selection profile from collected runs, or show one."""


@profile_group.command("build")
@click.option(
    "--runs", "runs_path", required=True, type=click.Path(path_type=Path),
    help="a runs file from `edgemux collect`; several, one per strategy: a.jsonl,b.jsonl",
)  # fmt: skip
@click.option("--name", required=True, help="the profile's name (what --profile takes)")
@budget_option
@click.option("--max-models", type=int, default=3, show_default=True, help="largest subset considered")
@click.option("--tolerance", type=float, default=1.0, show_default=True,
              help="take the cheapest setup within this many accuracy points of the best")  # fmt: skip
@click.option("--allow-single", is_flag=True, help="let a single model with self-consistency be chosen")
@click.option(
    "-m", "--models", help="comma-separated members (MODEL or MODEL:STRATEGY): keep exactly these, choose only k"
)
@run_programs_option
@click.option(
    "--lambda", "lam", type=float, default=1.0, show_default=True, help="weight of Contradiction in the objective"
)
@click.option("--repeats", type=int, default=20, show_default=True, help="draws of k' of the k samples for smaller k'")
@click.option("--description", help="one line saying what the profile is for")
@click.option("--votes", "vote_search", type=click.Choice(["search", "count"]), default="search", show_default=True,
              help="search: also score each setup under the weighted and filtered votes (runs with token "
                   "signals), each fitted on one half of the questions and scored on the other; count: only the "
                   "count rule")  # fmt: skip
@click.option("--stops", "stop_search", type=click.Choice(["search", "exact"]), default="search", show_default=True,
              help="search: also replay the early stop rules on the runs (agree; confident where the runs have "
                   "token signals) and write the cheapest as the profile's rule when it saves tokens within 1 "
                   "point of drawing every sample; exact: keep the exact rule")  # fmt: skip
@click.option("--auto", "auto_kind", is_flag=True,
              help="write kind: auto — the profile answers any question; the runs' kind is what computations "
                   "are answered as (numeric runs only)")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), help="where to write it [$EDGEMUX_HOME/profiles/NAME.yaml]")
@click.option("--force", is_flag=True, help="replace an existing profile file")
def profile_build(runs_path: Path, name: str, budget: str | None, max_models: int, tolerance: float, allow_single: bool,
                  models: str | None, run_programs: bool, lam: float, repeats: int, description: str | None,
                  vote_search: str, stop_search: str, auto_kind: bool, out: Path | None, force: bool) -> None:  # fmt: skip
    """Pick the models, k and vote from collected runs and write a profile `edgemux ask --profile NAME` uses.

    Every (subset, k) the search scores is a candidate; those that do not fit the memory budget are
    dropped, and the cheapest one within --tolerance points of the most accurate is chosen. The profile
    records the models with their measured accuracies (the tie-break order), k, the sampling settings and
    prompt of the runs, and what was measured, including how it compares with the best single model and
    the pooled vote. --models fixes the models (say, a set chosen on other task sets too) and leaves only k
    to choose. Runs recorded with token signals also put every setup under the confidence votes (weighted,
    filtered; see `ask --vote`), each scored on questions it was not fitted on; a vote is chosen only when
    it is more accurate, or as accurate for fewer samples, than counting.
    """
    from ..memory.memory import parse_bytes
    from ..profiles import curve_path
    from ..schedule.planning import default_budget_bytes
    from ..selection.build import candidates, choose, curve_document, profile_document, write_profile
    from ..selection.runs import read_runs_files
    from ..selection.search import build_table
    from ..selection.search import search as run_search
    from ..selection.votesearch import vote_candidates

    budget_bytes = parse_bytes(budget) if budget else default_budget_bytes()
    target = _new_profile_path(name, out, force)
    runs_names = _runs_names(runs_path)
    table = build_table(read_runs_files(runs_path), run_programs=run_programs)
    fixed = _fixed_members(models, table.models, runs_names)
    if fixed is not None:
        max_models = max(max_models, len(fixed))
    if auto_kind and table.kind not in ("number", "math"):
        raise errors.InvalidRequestError(f"--auto needs numeric runs (number or math); these are {table.kind}")
    result = run_search(table, max_models=max_models, lam=lam, repeats=repeats)
    votes = (
        vote_candidates(table, [s.models for s in result.subsets], repeats=repeats) if vote_search == "search" else []
    )
    found = candidates(result, budget_bytes, allow_single=allow_single, only=fixed, votes=votes)
    chosen, why = choose(found, tolerance)
    if fixed is not None:
        why += " (models fixed by --models)"
    calibration, stop = _calibration_and_stop(table, chosen, stop_search)
    text = profile_document(
        name, chosen, why, result, found, runs=runs_names, budget=budget, description=description,
        calibration=calibration, auto=auto_kind, stop=stop,
    )  # fmt: skip
    write_profile(curve_path(target), curve_document(found), force=True)
    write_profile(target, text, force=force)
    click.echo(f"wrote {target} (and its curve, {curve_path(target).name})\n{why}", err=True)


@profile_group.command("calibrate")
@click.argument("name")
@click.option("--runs", "runs_path", required=True, type=click.Path(path_type=Path),
              help="runs of exactly this profile's members and settings (`edgemux collect --profile NAME`)")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), help="where to write it [the profile's own file]")
def profile_calibrate(name: str, runs_path: Path, out: Path | None) -> None:
    """Measure a hand-written profile's calibration on validation runs and add it to the profile.

    How often its answers were right at each level of agreement, for its members at its k, from runs
    collected with its own settings; `ask` then says it with every answer. A profile built by `edgemux
    profile build` has it already (rebuild it instead).

    \b
    Example:
      edgemux collect --tasks dev.jsonl --profile mine --limit 100 --out runs/mine.jsonl
      edgemux profile calibrate mine --runs runs/mine.jsonl
    """
    from ..decide.calibration import calibration_block
    from ..profiles import load_profile
    from ..selection.build import write_profile
    from ..selection.calibrate import measure
    from ..selection.runs import read_runs_files
    from ..selection.search import build_table

    profile = load_profile(name)
    assert profile.path is not None
    if profile.measured:
        raise errors.InvalidRequestError(
            f"{profile.path} has a measured section already (built by `edgemux profile build`?): rebuild it "
            "from its runs instead"
        )
    table = build_table(read_runs_files(runs_path))
    _check_same_setup(profile, table, runs_path)
    levels = measure(table, profile.member_names, profile.sampling.k)
    if profile.vote.vote != "count":
        from ..selection.votesearch import has_signals

        if not has_signals(table, [table.models.index(m) for m in profile.member_names]):
            raise errors.InvalidRequestError(
                f"{name} votes by confidence ({profile.vote.vote}) but {runs_path} has samples without token "
                "signals: collect them again with this version (`edgemux collect` records them)"
            )
        levels += measure(table, profile.member_names, profile.sampling.k, profile.vote)
    runs_names = _runs_names(runs_path)
    text = (
        profile.path.read_text(encoding="utf-8").rstrip("\n")
        + "\n"
        + calibration_block(levels, runs=runs_names, tasks=len(table.tasks))
    )
    target = out or profile.path
    write_profile(target, text, force=True)
    click.echo(f"wrote {target}: calibration on {len(table.tasks)} tasks of {runs_names}", err=True)


def _new_profile_path(name: str, out: Path | None, force: bool) -> Path:
    """Where `profile build` writes NAME: --out, else the user's profiles; an existing file needs --force."""
    from .. import paths

    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise errors.InvalidRequestError(f"{name!r} is not a valid profile name (letters, digits, '-', '_', '.')")
    target = out or paths.user_profiles() / f"{name}.yaml"
    if target.exists() and not force:
        raise errors.InvalidRequestError(f"{target} exists already; pass --force to replace it")
    return target


def _calibration_and_stop(table: RunTable, chosen: Candidate, stop_search: str) -> tuple[list[Calibrated], StopChoice]:
    """The chosen setup's calibration (under its vote too) and, under counting, its early stop rule and
    trace kill."""
    from ..selection.calibrate import measure
    from ..selection.stopsearch import StopChoice, choose_stops

    calibration = measure(table, chosen.models, chosen.k)
    if chosen.vote.vote != "count":
        calibration += measure(table, chosen.models, chosen.k, chosen.vote)
        return calibration, StopChoice()  # a confidence vote draws every sample: no early stop to choose
    return calibration, choose_stops(table, chosen.models, chosen.k) if stop_search == "search" else StopChoice()


def _runs_names(runs_path: Path) -> str:
    """The runs files' names, as a profile records them (the paths are the builder's)."""
    return ",".join(Path(p).name for p in str(runs_path).split(",") if p.strip())


def _fixed_members(models: str | None, recorded: list[str], runs_names: str) -> list[str] | None:
    """The members --models fixes, each one the runs have recorded; None without --models."""
    from ..answers.strategies import parse_members

    if models is None:
        return None
    fixed = [m.name for m in parse_members([m for m in models.split(",") if m.strip()])]
    if not fixed:
        raise errors.InvalidRequestError("--models needs members, each once, separated by commas")
    for m in fixed:
        if m not in recorded:
            raise errors.NotFoundError("member", m, recorded, f"--models names a member {runs_names} has not run")
    return fixed


def _check_same_setup(profile: Profile, table: RunTable, runs_path: Path) -> None:
    """Calibration is only of what `ask` runs: the profile's members, kind, k and sampling settings."""
    missing = [m for m in profile.member_names if m not in table.models]
    if missing:
        raise errors.InvalidRequestError(f"{runs_path} has no samples of {', '.join(missing)}")
    if table.kind != profile.kind or table.k < profile.sampling.k:
        raise errors.InvalidRequestError(
            f"{runs_path} holds {table.kind} answers with k={table.k}; {profile.name} asks {profile.kind} with "
            f"k={profile.sampling.k}"
        )
    mine = {f: getattr(profile.sampling, f) for f in profile.sampling.field_names() if f not in ("k", "seed")}
    differ = sorted(f for f, v in mine.items() if table.settings.get(f) != v)
    if differ:
        raise errors.InvalidRequestError(
            f"{runs_path} was collected with other settings ({', '.join(f'{f}={table.settings.get(f)!r}' for f in differ)}); "
            f"collect with --profile {profile.name} so that the calibration is of what `ask` runs"
        )


@profile_group.command("show")
@click.argument("name")
@click.option(
    "--plot", "plot_path", type=click.Path(path_type=Path), help="save accuracy vs tokens per answer as a PNG"
)
@click.option("--json", "as_json", is_flag=True, help="print the profile as JSON on stdout")
def profile_show(name: str, plot_path: Path | None, as_json: bool) -> None:
    """Show a profile: its models (tie-break order), sampling, prompt, and what was measured."""
    from .. import ui
    from ..profiles import load_profile

    chosen = load_profile(name)
    if plot_path is not None:
        from ..measure.plot import plot_curve

        plot_curve(chosen, plot_path)
        click.echo(f"wrote {plot_path}", err=True)
    if as_json:
        click.echo(json.dumps(ui.profile_dict(chosen), indent=2, ensure_ascii=False))
    else:
        ui.stdout.print(ui.profile_view(chosen))


@cli.command("profiles")
def profiles_cmd() -> None:
    """List the profiles (shipped, and yours in $EDGEMUX_HOME/profiles)."""
    from ..profiles import list_profiles, load_profile

    for name in list_profiles():
        p = load_profile(name)
        click.echo(f"{name:<12} {p.kind:<7} k={p.sampling.k}  {', '.join(p.member_names)}  {p.description}")
