"""The CLI through click's CliRunner: the real SmolLM2 answering, and every bad input giving a one-line
error and the documented exit code, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgemux.cli import cli
from tests.timing import HANG_S

QUESTION = "What is 12 + 30?"


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def assert_clean_error(result: Result, code: int, message: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.usefixtures("smollm2_in_home")
def test_ask_json_with_the_real_model() -> None:
    result = invoke("ask", "--profile", "tiny", "-k", "3", "--max-tokens", "48", "--seed", "1", "--json", QUESTION)
    assert result.exit_code == 0, result.stderr  # 8 (no parsable answer) would be a failure of extraction
    data = json.loads(result.stdout)
    assert data["question"] == QUESTION and data["sampling"]["k"] == 3 and data["sampling"]["seed"] == 1
    [model] = data["models"]
    assert model["name"] == "smollm2-135m" and len(model["samples"]) == 3
    for sample in model["samples"]:
        assert sample["tokens"] <= 48
        if sample["stop_reason"] == "cancelled":  # early stop: the other samples had settled the answer
            assert sample["answer"] is None and sample["text"] == ""
        else:
            assert sample["text"] and sample["tokens"] > 0 and sample["stop_reason"] in ("eos", "length", "stop")
    assert {"answer", "winner", "confidence", "tie_break", "reason"} <= data.keys()
    assert sum(model["counts"].values()) + model["unparsable"] == 3
    # the same seed gives the same samples
    again = json.loads(
        invoke("ask", "--profile", "tiny", "-k", "3", "--max-tokens", "48", "--seed", "1", "--json", QUESTION).stdout
    )
    assert [s["text"] for s in again["models"][0]["samples"]] == [s["text"] for s in model["samples"]]


@pytest.mark.usefixtures("smollm2_in_home")
def test_ask_prints_only_the_answer_on_stdout() -> None:
    result = invoke(
        "ask", "--models", "smollm2-135m", "-k", "2", "--max-tokens", "40", "--seed", "3", "--temperature", "0", "-"
    )
    assert result.exit_code == 2 and "empty" in result.stderr  # '-' with no stdin: an empty question
    result = invoke("ask", "--models", "smollm2-135m", "-k", "2", "--max-tokens", "40", "--seed", "3",
                    "--temperature", "0", "--explain", "-", input=QUESTION + "\n")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().lstrip("-").replace(".", "").isdigit()  # one number, nothing else
    assert "SLM-MUX vote" in result.stderr and "smollm2-135m" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("ask", ""), 2, "the question is empty"),
        (("ask", "--profile", "tiny", "-k", "0", "q"), 2, "k must be between 1 and 64"),
        (("ask", "--profile", "tiny", "-k", "100000", "q"), 2, "k must be between 1 and 64"),
        (("ask", "--profile", "tiny", "--temperature", "-1", "q"), 2, "temperature must be between 0 and 5"),
        (("ask", "--profile", "defualt", "q"), 3, "did you mean 'default'"),
        (("ask", "--models", "smollm2-13m", "q"), 3, "did you mean 'smollm2-135m'"),
        (("ask", "--models", "smollm2-135m,smollm2-135m", "q"), 2, "named twice"),
        (("models", "pull", "qwen-giant"), 3, "unknown model 'qwen-giant'"),
        (("models", "rm", "nope"), 3, "unknown model"),
    ],
)
def test_bad_input(args: tuple[str, ...], code: int, message: str) -> None:
    assert_clean_error(invoke(*args), code, message)


def test_malformed_profile_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nmodels: [unclosed\n")
    assert_clean_error(invoke("ask", "--profile", str(bad), "q"), 4, "malformed YAML")


@pytest.mark.usefixtures("smollm2_in_home")
def test_question_longer_than_the_context() -> None:
    result = invoke("ask", "--profile", "tiny", "--max-tokens", "64", "count " * 9000)
    assert_clean_error(result, 2, "trained for 8192 tokens")


@pytest.mark.usefixtures("smollm2_in_home")
def test_a_question_too_long_for_n_ctx_is_refused_before_the_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The context is never grown behind the budget's back; the refusal comes from the vocabulary alone.
    loads: list[str] = []
    monkeypatch.setattr("edgemux.engine.engine.Engine.__init__", lambda self, *a, **kw: loads.append("loaded"))
    result = invoke("ask", "--profile", "tiny", "--n-ctx", "512", "How many? " + "apple " * 5000)
    assert_clean_error(result, 2, "KV cells")
    assert "raise --n-ctx to at least 5" in result.output and loads == []


def test_models_list_json(smollm2_in_home: Path) -> None:
    result = invoke("models", "list", "--json")
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["smollm2-135m"]["cached"] is True and rows["qwen2.5-coder-1.5b"]["cached"] is False
    assert rows["gemma3-270m"]["prompt_style"] == "completion"
    table = invoke("models", "list")
    assert "smollm2-135m" in table.stdout and "Q4_1" in table.stdout


def test_models_add_use_and_rm(smollm2_path: Path, home: Path) -> None:
    result = invoke("models", "add", str(smollm2_path), "--name", "my-smol")
    assert result.exit_code == 0, result.stderr
    assert "llama, Q4_1, context 8192, prompt style chat" in result.stderr
    listed = {r["name"]: r for r in json.loads(invoke("models", "list", "--json").stdout)}
    assert listed["my-smol"]["cached"] is True and listed["my-smol"]["source"] == "local"
    answer = invoke("ask", "--models", "my-smol", "-k", "1", "--max-tokens", "16", "--temperature", "0", "-q", QUESTION)
    assert answer.exit_code == 0, answer.stderr
    assert_clean_error(invoke("models", "add", str(smollm2_path), "--name", "my-smol"), 2, "exists already")
    removed = invoke("models", "rm", "my-smol")
    assert removed.exit_code == 0 and "left in place" in removed.stderr
    assert smollm2_path.exists()
    assert "my-smol" not in invoke("models", "list").stdout


def test_models_add_rejects_non_gguf(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_text("not a model")
    assert_clean_error(invoke("models", "add", str(junk), "--name", "junk"), 6, "not a GGUF")
    assert_clean_error(invoke("models", "add", str(tmp_path / "absent.gguf"), "--name", "x"), 6, "no such file")
    assert_clean_error(invoke("models", "add", str(junk), "--name", "Bad Name"), 2, "not a valid model name")


def test_models_rm_cached(smollm2_in_home: Path) -> None:
    result = invoke("models", "rm", "smollm2-135m")
    assert result.exit_code == 0 and "removed" in result.stderr
    assert not smollm2_in_home.exists()


def test_profiles_lists_shipped_profiles() -> None:
    result = invoke("profiles")
    assert result.exit_code == 0 and "default" in result.stdout and "qwen2.5-coder-1.5b" in result.stdout


def test_help_teaches() -> None:
    result = invoke("ask", "--help")
    for flag in (
        "--profile",
        "--models",
        "-k",
        "--temperature",
        "--max-tokens",
        "--kind",
        "--seed",
        "--gpu-layers",
        "--threads",
        "--quiet",
        "--json",
        "--explain",
    ):
        assert flag in result.stdout


@pytest.mark.usefixtures("smollm2_in_home")
def test_ask_refuses_a_budget_the_model_cannot_fit() -> None:
    result = invoke("ask", "--models", "smollm2-135m", "--budget", "50MiB", "q")
    assert_clean_error(result, 9, "smollm2-135m alone needs")
    assert_clean_error(
        invoke("ask", "--models", "smollm2-135m", "--budget", "lots", "q"), 2, "cannot read 'lots' as a size"
    )


@pytest.mark.usefixtures("smollm2_in_home")
def test_early_stop_keeps_the_answer_of_full_sampling() -> None:
    # Short, consistent answers that finish at different steps: three agree before the rest are done.
    question = "What is 2 + 2? Reply with just the number."
    common = (
        "ask",
        "--models",
        "smollm2-135m",
        "-k",
        "5",
        "--max-tokens",
        "48",
        "--temperature",
        "0.7",
        "--seed",
        "2",
        "--json",
        question,
    )
    exact = json.loads(invoke(*common).stdout)  # the decision rule: one model's samples all finish
    early = json.loads(invoke(*common, "--stop-rule", "answer").stdout)  # stops once the answer is settled
    full = json.loads(invoke(*common, "--no-early-stop").stdout)
    assert (exact["answer"], exact["winner"], exact["confidence"]) == (
        full["answer"],
        full["winner"],
        full["confidence"],
    )
    assert (early["answer"], early["winner"]) == (full["answer"], full["winner"])
    assert early["confidence"] <= full["confidence"]  # the answer rule's documented lower bound
    assert early["early_stop"]["stopped_samples"] and full["early_stop"]["stopped_samples"] == []
    assert early["tokens"] < full["tokens"]
    for sample in early["models"][0]["samples"]:  # samples that ran are the same samples (same seeds)
        if sample["stop_reason"] != "cancelled":
            twin = full["models"][0]["samples"][sample["index"]]
            assert {**sample, "seconds": 0} == {**twin, "seconds": 0}


def test_ctrl_c_during_decoding_stops_cleanly(smollm2_in_home: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "edgemux", "ask", "--models", "smollm2-135m", "-k", "3", "--max-tokens", "2000",
         "--temperature", "0.8", "Write a very long story about a lighthouse keeper."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
        # a runner that started us in the background (`cmd &`) leaves SIGINT ignored, and Python then
        # never installs its Ctrl-C handler in the child: restore the default, as a terminal would have it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # wait until the model is loaded and decoding has begun
        seen.append(line)
        if "loaded in" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 130, (seen, err)
    assert "interrupted" in err and "Traceback" not in err
    assert out == ""


@pytest.mark.usefixtures("smollm2_in_home")
def test_ask_multiple_choice_with_choice_flags() -> None:
    result = invoke("ask", "--models", "smollm2-135m", "-k", "2", "--max-tokens", "24", "--seed", "1", "--json",
                    "Which planet is closest to the Sun?", "-c", "Mercury", "-c", "Mars", "-c", "Jupiter")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "choice" and data["question"] == "Which planet is closest to the Sun?"
    assert all(s["answer"] in (None, "A", "B", "C") for m in data["models"] for s in m["samples"])
    # each answer carries the probability the model gave its letter against the other two where it wrote it
    answered = [s for m in data["models"] for s in m["samples"] if s["answer"] is not None]
    assert answered and all(0 < s["answer_mass"] <= 1 for s in answered)
    assert_clean_error(invoke("ask", "--models", "smollm2-135m", "q", "-c", "only one"), 2, "at least two --choice")


def test_exit_5_when_the_download_fails(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on: the index is unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "3")
    result = invoke("models", "pull", "smollm2-135m")
    assert_clean_error(result, 5, "edgemux models pull smollm2-135m")
    assert not (home / "models" / "smollm2-135m.gguf").exists()


def test_a_truncated_gguf_is_refused_whole(smollm2_path: Path, tmp_path: Path, home: Path) -> None:
    """`models add` checks that every tensor's data lies inside the file: exit 6 and nothing registered. A
    truncated file registered by hand is refused the same way when it fails to load."""
    cut = tmp_path / "cut.gguf"
    with smollm2_path.open("rb") as f:
        cut.write_bytes(f.read(5_000_000))  # the header is whole; the tensors' data is not there
    assert_clean_error(invoke("models", "add", str(cut), "--name", "cut"), 6, "truncated")
    assert "cut" not in invoke("models", "list").stdout and not list(home.rglob("cut.yaml"))
    manifests = home / "manifests"  # written by hand, bypassing the check
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / "cut.yaml").write_text(f"name: cut\nfamily: f\narchitecture: llama\nparams_billions: 0.1\n"
                                        f"quant: Q4_0\ncontext_length: 2048\nprompt_style: chat\nsource: {{path: {cut}}}\n")  # fmt: skip
    assert_clean_error(invoke("ask", "--models", "cut", "-k", "1", "-q", "What is 2+2?"), 6, "truncated")


def test_exit_7_when_llama_cpp_cannot_load_the_model(fake_models: list[str]) -> None:
    # a whole GGUF that llama.cpp cannot load: a header with no tensors
    assert_clean_error(
        invoke("ask", "--models", "alpha", "-k", "1", "-q", "What is 2+2?"), 7, "llama.cpp could not load"
    )


def test_exit_8_when_no_model_gives_a_parsable_answer(fake_models: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from edgemux.testing import fake_engine_factory

    monkeypatch.setattr(
        "edgemux.schedule.loader.llama_engine", fake_engine_factory({"alpha": ["no idea"], "beta": ["none"]})
    )
    # --kind number: under auto, replies that end in no number are read again as answers in words
    result = invoke("ask", "--models", "alpha,beta", "--kind", "number", "-k", "2", "What is 2+2?")
    assert result.exit_code == 8 and result.stdout == ""
    assert "no model" in result.stderr.lower() and "Traceback" not in result.stderr
