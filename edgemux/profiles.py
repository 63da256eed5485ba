"""Selection profiles: ``profiles/*.yaml`` (shipped) and ``$EDGEMUX_HOME/profiles/*.yaml`` say which models
answer together, with which sampling settings, task kind and prompt, and how to break ties."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import paths
from .answers.strategies import Member, parse_member
from .decide.confidence import VoteRule
from .decide.stoprules import STOP_RULES, Agreement, ConfidenceBars, TraceKill
from .errors import ConfigError, InvalidRequestError, NotFoundError
from .types import ASK_KINDS, Sampling
from .yamlfile import Section, read_mapping

__all__ = ["Profile", "ProfileModel", "curve_path", "list_profiles", "load_profile"]

_TOP_KEYS = frozenset(
    {
        "name",
        "description",
        "kind",
        "models",
        "sampling",
        "prompt",
        "n_ctx",
        "budget",
        "notes",
        "measured",
        "abstain_below",
        "similarity",
        "vote",
        "stop",
        "kill",
    }
)


@dataclass(frozen=True)
class ProfileModel:
    """One member of a profile: ``name`` is ``model`` or ``model:strategy`` (members.py)."""

    name: str
    validation_accuracy: float | None = None  # measured on validation data; breaks ties between models
    resident: bool = False  # keep loaded (never evicted) once preloaded
    tokens_per_sample: float | None = None  # measured mean length of one sample; the ``cheapest`` policy's order


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    models: tuple[ProfileModel, ...]
    sampling: Sampling = field(default_factory=Sampling)
    instruction: str | None = None  # the user turn for chat models, with {question}
    system: str | None = None
    n_ctx: int = 4096  # context of one sample (prompt + answer); the k samples share the prompt's cells
    budget: str | None = None  # e.g. "3GiB": the most memory the resident models may hold
    description: str = ""
    path: Path | None = None
    measured: dict[str, Any] = field(default_factory=dict)  # what `profile build` measured (informational)
    abstain_below: float | None = None  # below this confidence `ask` says it is not sure (exit 10)
    vote: VoteRule = field(default_factory=VoteRule)  # how a member's samples are weighed (confidence.py)
    similarity: str = "lexical"  # open answers: how two answers are compared (opentext.MEASURES)
    stop_rule: str | None = None  # the early-stop rule `ask` uses unless told (stoprules.STOP_RULES)
    bars: ConfidenceBars | None = None  # the members' bars of the confident stop rule (stoprules.py)
    agreement: Agreement | None = None  # the agree stop rule's setting, when the profile chose it
    kill: TraceKill | None = None  # trace kill's floors per member, when the profile build chose it

    @property
    def member_names(self) -> list[str]:
        """The voters, in profile order."""
        return [m.name for m in self.models]

    @property
    def members(self) -> list[Member]:
        return [parse_member(m.name) for m in self.models]

    @property
    def model_names(self) -> list[str]:
        """The distinct models to load, in profile order (a model that serves two members once)."""
        return list(dict.fromkeys(m.model for m in self.members))

    @property
    def numeric_kind(self) -> str:
        """What an ``auto`` profile answers computations as: the kind its runs measured (number or math)."""
        kind = self.measured.get("kind")
        return kind if kind in ("number", "math") else "number"

    def for_question(self, question: str, choices: Sequence[str] | None) -> tuple[Profile, str]:
        """An ``auto`` profile made concrete for one question, and why (see ``autokind``); members that
        answer with programs sit out open questions. Any other profile is itself."""
        if self.kind != "auto":
            return self, ""
        from .answers.autokind import resolve_kind

        kind, why = resolve_kind(question, choices, self.numeric_kind)
        concrete = self.with_overrides(kind=kind)
        if kind == "open":
            if not concrete.words_members():
                raise InvalidRequestError(
                    f"profile {self.name!r} has only program members ({', '.join(self.member_names)}); open "
                    "questions need a member that answers in words: use --kind or --models"
                )
            concrete = replace(concrete, models=concrete.words_members())
        return concrete, why

    def words_members(self) -> tuple[ProfileModel, ...]:
        """The members that answer in words (what open questions are asked of: programs sit them out)."""
        return tuple(m for m in self.models if not parse_member(m.name).runs_programs)

    @property
    def has_validation_accuracy(self) -> bool:
        return all(m.validation_accuracy is not None for m in self.models)

    @property
    def tokens_per_sample(self) -> dict[str, float]:
        """The members' measured sample lengths, where the profile has them."""
        return {m.name: m.tokens_per_sample for m in self.models if m.tokens_per_sample is not None}

    def validation_accuracy(self, model: str) -> float | None:
        return next((m.validation_accuracy for m in self.models if m.name == model), None)

    def with_overrides(
        self, *, sampling: dict[str, Any] | None = None, kind: str | None = None, n_ctx: int | None = None
    ) -> Profile:
        """A copy with some sampling settings, the task kind or the context replaced (CLI flags, API arguments)."""
        new_sampling = replace(self.sampling, **{k: v for k, v in (sampling or {}).items() if v is not None})
        new_kind = kind or self.kind
        if new_kind not in ASK_KINDS:
            raise InvalidRequestError(f"unknown task kind {new_kind!r}; use one of {', '.join(ASK_KINDS)}")
        new_ctx = n_ctx or self.n_ctx
        if new_ctx < 16:
            raise InvalidRequestError(f"n_ctx must be at least 16 tokens, got {new_ctx}")
        # The profile's instruction asks for its own kind's answer format ("a number in \boxed{}"); another
        # kind gets that kind's default instruction, or its answers could not be extracted.
        measured_kind = self.numeric_kind if self.kind == "auto" else self.kind
        instruction = self.instruction if new_kind in (self.kind, measured_kind) else None
        return replace(self, sampling=new_sampling.validated(), kind=new_kind, n_ctx=new_ctx, instruction=instruction)


