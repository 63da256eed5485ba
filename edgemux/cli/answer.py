"""`edgemux ask` and `edgemux plan`: answer a question; plan the memory first."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from .. import errors
from ..catalog import fetch
from ..decide.confidence import VOTES
from ..schedule.scheduler import DEFAULT_POLICY, POLICIES, STOP_RULES
from ..types import MuxResult
from .common import ABSTAIN_EXIT, NO_ANSWER_EXIT, budget_option, chosen_profile, cli, gpu_layers_option, profile_options


@cli.command()
@click.argument("question")
@profile_options
@gpu_layers_option
@click.option("--threads", "n_threads", type=int, default=None, help="CPU threads [one per core]")
@budget_option
@click.option("--policy", type=click.Choice(POLICIES), default=DEFAULT_POLICY, show_default=True,
              help="priority: one model at a time, the tie-break favourite first; cheapest: the member with the "
                   "shortest samples (measured, the profile's tokens_per_sample) draws 2, every other member 1, then "
                   "the rest, so a stop rule can end the question before long samples start; staged: the favourite's "
                   "k, then the others one at a time; interleave: all at once, round-robin")  # fmt: skip
@click.option("--early-stop/--no-early-stop", default=True, show_default=True,
              help="stop samples as soon as they can no longer change the answer")  # fmt: skip
@click.option("--stop-rule", type=click.Choice(STOP_RULES), default=None,
              help="decision: stop what cannot change winner, answer or confidence; answer: also stop once the "
                   "answer is settled (confidence becomes a lower bound); confident: also stop once a finished "
                   "sample is sure by its member's calibrated bar and gives the current answer; agree: also stop "
                   "once finished samples agree on the current answer (the profile's need/dissent, else 3 with at "
                   "most 1 dissenting). The last two save samples and may change a few answers (RESULTS) [the "
                   "profile's, else decision]")  # fmt: skip
@click.option("--trace-kill/--no-trace-kill", default=None,
              help="stop a running sample once the mean token confidence of its last tokens (the profile's window) falls below its "
                   "member's floor (fitted on validation runs); a killed sample does not vote (DeepConf's online "
                   "filter) [the profile's: on where it has floors]")  # fmt: skip
@click.option("--choice", "-c", "choices", multiple=True,
              help="a choice of a multiple-choice question (repeat: A, B, C, …); implies --kind choice")  # fmt: skip
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
              help="below this confidence (share of the winner's samples agreeing) say 'not sure' and exit 10 [the profile's abstain_below]")  # fmt: skip
@click.option("--similarity", type=click.Choice(["lexical", "embedding"]), default=None,
              help="open answers: lexical (word overlap, rapidfuzz) or embedding (a pool model through llama.cpp) "
                   "[the profile's, else lexical]")  # fmt: skip
@click.option("--vote", type=click.Choice(VOTES), default=None,
              help="count: samples agreeing (SLM-MUX); weighted: each sample weighed by its token confidence "
                   "(CISC); filtered: only the most confident samples vote (DeepConf). Weighted votes draw every "
                   "sample (no early stop) [the profile's, else count]")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print the whole result as JSON on stdout")
@click.option("--explain", is_flag=True, help="print the vote table on stderr after the answer")
@click.option("--quiet", "-q", is_flag=True, help="no progress or live view; only the answer")
def ask(question: str, profile: str, models: str | None, kind: str | None, n_ctx: int | None, n_gpu_layers: int,
        n_threads: int | None, budget: str | None, policy: str, early_stop: bool, stop_rule: str | None,
        trace_kill: bool | None, choices: tuple[str, ...], min_confidence: float | None, similarity: str | None, vote: str | None,
        as_json: bool, explain: bool, quiet: bool,
        **sampling: Any) -> None:  # fmt: skip
    """Answer QUESTION with the profile's models (use - to read it from stdin).

    Each member (a model with a strategy: MODEL or MODEL:pot) draws k samples; the member whose own samples
    agree most wins, and its majority answer is printed on stdout. The live view on stderr shows every
    member's samples as they finish, then how often answers that confident were right on the profile's
    validation runs. With --min-confidence (or the profile's abstain_below), a less confident answer is not
    printed: edgemux says it is not sure, gives its best guess and the vote on stderr, and exits 10.

    \b
    Any question: the default profile's kind is auto — choices make it multiple choice, a computation
    (digits, LaTeX, "how many") a numeric answer, anything else an answer in words, printed whole, whose
    samples agree when they say the same thing (similar answers cluster; confidence is the largest
    cluster's share). --json says which kind was used and why; --kind overrides it.

    
    Multiple choice: edgemux ask --profile arc "Which gas do plants take in?" -c oxygen -c "carbon dioxide"
    Open:            edgemux ask "Why is the sky blue?"
    """
    from .. import ui
    from ..schedule.runtime import LoadOptions, Mux

    if question == "-":
        question = sys.stdin.read()
    if choices and len(choices) < 2:
        raise errors.InvalidRequestError("give at least two --choice options, or none")
    chosen = chosen_profile(
        profile, models, kind or ("choice" if choices else None), n_ctx, sampling, any_question=True
    )
    if not question.strip():
        raise errors.InvalidRequestError("the question is empty; pass it as an argument or use - to read stdin")
    if similarity is not None:
        chosen = dataclasses.replace(chosen, similarity=similarity)
    if vote is not None:
        chosen = dataclasses.replace(chosen, vote=dataclasses.replace(chosen.vote, vote=vote))
    progress = fetch.NullProgress if quiet else ui.DownloadBar
    options = LoadOptions(n_gpu_layers, n_threads, budget, policy, early_stop, stop_rule, trace_kill)
    with Mux(chosen, load=options, fetch_progress=progress) as mux:
        mux.pull()
        events = mux.stream(question, choices=choices or None, min_confidence=min_confidence)
        result = ui.follow(events, chosen.member_names, live=ui.stderr.is_terminal, quiet=quiet)
    _report(result, as_json=as_json, explain=explain, quiet=quiet)


def _report(result: MuxResult, *, as_json: bool, explain: bool, quiet: bool) -> None:
    """Print the answer on stdout and the vote on stderr; exit 10 when abstaining, 8 without an answer."""
    from .. import ui

    for member, why in result.failures.items():  # a remote member that did not answer: the others decided
        click.echo(f"edgemux: {member} failed: {why}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    elif result.answer is not None and not result.abstained:
        # an open answer is the winning cluster's most central reply, whole; other kinds print the answer
        click.echo(result.text.strip() if result.kind == "open" else result.answer)
    if result.abstained:
        click.echo(
            f"edgemux: not sure: best guess {result.answer} from {result.decision.winner}, confidence "
            f"{result.decision.confidence:.2f} < {result.min_confidence:g}"
            + (f" ({result.calibration_text})" if result.calibration_text else ""),
            err=True,
        )
        ui.stderr.print(ui.vote_table(result))
        sys.exit(ABSTAIN_EXIT)
    if result.calibration_text and not quiet:
        ui.stderr.print(f"[dim]{result.calibration_text}[/]", soft_wrap=True)
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
    from .. import ui
    from ..schedule.planning import plan_profile, resolve_budget

    chosen = chosen_profile(profile, models, kind, n_ctx, sampling)
    budget_bytes, source = resolve_budget(budget, chosen)
    result = plan_profile(chosen, budget_bytes, n_gpu_layers)
    if as_json:
        click.echo(json.dumps(ui.plan_dict(result, chosen, source), indent=2))
    else:
        ui.stdout.print(ui.plan_table(result, chosen, source))
    if not result.fits:
        raise errors.BudgetError(result.advice)
