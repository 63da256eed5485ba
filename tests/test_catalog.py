"""Manifests and profiles: every shipped file parses; bad files fail naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemux import paths
from edgemux.answers.prompts import build_prompt
from edgemux.catalog.catalog import Catalog, parse_manifest
from edgemux.errors import ConfigError, InvalidRequestError, NotFoundError
from edgemux.profiles import adhoc_profile, list_profiles, load_profile, parse_profile
from edgemux.specs import PypiSource

POOL = ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m"]


def test_every_shipped_manifest_parses() -> None:
    specs = Catalog().all()
    assert {s.name for s in specs} >= set(POOL)
    assert len(specs) >= 9  # the pool plus the popular hub models


@pytest.mark.parametrize("name", POOL)
def test_pool_models_are_fully_pinned(name: str) -> None:
    spec = Catalog().get(name)
    assert isinstance(spec.source, PypiSource)
    assert spec.file_sha256 and spec.file_nbytes
    assert all(len(w.sha256) == 64 and w.nbytes > 0 for w in spec.source.wheels)


def test_gemma_base_is_a_completion_model() -> None:
    assert Catalog().get("gemma3-270m").prompt_style == "completion"


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(NotFoundError, match="did you mean 'smollm2-135m'"):
        Catalog().get("smollm2-135")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
name: mine
family: x
architecture: llama
params_billions: 0.1
quant: Q4_0
context_length: 2048
prompt_style: chat
source: {path: /nowhere.gguf}
"""


def test_minimal_manifest(tmp_path: Path) -> None:
    spec = parse_manifest(write(tmp_path, "mine.yaml", GOOD))
    assert spec.source_kind == "local" and spec.context_length == 2048


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (GOOD + "colour: blue\n", "key colour: unknown key"),
        (GOOD.replace("context_length: 2048", "context_length: lots"), "key context_length: expected int"),
        (GOOD.replace("context_length: 2048", "context_length: true"), "key context_length: expected int"),
        (GOOD.replace("prompt_style: chat", "prompt_style: poem"), "key prompt_style"),
        (GOOD.replace("quant: Q4_0\n", ""), "key quant: required key is missing"),
        (GOOD.replace("source: {path: /nowhere.gguf}", "source: {ftp: x}"), "key source.ftp: unknown key"),
        (GOOD + "file: {sha256: abc}\n", "key file.sha256: expected 64"),
        ("name: [unclosed\n", "malformed YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_manifest_names_file_and_key(tmp_path: Path, change: str, message: str) -> None:
    path = write(tmp_path, "mine.yaml", change)
    with pytest.raises(ConfigError) as info:
        parse_manifest(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_manifest_name_must_match_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must match the file name"):
        parse_manifest(write(tmp_path, "other.yaml", GOOD))


def test_shipped_profiles_parse_and_name_known_models() -> None:
    known = set(Catalog().names())
    assert "default" in list_profiles()
    for name in list_profiles():
        profile = load_profile(name)
        assert set(profile.model_names) <= known
        assert 1 <= len(profile.models) <= 3


def test_default_profile_uses_the_pool() -> None:
    profile = load_profile("default")
    assert 2 <= len(profile.models) <= 3
    assert set(profile.model_names) <= set(POOL)
    # measured (profile build): ties go to the better validation accuracy, listed first
    assert profile.has_validation_accuracy and profile.measured["tasks"] >= 100
    accuracies = [m.validation_accuracy for m in profile.models]
    assert accuracies == sorted(accuracies, reverse=True)  # type: ignore[type-var]


PROFILE = """
name: p
kind: number
models:
  - qwen2.5-coder-0.5b
  - {name: smollm2-135m, validation_accuracy: 0.25}
sampling: {k: 5, temperature: 0.3}
"""


def test_profile_parses_shorthand_and_accuracies(tmp_path: Path) -> None:
    profile = parse_profile(write(tmp_path, "p.yaml", PROFILE))
    assert profile.model_names == ["qwen2.5-coder-0.5b", "smollm2-135m"]
    assert profile.validation_accuracy("smollm2-135m") == 0.25
    assert profile.tokens_per_sample == {}  # not measured: the cheapest policy keeps the profile's order
    lengths = parse_profile(write(tmp_path, "q.yaml", PROFILE.replace("0.25}", "0.25, tokens_per_sample: 80}")))
    assert lengths.tokens_per_sample == {"smollm2-135m": 80.0}
    assert (profile.sampling.k, profile.sampling.temperature) == (5, 0.3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (PROFILE.replace("k: 5", "k: 0"), "k must be between 1"),
        (PROFILE.replace("temperature: 0.3", "temperature: -1"), "temperature must be between 0 and 5"),
        (PROFILE.replace("k: 5", "beam: 5"), "key sampling.beam: unknown key"),
        (PROFILE.replace("kind: number", "kind: essay"), "key kind: expected one of"),
        (PROFILE.replace("0.25", "25"), "expected a share between 0 and 1"),
        (PROFILE.replace("0.25}", "0.25, tokens_per_sample: 0}"), "tokens_per_sample: expected a positive number"),
        (PROFILE.replace("0.25}", "0.25, tokens_per_sample: many}"), "tokens_per_sample: expected float"),
        (PROFILE.replace("- qwen2.5-coder-0.5b", "- smollm2-135m"), "named twice"),
        (PROFILE.replace("name: p", "name: p\n  bad: indent"), "malformed YAML"),
    ],
)
def test_bad_profiles(tmp_path: Path, change: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_profile(write(tmp_path, "p.yaml", change))


def test_unknown_profile_suggests() -> None:
    with pytest.raises(NotFoundError, match="did you mean 'default'"):
        load_profile("defualt")


def test_user_profiles_shadow_shipped(home: Path) -> None:
    paths.user_profiles().mkdir(parents=True)
    (paths.user_profiles() / "default.yaml").write_text(PROFILE.replace("name: p", "name: default"))
    assert load_profile("default").sampling.k == 5


def test_overrides_are_validated() -> None:
    profile = load_profile("tiny")
    assert profile.with_overrides(sampling={"k": 7, "seed": None}).sampling.k == 7
    with pytest.raises(InvalidRequestError, match="k must be between 1 and 64"):
        profile.with_overrides(sampling={"k": 10_000})
    with pytest.raises(InvalidRequestError, match="temperature"):
        profile.with_overrides(sampling={"temperature": -0.5})


def test_another_kind_drops_the_profiles_instruction() -> None:
    # `edgemux ask -c …` with the numeric default profile must not ask for "a number in \boxed{}"
    profile = load_profile("default")
    assert profile.instruction is not None and "boxed" in profile.instruction
    assert profile.with_overrides(kind="number").instruction == profile.instruction
    choice = profile.with_overrides(kind="choice")
    prompt = build_prompt("Which is a gas?\nA. iron\nB. steam", "choice", "chat", choice.instruction, None)
    assert "boxed" not in str(prompt) and "Answer: X" in str(prompt)


def test_adhoc_profile_rejects_duplicates() -> None:
    with pytest.raises(InvalidRequestError, match="named twice"):
        adhoc_profile(["smollm2-135m", "smollm2-135m"])