def adhoc_profile(models: list[str], kind: str = "number", sampling: Sampling | None = None) -> Profile:
    """A profile for an ad-hoc model list (``--models a,b,c``): profile order is the order given."""
    models = [parse_member(m).name for m in models]  # an unknown strategy fails here, naming the strategies
    _check_unique(models, "--models")
    if not models:
        raise InvalidRequestError("--models needs at least one model name")
    return Profile(
        name="adhoc", kind=kind, models=tuple(ProfileModel(m) for m in models), sampling=sampling or Sampling()
    )


def _check_unique(names: list[str], where: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise InvalidRequestError(f"{where}: member {name!r} is named twice")
        seen.add(name)


def parse_profile(path: Path) -> Profile:
    top = Section(read_mapping(path), path).only(_TOP_KEYS)
    kind = top.get("kind", str)
    if kind not in ASK_KINDS:
        raise ConfigError(f"{top.where('kind')}: expected one of {', '.join(ASK_KINDS)}, got {kind!r}")
    models = []
    for i, item in enumerate(top.get("models", list)):
        if isinstance(item, str):
            models.append(ProfileModel(item))
            continue
        if not isinstance(item, dict):
            raise ConfigError(f"{top.where(f'models[{i}]')}: expected a model name or a mapping")
        entry = Section(item, path, f"models[{i}].").only(
            {"name", "validation_accuracy", "resident", "tokens_per_sample"}
        )
        accuracy = entry.get("validation_accuracy", float, None)
        if accuracy is not None and not 0.0 <= accuracy <= 1.0:
            raise ConfigError(f"{entry.where('validation_accuracy')}: expected a share between 0 and 1, got {accuracy}")
        length = entry.get("tokens_per_sample", float, None)
        if length is not None and not length > 0:
            raise ConfigError(f"{entry.where('tokens_per_sample')}: expected a positive number of tokens, got {length}")
        models.append(ProfileModel(entry.get("name", str), accuracy, entry.get("resident", bool, False), length))
    if not models:
        raise ConfigError(f"{top.where('models')}: a profile needs at least one model")
    try:
        models = [replace(m, name=parse_member(m.name).name) for m in models]
        _check_unique([m.name for m in models], f"{path}: models")
    except InvalidRequestError as e:
        raise ConfigError(str(e)) from None
    sampling = Sampling()
    if "sampling" in top.data:
        section = top.section("sampling").only(frozenset(Sampling.field_names()))
        values: dict[str, Any] = {}
        for f in Sampling.field_names():
            if f in section.data:
                values[f] = section.get(f, float if isinstance(getattr(sampling, f), float) else int)
        try:
            sampling = replace(sampling, **values).validated()
        except InvalidRequestError as e:
            raise ConfigError(f"{path}: sampling: {e}") from None
    prompt = top.section("prompt").only({"instruction", "system"}) if "prompt" in top.data else None
    return Profile(
        name=top.get("name", str, path.stem),
        kind=kind,
        models=tuple(models),
        sampling=sampling,
        instruction=prompt.get("instruction", str, None) if prompt else None,
        system=prompt.get("system", str, None) if prompt else None,
        n_ctx=top.get("n_ctx", int, 4096),
        budget=str(top.get("budget", (str, int), None)) if top.data.get("budget") is not None else None,
        description=top.get("description", str, ""),
        path=path,
        measured=top.get("measured", dict, {}),
        abstain_below=_share(top, "abstain_below"),
        similarity=_similarity(top),
        vote=_vote(top),
        **_stop(top, [m.name for m in models]),
        **_kill(top, [m.name for m in models]),
    )


def _vote(top: Section) -> VoteRule:
    """``vote: weighted`` or ``vote: {rule: weighted, measure: lowest_group, window: 16, temperature: 0.5}``."""
    if "vote" not in top.data:
        return VoteRule()
    raw = top.data["vote"]
    section = Section({"rule": raw}, top.path, "vote.") if isinstance(raw, str) else top.section("vote")
    section = section.only({"rule", "measure", "window", "temperature", "keep"})
    defaults = VoteRule()
    try:
        return VoteRule(section.get("rule", str), section.get("measure", str, defaults.measure),
                        section.get("window", int, defaults.window),
                        float(section.get("temperature", (int, float), defaults.temperature)),
                        float(section.get("keep", (int, float), defaults.keep)))  # fmt: skip
    except InvalidRequestError as e:
        raise ConfigError(f"{top.where('vote')}: {e}") from None


def _stop(top: Section, members: list[str]) -> dict[str, Any]:
    """``stop: {rule: confident, measure: tail, window: 32, precision: 0.8, bars: {member: score, …}}`` or
    ``stop: {rule: agree, need: 3, dissent: 1}``."""
    if "stop" not in top.data:
        return {}
    section = top.section("stop").only({"rule", "measure", "window", "precision", "bars", "need", "dissent"})
    rule = section.get("rule", str)
    if rule not in STOP_RULES:
        raise ConfigError(f"{section.where('rule')}: expected one of {', '.join(STOP_RULES)}, got {rule!r}")
    if rule == "agree":
        defaults = Agreement()
        try:
            agreement = Agreement(
                section.get("need", int, defaults.need), section.get("dissent", int, defaults.dissent)
            )
        except ValueError as e:
            raise ConfigError(f"{top.where('stop')}: {e}") from None
        return {"stop_rule": rule, "agreement": agreement}
    if "bars" not in section.data:
        if rule == "confident":
            raise ConfigError(
                f"{section.where('bars')}: the confident rule needs each member's bar (profile build fits them)"
            )
        return {"stop_rule": rule}
    bars = _per_member(section.section("bars"), members)
    defaults_bars = ConfidenceBars()
    try:
        fitted = ConfidenceBars(section.get("measure", str, defaults_bars.measure),
                                section.get("window", int, defaults_bars.window),
                                float(section.get("precision", (int, float), defaults_bars.precision)), bars)  # fmt: skip
    except ValueError as e:
        raise ConfigError(f"{top.where('stop')}: {e}") from None
    return {"stop_rule": rule, "bars": fitted}


def _kill(top: Section, members: list[str]) -> dict[str, Any]:
    """``kill: {window: 16, percentile: 10, floors: {member: confidence, …}}``: trace kill's floors."""
    if "kill" not in top.data:
        return {}
    section = top.section("kill").only({"window", "percentile", "floors"})
    floors = _per_member(section.section("floors"), members)
    defaults = TraceKill()
    try:
        kill = TraceKill(section.get("window", int, defaults.window),
                         float(section.get("percentile", (int, float), defaults.percentile)), floors)  # fmt: skip
    except ValueError as e:
        raise ConfigError(f"{top.where('kill')}: {e}") from None
    return {"kill": kill}


def _per_member(raw: Section, members: list[str]) -> dict[str, float]:
    """A mapping of members to numbers (bars, floors); a name that is not a member is an error."""
    values = {}
    for member in raw.data:
        if member not in members:
            raise ConfigError(f"{raw.where(member)}: not a member of this profile ({', '.join(members)})")
        values[str(member)] = float(raw.get(member, (int, float)))
    return values


def _similarity(top: Section) -> str:
    from .answers.opentext import MEASURES

    value = top.get("similarity", str, "lexical")
    if value not in MEASURES:
        raise ConfigError(f"{top.where('similarity')}: expected one of {', '.join(MEASURES)}, got {value!r}")
    return value


def _share(top: Section, key: str) -> float | None:
    value: float | None = top.get(key, (int, float), None)
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{top.where(key)}: expected a confidence between 0 and 1, got {value}")
    return None if value is None else float(value)


def _profile_files(user: Path | None = None, shipped: Path | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in (shipped or paths.shipped_profiles(), user or paths.user_profiles()):  # user wins
        if directory.is_dir():
            found.update({p.stem: p for p in sorted(directory.glob("*.yaml"))})
    return found


def list_profiles() -> list[str]:
    return sorted(_profile_files())


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (user profiles shadow shipped ones) or by path to a YAML file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return parse_profile(candidate)
    files = _profile_files()
    if name_or_path not in files:
        raise NotFoundError("profile", name_or_path, files, hint="or give a path to a profile .yaml")
    return parse_profile(files[name_or_path])


def curve_path(profile_path: Path) -> Path:
    """Where a built profile's curve lives: ``NAME.curve.json`` beside ``NAME.yaml`` (the profile stays
    short enough to read; the curve is what the search measured, for plots and reports)."""
    return profile_path.with_name(profile_path.stem + ".curve.json")
